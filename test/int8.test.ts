// 8-bit weight storage: the host block format, the kernels against plain references, the pool against the
// single-threaded kernel, and models of the three families loaded with weightStorage "int8".
import { storeWords } from "../src/backend/weight-store.js";
/** 8-bit words of an [m, n] weight, in the weight store. */
const stored = (words: Int32Array, m: number, n: number) => storeWords(words, int8Shape(m, n), "int8");
import { readFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  AutoModelForCausalLM,
  MemoryPlanError,
  PackedParameterError,
  Rng,
  ShapeError,
  WeightStorageError,
  dequantizeInt8,
  int8BlockWord,
  int8Embedding,
  int8MatMul,
  int8Shape,
  planMemory,
  quantizeInt8,
  quantizeInt8Reference,
  setBackend,
  setKernelThreads,
  storeWeightsAs,
  tf,
  type BackendLimits,
  type PlanRequest,
  type PreTrainedModel,
  type WeightEntry,
} from "fusekit/internals";
import { kernelPool, setParallelMinMacs } from "../src/backend/pool.js";
import { readWeights } from "./helpers/reference.js";
import { flatLogitsOf, maxAbsDiff, savedFamilyModel, tmpDir } from "./helpers/models.js";

const PROMPT = [5, 17, 3, 42, 8, 11, 29, 60];

function normals(n: number, rng: Rng, std = 1): Float32Array {
  return Float32Array.from({ length: n }, () => std * rng.normal());
}

/** float64 x · wᵀ for w [m, n] row-major, and Σ|x_i w_i| per output (the float32 summation's scale). */
function reference(x: Float32Array, w: Float32Array, rows: number, n: number, m: number) {
  const y = new Float64Array(rows * m);
  const mag = new Float64Array(rows * m);
  for (let r = 0; r < rows; r++)
    for (let o = 0; o < m; o++) {
      let s = 0;
      let a = 0;
      for (let i = 0; i < n; i++) {
        s += x[r * n + i] * w[o * n + i];
        a += Math.abs(x[r * n + i] * w[o * n + i]);
      }
      y[r * m + o] = s;
      mag[r * m + o] = a;
    }
  return { y, mag };
}

/**
 * What the wasm kernel may differ from the float64 reference by: it rounds each activation to its block's
 * int8 grid (error ≤ scale / 2, scale = max|x| / 127 over the block), so output o moves by at most
 * Σ_blocks (scale_b / 2) · Σ_{i∈b} |w_oi|; plus float32 rounding of the sums (2⁻²⁰ · Σ|x_i w_i|).
 */
function activationBound(x: Float32Array, w: Float32Array, rows: number, n: number, m: number): Float64Array {
  const out = new Float64Array(rows * m);
  for (let r = 0; r < rows; r++)
    for (let o = 0; o < m; o++) {
      let bound = 0;
      for (let b = 0; b < n; b += 32) {
        let amax = 0;
        let wsum = 0;
        for (let i = b; i < Math.min(n, b + 32); i++) {
          amax = Math.max(amax, Math.abs(x[r * n + i]));
          wsum += Math.abs(w[o * n + i]);
        }
        bound += (amax / 127 / 2) * wsum;
      }
      out[r * m + o] = bound;
    }
  return out;
}

