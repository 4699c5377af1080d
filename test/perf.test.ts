// The perf work's fast paths stay exact: the NormMLP kernel on bf16-packed weights (patched and runtime-fused
// models vs the unkernelized bf16 model), and the preallocated KV cache (cached decode = full forward).
import { storeWords, type StoredWeight } from "../src/backend/weight-store.js";
import { beforeAll, describe, expect, it } from "vitest";
import {
  AutoModelForCausalLM,
  DynamicCache,
  Mode,
  Qwen3Config,
  activeKernel,
  defaultModelDir,
  kernelize,
  setBackend,
  storeWeightsAs,
  tf,
  unkernelize,
  withPatches,
  type PreTrainedModel,
} from "fusekit";
import { fuseNormMLP } from "../fusions/norm-mlp.js";
import { FusedNormMLP, qwen3NormMLPPatches } from "../patches/norm-mlp.js";
import { qwen3NormMLPConversions } from "../conversions/norm-mlp.js";
import { kernelCalls } from "./helpers/float64.js";
import { flatLogitsOf, maxAbsDiff } from "./helpers/models.js";

const IDS = [
  [9707, 11, 1246, 525, 498, 30],
  [3, 17, 9, 42, 5, 151643],
];

const layersOf = (model: PreTrainedModel) => [...(model as any).model.layers];

describe.each(["wasm", "cpu"] as const)("NormMLP kernel on bf16-packed weights (%s)", (backend) => {
  let dir: string;
  let reference: Float32Array;
  beforeAll(async () => {
    await setBackend(backend);
    dir = await defaultModelDir();
    const original = await AutoModelForCausalLM.fromPretrained(dir, { weightStorage: "bf16" });
    reference = flatLogitsOf(original, IDS);
    original.dispose();
  });

  it("runtime-fused chain + kernelize: logits within 2e-6 of the unkernelized bf16 model, memory flat", async () => {
    const model = await AutoModelForCausalLM.fromPretrained(dir, { weightStorage: "bf16" });
    fuseNormMLP(model, { kernel: true });
    await kernelize(model, { mode: Mode.INFERENCE });
    expect((layersOf(model)[0].mlp.chain[1].gate_proj.weight as { packed: boolean }).packed).toBe(true);
    expect(activeKernel(layersOf(model)[0].mlp)).toMatch(/^NormMLP/);
    const { result: got, calls } = kernelCalls(() => flatLogitsOf(model, IDS));
    expect(calls("FusekitNormMLP")).toBe(layersOf(model).length); // the kernel ran, not the composed ops
    expect(maxAbsDiff(got, reference)).toBeLessThan(2e-6); // measured 4.8e-7
    const before = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) flatLogitsOf(model, [[1, 2, 3]]);
    expect(tf.memory().numTensors).toBe(before);
    model.dispose();
  });

  it("patched FusedNormMLP + kernelize: logits within 2e-6 of the unkernelized bf16 model", async () => {
    const model = await AutoModelForCausalLM.fromPretrained(dir, {
      patches: qwen3NormMLPPatches,
      conversions: qwen3NormMLPConversions,
      weightStorage: "bf16",
    });
    expect(maxAbsDiff(flatLogitsOf(model, IDS), reference)).toBe(0); // the patch alone is exact
    await kernelize(model, { mode: Mode.INFERENCE });
    expect(activeKernel(layersOf(model)[0].mlp)).toMatch(/^NormMLP/);
    const { result: got, calls } = kernelCalls(() => flatLogitsOf(model, IDS));
    expect(calls("FusekitNormMLP")).toBe(layersOf(model).length);
    expect(maxAbsDiff(got, reference)).toBeLessThan(2e-6); // measured 4.8e-7
    model.dispose();
  });

  it("widths the wasm bf16 matmul cannot take (not multiples of 8) fall back to the composed ops, exactly", async () => {
    const cfg = new Qwen3Config({
      vocab_size: 16,
      hidden_size: 36,
      intermediate_size: 44,
      num_hidden_layers: 1,
      num_attention_heads: 4,
      num_key_value_heads: 2,
      head_dim: 8,
    });
    const mlp = withPatches(qwen3NormMLPPatches, () => new FusedNormMLP(cfg));
    mlp.initializeWeights(3);
    storeWeightsAs(mlp, "bf16", { lossy: true });
    const x = tf.randomNormal([2, 3, 36], 0, 1, "float32", 4);
    const expected = mlp.call(x).dataSync() as Float32Array;
    await kernelize(mlp, { mode: Mode.INFERENCE });
    const { result: y, calls } = kernelCalls(() => mlp.call(x));
    const d = maxAbsDiff(y.dataSync() as Float32Array, expected);
    // wasm: the composed ops again (bit-identical); cpu: the kernel (its own op order; measured 4.7e-10)
    expect(calls("FusekitNormMLP")).toBe(backend === "wasm" ? 0 : 1);
    if (backend === "wasm") expect(d).toBe(0);
    else expect(d).toBeLessThan(2e-9);
    unkernelize(mlp);
    tf.dispose([x, y]);
    mlp.dispose();
  });
});

