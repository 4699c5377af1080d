// Smoke test of `npm run bench`'s code path, in-process on a tiny random checkpoint with quick settings:
// the results have the documented shape, every figure is a positive number, and the report renders.
// No timing thresholds (the machine is shared).
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AutoModelForCausalLM, Qwen3Config, setBackend, tf } from "fusekit";
import { threadsFromEnv } from "../src/backend/pool.js";
import { QUICK, runBench } from "../bench/run.js";
import type { BenchResults } from "../bench/types.js";
import { BASELINE, TARGETS, computeTargets } from "../bench/targets.js";
import { renderMarkdown, renderTerminal } from "../bench/report.js";
import { int8Fidelity } from "../bench/llama-cpp.js";
import type { Figure } from "../src/compare/measure.js";

const tmp = mkdtempSync(path.join(os.tmpdir(), "fusekit-bench-"));
// the FP8 copy the 8-bit rows load goes to the fusekit cache: here a temporary one
const cache = mkdtempSync(path.join(os.tmpdir(), "fusekit-bench-cache-"));
const userCache = process.env.FUSEKIT_CACHE_DIR;
let results: BenchResults;

function expectFigure(f: Figure | undefined, runs: number): void {
  expect(f).toBeDefined();
  expect(f!.runs.length).toBeGreaterThanOrEqual(1);
  expect(f!.runs.length).toBeLessThanOrEqual(runs);
  for (const x of [f!.median, f!.min, f!.max, ...f!.runs]) {
    expect(Number.isFinite(x)).toBe(true);
    expect(x).toBeGreaterThan(0);
  }
  expect(f!.min).toBeLessThanOrEqual(f!.median);
  expect(f!.median).toBeLessThanOrEqual(f!.max);
}

beforeAll(async () => {
  process.env.FUSEKIT_CACHE_DIR = cache;
  await setBackend("wasm");
  const config = new Qwen3Config({
    vocab_size: 512,
    hidden_size: 64,
    intermediate_size: 128,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    head_dim: 16,
    tie_word_embeddings: true,
    model_type: "qwen3",
    architectures: ["Qwen3ForCausalLM"],
  });
  const model = await AutoModelForCausalLM.fromConfig(config, { seed: 3 });
  await model.savePretrained(tmp, { dtype: "BF16" });
  model.dispose();
  results = await runBench({
    ...QUICK,
    backend: "wasm",
    models: [{ name: "tiny-random", dir: tmp }],
    repeats: 2,
    decodeSteps: 4,
    prefill: [8, 16],
    matmulShapes: [[32, 32, 32]],
    bandwidthBytes: 4 << 20,
    skipTorch: true,
    skipOrt: true,
    skipLlamaCpp: true,
    inProcess: true,
    log: () => {},
  });
});

afterAll(() => {
  if (userCache === undefined) delete process.env.FUSEKIT_CACHE_DIR;
  else process.env.FUSEKIT_CACHE_DIR = userCache;
  rmSync(tmp, { recursive: true, force: true });
  rmSync(cache, { recursive: true, force: true });
});