describe("8-bit blocks on the host", () => {
  it("quantizes a block by hand: scale max|v|/127, values rounded half away from zero, zero blocks stay zero", () => {
    const v = new Float32Array(64); // one row, two blocks; the second all zero
    v[0] = 1.27; // the block's max: q = 127
    v[1] = -0.635; // q = -63.5 → -64 (half away from zero)
    v[2] = 0.004; // q = 0.4 → 0
    v[31] = -1.27;
    const words = quantizeInt8(v, 1, 64);
    expect(words.length).toBe(18);
    const f32 = new Float32Array(words.buffer);
    const q = new Int8Array(words.buffer);
    expect(f32[0]).toBe(Math.fround(Math.fround(1.27) / 127));
    expect([q[4], q[5], q[6], q[7], q[35]]).toEqual([127, -64, 0, 0, -127]);
    expect(f32[9]).toBe(0);
    expect([...q.subarray(40, 72)].every((b) => b === 0)).toBe(true);
  });

  it("round-trips every value within half its block's scale, on odd shapes", () => {
    const rng = new Rng(1);
    for (const [rows, cols] of [
      [1, 1],
      [3, 31],
      [5, 33],
      [6, 64],
      [9, 100],
    ]) {
      const v = normals(rows * cols, rng);
      const back = dequantizeInt8(quantizeInt8(v, rows, cols), rows, cols);
      for (let r = 0; r < rows; r++)
        for (let b = 0; b < cols; b += 32) {
          let amax = 0;
          for (let i = b; i < Math.min(cols, b + 32); i++) amax = Math.max(amax, Math.abs(v[r * cols + i]));
          for (let i = b; i < Math.min(cols, b + 32); i++)
            expect(Math.abs(back[r * cols + i] - v[r * cols + i])).toBeLessThanOrEqual((amax / 127) * 0.5 * 1.0001);
        }
    }
  });

  it("interleaves rows in groups of 4 by block and keeps the last rows % 4 rows row-major", () => {
    const [rows, cols] = [6, 64]; // one group of 4 rows, 2 tail rows; 2 blocks a row
    const v = new Float32Array(rows * cols);
    for (let r = 0; r < rows; r++) for (let i = 0; i < cols; i++) v[r * cols + i] = r + 1; // q = 127 everywhere
    const words = quantizeInt8(v, rows, cols);
    const f32 = new Float32Array(words.buffer);
    const scaleAt = (word: number) => f32[word];
    // group: block 0 of rows 0..3, then block 1 of rows 0..3
    const expected = [0, 1, 2, 3, 0, 1, 2, 3, 4, 4, 5, 5].map((r) => Math.fround(Math.fround(r + 1) / 127));
    expect(Array.from({ length: 12 }, (_, k) => scaleAt(9 * k))).toEqual(expected);
    expect(int8BlockWord(2, 1, rows, 2)).toBe(9 * 6);
    expect(int8BlockWord(5, 0, rows, 2)).toBe(9 * 10);
    expect(int8Shape(rows, cols)).toEqual([6, 18]);
  });

  it("refuses a non-finite weight with a WeightStorageError naming where", () => {
    const v = new Float32Array(40);
    v[35] = Infinity;
    expect(() => quantizeInt8(v, 1, 40, "w")).toThrow(WeightStorageError);
    expect(() => quantizeInt8(v, 1, 40, "w")).toThrow(/row 0, column 35/);
    v[35] = NaN;
    expect(() => quantizeInt8(v, 1, 40, "w")).toThrow(WeightStorageError);
    const big = new Float32Array(9 * 50); // a later chunk's row: found and named too
    big[7 * 50 + 3] = -Infinity;
    expect(() => quantizeInt8(big, 9, 50, "w")).toThrow(/row 7, column 3/);
  });

  it("the wasm quantizer gives the plain JS quantizer's bytes: random, zeros, ±max, ties, tiny and huge blocks", () => {
    const rng = new Rng(17);
    const same = (v: Float32Array, rows: number, cols: number) =>
      expect(
        Buffer.from(quantizeInt8(v, rows, cols).buffer).equals(
          Buffer.from(quantizeInt8Reference(v, rows, cols).buffer),
        ),
        `[${rows}, ${cols}]`,
      ).toBe(true);
    for (const [rows, cols] of [
      [1, 1],
      [3, 31],
      [4, 32],
      [7, 70],
      [13, 200],
      [5000, 300], // several chunks
    ])
      same(normals(rows * cols, rng), rows, cols);
    const MAX = 3.4028234663852886e38;
    const edge = new Float32Array(6 * 64);
    edge.fill(0, 0, 64); // a zero row
    edge.set([MAX, -MAX, MAX / 2, -1, 0], 64); // ±max in one block
    // ties: v · (1/d) lands on k + 0.5 for d = 1 (max 127): 0.5, 1.5, -2.5, … round away from zero
    edge.set([127, 0.5, 1.5, -2.5, 3.5, -0.5, 126.5, -126.5], 128);
    edge.set([1e-40, -3e-41, 7e-45], 192); // subnormal: 1/d overflows, JS's ToInt32 of ±∞ / NaN is 0
    edge.set([2 ** -126, 2 ** -130], 256);
    edge.set(
      Array.from({ length: 64 }, (_, i) => (i % 2 ? -1 : 1) * 2 ** (i - 30)),
      320,
    );
    same(edge, 6, 64);
    // bf16 bits in: the same bytes as their float32 values (widening is exact), ±∞ / NaN named too
    const bits = Uint16Array.from({ length: 9 * 70 }, (_, i) => (Math.imul(i, 2654435761) >>> 16) & 0xff7f);
    const widened = new Float32Array(Uint32Array.from(bits, (b) => b << 16).buffer);
    expect(
      Buffer.from(quantizeInt8(bits, 9, 70).buffer).equals(Buffer.from(quantizeInt8Reference(widened, 9, 70).buffer)),
    ).toBe(true);
    bits[5 * 70 + 66] = 0xff80; // -∞
    expect(() => quantizeInt8(bits, 9, 70, "w")).toThrow(/row 5, column 66/);
  });
});

