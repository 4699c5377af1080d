// Real sizes on small models: the streamed random-checkpoint writer behind
// `make-model` (any dtype, progress), F16 weights under "auto" / "bf16" storage (rounded exactly as
// round-to-nearest-even says), the planner's verdict on the Qwen3-1.7B shape, computed by hand, and what a load
// adds to the process's RSS at a small size (one copy of every weight).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readFileSync, rmSync } from "node:fs";
import path from "node:path";
import {
  AutoModelForCausalLM,
  PRESETS,
  Qwen3Config,
  SafetensorsFile,
  WASM_HEAP_BYTES,
  checkpointBytes,
  makeModel,
  writeRandomCheckpoint,
  planMemory,
  setBackend,
  type WeightEntry,
} from "fusekit/internals";
import { tmpDir } from "./helpers/models.js";
import { randomValues } from "../src/presets/random-checkpoint.js";
import { Rng } from "../src/nn/init.js";

/** Elements where `got` differs from bf16(`want`), bf16 by round-to-nearest-even on the bit pattern (NaN-free). */
function bf16Mismatches(got: Float32Array | Int32Array, want: Float32Array | Int32Array): number {
  const g = new Uint32Array(Float32Array.from(got).buffer);
  const w = new Uint32Array(Float32Array.from(want).buffer);
  let bad = g.length === w.length ? 0 : Infinity;
  for (let i = 0; i < w.length; i++) if (g[i] !== (((w[i] + 0x7fff + ((w[i] >>> 16) & 1)) >>> 16) << 16) >>> 0) bad++;
  return bad;
}

/** Elements where `got` and `want` differ (a loop: toEqual is too slow for 19M-element embeddings). */
function mismatches(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let bad = got.length === want.length ? 0 : Infinity;
  for (let i = 0; i < want.length; i++) if (!Object.is(got[i], want[i])) bad++;
  return bad;
}

describe("the random weights make-model draws", () => {
  it("are normal with the initializer's std (moments of 10^6 draws), the same for a seed, other for another", () => {
    const n = 1_000_000;
    const v = randomValues({ kind: "normal", std: 0.02 }, n, new Rng(7));
    let [s1, s2, s4, within1] = [0, 0, 0, 0];
    for (const x of v) {
      s1 += x;
      s2 += x * x;
      s4 += x ** 4;
      if (Math.abs(x) < 0.02) within1++;
    }
    const variance = s2 / n - (s1 / n) ** 2;
    // standard errors at n = 10^6: mean 2e-5, std 0.07%, kurtosis 0.005, P(|z| < 1) 0.05%
    expect(Math.abs(s1 / n)).toBeLessThan(1e-4);
    expect(Math.sqrt(variance) / 0.02).toBeCloseTo(1, 2);
    expect(s4 / n / variance ** 2).toBeCloseTo(3, 1); // a normal's kurtosis
    expect(within1 / n).toBeCloseTo(0.6827, 2);
    expect(randomValues({ kind: "normal", std: 0.02 }, 1001, new Rng(7))).toEqual(v.subarray(0, 1001)); // odd n too
    expect(randomValues({ kind: "normal", std: 0.02 }, 8, new Rng(8))).not.toEqual(v.subarray(0, 8));
    expect(randomValues({ kind: "ones" }, 3, new Rng(7))).toEqual(new Float32Array([1, 1, 1]));
  });
});

describe("make-model's streamed writer (F16) and F16 weights under each storage", () => {
  let out: string;
  const progress: [number, number][] = [];
  beforeAll(async () => {
    await setBackend("wasm");
    out = path.join(tmpDir(), "f16");
    await makeModel({ out, preset: "qwen3-tiny", dtype: "F16", seed: 4, onProgress: (d, t) => progress.push([d, t]) });
  });
  afterAll(() => rmSync(path.dirname(out), { recursive: true, force: true }));

  it("writes every tensor as F16, says so in config.json, and reports progress up to the data size", async () => {
    const file = await SafetensorsFile.open(path.join(out, "model.safetensors"));
    const infos = [...file.tensors.values()];
    await file.close();
    expect(new Set(infos.map((i) => i.dtype))).toEqual(new Set(["F16"]));
    const dataBytes = infos.reduce((n, i) => n + i.end - i.begin, 0);
    expect(progress.at(-1)).toEqual([dataBytes, dataBytes]);
    expect(progress.every(([d], i) => i === 0 || d > progress[i - 1][0])).toBe(true);
    expect(JSON.parse(readFileSync(path.join(out, "config.json"), "utf8")).torch_dtype).toBe("float16");
    expect(checkpointBytes(new Qwen3Config(PRESETS["qwen3-tiny"].config), "F16")).toBe(dataBytes);
  });

  it('"auto" keeps F16 weights as float32 when they fit; "bf16" rounds them to nearest even, with a warning', async () => {
    const f32 = await AutoModelForCausalLM.fromPretrained(out);
    const warnings: string[] = [];
    const onWarning = (w: Error & { code?: string }) => warnings.push(String(w.code));
    process.on("warning", onWarning);
    const bf16 = await AutoModelForCausalLM.fromPretrained(out, { weightStorage: "bf16" });
    await new Promise((r) => setImmediate(r));
    process.off("warning", onWarning);
    try {
      expect(f32.memoryPlan!.storage).toBe("f32");
      expect(f32.parameters().some((p) => p.packed)).toBe(false);
      expect(bf16.memoryPlan!.roundedWeights).toBeGreaterThan(0);
      expect(warnings).toContain("FUSEKIT_WEIGHTS_ROUNDED");
      const exact = new Map(f32.namedParameters());
      let packed = 0;
      for (const [name, p] of bf16.namedParameters()) {
        const want = exact.get(name)!.stateData();
        if (!p.packed) {
          expect(mismatches(p.stateData(), want), name).toBe(0);
          continue;
        }
        packed++;
        expect(p.storedDtype).toBe("F16");
        expect(bf16Mismatches(p.stateData(), want), name).toBe(0);
      }
      expect(packed).toBe(1 + 4 * 7); // the tied embedding and 7 Linears in each of 4 layers
    } finally {
      f32.dispose();
      bf16.dispose();
    }
  });
});

