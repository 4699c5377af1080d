// The backend and hub kernels against float64 references computed here from the same float32 inputs:
// RMSNorm rows, SiluAndMul, NormMLP (float32 and packed-bf16 weights) and the bf16 matmul, on wasm and cpu,
// on the SIMD paths (widths that are multiples of 4 / 8) and the JS paths. Tolerances are relative and a
// small multiple of the error measured on this machine (the measured worst case is in a comment by each).
// Every case also proves the kernel ran by counting its dispatch, not by a difference from the composed ops.
import { storeWords } from "../src/backend/weight-store.js";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  BF16_MATMUL,
  LayerRepository,
  Mode,
  Qwen3Config,
  Qwen3RMSNorm,
  SiluAndMul,
  activeKernel,
  bf16MatMul,
  clearKernelMapping,
  kernelize,
  packBf16,
  registerKernelMapping,
  setBackend,
  storeWeightsAs,
  tf,
  withPatches,
} from "fusekit/internals";
import { FusedNormMLP, qwen3NormMLPPatches } from "../patches/norm-mlp.js";
import {
  F32_MIN_NORMAL,
  kernelCalls,
  matmulT64,
  maxRelErr,
  maxScaledErr,
  rmsNorm64,
  silu64,
} from "./helpers/float64.js";

const onBoth = (repoId: string, layerName: string) => {
  const r = new LayerRepository({ repoId, layerName });
  return { wasm: r, cpu: r };
};

/** Float32 values from a seeded uniform [lo, hi) draw. */
function uniform(n: number, lo: number, hi: number, seed: number): Float32Array {
  const t = tf.randomUniform([n], lo, hi, "float32", seed);
  const v = t.dataSync() as Float32Array;
  t.dispose();
  return v;
}

/** Worst over rows of ‖got − ref‖∞ / ‖ref‖∞ (a chain of matmuls: outputs near zero come from cancellation). */
function rowwiseRelErr(got: ArrayLike<number>, ref: ArrayLike<number>, width: number): number {
  let worst = 0;
  for (let o = 0; o < ref.length; o += width) {
    let err = 0;
    let size = 0;
    for (let i = o; i < o + width; i++) {
      err = Math.max(err, Math.abs(got[i] - ref[i]));
      size = Math.max(size, Math.abs(ref[i]));
    }
    worst = Math.max(worst, err / size);
  }
  return Number.isNaN(worst) ? Infinity : worst;
}

/** The NormMLP chain in float64: down(silu(gate(n)) · up(n)), n = rmsNorm(x); weights in checkpoint layout [out, in]. */
function normMLP64(
  x: Float32Array,
  normW: ArrayLike<number>,
  g: ArrayLike<number>,
  u: ArrayLike<number>,
  d: ArrayLike<number>,
  h: number,
  inter: number,
  eps: number,
): Float64Array {
  const rows = x.length / h;
  const n = rmsNorm64(x, normW, h, eps);
  const gate = matmulT64(n, g, rows, h, inter).y;
  const up = matmulT64(n, u, rows, h, inter).y;
  const act = gate.map((v, i) => silu64(v) * up[i]);
  return matmulT64(act, d, rows, inter, h).y;
}

afterEach(() => clearKernelMapping());

/** A FusedNormMLP block with seeded weights and a norm weight away from 1, its weights packed for "bf16". */
function normMLP(hidden: number, inter: number, storage: "f32" | "bf16"): FusedNormMLP {
  const cfg = new Qwen3Config({
    vocab_size: 16,
    hidden_size: hidden,
    intermediate_size: inter,
    num_hidden_layers: 1,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    head_dim: 8,
  });
  const mlp = withPatches(qwen3NormMLPPatches, () => new FusedNormMLP(cfg));
  mlp.initializeWeights(hidden);
  mlp.norm_weight.setStateData(uniform(hidden, 0.5, 1.5, inter), "F32");
  if (storage === "bf16") storeWeightsAs(mlp, "bf16", { lossy: true });
  return mlp;
}