describe("bench (in-process, quick)", () => {
  it("computes the kernelized and progress targets for a tiny model from the rows they name", () => {
    const [entry] = results.models;
    const t17 = results.targets.filter((t) => /kernelized|baseline/.test(t.what));
    expect(t17.map((t) => [t.group, t.what])).toEqual([
      ["fusion gain", "best kernelized decode ÷ original (same storage, same threads)"],
      ["fusion gain", "decoder-stack ms per decode step, kernelized ÷ original"],
      ["progress", "end-to-end decode ÷ baseline"],
    ]);
    const kz = [entry.best.fused, entry.best.patched]
      .map((id) => entry.configs.find((c) => c.spec.id === id)!)
      .filter((r) => r?.status === "full");
    const best = kz.reduce((a, b) => (b.result!.decode.median > a.result!.decode.median ? b : a));
    const orig = entry.configs.find((c) => c.spec.id === `none·${best.spec.storage}`)!;
    expect(t17[0].value).toBeCloseTo(best.result!.decode.median / orig.result!.decode.median, 10);
    const stack = (r: typeof best) => r.result!.decoderStackMs.median;
    expect(t17[1].value).toBeCloseTo(stack(best) / stack(orig), 10);
    expect(t17[1].ok).toBe(t17[1].value! <= 0.5);
    const fastest = Math.max(...entry.configs.filter((c) => c.status === "full").map((c) => c.result!.decode.median));
    expect(t17[2].value).toBeCloseTo(fastest / BASELINE.tinyDecode, 10);
  });

  it("computes the 8-bit targets from the rows they name (as a real-size model would)", () => {
    const entry = { ...results.models[0], name: "small-random" }; // "tiny" models get no 8-bit targets
    const specs = TARGETS.filter((t) => t.group === "8-bit weights");
    const t = computeTargets(results.machine, [entry], results.options.prefill, specs);
    const row = (id: string) => entry.configs.find((c) => c.spec.id === id)!.result!;
    const fastest = ["none·int8", "decoder-layer·int8"].reduce((a, b) =>
      row(b).decode.median > row(a).decode.median ? b : a,
    );
    expect(t.map((x) => x.what)).toEqual([
      "int8 decode ÷ bf16 decode (same approach)",
      "int8 prefill 8 ÷ bf16 before 8-bit weights",
      "int8 prefill 16 ÷ bf16 before 8-bit weights",
      "int8 max |Δ log p| against bf16 ÷ llama.cpp q8_0's",
      "peak RSS after load, FP8 checkpoint kept ÷ bf16 checkpoint",
    ]);
    expect(t[0].value).toBeCloseTo(row(fastest).decode.median / row(fastest.replace("int8", "bf16")).decode.median, 10);
    expect(t[0].basis).toContain("(int8)");
    // no recorded bf16 prefill at 8 / 16 tokens, no llama.cpp run: no value, never a pass
    for (const x of t.slice(1, 4)) expect([x.value, x.ok]).toEqual([undefined, false]);
    expect(t[4].value).toBeCloseTo(row("none·fp8").peakRssAfterLoadBytes / row("none·bf16").peakRssAfterLoadBytes, 10);
    expect(t[4].ok).toBe(t[4].value! <= 0.6);
  });

  it("measures int8's next-token distribution against bf16's as it measures llama.cpp's", async () => {
    const ids = [1, 5, 9, 200, 3, 77, 41, 8];
    const f = await int8Fidelity(tmp, ids);
    const logProbs = async (weightStorage: "bf16" | "int8") => {
      const model = await AutoModelForCausalLM.fromPretrained(tmp, { weightStorage });
      const out = model.forward({ inputIds: [ids], logitsToKeep: 1 }).logits;
      const lp = tf.tidy(() => tf.logSoftmax(tf.reshape(out, [-1]))).dataSync() as Float32Array;
      out.dispose();
      model.dispose();
      return lp;
    };
    const [bf16, int8] = [await logProbs("bf16"), await logProbs("int8")];
    const maxAbs = bf16.reduce((a, v, i) => Math.max(a, Math.abs(v - int8[i])), 0);
    expect(f.ids).toBe(8);
    expect(maxAbs).toBeGreaterThan(0); // 8-bit weights change the logits…
    expect(f.maxAbsLogProb).toBeCloseTo(maxAbs, 4); // …by what log-softmax of both says
    expect(f.sameArgmax).toBe(bf16.indexOf(Math.max(...bf16)) === int8.indexOf(Math.max(...int8)));
  });

  it("targets are data: a goal changed in a spec changes only that target's verdict", () => {
    const specs = TARGETS.map((t) => (t.what === "end-to-end decode ÷ baseline" ? { ...t, goal: 0 } : t));
    const again = computeTargets(results.machine, results.models, results.options.prefill, specs);
    expect(again.map((t) => t.value)).toEqual(results.targets.map((t) => t.value));
    const i = again.findIndex((t) => t.what === "end-to-end decode ÷ baseline");
    expect(again[i]).toMatchObject({ goal: 0, ok: true });
    expect(again.filter((_, j) => j !== i)).toEqual(results.targets.filter((_, j) => j !== i));
  });

  it("measures the machine: read bandwidth, matmul GFLOP/s, kernels vs composed ops", () => {
    const m = results.machine;
    expectFigure(m.jsReadGBps, 2);
    expectFigure(m.wasmReadGBps, 2); // wasm backend: the heap probe runs
    expect(m.readGBps).toBe(Math.max(m.jsReadGBps.median, m.wasmReadGBps!.median));
    expect(m.matmul.map((x) => x.shape)).toEqual([[32, 32, 32]]);
    expectFigure(m.matmul[0].gflops, 2);
    expect(m.bestGflops).toBe(m.matmul[0].gflops.median);
    // the pool: read bandwidth of every kernel thread, and the bf16 matmul on 1 thread and on every thread
    if (threadsFromEnv() > 1) expectFigure(m.poolReadGBps, 2);
    expect(m.bf16Gemm!.map((g) => [g.shape, g.threads])).toEqual([
      [[32, 32, 32], 1],
      [[32, 32, 32], threadsFromEnv()],
    ]);
    for (const g of m.bf16Gemm!) expectFigure(g.gflops, 2);
    expect("error" in results.kernelMicro).toBe(false);
    expect((results.kernelMicro as { name: string }[]).map((k) => k.name)).toEqual(
      [1, 32].flatMap((n) => [`RMSNorm [1,${n},128]`, `SiluAndMul [1,${n},768]`, `NormMLP [1,${n},128]→384→128`]),
    );
    for (const k of results.kernelMicro as { name: string; composedUs: number; kernelUs: number }[]) {
      expect(k.composedUs).toBeGreaterThan(0);
      expect(k.kernelUs).toBeGreaterThan(0);
    }
  });

  it("runs every configuration: 6 recipes × f32/bf16, 8-bit weights, each measured (none errors)", () => {
    const [entry] = results.models;
    expect(entry.name).toBe("tiny-random");
    expect(entry.screened).toBe(false); // far below the screening size
    expectFigure(entry.pageCacheReadGBps, 2);
    expect(entry.configs.map((c) => c.spec.id)).toEqual([
      "none·f32",
      "none·bf16",
      "norm-mlp-fusion·f32",
      "norm-mlp-fusion·bf16",
      "norm-mlp-patch·f32",
      "norm-mlp-patch·bf16",
      "gate-up-qkv-patch·f32",
      "gate-up-qkv-patch·bf16",
      "kernel-config·f32",
      "kernel-config·bf16",
      "decoder-layer·f32",
      "decoder-layer·bf16",
      "none·bf16·1t",
      "none·int8",
      "decoder-layer·int8",
      "none·fp8",
      "decoder-layer·fp8",
      "none·int8·1t",
    ]);
    expect(entry.configs.map((c) => c.result?.threads)).toEqual([
      ...Array(12).fill(threadsFromEnv()),
      1,
      ...Array(4).fill(threadsFromEnv()),
      1,
    ]);
    // parameters of the tiny config: tied embedding 512×64, per layer 4 attn projections + q/k norms + 3 MLP + 2 norms, final norm
    const perLayer = 64 * 64 + 64 * 32 * 2 + 64 * 64 + 16 * 2 + 64 * 128 * 3 + 64 * 2;
    expect(entry.params).toBe(512 * 64 + 2 * perLayer + 64);
    for (const c of entry.configs) {
      // every recipe runs on the tiny model: an errored configuration is a broken recipe, not a skip
      expect(c.status, `${c.spec.id}: ${c.error}`).toBe("full");
      expect(c.error).toBeUndefined();
      const r = c.result!;
      expect(Object.keys(r.prefill)).toEqual(["8", "16"]);
      expectFigure(r.prefill[8], 2);
      expectFigure(r.prefill[16], 2);
      expectFigure(r.decode, 2);
      expect(Object.keys(r.decodeAt!)).toEqual(["8", "16"]); // decode also after prompts of the prefill lengths
      expectFigure(r.decodeAt![16], 2);
      expect(r.readyS).toBeGreaterThan(0);
      expect(r.kernelsPerDecodeStep).toBeGreaterThan(0);
      expect(r.tensorsLeaked).toBe(0);
      // decode reads every 2-D weight but the norms once: float32 → 4 bytes, packed bf16 → 2, int8 → 32 codes
      // + a float32 scale per 32 values of a row; FP8 (quantize-fp8: Linear weights only, the tied embedding
      // stays bf16) → a code per value + a float32 scale per 128 × 128 block
      const linears: [number, number][] = [
        ...Array<[number, number]>(2).fill([64, 64]),
        ...Array<[number, number]>(2).fill([32, 64]),
        ...Array<[number, number]>(2).fill([128, 64]),
        [64, 128],
      ]; // [out, in] per layer: q, o, k, v, gate, up, down
      const embedding = 512 * 64;
      const weights = embedding + 2 * linears.reduce((a, [m, n]) => a + m * n, 0);
      const bytes = {
        f32: weights * 4,
        bf16: weights * 2,
        int8: ((embedding + 2 * linears.reduce((a, [m, n]) => a + m * n, 0)) / 32) * 36,
        fp8:
          embedding * 2 + 2 * linears.reduce((a, [m, n]) => a + m * n + Math.ceil(m / 128) * Math.ceil(n / 128) * 4, 0),
      }[c.spec.storage];
      expect(r.decodeWeightBytes).toBe(bytes);
      expect(r.layerMacsPerToken).toBe(2 * (64 * 64 * 2 + 64 * 32 * 2 + 64 * 128 * 3)); // the layers' matmuls only
      // one stack time per decode run, each shorter than that run's whole step (embedding and lm_head are outside)
      expect(r.decoderStackMs.runs).toHaveLength(r.decode.runs.length);
      r.decoderStackMs.runs.forEach((ms) => expect(ms).toBeGreaterThan(0));
      r.decoderStackMs.runs.forEach((ms, i) => expect(ms).toBeLessThan(1000 / r.decode.runs[i]));
    }
    // the original loads in both storages; each family's best is one of its measured rows
    expect(entry.configs.filter((c) => c.spec.family === "original").every((c) => c.status === "full")).toBe(true);
    for (const [family, id] of Object.entries(entry.best)) {
      const row = entry.configs.find((c) => c.spec.id === id)!;
      expect(row.spec.family).toBe(family);
      expect(row.status).toBe("full");
    }
    expect(entry.torch).toEqual([]);
    expect(entry.torchNote).toMatch(/skipped/);
    expect(entry.ort).toEqual([]);
    expect(entry.ortNote).toMatch(/skipped/);
  });

  it("computes the fusion targets against the same-storage original and renders the report", () => {
    const targets = results.targets.filter(
      (t) => t.model === "tiny-random" && /best (runtime-fused|patched)/.test(t.what),
    );
    expect(targets.map((t) => t.what)).toEqual([
      "best runtime-fused decode ÷ original decode",
      "best patched decode ÷ original decode",
    ]);
    const [entry] = results.models;
    for (const t of targets) {
      expect(t.goal).toBe(1.5); // a "tiny" model's goal
      expect(t.value, `${t.what}: no value`).toBeDefined(); // both families have a measured best row
      const fam = t.what.includes("fused") ? "fused" : "patched";
      const best = entry.configs.find((c) => c.spec.id === entry.best[fam])!;
      const orig = entry.configs.find((c) => c.spec.id === `none·${best.spec.storage}`)!;
      expect(t.value).toBeCloseTo(best.result!.decode.median / orig.result!.decode.median, 10);
      expect(t.ok).toBe(t.value! >= 1.5);
      expect(t.basis).toContain(`(${best.spec.storage})`);
    }
    const layer = results.targets.find((t) => t.model === "tiny-random" && /DecoderLayer kernel/.test(t.what))!;
    const row = (id: string) => entry.configs.find((c) => c.spec.id === id)!.result!.decode.median;
    expect(layer.what).toBe("end-to-end decode, DecoderLayer kernel ÷ original (bf16)");
    expect(layer.value).toBeCloseTo(row("decoder-layer·bf16") / row("none·bf16"), 10);
    const md = renderMarkdown(results);
    expect(md).toContain("## tiny-random");
    expect(md).toContain("| read bandwidth, JS loop");
    expect(md).toMatch(/## targets: fusion gain/);
    expect(md).toMatch(/## targets: progress/);
    expect(renderTerminal(results)).toContain("tiny-random");
  });
});

describe("bench CLI", () => {
  it("refuses an unknown --configs id by name, listing the known ones, before measuring anything", async () => {
    const { spawnSync } = await import("node:child_process");
    const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
    const run = spawnSync(
      process.execPath,
      [path.join(root, "dist/bench/run.js"), "--configs", "none·bf16,none·bf17"],
      {
        encoding: "utf8",
      },
    );
    expect(run.status).toBe(1);
    expect(run.stderr).toMatch(
      /unknown configuration id\(s\): none·bf17 \(known: none·f32, none·bf16, .*none·int8·1t\)/,
    );
    expect(run.stderr).not.toMatch(/machine: read bandwidth/); // nothing measured
  });
});