describe("the Qwen3-1.7B shape", () => {
  const c = PRESETS["qwen3-1.7b"].config;
  it("is Qwen3-1.7B.s published shape", () => {
    expect([
      c.num_hidden_layers,
      c.hidden_size,
      c.intermediate_size,
      c.num_attention_heads,
      c.num_key_value_heads,
      c.head_dim,
      c.tie_word_embeddings,
    ]).toEqual([28, 2048, 6144, 16, 8, 128, true]);
  });

  // By hand: embedding 151936 × 2048 (tied); per layer q 2048·2048, k and v 1024·2048, o 2048·2048, gate/up/down 3 · 6144·2048
  // (the Linears), q_norm + k_norm 2·128 and two layer norms 2·2048; a final norm 2048.
  const embed = 151936 * 2048;
  const linearPerLayer = 2048 * 2048 + 2 * 1024 * 2048 + 2048 * 2048 + 3 * 6144 * 2048;
  const normsPerLayer = 2 * 128 + 2 * 2048;
  const weights: WeightEntry[] = [
    { name: "embed", numel: embed, storedDtype: "BF16", packable: true, matmul: true },
    { name: "linears", numel: 28 * linearPerLayer, storedDtype: "BF16", packable: true, matmul: true },
    { name: "norms", numel: 28 * normsPerLayer + 2048, storedDtype: "BF16", packable: false, matmul: false },
  ];
  const shape = { numLayers: 28, hidden: 2048, intermediate: 6144, heads: 16, kvHeads: 8, headDim: 128, vocab: 151936 };
  const wasm = { backend: "wasm", ceilingBytes: WASM_HEAP_BYTES, bf16: true, packedCopy: true };

  it("holds the bytes counted by hand", () => {
    expect(checkpointBytes(new Qwen3Config(c), "BF16")).toBe(
      2 * (embed + 28 * (linearPerLayer + normsPerLayer) + 2048),
    );
  });

  it("fits wasm's heap as bf16 for a 256-token generation, not as float32 (weights + XNNPACK's copy)", () => {
    const request = { weights, shape, contextLength: 1 + 256, promptLength: 1, contextExplicit: true };
    const plan = planMemory(request, "auto", wasm);
    expect(plan.storage).toBe("bf16");
    expect(plan.weightBytes).toBe(2 * (embed + 28 * linearPerLayer) + 4 * (28 * normsPerLayer + 2048));
    expect(plan.totalBytes).toBeLessThanOrEqual(WASM_HEAP_BYTES);
    expect(() => planMemory(request, "f32", wasm)).toThrow(/f32 weights 6\.\d\d GiB \+ backend copy 6\.\d\d GiB/);
  });
});