describe("the memory plan of int8 storage", () => {
  // one [96, 80] Linear (3 blocks a row, the last padded: 96 · 3 · 36 bytes), one [64, 64] without int8Bytes
  // (planned at numel · 9/8), one norm (float32)
  const weights: WeightEntry[] = [
    { name: "a", numel: 96 * 80, storedDtype: "BF16", packable: true, int8Bytes: 96 * 3 * 36, matmul: true },
    { name: "b", numel: 64 * 64, storedDtype: "BF16", packable: true, matmul: true },
    { name: "n", numel: 80, storedDtype: "BF16", packable: false, matmul: false },
  ];
  const shape = { numLayers: 1, hidden: 80, intermediate: 96, heads: 2, kvHeads: 1, headDim: 40, vocab: 64 };
  const req: PlanRequest = { weights, shape, contextLength: 256, promptLength: 64 };
  const wasm = (ceilingBytes: number): BackendLimits => ({
    backend: "wasm",
    ceilingBytes,
    bf16: true,
    packedCopy: true,
  });

  it("counts 36 bytes a block for quantized weights, float32 for the rest, and no backend copy", () => {
    const plan = planMemory(req, "int8", wasm(2 ** 40));
    expect(plan.storage).toBe("int8");
    expect(plan.weightBytes).toBe(96 * 3 * 36 + (64 * 64 * 9) / 8 + 4 * 80);
    expect(plan.backendCopyBytes).toBe(0);
    expect(plan.roundedWeights).toBe(0); // asked for: no rounding warning
  });

  it('is never what "auto" picks, is suggested when only it fits, and needs the wasm or cpu kernels', () => {
    const bf16 = planMemory(req, "bf16", wasm(2 ** 40)).totalBytes;
    const int8 = planMemory(req, "int8", wasm(2 ** 40)).totalBytes;
    expect(planMemory(req, "auto", wasm(2 ** 40)).storage).toBe("bf16");
    const tight = wasm((bf16 + int8) / 2);
    expect(planMemory(req, "int8", tight).storage).toBe("int8");
    expect(() => planMemory({ ...req, contextExplicit: true }, "bf16", tight)).toThrow(MemoryPlanError);
    expect(() => planMemory({ ...req, contextExplicit: true }, "bf16", tight)).toThrow(/weightStorage "int8"/);
    const tensorflow = { ...wasm(2 ** 40), backend: "tensorflow", bf16: false };
    expect(() => planMemory(req, "int8", tensorflow)).toThrow(WeightStorageError);
  });
});

