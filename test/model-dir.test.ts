// Complete model directories: savePretrained writes config.json, the weights,
// generation_config.json and the tokenizer files the model was loaded with, so the built `fusekit` binary can
// generate from the saved folder; tokenizer.savePretrained; saves never write into a folder of other files.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawn } from "node:child_process";
import { promises as fsp } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import {
  AutoModelForCausalLM,
  AutoTokenizer,
  PreTrainedTokenizer,
  SafetensorsFile,
  SaveTargetError,
  TokenizerError,
  defaultModelDir,
  generate,
  setBackend,
} from "fusekit";
import { smallConfig, tmpDir } from "./helpers/models.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const bin = path.join(root, "dist", "src", "cli", "main.js");
const dirs: string[] = [];
const scratch = () => {
  const d = tmpDir("fusekit-modeldir-");
  dirs.push(d);
  return d;
};
afterAll(async () => Promise.all(dirs.map((d) => fsp.rm(d, { recursive: true, force: true }))));

/** Runs the built CLI with piped output; resolves with exit code and output. */
function fusekit(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [bin, ...args], {
      env: { ...process.env, FUSEKIT_BACKEND: "" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let [stdout, stderr] = ["", ""];
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

let src: string;
beforeAll(async () => {
  src = await defaultModelDir(); // BF16 weights, config.json, generation_config.json, the Qwen3 tokenizer
  await setBackend("wasm");
});

const COMPANIONS = ["generation_config.json", "tokenizer.json", "tokenizer_config.json"];

describe("savePretrained writes a complete model directory", () => {
  it("savePretrained → `fusekit generate --model saved` prints what the source folder prints", async () => {
    const model = await AutoModelForCausalLM.fromPretrained(src);
    const out = path.join(scratch(), "saved"); // a new folder
    await model.savePretrained(out);
    model.dispose();
    expect((await fsp.readdir(out)).sort()).toEqual(["config.json", ...COMPANIONS, "model.safetensors"].sort());
    for (const f of ["tokenizer.json", "tokenizer_config.json"]) {
      expect((await fsp.readFile(path.join(out, f))).equals(await fsp.readFile(path.join(src, f))), f).toBe(true);
    }
    const [gSrc, gOut] = await Promise.all(
      [src, out].map(async (d) => JSON.parse(await fsp.readFile(path.join(d, "generation_config.json"), "utf8"))),
    );
    expect(gOut).toEqual(gSrc);

    const args = ["generate", "--prompt", "Hello, how are you?", "-n", "6", "-b", "wasm"];
    const [a, b] = await Promise.all([fusekit([...args, "--model", src]), fusekit([...args, "--model", out])]);
    expect(b.stderr).toMatch(/^generated 6 tokens/m);
    expect(b.code).toBe(0);
    expect(a.code).toBe(0);
    expect(b.stdout.length).toBeGreaterThan(1);
    expect(b.stdout).toBe(a.stdout);
  });

  it("a model built from a config (no source folder) saves config and weights only; an older save's tokenizer files stay", async () => {
    const out = scratch();
    const loaded = await AutoModelForCausalLM.fromPretrained(src);
    await loaded.savePretrained(out);
    loaded.dispose();
    const model = AutoModelForCausalLM.fromConfig(smallConfig(), { seed: 1 });
    await model.savePretrained(out);
    model.dispose();
    expect((await fsp.readdir(out)).sort()).toEqual(["config.json", ...COMPANIONS, "model.safetensors"].sort());
    const fresh = scratch();
    const again = AutoModelForCausalLM.fromConfig(smallConfig(), { seed: 1 });
    await again.savePretrained(fresh);
    again.dispose();
    expect((await fsp.readdir(fresh)).sort()).toEqual(["config.json", "model.safetensors"]);
  });
});

describe("tokenizer.savePretrained", () => {
  it("writes the files it was read from, byte for byte; the copy tokenizes and templates the same", async () => {
    const tok = await AutoTokenizer.fromPretrained(src);
    const out = path.join(scratch(), "tok");
    await tok.savePretrained(out);
    expect((await fsp.readdir(out)).sort()).toEqual(["tokenizer.json", "tokenizer_config.json"]);
    for (const f of ["tokenizer.json", "tokenizer_config.json"]) {
      expect((await fsp.readFile(path.join(out, f))).equals(await fsp.readFile(path.join(src, f))), f).toBe(true);
    }
    const copy = await AutoTokenizer.fromPretrained(out);
    const text = "Hello, wörld! <|im_end|>";
    expect(copy.encode(text)).toEqual(tok.encode(text));
    const chat = [{ role: "user", content: "Hi" }];
    expect(copy.applyChatTemplate(chat, { addGenerationPrompt: true })).toBe(
      tok.applyChatTemplate(chat, { addGenerationPrompt: true }),
    );
  });

  it("a tokenizer built without files has nothing to save: a TokenizerError", async () => {
    const tok = await AutoTokenizer.fromPretrained(src);
    const bare = new PreTrainedTokenizer(tok.tokenizer, tok.config);
    const out = path.join(scratch(), "bare");
    await expect(bare.savePretrained(out)).rejects.toThrow(TokenizerError);
    await expect(fsp.stat(out)).rejects.toThrow(/ENOENT/);
  });
});

describe("saves never write into a folder that is not a checkpoint", () => {
  it("a folder holding other files is refused by model and tokenizer saves, and left untouched", async () => {
    const dir = scratch();
    await fsp.writeFile(path.join(dir, "notes.txt"), "mine");
    const model = AutoModelForCausalLM.fromConfig(smallConfig(), { seed: 2 });
    const err = await model.savePretrained(dir).catch((e) => e);
    model.dispose();
    expect(err).toBeInstanceOf(SaveTargetError);
    expect(err.message).toBe(
      `${dir}: not a checkpoint folder (no config.json; it holds "notes.txt"); refusing to write into it — save to a new or empty folder`,
    );
    const tok = await AutoTokenizer.fromPretrained(src);
    await expect(tok.savePretrained(dir)).rejects.toThrow(SaveTargetError);
    expect(await fsp.readdir(dir)).toEqual(["notes.txt"]);
    expect(await fsp.readFile(path.join(dir, "notes.txt"), "utf8")).toBe("mine");
  });

  it("a path that is a file is refused; an empty folder and an existing checkpoint folder are written", async () => {
    const dir = scratch();
    const file = path.join(dir, "weights");
    await fsp.writeFile(file, "x");
    const model = AutoModelForCausalLM.fromConfig(smallConfig(), { seed: 3 });
    try {
      await expect(model.savePretrained(file)).rejects.toThrow(/exists and is not a folder/);
      expect(await fsp.readFile(file, "utf8")).toBe("x");
      const empty = path.join(dir, "empty");
      await fsp.mkdir(empty);
      await model.savePretrained(empty);
      await fsp.writeFile(path.join(empty, "README.md"), "my notes on this checkpoint");
      await model.savePretrained(empty); // has config.json: a checkpoint, saved over (README kept)
      expect((await fsp.readdir(empty)).sort()).toEqual(["README.md", "config.json", "model.safetensors"]);
    } finally {
      model.dispose();
    }
  });
});

describe("fusekit quantize-fp8", () => {
  it("writes an FP8 block-quantized copy that `fusekit generate` runs, as the API does", async () => {
    const out = path.join(scratch(), "fp8");
    const q = await fusekit(["quantize-fp8", "--model", src, "--out", out, "--block", "64,64", "-b", "cpu"]);
    expect(q.stderr).toBe("");
    expect(q.stdout).toBe(`quantized 28 Linear weights to FP8 (blocks 64×64) → ${out}\n`); // 4 layers × 7 (lm_head is tied, not a Linear of its own)
    expect(q.code).toBe(0);
    const config = JSON.parse(await fsp.readFile(path.join(out, "config.json"), "utf8"));
    expect(config.quantization_config).toMatchObject({ quant_method: "fp8", weight_block_size: [64, 64] });
    const f = await SafetensorsFile.open(path.join(out, "model.safetensors"));
    expect(f.info("model.layers.0.self_attn.q_proj.weight").dtype).toBe("F8_E4M3");
    expect(f.info("model.layers.0.self_attn.q_proj.weight_scale_inv")).toMatchObject({ dtype: "F32", shape: [4, 2] }); // [256, 128] in 64×64 blocks
    await f.close();

    const r = await fusekit(["generate", "--model", out, "--prompt", "Hello", "-n", "5", "-b", "wasm"]);
    expect(r.code).toBe(0);
    const model = await AutoModelForCausalLM.fromPretrained(out);
    const tok = await AutoTokenizer.fromPretrained(out);
    try {
      const gen = await generate(model, [tok.encode("Hello")], { maxNewTokens: 5 });
      expect(r.stdout).toBe(tok.decode(gen.newTokens[0], { skipSpecialTokens: true }) + "\n");
    } finally {
      model.dispose();
    }
  });

  it("a bad --block is a usage error", async () => {
    const r = await fusekit(["quantize-fp8", "--out", path.join(scratch(), "x"), "--block", "128"]);
    expect(r.code).toBe(2); // a usage error, as commander means it
    expect(r.stderr).toContain(
      "fusekit: error: option '--block <rows,cols>' argument '128' is invalid. expected two positive integers",
    );
  });
});
