// Spawns the built `fusekit` binary (test/global-setup.ts builds dist/ when stale) and checks exit
// codes and the key lines of its output against the library API run in-process.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { PassThrough } from "node:stream";
import {
  AutoModelForCausalLM,
  AutoTokenizer,
  PRESETS,
  Qwen3Config,
  defaultModelDir,
  generate,
  setBackend,
} from "fusekit";
import { loadModel, resolveModelAndTokenizer, statusLine } from "../src/cli/common.js";
import { fusekit } from "./helpers/cli.js";

const tmp = mkdtempSync(path.join(os.tmpdir(), "fusekit-cli-"));

let dir: string;
beforeAll(async () => {
  dir = await defaultModelDir();
  await setBackend("wasm");
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe("fusekit --help", () => {
  it.each([
    [[], ["Usage: fusekit [options] [command]", "generate [options]", "inspect [options]", "make-model [options]"]],
    [
      ["generate"],
      [
        "Usage: fusekit generate [options]",
        "--prompt <text>",
        "--max-new-tokens <n>",
        "--temperature <t>",
        "--seed <n>",
        "--chat",
        "--model <dir-or-id>",
        "--revision <rev>",
        "--backend <name>",
      ],
    ],
    [["inspect"], ["Usage: fusekit inspect [options]", "--model <dir-or-id>", "--revision <rev>", "--expand"]],
    [
      ["make-model"],
      [
        "Usage: fusekit make-model [options]",
        "--out <dir>",
        "--seed <n>",
        "--preset <name>",
        '"qwen3-tiny", "qwen3-0.6b",',
        '"qwen3-1.7b"',
        "--dtype <dtype>",
      ],
    ],
    [["generate"], ["--weight-storage <kind>", '"auto", "f32", "bf16",', '"int8", "fp8", default: "auto"']],
    [["compare"], ["--weight-storage <kind>", '"auto", "f32", "bf16",', '"int8", "fp8", default: "auto"']],
    [
      ["compare"],
      [
        "--approaches <ids>",
        "--rounds <n>",
        "--warmup <n>",
        "the original is always included",
        "  fused-unfused        runtime fusion, then unfused\n",
        "(an interval needs --rounds\n≥ 6)",
      ],
    ],
    [["inspect"], ["--weight-storage <kind>", '"auto", "f32", "bf16",', '"int8", "fp8", default: "auto"']],
  ])("%j --help", async (cmd, expected) => {
    const r = await fusekit([...cmd, "--help"]);
    expect(r.code).toBe(0);
    for (const line of expected) expect(r.stdout).toContain(line);
  });
});

describe("fusekit generate", () => {
  it("streams the greedy continuation the API produces, then timings and tokens/s", async () => {
    const prompt = "Hello, how are you?";
    const r = await fusekit(["generate", "--prompt", prompt, "--max-new-tokens", "6", "--backend", "wasm"]);
    expect(r.code).toBe(0);
    const model = await AutoModelForCausalLM.fromPretrained(dir);
    const tok = await AutoTokenizer.fromPretrained(dir);
    try {
      const out = await generate(model, [tok.encode(prompt)], { maxNewTokens: 6 });
      expect(r.stdout).toBe(tok.decode(out.newTokens[0], { skipSpecialTokens: true }) + "\n");
    } finally {
      model.dispose();
    }
    expect(r.stderr).toMatch(/^model .* · backend wasm · bf16 weights · loaded in [\d.]+ s · tokenizer [\d.]+ s$/m);
    expect(r.stderr).toMatch(/^prompt 6 tokens · prefill \d+ ms \([\d.]+ tokens\/s\)$/m);
    expect(r.stderr).toMatch(
      /^generated 6 tokens in [\d.]+ s · [\d.]+ tokens\/s · decode [\d.]+ tokens\/s · stopped: length · greedy$/m,
    );
    expect(r.stderr).not.toContain("loading |"); // piped: no progress bar
  });

  it("--chat with --temperature and --seed is reproducible and reports the seed", async () => {
    const args = [
      "generate",
      "--chat",
      "--prompt",
      "Hi",
      "-n",
      "8",
      "--temperature",
      "0.9",
      "--seed",
      "3",
      "-b",
      "cpu",
    ];
    const a = await fusekit(args);
    const b = await fusekit(args);
    expect(a.code).toBe(0);
    expect(a.stdout).toBe(b.stdout);
    expect(a.stdout.length).toBeGreaterThan(1);
    const tok = await AutoTokenizer.fromPretrained(dir);
    const promptLen = tok.encode(
      tok.applyChatTemplate([{ role: "user", content: "Hi" }], { addGenerationPrompt: true }),
    ).length;
    expect(promptLen).toBe(9); // <|im_start|> user \n Hi <|im_end|> \n <|im_start|> assistant \n
    expect(a.stderr).toMatch(new RegExp(`^prompt ${promptLen} tokens`, "m"));
    expect(a.stderr).toMatch(/stopped: length · seed 3$/m);
  });

  it("a bad --model path is one clear line on stderr and exit code 1", async () => {
    const missing = path.join(tmp, "no-such-model");
    const r = await fusekit(["generate", "--model", missing, "--prompt", "x"]);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe("");
    expect(r.stderr).toBe(
      `fusekit: ConfigError: ${missing}: not a checkpoint directory (it does not exist or is not a folder)\n`,
    );
  });

  it("plans the run's context before loading: one that cannot fit the wasm heap is a MemoryPlanError with what would fit", async () => {
    const r = await fusekit(["generate", "--prompt", "Hi", "--max-new-tokens", "50000000", "--backend", "wasm"]);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe("");
    expect(r.stderr).toMatch(
      /^fusekit: MemoryPlanError: the model does not fit: bf16 weights [\d.]+ GiB in the weight store \(room: [\d.]+ GiB\); in the heap: weights [\d.]+ GiB \+ KV cache [\d.]+ GiB \(50000001 tokens\)/,
    );
    expect(r.stderr).toMatch(/What would fit: a context of \d+ tokens in bf16; the tensorflow backend/);
    const f32 = await fusekit(["inspect", "--weight-storage", "f32", "--backend", "wasm"]);
    expect(f32.code).toBe(0);
    expect(f32.stdout).toMatch(/^memory plan: f32 weights [\d.]+ GiB \+ backend copy [\d.]+ GiB \+ KV cache/m);
  });

  it("usage mistakes exit 2 with commander's message on one line", async () => {
    const noPrompt = await fusekit(["generate"]);
    expect(noPrompt.code).toBe(2);
    expect(noPrompt.stderr).toBe("fusekit: error: required option '-p, --prompt <text>' not specified (see --help)\n");
    const badN = await fusekit(["generate", "--prompt", "x", "--max-new-tokens", "lots"]);
    expect(badN.code).toBe(2);
    expect(badN.stderr).toContain(
      "fusekit: error: option '-n, --max-new-tokens <n>' argument 'lots' is invalid. expected an integer ≥ 1.",
    );
    const badBackend = await fusekit(["inspect", "--backend", "gpu"]);
    expect(badBackend.code).toBe(2);
    expect(badBackend.stderr).toContain(
      "fusekit: error: option '-b, --backend <name>' argument 'gpu' is invalid. Allowed choices are tensorflow, wasm, cpu.",
    );
    const unknown = await fusekit(["frobnicate"]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain("fusekit: error: unknown command 'frobnicate'");
  });

  it("an out-of-range sampling option is rejected by the parser, naming what is allowed", async () => {
    const r = await fusekit(["generate", "--prompt", "x", "--temperature", "1", "--top-p", "2"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(
      "fusekit: error: option '--top-p <p>' argument '2' is invalid. expected a number in (0, 1]. (see --help)\n",
    );
  });
});

describe("fusekit inspect", () => {
  it("prints the module tree with parameter counts and stored dtypes, and the load report", async () => {
    const r = await fusekit(["inspect", "-b", "cpu"]);
    expect(r.code).toBe(0);
    const model = await AutoModelForCausalLM.fromPretrained(dir);
    const total = model.numParameters();
    const layer = model.getSubmodule("model.layers.0").numParameters();
    model.dispose();
    const lines = r.stdout.split("\n");
    expect(lines[0]).toBe(dir);
    expect(lines[1]).toMatch(
      new RegExp(`^model_type qwen3 · Qwen3ForCausalLM · ${total.toLocaleString("en-US")} parameters · loaded in`),
    );
    expect(lines).toContain(`Qwen3ForCausalLM  ${total.toLocaleString("en-US")}`);
    expect(lines).toContain("│  ├─ embed_tokens: Embedding  19,447,808"); // 151936 × 128
    expect(lines).toContain("│  │  └─ weight  [151936, 128]  BF16");
    expect(lines).toContain(`│  │  └─ 0-3: 4 × Qwen3DecoderLayer  ${layer.toLocaleString("en-US")} each`);
    expect(lines).toContain("│  │     │  ├─ q_proj: Linear  32,768"); // 128 → 8 heads × 32
    expect(lines).toContain("│  │     │  │  └─ weight  [256, 128]  BF16");
    expect(lines).toContain("   └─ weight  → tied to model.embed_tokens.weight");
    expect(lines).toContain("load report: 0 missing, 0 unexpected, 0 mismatched keys");
    expect(r.stderr).toBe("");
  });

  it("--expand lists every layer", async () => {
    const r = await fusekit(["inspect", "--expand", "-b", "cpu"]);
    expect(r.code).toBe(0);
    for (const i of [0, 1, 2]) expect(r.stdout).toMatch(new RegExp(`├─ ${i}: Qwen3DecoderLayer  [\\d,]+\\n`));
    expect(r.stdout).toMatch(/└─ 3: Qwen3DecoderLayer {2}[\d,]+\n/);
  });

  it("lists missing keys when the checkpoint does not fit the config", async () => {
    const ckpt = path.join(tmp, "two-layers");
    const config = new Qwen3Config({
      vocab_size: 64,
      hidden_size: 16,
      intermediate_size: 24,
      num_hidden_layers: 2,
      num_attention_heads: 2,
      num_key_value_heads: 1,
      head_dim: 8,
      tie_word_embeddings: true,
    });
    const m = AutoModelForCausalLM.fromConfig(config, { seed: 1 });
    await m.savePretrained(ckpt);
    m.dispose();
    const cfgFile = path.join(ckpt, "config.json");
    writeFileSync(cfgFile, JSON.stringify({ ...JSON.parse(readFileSync(cfgFile, "utf8")), num_hidden_layers: 3 }));
    const r = await fusekit(["inspect", "--model", ckpt, "-b", "cpu"]);
    expect(r.code).toBe(0);
    const names = [
      "self_attn.q_proj",
      "self_attn.k_proj",
      "self_attn.v_proj",
      "self_attn.o_proj",
      "self_attn.q_norm",
      "self_attn.k_norm",
      "mlp.gate_proj",
      "mlp.up_proj",
      "mlp.down_proj",
      "input_layernorm",
      "post_attention_layernorm",
    ];
    expect(r.stdout).toContain(
      `load report: ${names.length} missing, 0 unexpected, 0 mismatched keys\n  missing (randomly initialised):\n`,
    );
    for (const n of names) expect(r.stdout).toContain(`    model.layers.2.${n}.weight\n`);
    expect(r.stdout).toContain("└─ 0-2: 3 × Qwen3DecoderLayer"); // same shapes and stored dtype (F32): folded
  });
});

describe("fusekit make-model", () => {
  it("writes a loadable checkpoint with the tokenizer, deterministic from the seed", async () => {
    const out = path.join(tmp, "tiny");
    const r = await fusekit(["make-model", "--out", out, "--seed", "5"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`wrote qwen3-tiny-4kv-heads-4layers-random (seed 5) to ${out}\n`);
    for (const f of [
      "config.json",
      "model.safetensors",
      "generation_config.json",
      "tokenizer.json",
      "tokenizer_config.json",
    ])
      expect(existsSync(path.join(out, f))).toBe(true);
    const again = path.join(tmp, "tiny-again");
    expect((await fusekit(["make-model", "-o", again, "-s", "5"])).code).toBe(0);
    expect(
      readFileSync(path.join(again, "model.safetensors")).equals(readFileSync(path.join(out, "model.safetensors"))),
    ).toBe(true);
    const inspect = await fusekit(["inspect", "--model", out, "-b", "cpu"]);
    expect(inspect.code).toBe(0);
    expect(inspect.stdout).toContain("load report: 0 missing, 0 unexpected, 0 mismatched keys");
  });

  it("an unknown preset is rejected by the parser", async () => {
    const r = await fusekit(["make-model", "--preset", "qwen3-70b", "--out", path.join(tmp, "x")]);
    expect(r.code).toBe(2);
    const choices = Object.keys(PRESETS).join(", ");
    expect(r.stderr).toContain(
      `fusekit: error: option '-p, --preset <name>' argument 'qwen3-70b' is invalid. Allowed choices are ${choices}.`,
    );
    expect(existsSync(path.join(tmp, "x"))).toBe(false);
  });
});

describe("loading progress bar", () => {
  const fakeStream = (isTTY: boolean) => {
    const s = Object.assign(new PassThrough(), {
      isTTY,
      columns: 100,
      cursorTo: () => true,
      clearLine: () => true,
      moveCursor: () => true,
    });
    let text = "";
    s.on("data", (d) => (text += d));
    return { s, text: () => text };
  };

  it("draws on a TTY once the checkpoint is big enough, and never when the stream is not a TTY", async () => {
    process.env.FUSEKIT_PROGRESS_MIN_BYTES = "0";
    try {
      const tty = fakeStream(true);
      (await loadModel(dir, { progressStream: tty.s })).dispose();
      expect(tty.text()).toContain("loading |");
      expect(tty.text()).toMatch(/\d+\/\d+ MiB/);
      const pipe = fakeStream(false);
      (await loadModel(dir, { progressStream: pipe.s })).dispose();
      expect(pipe.text()).toBe("");
    } finally {
      delete process.env.FUSEKIT_PROGRESS_MIN_BYTES;
    }
    // Default threshold (64 MiB): the ~40 MB tiny model stays quiet even on a TTY.
    const small = fakeStream(true);
    (await loadModel(dir, { progressStream: small.s })).dispose();
    expect(small.text()).toBe("");
  });
});

describe("status line", () => {
  const stream = (isTTY: boolean) => {
    let text = "";
    return { s: { isTTY, write: (t: string) => ((text += t), true) } as never, text: () => text };
  };

  it("says what is being waited for on a terminal and erases it after; says nothing on a pipe", async () => {
    const tty = stream(true);
    const { tokenizer } = await resolveModelAndTokenizer(dir, undefined, statusLine(tty.s));
    expect(tokenizer.encode("hello").length).toBeGreaterThan(0);
    expect(tty.text()).toBe("\r\x1b[Kbuilding the tokenizer…\r\x1b[K");
    const pipe = stream(false);
    await resolveModelAndTokenizer(dir, undefined, statusLine(pipe.s));
    expect(pipe.text()).toBe("");
    const line = statusLine(tty.s);
    line.clear(); // nothing shown: nothing to erase
    expect(tty.text()).toBe("\r\x1b[Kbuilding the tokenizer…\r\x1b[K");
  });
});