describe.each(["wasm", "cpu"] as const)("preallocated KV cache (%s)", (backend) => {
  const cfg = new Qwen3Config({
    vocab_size: 64,
    hidden_size: 32,
    intermediate_size: 48,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    head_dim: 8,
  });
  beforeAll(async () => {
    await setBackend(backend);
  });

  it("cached decode equals the full forward at every position, across buffer growth, with tensors flat", () => {
    const model = AutoModelForCausalLM.fromConfig(cfg, { seed: 11 });
    const ids = [5, 9, 2, 33, 41, 7, 60, 12, 3, 18];
    const rows = 2;
    const batch = [ids, [...ids].reverse()];
    const full = model.forward({ inputIds: batch });
    const expected = full.logits.arraySync() as number[][][];
    full.logits.dispose();
    const cache = new DynamicCache({ maxLength: 2 }); // grows 2 → 4 → 8 → 16 while decoding
    // a 3-token prefill (update path), then one token at a time (attend path)
    const first = model.forward({ inputIds: batch.map((r) => r.slice(0, 3)), pastKeyValues: cache });
    const got0 = first.logits.arraySync() as number[][][];
    first.logits.dispose();
    // measured 4.5e-8 (prefill) and 7.5e-8 (decode steps) on wasm and cpu
    for (let r = 0; r < rows; r++)
      for (let t = 0; t < 3; t++)
        expect(maxAbsDiff(Float32Array.from(got0[r][t]), Float32Array.from(expected[r][t]))).toBeLessThan(2e-7);
    let tensors = -1;
    for (let t = 3; t < ids.length; t++) {
      const { logits } = model.forward({ inputIds: batch.map((r) => [r[t]]), pastKeyValues: cache });
      const got = logits.arraySync() as number[][][];
      logits.dispose();
      for (let r = 0; r < rows; r++)
        expect(maxAbsDiff(Float32Array.from(got[r][0]), Float32Array.from(expected[r][t]))).toBeLessThan(3e-7);
      if (t >= 8) {
        if (tensors < 0) tensors = tf.memory().numTensors; // capacity 16 reached at t = 8
        expect(tf.memory().numTensors).toBe(tensors);
      }
    }
    expect(cache.getSeqLength()).toBe(ids.length);
    cache.dispose();
    model.dispose();
  });

  it("update returns exactly the concatenation of everything appended", () => {
    const cache = new DynamicCache({ maxLength: 3 });
    const parts = [2, 1, 1, 4].map((s, i) => [
      tf.randomNormal([2, 3, s, 4], 0, 1, "float32", i),
      tf.randomNormal([2, 3, s, 4], 0, 1, "float32", 10 + i),
    ]);
    for (let i = 0; i < parts.length; i++) {
      const [k, v] = cache.update(parts[i][0] as any, parts[i][1] as any, 0);
      const ek = tf.concat(
        parts.slice(0, i + 1).map((p) => p[0]),
        2,
      );
      const ev = tf.concat(
        parts.slice(0, i + 1).map((p) => p[1]),
        2,
      );
      expect(k.shape).toEqual(ek.shape);
      expect(maxAbsDiff(k.dataSync() as Float32Array, ek.dataSync() as Float32Array)).toBe(0);
      expect(maxAbsDiff(v.dataSync() as Float32Array, ev.dataSync() as Float32Array)).toBe(0);
      tf.dispose([k, v, ek, ev]);
    }
    expect(cache.getSeqLength()).toBe(8);
    expect(() => cache.update(tf.zeros([1, 3, 1, 4]) as any, tf.zeros([1, 3, 1, 4]) as any, 0)).toThrow(
      /DynamicCache layer 0: cached \[2, 3, \*, 4\], got keys \[1,3,1,4\]/,
    );
    cache.dispose();
    tf.dispose(parts.flat());
  });

  it("decode attention on the buffers matches softmax(q kᵀ · scale) v computed with tfjs ops", () => {
    const [b, h, kv, d, T] = [2, 6, 3, 8, 13];
    const cache = new DynamicCache();
    const k = tf.randomNormal([b, kv, T, d], 0, 1, "float32", 1) as tf.Tensor4D;
    const v = tf.randomNormal([b, kv, T, d], 0, 1, "float32", 2) as tf.Tensor4D;
    const q = tf.randomNormal([b, h, 1, d], 0, 1, "float32", 3) as tf.Tensor4D;
    tf.dispose(
      cache.update(
        tf.slice(k, [0, 0, 0, 0], [-1, -1, T - 1, -1]) as tf.Tensor4D,
        tf.slice(v, [0, 0, 0, 0], [-1, -1, T - 1, -1]) as tf.Tensor4D,
        0,
      ),
    );
    const out = cache.attend(
      q,
      tf.slice(k, [0, 0, T - 1, 0], [-1, -1, 1, -1]) as tf.Tensor4D,
      tf.slice(v, [0, 0, T - 1, 0], [-1, -1, 1, -1]) as tf.Tensor4D,
      0,
      0.3,
    )!;
    expect(out.shape).toEqual([b, 1, h * d]);
    // reference: repeat each KV head over its group of query heads (transformers' repeat_kv), plain ops
    const rep = (x: tf.Tensor4D) => tf.reshape(tf.tile(tf.expandDims(x, 2), [1, 1, h / kv, 1, 1]), [b, h, T, d]);
    const probs = tf.softmax(tf.mul(tf.matMul(q, rep(k), false, true), 0.3));
    const ref = tf.reshape(tf.matMul(probs, rep(v)), [b, 1, h * d]);
    const diff = maxAbsDiff(out.dataSync() as Float32Array, ref.dataSync() as Float32Array);
    expect(diff).toBeLessThan(5e-7); // measured 1.2e-7
    cache.dispose();
  });

  it("the embedded attention SIMD module is exactly src/backend/attention.wat assembled by wabt", async () => {
    const { readFileSync } = await import("node:fs");
    const { assemble, tsModule } = await import("../src/backend/assemble.mjs");
    const fresh = await assemble(readFileSync(new URL("../src/backend/attention.wat", import.meta.url), "utf8"));
    expect(readFileSync(new URL("../src/backend/attention-wasm.ts", import.meta.url), "utf8")).toBe(
      tsModule(fresh, "attention", "ATTENTION_WASM_BASE64"),
    );
  });
});