describe("the Qwen3-4B shape", () => {
  const c = PRESETS["qwen3-4b"].config;
  it("is Qwen3-4B's published shape", () => {
    expect([
      c.num_hidden_layers,
      c.hidden_size,
      c.intermediate_size,
      c.num_attention_heads,
      c.num_key_value_heads,
      c.head_dim,
      c.tie_word_embeddings,
      c.rope_theta,
    ]).toEqual([36, 2560, 9728, 32, 8, 128, true, 1000000]);
  });

  // By hand: embedding 151936 × 2560 (tied); per layer q 4096·2560, k and v 1024·2560, o 2560·4096, gate/up/down
  // 3 · 9728·2560; q_norm + k_norm 2·128 and two layer norms 2·2560; a final norm 2560. ~8.0 GB of bf16.
  const embed = 151936 * 2560;
  const linearPerLayer = 4096 * 2560 + 2 * 1024 * 2560 + 2560 * 4096 + 3 * 9728 * 2560;
  const normsPerLayer = 2 * 128 + 2 * 2560;
  const weights: WeightEntry[] = [
    { name: "embed", numel: embed, storedDtype: "BF16", packable: true, matmul: true },
    { name: "linears", numel: 36 * linearPerLayer, storedDtype: "BF16", packable: true, matmul: true },
    { name: "norms", numel: 36 * normsPerLayer + 2560, storedDtype: "BF16", packable: false, matmul: false },
  ];
  const shape = { numLayers: 36, hidden: 2560, intermediate: 9728, heads: 32, kvHeads: 8, headDim: 128, vocab: 151936 };
  const store = 6 * 4 * 2 ** 30;
  const wasm = { backend: "wasm", ceilingBytes: WASM_HEAP_BYTES, bf16: true, packedCopy: true, storeBytes: store };

  it("holds the bytes counted by hand", () => {
    expect(checkpointBytes(new Qwen3Config(c), "BF16")).toBe(
      2 * (embed + 36 * (linearPerLayer + normsPerLayer) + 2560),
    );
  });

  it("plans bf16 with its 7.5 GiB of packed weights in the weight store, beside wasm's heap, at the default context", () => {
    const request = { weights, shape, contextLength: 4096, promptLength: 512 };
    const plan = planMemory(request, "auto", wasm);
    expect(plan.storage).toBe("bf16");
    expect(plan.storedWeightBytes).toBe(2 * (embed + 36 * linearPerLayer));
    expect(plan.storedWeightBytes).toBeGreaterThan(WASM_HEAP_BYTES); // it could not live in the heap
    expect(plan.totalBytes - plan.storedWeightBytes).toBeLessThanOrEqual(WASM_HEAP_BYTES);
    // without a store apart (the old single heap) it does not fit, and the message says what would
    expect(() => planMemory(request, "bf16", { ...wasm, storeBytes: undefined })).toThrow(/does not fit/);
    // a store too small for the weights is named in the error
    expect(() => planMemory(request, "bf16", { ...wasm, storeBytes: 2 ** 30 })).toThrow(
      /in the weight store \(room: 1\.00 GiB\)/,
    );
  });
});

describe("peak RSS at a small size (bench/realsize.ts's child: load with no options, first forward, prefill, decode)", () => {
  it("grows over the runtime's own RSS by at least the stored bytes and at most 1.15 × them + 150 MB", async () => {
    const { execFileSync } = await import("node:child_process");
    const { fileURLToPath } = await import("node:url");
    const { rssBound } = await import("../bench/realsize.js");
    // ~370 MB of bf16: large enough that a second copy of the weights (as the pool once kept) crosses the bound
    const config = new Qwen3Config({
      vocab_size: 32000,
      hidden_size: 1024,
      intermediate_size: 3072,
      num_hidden_layers: 12,
      num_attention_heads: 16,
      num_key_value_heads: 8,
      head_dim: 64,
      tie_word_embeddings: true,
    });
    const dir = tmpDir("fusekit-rss-");
    try {
      await writeRandomCheckpoint(config, dir, { seed: 5 });
      const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
      const payload = { dir, backend: "wasm", prefill: 64, decodeSteps: 64, runtimeBaseline: true };
      const out = execFileSync(
        process.execPath,
        ["--expose-gc", path.join(root, "dist/bench/realsize.js"), "--child", JSON.stringify(payload)],
        { encoding: "utf8" },
      );
      const { result, error } = JSON.parse(out.trim().split("\n").pop()!) as {
        result?: { storage: string; peakRssBytes: number; storageBytes: number; runtimeRssBytes: number };
        error?: string;
      };
      expect(error).toBeUndefined();
      expect(result!.storage).toBe("bf16");
      // the plan: every weight as stored (bf16), the norms' weights in float32 (12 layers × 2176 + the final 1024)
      expect(result!.storageBytes).toBe(checkpointBytes(config, "BF16") + 2 * (12 * 2176 + 1024));
      // what the model adds to a process whose backend and kernel threads are already up
      const growth = result!.peakRssBytes - result!.runtimeRssBytes;
      expect(growth).toBeGreaterThanOrEqual(result!.storageBytes); // the weights are resident: the baseline is sound
      const mb = (b: number) => `${(b / 1e6).toFixed(0)} MB`;
      const what = `runtime ${mb(result!.runtimeRssBytes)}, peak ${mb(result!.peakRssBytes)}, stored ${mb(result!.storageBytes)}`;
      expect(growth, what).toBeLessThanOrEqual(rssBound(result!.storageBytes));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 300000);
});