const SHAPES = [
  [1, 32, 1],
  [1, 33, 5],
  [3, 40, 7],
  [4, 64, 8],
  [5, 100, 13],
  [9, 96, 33],
  [2, 1024, 12],
] as const;

describe.each(["cpu", "wasm"])("int8 kernels on %s", (backend) => {
  beforeAll(async () => {
    await setBackend(backend);
  });

  it("x · Wᵀ: cpu equals float64 over the dequantized weights; wasm within the activation-rounding bound", () => {
    const rng = new Rng(7);
    for (const [rows, n, m] of SHAPES) {
      const x = normals(rows * n, rng);
      const words = quantizeInt8(normals(m * n, rng, 0.1), m, n);
      const w = dequantizeInt8(words, m, n);
      const { y: want, mag } = reference(x, w, rows, n, m);
      const bound = activationBound(x, w, rows, n, m);
      const y = tf.tidy(() => int8MatMul(tf.tensor2d(x, [rows, n]), stored(words, m, n)));
      expect(y.shape).toEqual([rows, m]);
      const got = y.dataSync();
      y.dispose();
      for (let k = 0; k < rows * m; k++) {
        const slack = mag[k] * 2 ** -20;
        const allowed = backend === "cpu" ? slack : bound[k] + slack;
        expect(Math.abs(got[k] - want[k]), `[${rows}, ${n}, ${m}] output ${k}`).toBeLessThanOrEqual(allowed);
      }
    }
  });

  it("gathers embedding rows exactly (d · q), any ids order, and refuses an id out of range", () => {
    const rng = new Rng(3);
    const [m, n] = [7, 40];
    const words = quantizeInt8(normals(m * n, rng), m, n);
    const all = dequantizeInt8(words, m, n);
    const table = stored(words, m, n);
    const ids = [
      [6, 0, 3],
      [4, 5, 1],
    ];
    const e = tf.tidy(() => int8Embedding(table, tf.tensor2d(ids, [2, 3], "int32"), n));
    expect(e.shape).toEqual([2, 3, n]);
    const got = e.dataSync();
    e.dispose();
    ids
      .flat()
      .forEach((id, k) =>
        expect([...got.subarray(k * n, (k + 1) * n)]).toEqual([...all.subarray(id * n, (id + 1) * n)]),
      );
    expect(() => tf.tidy(() => int8Embedding(table, tf.tensor1d([7], "int32"), n))).toThrow(ShapeError);
    expect(() => tf.tidy(() => int8Embedding(table, tf.tensor1d([-1], "int32"), n))).toThrow(ShapeError);
    table.release();
  });

  it("refuses weights whose blocks do not match x's width with a ShapeError", () => {
    const w = storeWords(new Int32Array(36), [4, 9], "int8"); // one block: n ≤ 32
    const x = tf.zeros([1, 40]);
    expect(() => int8MatMul(x as tf.Tensor2D, w)).toThrow(ShapeError);
    x.dispose();
    w.release();
  });
});

describe("int8 on the kernel pool (wasm)", () => {
  let prevMin: number;
  beforeAll(async () => {
    await setBackend("wasm");
    prevMin = setParallelMinMacs(0);
  });
  afterAll(() => {
    setParallelMinMacs(prevMin);
    setKernelThreads();
  });

  it("gives the single-threaded kernel's bits on 2 threads, for decode and prefill shapes", () => {
    const rng = new Rng(11);
    for (const [rows, n, m] of [
      [1, 96, 40],
      [1, 1024, 203],
      [7, 200, 64],
      [64, 256, 36],
    ]) {
      const x = tf.tensor2d(normals(rows * n, rng), [rows, n]);
      const w = stored(quantizeInt8(normals(m * n, rng, 0.1), m, n), m, n);
      setKernelThreads(1);
      const one = tf.tidy(() => int8MatMul(x, w)).dataSync();
      setKernelThreads(2);
      const pool = kernelPool()!;
      const jobs = pool.jobs;
      const two = tf.tidy(() => int8MatMul(x, w)).dataSync();
      expect(pool.jobs, "ran on the pool").toBe(jobs + 1);
      expect(maxAbsDiff(one, two), `[${rows}, ${n}, ${m}]`).toBe(0);
      x.dispose();
      w.release();
    }
  });
});