describe.each(["wasm", "cpu"] as const)("kernels vs float64 references (%s)", (backend) => {
  beforeAll(async () => {
    await setBackend(backend);
  });

  // measured worst relative error per element: wasm 2.4e-7 (SIMD, [2,3,1024]), cpu 5.9e-8; float32 ulp is 1.2e-7
  it("RMSNorm rows: every element within 5e-7 relative, SIMD (width % 4 = 0) and JS widths", async () => {
    registerKernelMapping({ RMSNorm: onBoth("fusekit/rmsnorm", "RMSNorm") });
    for (const [shape, eps] of [
      [[3, 7, 64], 1e-6],
      [[2, 3, 1024], 1e-6],
      [[1, 1, 4], 1e-6],
      [[2, 5, 6], 1e-5],
      [[4, 13], 1e-6],
    ] as const) {
      const h = shape[shape.length - 1];
      const norm = new Qwen3RMSNorm(h, eps);
      const w = uniform(h, -1.5, 1.5, h);
      norm.weight.setStateData(w, "F32");
      const x = tf.randomNormal([...shape], 0, 3, "float32", 5 + h);
      await kernelize(norm, { mode: Mode.INFERENCE });
      expect(activeKernel(norm)).toBe('RMSNorm from repo "fusekit/rmsnorm"');
      const { result: y, calls } = kernelCalls(() => norm.call(x));
      expect(calls("FusekitRMSNorm")).toBe(1);
      const err = maxRelErr(y.dataSync(), rmsNorm64(x.dataSync(), w, h, eps));
      expect(err, `[${shape}]`).toBeLessThan(5e-7);
      tf.dispose([x, y]);
      norm.dispose();
    }
  });

  // measured worst relative error per element: wasm 3.7e-7 (its Sigmoid kernel's approximation), cpu 5.6e-8
  it("SiluAndMul: every element within 1e-6 relative, SIMD (d % 4 = 0) and JS widths, extreme gates included", async () => {
    registerKernelMapping({ SiluAndMul: onBoth("fusekit/activation", "SiluAndMul") });
    for (const [rows, d] of [
      [15, 8],
      [15, 7],
      [4, 256],
    ]) {
      const m = new SiluAndMul();
      const x = new Float32Array(rows * 2 * d);
      x.set(uniform(rows * 2 * d, -12, 12, d));
      x.set([-120, -30, 40, 95, -87, 88].slice(0, d)); // subnormal and huge results, and the sigmoid's far tails
      const xt = tf.tensor2d(x, [rows, 2 * d]);
      await kernelize(m, { mode: Mode.INFERENCE });
      expect(activeKernel(m)).toBe('SiluAndMul from repo "fusekit/activation"');
      const { result: y, calls } = kernelCalls(() => m.call(xt));
      expect(calls("FusekitSiluAndMul")).toBe(1);
      const ref = new Float64Array(rows * d);
      // Below a gate of -87 the backend's sigmoid (the kernel uses the backend's own) may flush to zero: off by at
      // most |g·u|·e^-87 (≈ 1e-36 here), which is the scale those elements are judged on.
      const scale = new Float64Array(rows * d);
      for (let r = 0; r < rows; r++) {
        for (let j = 0; j < d; j++) {
          const [g, u] = [x[r * 2 * d + j], x[r * 2 * d + d + j]];
          ref[r * d + j] = silu64(g) * u;
          scale[r * d + j] =
            g < -87 ? Math.abs(g * u) * Math.exp(-87) * 1e6 : Math.max(Math.abs(ref[r * d + j]), F32_MIN_NORMAL);
        }
      }
      expect(maxScaledErr(y.dataSync(), ref, scale), `d = ${d}`).toBeLessThan(1e-6);
      tf.dispose([xt, y]);
    }
  });

  // measured worst row-wise relative error: f32 wasm 6.3e-7 / cpu 1.3e-7; bf16 wasm 3.9e-7 / cpu 1.5e-7
  it.each(["f32", "bf16"] as const)(
    "NormMLP with %s weights: each row within 1.5e-6 (‖err‖∞ / ‖ref‖∞), decode and prefill rows",
    async (storage) => {
      registerKernelMapping({ NormMLP: onBoth("fusekit/norm-mlp", "NormMLP") });
      // f32: 32/48 take the SIMD path on wasm, 30/46 the JS loops; bf16: widths the bf16 matmul takes (multiples of 8)
      for (const [hidden, inter] of storage === "f32"
        ? [
            [32, 48],
            [30, 46],
          ]
        : [
            [32, 48],
            [64, 128],
          ]) {
        const mlp = normMLP(hidden, inter, storage);
        const cfg = mlp.config;
        // the values the kernel multiplies with (bf16-rounded when packed), in checkpoint layout
        const [g, u, d] = [mlp.gate_proj, mlp.up_proj, mlp.down_proj].map((l) => l.weight.stateData());
        await kernelize(mlp, { mode: Mode.INFERENCE });
        expect(activeKernel(mlp)).toMatch(/^NormMLP/);
        for (const rows of [
          [1, 1],
          [2, 30],
        ]) {
          const x = tf.randomNormal([...rows, hidden], 0, 1, "float32", rows[1]);
          const { result: y, calls } = kernelCalls(() => mlp.call(x));
          expect(calls("FusekitNormMLP"), `[${rows}, ${hidden}]`).toBe(1);
          const ref = normMLP64(
            x.dataSync() as Float32Array,
            mlp.norm_weight.stateData(),
            g,
            u,
            d,
            hidden,
            inter,
            cfg.rms_norm_eps,
          );
          expect(rowwiseRelErr(y.dataSync(), ref, hidden), `[${rows}, ${hidden}] ${storage}`).toBeLessThan(1.5e-6);
          tf.dispose([x, y]);
        }
        mlp.dispose();
      }
    },
  );

  // The kernels round as the unfused ops on the same backend do (the backend's own sigmoid and matmuls, the
  // norm's sums in the backend's order), so a kernelized module returns the unkernelized one's bits exactly.
  it("every kernel returns the unfused module's bits: RMSNorm, SiluAndMul, NormMLP (f32 and bf16), SIMD and JS widths", async () => {
    registerKernelMapping({
      RMSNorm: onBoth("fusekit/rmsnorm", "RMSNorm"),
      SiluAndMul: onBoth("fusekit/activation", "SiluAndMul"),
      NormMLP: onBoth("fusekit/norm-mlp", "NormMLP"),
    });
    const bits = (t: tf.Tensor) => Buffer.from(t.dataSync().buffer);
    async function same(m: { call(x: tf.Tensor): unknown }, x: tf.Tensor, kernel: string, what: string) {
      const plain = m.call(x) as tf.Tensor;
      await kernelize(m as never, { mode: Mode.INFERENCE });
      const { result, calls } = kernelCalls(() => m.call(x) as tf.Tensor);
      expect(calls(kernel), what).toBe(1);
      expect(bits(result).equals(bits(plain)), what).toBe(true);
      tf.dispose([plain, result, x]);
    }
    for (const h of [1024, 13]) {
      const norm = new Qwen3RMSNorm(h, 1e-6);
      norm.weight.setStateData(uniform(h, -1.5, 1.5, h), "F32");
      await same(norm, tf.randomNormal([2, 3, h], 0, 3, "float32", h), "FusekitRMSNorm", `RMSNorm ${h}`);
    }
    for (const d of [8, 7]) {
      const x = tf.tensor2d(uniform(15 * 2 * d, -12, 12, d), [15, 2 * d]);
      await same(new SiluAndMul(), x, "FusekitSiluAndMul", `SiluAndMul d = ${d}`);
    }
    for (const [hidden, inter, storage] of [
      [32, 48, "f32"],
      [30, 46, "f32"],
      [32, 48, "bf16"],
    ] as const) {
      const mlp = normMLP(hidden, inter, storage);
      await same(
        mlp,
        tf.randomNormal([2, 30, hidden], 0, 1, "float32", 7),
        "FusekitNormMLP",
        `NormMLP ${hidden} ${storage}`,
      );
      mlp.dispose();
    }
  });

  // measured worst error relative to Σ|x·w|: wasm 7.1e-8, cpu 2.3e-8
  it("bf16 matmul: every output within 2e-7 of Σ|x·w|, one row (matvec) to many, every row-count remainder", () => {
    const [n, m] = [48, 21];
    const values = uniform(m * n, -4, 4, 1); // [m, n], checkpoint layout
    const { packed } = packBf16(values);
    // bf16 = the top half of a float32: element 2k sits in the low half of int32 k, 2k+1 in the high half
    const bits = new Uint32Array(values.buffer.slice(0));
    const w64 = Float64Array.from(new Float32Array(bits.map((b) => b & 0xffff0000).buffer));
    const w = storeWords(packed, [m, n / 2], "bf16");
    for (const rows of [1, 3, 8, 13]) {
      const x = tf.randomNormal([rows, n], 0, 2, "float32", rows) as tf.Tensor2D;
      const { result: y, calls } = kernelCalls(() => bf16MatMul(x, w));
      expect(calls(BF16_MATMUL)).toBe(1);
      const { y: ref, scale } = matmulT64(x.dataSync(), w64, rows, n, m);
      expect(maxScaledErr(y.dataSync(), ref, scale), `${rows} rows`).toBeLessThan(2e-7);
      tf.dispose([x, y]);
    }
    w.release();
  });
});
