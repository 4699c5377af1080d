// Public API misuse gets fusekit's named errors, writers never replace what fusekit did
// not write (item 1), and a user's own uncaught error keeps its stack and exit code once the wasm backend
// has started (tfjs-backend-wasm's emscripten glue used to rethrow it and exit with code 7).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, readdirSync, existsSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import {
  ArgumentError,
  AutoModelForCausalLM,
  AutoTokenizer,
  Mode,
  OutputPathError,
  TextStreamer,
  activeKernel,
  defaultModelDir,
  discoverRepos,
  generate,
  kernelize,
  makeModel,
  setBackend,
  writeLockfile,
  type PreTrainedModel,
  type PreTrainedTokenizer,
} from "fusekit";
import { runComparison } from "../src/compare/run.js";
import { ensureDir, writeFileAtomically, writeFolderAtomically } from "../src/io/atomic.js";
import { checkpointFolderTarget } from "../src/io/checkpoint.js";
import { folderChecksum, root, runNode } from "./helpers/cli.js";
import { smallConfig } from "./helpers/models.js";

const tmp = mkdtempSync(path.join(os.tmpdir(), "fusekit-api-args-"));
let dir: string;
let model: PreTrainedModel;
let tok: PreTrainedTokenizer;
beforeAll(async () => {
  await setBackend("wasm");
  dir = await defaultModelDir();
  model = await AutoModelForCausalLM.fromPretrained(dir);
  tok = await AutoTokenizer.fromPretrained(dir);
});
afterAll(() => {
  model?.dispose();
  rmSync(tmp, { recursive: true, force: true });
});

const kernelsOf = (m: PreTrainedModel) =>
  m
    .namedModules()
    .map(([p, x]) => [p, activeKernel(x)])
    .filter(([, k]) => k);

describe("kernelize", () => {
  it("with no options uses the model's own mode (INFERENCE in eval, TRAINING after train())", async () => {
    await kernelize(model, { mode: Mode.INFERENCE });
    const inference = kernelsOf(model);
    await kernelize(model, { mode: Mode.TRAINING });
    const training = kernelsOf(model);
    await kernelize(model);
    expect(kernelsOf(model)).toEqual(inference);
    expect(inference.length).toBeGreaterThan(0);
    model.train();
    try {
      await kernelize(model);
      expect(kernelsOf(model)).toEqual(training);
    } finally {
      model.eval();
      await kernelize(model, { mode: Mode.INFERENCE });
    }
  });

  it("without a model names what it expected", async () => {
    await expect(kernelize(undefined as never)).rejects.toThrow(
      new ArgumentError("kernelize: expected a model (a Module), got undefined"),
    );
    await expect(kernelize("model" as never)).rejects.toThrow(
      'kernelize: expected a model (a Module), got a string ("model")',
    );
  });
});

describe("generate", () => {
  it("takes a text prompt with a tokenizer: the same tokens as its token ids", async () => {
    const byText = await generate(model, "hello", { tokenizer: tok, maxNewTokens: 4 });
    const byIds = await generate(model, [tok.encode("hello")], { maxNewTokens: 4 });
    expect(byText.sequences).toEqual(byIds.sequences);
    expect(byText.sequences[0].slice(0, tok.encode("hello").length)).toEqual(tok.encode("hello"));
  });

  it("takes a text prompt without a tokenizer when the model's folder had one (its companion files)", async () => {
    const byText = await generate(model, "hello", { maxNewTokens: 4 });
    const byIds = await generate(model, [tok.encode("hello")], { maxNewTokens: 4 });
    expect(byText.sequences).toEqual(byIds.sequences);
  });

  it("names the expected types when the prompt cannot be used", async () => {
    const bare = AutoModelForCausalLM.fromConfig(smallConfig()); // no folder, no tokenizer files
    try {
      await expect(generate(bare, "hello")).rejects.toThrow(
        new ArgumentError(
          "generate: a text prompt needs options.tokenizer (the model has no tokenizer files of its own); without one pass token ids (number[][] or a 2-D tf.Tensor)",
        ),
      );
    } finally {
      bare.dispose();
    }
    await expect(generate(model, "", { tokenizer: tok })).rejects.toThrow(
      new ArgumentError("generate: the prompt is empty"),
    );
    await expect(generate(model, 42 as never)).rejects.toThrow(
      new ArgumentError(
        "inputIds: expected number[][] or a 2-D tf.Tensor, or a string with options.tokenizer, got number 42",
      ),
    );
  });
});