/** Widths that are not all multiples of the 32-value block (intermediate 80: 2.5 blocks, padded). */
const SIZES = {
  vocab_size: 70,
  hidden_size: 96,
  intermediate_size: 80,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  head_dim: 24,
};
/**
 * Logit bounds, as a fraction of the logit standard deviation. One 8-bit rounding (weights, or activations on
 * wasm) is uniform within ±half a block's scale: RMS ≈ max|v| / (127·√12) ≈ 0.5% of a Gaussian's σ (a block's
 * max ≈ 2.1σ). Independent errors of the ~9 matmuls on a logit's path (2 layers × 4 + lm_head) add in
 * quadrature (×3), and the largest of 8 × 70 logits is ~3 RMS: ≈ 4.5% for one rounding, ≈ 6.4% for two
 * (weights and activations). Measured: 3.5% and 5.5% at most.
 */
const ONE_ROUNDING = 0.08;
const TWO_ROUNDINGS = 0.1;

const FAMILIES = {
  llama: { model_type: "llama", ...SIZES, tie_word_embeddings: true },
  qwen2: { model_type: "qwen2", ...SIZES, tie_word_embeddings: false },
  qwen3: { model_type: "qwen3", ...SIZES, tie_word_embeddings: false },
} as const;

describe.each(["cpu", "wasm"])("weightStorage int8 on %s", (backend) => {
  beforeAll(async () => {
    await setBackend(backend);
  });

  describe.each(Object.keys(FAMILIES) as (keyof typeof FAMILIES)[])("%s", (family) => {
    let dir: string;
    let bf16: PreTrainedModel;
    let int8: PreTrainedModel;
    let dequantized: PreTrainedModel;
    beforeAll(async () => {
      dir = await savedFamilyModel(FAMILIES[family], { seed: 5, dtype: "BF16" });
      bf16 = await AutoModelForCausalLM.fromPretrained(dir, { weightStorage: "bf16" });
      int8 = await AutoModelForCausalLM.fromPretrained(dir, { weightStorage: "int8", strict: true });
      // the same 8-bit values as float32: what the int8 model computes, up to the activation rounding on wasm
      dequantized = await AutoModelForCausalLM.fromPretrained(dir, { weightStorage: "int8" });
      storeWeightsAs(dequantized, "f32");
    });
    afterAll(() => {
      for (const m of [bf16, int8, dequantized]) m.dispose();
    });

    it("quantizes every Linear and the embedding as it loads; the plan counts 36 bytes a block", () => {
      const matrices = int8.parameters().filter((p) => p.stateShape.length === 2);
      expect(matrices.length).toBeGreaterThan(0);
      expect(matrices.every((p) => p.quantized && !p.quantizeOnLoad)).toBe(true);
      expect(int8.memoryPlan!.storage).toBe("int8");
      const bytes = matrices.reduce((s, p) => s + p.int8Shape![0] * p.int8Shape![1] * 4, 0);
      const norms = int8
        .parameters()
        .filter((p) => p.stateShape.length === 1)
        .reduce((s, p) => s + 4 * p.numel, 0);
      expect(int8.memoryPlan!.weightBytes).toBe(bytes + norms);
      expect(() => matrices[0].tensor).toThrow(PackedParameterError);
    });

    it("gives the dequantized float32 model's logits (cpu: to float32 rounding; wasm: within the activation rounding)", () => {
      const want = flatLogitsOf(dequantized, [PROMPT]);
      const got = flatLogitsOf(int8, [PROMPT]);
      const std = stdOf(want);
      // cpu computes the same products in float32; wasm also rounds activations to 8 bits per block
      expect(maxAbsDiff(got, want)).toBeLessThan(backend === "cpu" ? 1e-5 : ONE_ROUNDING * std);
    });

    it("stays near the bf16 model's logits (the weight rounding, and on wasm the activation rounding too)", () => {
      const ref = flatLogitsOf(bf16, [PROMPT]);
      const got = flatLogitsOf(int8, [PROMPT]);
      const d = maxAbsDiff(got, ref);
      expect(d).toBeGreaterThan(0); // it is quantized
      expect(d).toBeLessThan((backend === "cpu" ? ONE_ROUNDING : TWO_ROUNDINGS) * stdOf(ref));
    });

    it("keeps tfjs memory flat over many forwards", () => {
      flatLogitsOf(int8, [PROMPT]);
      const before = tf.memory();
      for (let i = 0; i < 10; i++) flatLogitsOf(int8, [PROMPT.slice(0, 1 + (i % 8))]);
      expect(tf.memory().numTensors).toBe(before.numTensors);
      expect(tf.memory().numBytes).toBe(before.numBytes);
    });
  });
});