describe("bf16 matvec on wasm (8 weight rows per pass)", () => {
  beforeAll(async () => {
    await setBackend("wasm");
  });

  it("gives bit for bit what the one-row dot product gives, for every row count remainder", async () => {
    const { BF16_MATMUL } = await import("../src/backend/kernels.js");
    const n = 48;
    for (const m of [8, 13, 21, 4, 3]) {
      const w = tf.randomUniform([m, n / 2], -2e9, 2e9, "int32", m); // random bf16 pairs (finite: bits below are masked)
      const masked = tf.tidy(() => tf.bitwiseAnd(w, tf.fill([m, n / 2], 0x3fff3fff, "int32")));
      const x = tf.randomNormal([1, n], 0, 1, "float32", 7);
      const words = masked.dataSync() as Int32Array;
      const stored = (rows: Int32Array, k: number) => storeWords(rows, [k, n / 2], "bf16");
      const matmul = (sw: StoredWeight) => tf.engine().runKernel(BF16_MATMUL, { x }, { w: sw } as never) as tf.Tensor;
      const whole = stored(words, m); // interleaved by 8 when m is a multiple of 8
      const rows = Array.from({ length: m }, (_, o) => stored(words.slice((o * n) / 2, ((o + 1) * n) / 2), 1));
      const all = matmul(whole);
      const each = tf.concat(rows.map(matmul), 1);
      expect(maxAbsDiff(all.dataSync() as Float32Array, each.dataSync() as Float32Array)).toBe(0);
      expect(Math.max(...(all.dataSync() as Float32Array).map(Math.abs))).toBeGreaterThan(0);
      tf.dispose([w, masked, x, all, each]);
      for (const sw of [whole, ...rows]) sw.release();
    }
  });
});

describe.each(["wasm", "cpu"] as const)("rope kernel (%s)", (backend) => {
  beforeAll(async () => {
    await setBackend(backend);
  });

  it("is bit-identical to x·cos + rotate_half(x)·sin composed from tfjs ops", async () => {
    const { applyRope } = await import("../src/backend/rope.js");
    const { rotateHalf } = await import("fusekit");
    for (const [b, h, s, d] of [
      [1, 16, 1, 128],
      [2, 3, 5, 8],
    ]) {
      const x = tf.randomNormal([b, h, s, d], 0, 3, "float32", 1);
      const cos = tf.randomUniform([b, s, d], -1, 1, "float32", 2);
      const sin = tf.randomUniform([b, s, d], -1, 1, "float32", 3);
      const ref = tf.tidy(() => tf.add(tf.mul(x, tf.expandDims(cos, 1)), tf.mul(rotateHalf(x), tf.expandDims(sin, 1))));
      const got = applyRope(x, cos, sin);
      expect(got.shape).toEqual([b, h, s, d]);
      expect(maxAbsDiff(got.dataSync() as Float32Array, ref.dataSync() as Float32Array)).toBe(0);
      tf.dispose([x, cos, sin, ref, got]);
    }
  });
});