describe("option keys", () => {
  it("fromPretrained: a key it does not know is an ArgumentError naming the one meant, before anything is read", async () => {
    const missing = path.join(tmp, "not-read");
    await expect(AutoModelForCausalLM.fromPretrained(missing, { dtype: "bfloat16" } as never)).rejects.toThrow(
      new ArgumentError(
        'fromPretrained: unknown option "dtype" (fusekit calls it "weightStorage": "auto", "f32", "bf16", "int8", "fp8")',
      ),
    );
    await expect(AutoModelForCausalLM.fromPretrained(missing, { cache_dir: "/x" } as never)).rejects.toThrow(
      'fromPretrained: unknown option "cache_dir" (fusekit calls it "cacheDir")',
    );
    await expect(AutoModelForCausalLM.fromPretrained(missing, { frobnicate: 1 } as never)).rejects.toThrow(
      /^fromPretrained: unknown option "frobnicate" \(known options: strict, seed, /,
    );
  });

  it("generate: transformers' snake_case names are ArgumentErrors naming fusekit's (never ignored)", async () => {
    await expect(generate(model, [[1, 2]], { max_new_tokens: 5 } as never)).rejects.toThrow(
      new ArgumentError('generate: unknown option "max_new_tokens" (fusekit calls it "maxNewTokens")'),
    );
    await expect(generate(model, [[1, 2]], { max_length: 5 } as never)).rejects.toThrow(
      'generate: unknown option "max_length" (fusekit counts new tokens only: "maxNewTokens")',
    );
  });

  it("AutoTokenizer.fromPretrained and TextStreamer check theirs too", async () => {
    await expect(AutoTokenizer.fromPretrained(dir, { revison: "main" } as never)).rejects.toThrow(ArgumentError);
    expect(() => new TextStreamer(tok, { skip_promt: true } as never)).toThrow(
      /^TextStreamer: unknown option "skip_promt"/,
    );
  });
});

describe("runComparison", () => {
  it("rejects rounds, newTokens, warm-up and model limits out of range before loading anything", async () => {
    const base = { modelDir: path.join(tmp, "no-model"), approaches: [] };
    await expect(runComparison({ ...base, rounds: 0 })).rejects.toThrow(
      new ArgumentError("runComparison: rounds must be an integer ≥ 1, got 0"),
    );
    await expect(runComparison({ ...base, warmup: -1 })).rejects.toThrow(
      new ArgumentError("runComparison: warmup must be an integer ≥ 0, got -1"),
    );
    await expect(runComparison({ ...base, maxLoadedModels: 1 })).rejects.toThrow(
      new ArgumentError("runComparison: maxLoadedModels must be an integer ≥ 2, got 1"),
    );
    await expect(runComparison({ ...base, newTokens: 1.5 })).rejects.toThrow(
      new ArgumentError("runComparison: newTokens must be an integer ≥ 1, got 1.5"),
    );
  });
});

describe("writers never replace what fusekit did not write", () => {
  const userFolder = () => {
    const ws = mkdtempSync(path.join(tmp, "ws-"));
    writeFileSync(path.join(ws, "notes.txt"), "mine\n");
    return ws;
  };

  it("makeModel refuses a folder with a user's files (overwrite or not) and a user's file, before building", async () => {
    const ws = userFolder();
    const sum = folderChecksum(ws);
    for (const overwrite of [false, true]) {
      await expect(makeModel({ out: ws, overwrite })).rejects.toThrow(OutputPathError);
      await expect(makeModel({ out: path.join(ws, "notes.txt"), overwrite })).rejects.toThrow(OutputPathError);
    }
    expect(folderChecksum(ws)).toBe(sum);
  });

  it("writeLockfile replaces a kernels.lock but never another file, and refuses with overwrite: false", async () => {
    const ws = userFolder();
    const repos = (await discoverRepos()).filter((r) => r.bundled).slice(0, 1);
    await expect(writeLockfile(path.join(ws, "notes.txt"), repos)).rejects.toThrow(
      new OutputPathError(
        "a file that is not a kernel lockfile fusekit wrote is already there; refusing to replace it (choose another path)",
        path.join(ws, "notes.txt"),
      ),
    );
    expect(readFileSync(path.join(ws, "notes.txt"), "utf8")).toBe("mine\n");
    const lock = path.join(ws, "kernels.lock");
    await writeLockfile(lock, repos);
    await writeLockfile(lock, repos); // the API replaces its own lockfile by default
    await expect(writeLockfile(lock, repos, { overwrite: false })).rejects.toThrow(OutputPathError);
    expect(readdirSync(ws).sort()).toEqual(["kernels.lock", "notes.txt"]); // no temporaries left
  });

  it("writeFolderAtomically: a failing fill leaves nothing behind; a recognised folder is replaced only with overwrite", async () => {
    const ws = userFolder();
    const dest = path.join(ws, "ckpt");
    await expect(
      writeFolderAtomically(
        dest,
        async (t) => {
          writeFileSync(path.join(t, "config.json"), "{}");
          throw new Error("disk full");
        },
        checkpointFolderTarget(),
      ),
    ).rejects.toThrow("disk full");
    expect(readdirSync(ws)).toEqual(["notes.txt"]);
    // Recognised as a checkpoint: a config.json naming a model_type, and weights.
    const fill = (text: string) => async (t: string) => {
      writeFileSync(path.join(t, "config.json"), JSON.stringify({ model_type: "qwen3", v: text }));
      writeFileSync(path.join(t, "model.safetensors"), "");
    };
    const written = (dir: string) => JSON.parse(readFileSync(path.join(dir, "config.json"), "utf8")).v;
    await writeFolderAtomically(dest, fill("1"), checkpointFolderTarget());
    await expect(writeFolderAtomically(dest, fill("2"), checkpointFolderTarget())).rejects.toThrow(OutputPathError);
    await writeFolderAtomically(dest, fill("3"), checkpointFolderTarget(true));
    expect(written(dest)).toBe("3");
    expect(readdirSync(ws).sort()).toEqual(["ckpt", "notes.txt"]);
    mkdirSync(path.join(ws, "empty"));
    await writeFolderAtomically(path.join(ws, "empty"), fill("4"), checkpointFolderTarget()); // an empty folder holds nothing to lose
    expect(written(path.join(ws, "empty"))).toBe("4");
  });

  it("writeFileAtomically never clobbers a file that is not recognised; paths under /proc fail at once", async () => {
    const ws = userFolder();
    const target = { kind: "test output", recognise: async () => false, overwrite: true };
    await expect(writeFileAtomically(path.join(ws, "notes.txt"), "x", target)).rejects.toThrow(OutputPathError);
    await writeFileAtomically(path.join(ws, "new.txt"), "new", target);
    expect(readFileSync(path.join(ws, "new.txt"), "utf8")).toBe("new");
    await expect(ensureDir("/proc/nope/deeper")).rejects.toThrow(
      new OutputPathError("cannot create this folder (ENOENT)", "/proc/nope"),
    );
    expect(existsSync("/proc/nope")).toBe(false);
  });
});

describe("a user's uncaught error after the wasm backend started", () => {
  const script = (body: string) => {
    const file = path.join(tmp, `user-${Math.random().toString(36).slice(2)}.mjs`);
    writeFileSync(
      file,
      `import { setBackend, defaultModelDir, AutoModelForCausalLM } from ${JSON.stringify(path.join(root, "dist", "src", "index.js"))};
await setBackend("wasm");
const model = await AutoModelForCausalLM.fromPretrained(await defaultModelDir());
${body}
`,
    );
    return file;
  };

  it("a thrown error keeps its own stack (the user's line) and Node's exit code 1, not 7", async () => {
    const file = script('setTimeout(function userCode() { throw new Error("boom from the user"); }, 1);');
    const r = await runNode(file, []);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("Error: boom from the user");
    expect(r.stderr).toContain(`${file}:4`);
    expect(r.stderr).not.toContain("tf-backend-wasm");
  });

  it("an unhandled rejection is Node's own report with exit code 1", async () => {
    const file = script('Promise.reject(new RangeError("rejected by the user"));');
    const r = await runNode(file, []);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("RangeError: rejected by the user");
    expect(r.stderr).toContain(`${file}:4`);
    expect(r.stderr).not.toContain("tf-backend-wasm");
  });
});