describe("saving an int8 model (cpu)", () => {
  beforeAll(async () => {
    await setBackend("cpu");
  });

  it("writes the dequantized values in the checkpoint's dtype, with a warning", async () => {
    const src = await savedFamilyModel(FAMILIES.qwen3, { seed: 6, dtype: "BF16" });
    const model = await AutoModelForCausalLM.fromPretrained(src, { weightStorage: "int8" });
    const out = tmpDir("fusekit-int8-save-");
    const warnings: string[] = [];
    const onWarning = (w: Error & { code?: string }) => warnings.push(w.code ?? "");
    process.on("warning", onWarning);
    try {
      await model.savePretrained(out);
      await new Promise((r) => setImmediate(r)); // warnings are emitted on the next tick
    } finally {
      process.off("warning", onWarning);
    }
    expect(warnings).toContain("FUSEKIT_INT8_SAVED_DEQUANTIZED");
    const saved = readWeights(path.join(out, "model.safetensors"));
    const source = readWeights(path.join(src, "model.safetensors"));
    const key = "model.layers.0.mlp.down_proj.weight";
    expect(JSON.parse(readFileSync(path.join(out, "config.json"), "utf8")).torch_dtype).toBe("bfloat16");
    const p = model.namedParameters().find(([k]) => k === key)![1];
    const deq = p.stateData() as Float32Array;
    // the saved BF16 values are the dequantized ones rounded to bf16, not the source's
    const bf16 = new Float32Array(new Uint32Array(deq.length).map((_, i) => roundBf16(deq[i])).buffer);
    expect(maxAbsDiff(saved.get(key)!.data, bf16)).toBe(0);
    expect(maxAbsDiff(saved.get(key)!.data, source.get(key)!.data)).toBeGreaterThan(0);
    expect(readFileSync(path.join(out, "config.json"), "utf8")).not.toContain("quantization_config");
    model.dispose();
  });
});

function stdOf(v: ArrayLike<number>): number {
  let s = 0;
  let s2 = 0;
  for (let i = 0; i < v.length; i++) {
    s += v[i];
    s2 += v[i] * v[i];
  }
  const mean = s / v.length;
  return Math.sqrt(s2 / v.length - mean * mean);
}

/** float32 → the bits of the nearest bf16 (ties to even) as a float32. */
function roundBf16(x: number): number {
  const u = new Uint32Array(Float32Array.of(x).buffer)[0];
  return ((u + 0x7fff + ((u >>> 16) & 1)) & 0xffff0000) >>> 0;
}
