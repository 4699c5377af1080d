// The three scripts a transformers.js user writes first (examples/: load + generate, stream with a TextStreamer,
// the text-generation pipeline) type-check against the built package and run, unchanged, in a fresh Node process
// on the embedded tiny model — given by hub id, from a Hugging Face cache of symlinked blobs, offline — and print
// what fusekit's own generate gives for the same prompt.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import ts from "typescript";
import {
  AutoModelForCausalLM,
  AutoTokenizer,
  defaultModelDir,
  generate,
  setBackend,
  type PreTrainedModel,
  type PreTrainedTokenizer,
} from "fusekit";
import { fusekit, root, runNode, type Run } from "./helpers/cli.js";
import { tmpDir } from "./helpers/models.js";
import { folderFiles, writeCachedModel } from "./helpers/hub.js";

const examples = path.join(root, "examples");
const names = readdirSync(examples).filter((n) => n.endsWith(".ts"));
// Inside the package, so `import … from "fusekit"` resolves to the package itself (its built dist/).
const work = mkdtempSync(path.join(root, "test", ".examples-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const ID = "fusekit-test/qwen3-tiny";
let cache: string;
let model: PreTrainedModel;
let tok: PreTrainedTokenizer;
const runs = new Map<string, Run>();

/** Greedy continuation of `ids` by fusekit's own generate, decoded without special tokens. */
async function greedy(ids: number[], n: number): Promise<string> {
  const { newTokens } = await generate(model, [ids], { maxNewTokens: n, doSample: false });
  return tok.decode(newTokens[0], { skipSpecialTokens: true });
}

async function runExample(name: string): Promise<Run> {
  const js = ts.transpileModule(readFileSync(path.join(examples, name), "utf8"), {
    compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
  }).outputText;
  const file = path.join(work, name.replace(/\.ts$/, ".mjs"));
  writeFileSync(file, js);
  // Offline, and an endpoint no request could reach anyway: the model must come from the cache.
  const env = { FUSEKIT_BACKEND: "wasm", HF_HUB_CACHE: cache, HF_HUB_OFFLINE: "1", HF_ENDPOINT: "http://127.0.0.1:9" };
  return runNode(file, [ID], { cwd: root, env });
}

beforeAll(async () => {
  await setBackend("wasm");
  const dir = await defaultModelDir();
  cache = tmpDir("fusekit-examples-cache-");
  writeCachedModel(cache, ID, folderFiles(dir));
  model = await AutoModelForCausalLM.fromPretrained(dir);
  tok = await AutoTokenizer.fromPretrained(dir);
  for (const name of names) runs.set(name, await runExample(name));
});
afterAll(() => model?.dispose());

describe("examples/", () => {
  it("holds the three first scripts, and they type-check as written", () => {
    expect(names.sort()).toEqual(["load-and-generate.ts", "pipeline.ts", "stream.ts"]);
    const config = ts.getParsedCommandLineOfConfigFile(
      path.join(root, "tsconfig.json"),
      {},
      { ...ts.sys, onUnRecoverableConfigFileDiagnostic: () => {} },
    )!;
    const files = names.map((n) => path.join(examples, n));
    const program = ts.createProgram(files, { ...config.options, noEmit: true, declaration: false });
    const problems = ts
      .getPreEmitDiagnostics(program)
      .filter((d) => d.file && files.includes(path.resolve(d.file.fileName)))
      .map((d) => `${path.basename(d.file!.fileName)}: ${ts.flattenDiagnosticMessageText(d.messageText, "\n")}`);
    expect(problems).toEqual([]);
  });

  it("load-and-generate: hub id from the cache, model.generate({ inputs, max_new_tokens }) = generate()", async () => {
    const r = runs.get("load-and-generate.ts")!;
    expect(r.stderr).toBe(`loaded ${ID}\n`);
    expect(r.code).toBe(0);
    const prompt = tok.applyChatTemplate([{ role: "user", content: "Name a colour." }], {
      addGenerationPrompt: true,
      enableThinking: false,
    });
    expect(r.stdout).toBe(`${await greedy(tok.encode(prompt, { addSpecialTokens: false }), 8)}\n`);
  });

  it("stream: a TextStreamer with skip_prompt streams exactly the continuation, in pieces", async () => {
    const r = runs.get("stream.ts")!;
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`${await greedy(tok.encode("Once upon a time"), 12)}\n`);
    expect(r.stderr).toMatch(/^\d+ pieces streamed\n$/);
    expect(Number(/^(\d+)/.exec(r.stderr)![1])).toBeGreaterThan(1);
  });

  it("pipeline: text → prompt + continuation; chat → the messages with the assistant's reply appended", async () => {
    const r = runs.get("pipeline.ts")!;
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const text = "The capital of France is";
    const messages = [
      { role: "system", content: "You are a helpful assistant." },
      { role: "user", content: "Tell me a joke." },
    ];
    const chatIds = tok.encode(tok.applyChatTemplate(messages, { addGenerationPrompt: true }), {
      addSpecialTokens: false,
    });
    expect(r.stdout).toBe(`${text}${await greedy(tok.encode(text), 8)}\nassistant: ${await greedy(chatIds, 8)}\n`);
  });
});

describe("fusekit --model org/name", () => {
  const env = () => ({
    FUSEKIT_BACKEND: "wasm",
    HF_HUB_CACHE: cache,
    HF_HUB_OFFLINE: "1",
    HF_ENDPOINT: "http://127.0.0.1:9",
  });

  it("generate reads the model from the cache (--revision main) and says which snapshot", async () => {
    const r = await fusekit(["generate", "--model", ID, "--revision", "main", "--prompt", "hi", "-n", "3"], {
      env: env(),
    });
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`${await greedy(tok.encode("hi"), 3)}\n`);
    expect(r.stderr).toContain(`model ${path.join(cache, "models--fusekit-test--qwen3-tiny", "snapshots")}`);
  });

  it("a model the cache lacks is one ModelNotFoundError line naming the paths searched, exit 1", async () => {
    const r = await fusekit(["inspect", "--model", "Qwen/Qwen3-0.6B"], { env: env() });
    expect(r.code).toBe(1);
    expect(r.stdout).toBe("");
    expect(r.stderr).toMatch(
      /^fusekit: ModelNotFoundError: Qwen\/Qwen3-0\.6B: no such folder, and revision "main" is not in the Hugging Face cache/,
    );
    expect(r.stderr).toContain(path.join(cache, "models--Qwen--Qwen3-0.6B", "refs", "main"));
    expect(r.stderr).toContain("hf download Qwen/Qwen3-0.6B");
    expect(r.stderr.split("\n")).toHaveLength(2);
  });
});
