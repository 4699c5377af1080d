// The browser peer's parts that need neither the package nor a browser: the special-token prompts (checked
// with fusekit's own tokenizer), the missing-package message, the reading of the page's output, and the
// targets made from it.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { AutoTokenizer, TokenizerError, defaultModelDir } from "fusekit";
import {
  WLLAMA_HOWTO,
  WLLAMA_VERSION,
  benchWllama,
  checkpointPrompt,
  specialPrompt,
  wllamaFigures,
  wllamaPackage,
  type WllamaOutput,
} from "../bench/wllama.js";
import { TARGETS, computeTargets } from "../bench/targets.js";
import type { MachineLimits, ModelEntry } from "../bench/types.js";
import type { Figure } from "../src/compare/measure.js";

const tmp = mkdtempSync(path.join(os.tmpdir(), "fusekit-wllama-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe("special-token prompts", () => {
  it("cycles the special added tokens in id order, leaving out the reserved ids", () => {
    const tokenizer = {
      added_tokens: [
        { id: 12, content: "<c>", special: true },
        { id: 10, content: "<eos>", special: true },
        { id: 11, content: "<a>", special: true },
        { id: 13, content: "plain", special: false },
      ],
    };
    expect(specialPrompt(tokenizer, [10], 5)).toEqual({ text: "<a><c><a><c><a>", ids: [11, 12, 11, 12, 11] });
  });

  it("is a named error when the tokenizer has no usable special token", () => {
    const only = { added_tokens: [{ id: 1, content: "<eos>", special: true }] };
    expect(() => specialPrompt(only, [1], 4)).toThrow(TokenizerError);
    expect(() => specialPrompt({}, [], 4)).toThrow(/no special added token/);
  });

  it("P special tokens are exactly P ids with fusekit's tokenizer of the checkpoint", async () => {
    const dir = await defaultModelDir();
    const tok = await AutoTokenizer.fromPretrained(dir);
    // Qwen3: <|endoftext|> (151643, bos) and <|im_end|> (151645, eos) reserved; <|im_start|> then the vision markers
    expect(checkpointPrompt(dir, 3)).toEqual({
      text: "<|im_start|><|object_ref_start|><|object_ref_end|>",
      ids: [151644, 151646, 151647],
    });
    for (const n of [1, 64, 512]) {
      const { text, ids } = checkpointPrompt(dir, n);
      expect(ids).toHaveLength(n);
      expect(tok.encode(text)).toEqual(ids);
      expect(tok.encode(text, { addSpecialTokens: false })).toEqual(ids);
    }
  });
});

describe("the package", () => {
  const plan = { threads: 2, repeats: 1, prefill: [8], decodeSteps: 4, figureBudgetS: 1, timeoutS: 10, log: () => {} };

  it("is found only with its esm entry and wasm", () => {
    const root = path.join(tmp, "pkg");
    const esm = path.join(root, "node_modules", "@wllama", "wllama", "esm");
    mkdirSync(path.join(esm, "wasm"), { recursive: true });
    writeFileSync(path.join(esm, "index.js"), "");
    expect(wllamaPackage(root)).toBeUndefined();
    writeFileSync(path.join(esm, "wasm", "wllama.wasm"), "");
    expect(wllamaPackage(root)).toBe(esm);
  });

  it("missing: no rows, and the note says how to install the pinned version", async () => {
    const r = await benchWllama(tmp, { ...plan, packageRoot: path.join(tmp, "empty") });
    expect(r).toEqual({ rows: [], note: WLLAMA_HOWTO });
    expect(WLLAMA_HOWTO).toContain("(cd bench/wllama && npm install --ignore-scripts)");
    const pkg = JSON.parse(readFileSync(path.resolve("bench/wllama/package.json"), "utf8")) as {
      dependencies: Record<string, string>;
    };
    expect(pkg.dependencies).toEqual({ "@wllama/wllama": WLLAMA_VERSION });
  });

  it("skipped: no rows, and the note names the flag", async () => {
    expect(await benchWllama(tmp, { ...plan, skip: true })).toEqual({
      rows: [],
      note: "wllama skipped (--skip-wllama)",
    });
  });
});

describe("the page's output", () => {
  const call = (wallMs: number, promptTokens: number, predictedN = 1, predictedMs = 0) => ({
    wallMs,
    promptTokens,
    promptMs: 1000,
    predictedN,
    predictedMs,
  });
  const output = (): WllamaOutput => ({
    wllama: "b1-abc",
    multithread: true,
    threads: 2,
    loadMs: 1234,
    prefill: { 64: [call(2000, 64), call(4000, 64)], 512: [call(64000, 512)] },
    decode: [call(9000, 64, 9, 4000), call(9000, 64, 9, 2000)],
    decodeSteps: 8,
  });

  it("prefill = P ÷ wall time, decode = steps ÷ generation time", () => {
    const r = wllamaFigures(output(), "q8_0", 2);
    expect(r.error).toBeUndefined();
    expect(r).toMatchObject({ type: "q8_0", threads: 2, wllama: "b1-abc", loadMs: 1234 });
    expect(r.prefill!["64"].runs).toEqual([32, 16]);
    expect(r.prefill!["64"].min).toBe(16);
    expect(r.prefill!["64"].max).toBe(32);
    expect(r.prefill!["512"].runs).toEqual([8]);
    expect(r.decode!.runs).toEqual([2, 4]);
    expect(r.decodeWall!.runs).toEqual([1, 1]); // 8 steps in 9000 − 1000 ms
  });

  it("a prompt of the wrong length, a short decode or the wrong threads is the row's error", () => {
    const long = output();
    long.prefill["64"][1].promptTokens = 65;
    expect(wllamaFigures(long, "bf16", 2)).toMatchObject({ error: "a 64-token prompt tokenized to 65 tokens" });
    const short = output();
    short.decode[0].predictedN = 3;
    expect(wllamaFigures(short, "bf16", 2).error).toBe("a decode run generated 3 tokens, not 9");
    const single = { ...output(), multithread: false, threads: 1 };
    expect(wllamaFigures(single, "bf16", 2).error).toBe("ran on 1 thread(s) (single-thread build), asked 2");
    expect(wllamaFigures(single, "bf16", 2).decode).toBeUndefined();
  });
});

describe("targets", () => {
  const f = (median: number): Figure => ({ median, min: median, max: median, runs: [median] });
  const entry = (browser: object): ModelEntry =>
    ({
      name: "qwen3-0.6b",
      dir: tmp,
      fileBytes: 1,
      pageCacheReadGBps: f(1),
      screened: false,
      configs: [],
      best: {},
      torch: [],
      ort: [],
      browser,
    }) as ModelEntry;
  const specs = TARGETS.filter((t) => typeof t.what === "string" && t.what.includes("wllama"));
  const machine = {} as MachineLimits;

  it("page decode ÷ wllama decode at each bit width, goal ≥ 3", () => {
    const wllama = [
      { type: "q8_0", threads: 2, decode: f(5) },
      { type: "bf16", threads: 2, decode: f(2.5) },
    ];
    const t = computeTargets(machine, [entry({ page: f(20), pageMode: "pool", wllama })], [64], specs);
    expect(t.map((x) => [x.what, x.value, x.goal, x.ok])).toEqual([
      ["page decode ÷ wllama bf16 (headless Chromium, every core)", 8, 3, true],
      ["page decode ÷ wllama q8_0 (headless Chromium, every core)", 4, 3, true],
    ]);
    const slow = computeTargets(machine, [entry({ page: f(12), wllama })], [64], specs);
    expect(slow.map((x) => x.ok)).toEqual([true, false]);
  });

  it("no figure without the package: no value, the basis says why", () => {
    const t = computeTargets(machine, [entry({ page: f(20), wllama: [], wllamaNote: WLLAMA_HOWTO })], [64], specs);
    expect(t.map((x) => [x.value, x.ok])).toEqual([
      [undefined, false],
      [undefined, false],
    ]);
    expect(t[0].basis).toBe("no wllama bf16 figure (wllama rows skipped)");
  });
});
