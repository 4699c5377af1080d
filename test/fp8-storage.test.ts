// FP8 storage: an FP8 checkpoint's E4M3 codes and block scales kept as stored, read by the FP8 kernels. The
// expected values come from an E4M3 decoder written from the bit layout (fixtures) and plain float32 sums
// written here in the kernel's documented order, not from fusekit's own decoders.
import { promises as fsp } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  AutoModelForCausalLM,
  CheckpointReader,
  DynamicCache,
  Qwen3Config,
  ShapeError,
  WeightStorageError,
  bf16MatMul,
  fp8Embedding,
  fp8MatMul,
  packBf16,
  planMemory,
  quantizeToFp8,
  setBackend,
  setKernelThreads,
  storeFp8,
  storeWords,
  storeWeightsAs,
  tf,
  weightStore,
  type PreTrainedModel,
  type StoredWeight,
  type WeightEntry,
} from "fusekit/internals";
import { kernelPool, setParallelMinMacs } from "../src/backend/pool.js";
import { referenceFp8 } from "./fixtures/fuzz-helpers.js";
import { flatLogitsOf, maxAbsDiff, tmpDir } from "./helpers/models.js";

const f = Math.fround;
const e4m3 = (c: number) => referenceFp8(c, 4, 3, 7, "fn");

/** Deterministic pseudo-random stream (xorshift32). */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

interface Case {
  codes: Uint8Array;
  scales: Float32Array;
  m: number;
  n: number;
  block: [number, number];
}

/** Random codes (no NaN), scales from `scale`, [m, n] in blocks `block`. */
function randomCase(
  m: number,
  n: number,
  block: [number, number],
  seed: number,
  scale: (r: () => number) => number,
): Case {
  const next = rng(seed);
  const codes = Uint8Array.from({ length: m * n }, () => {
    const c = Math.floor(next() * 254);
    return c >= 0x7f ? c + 1 : c; // skip 0x7f; 0xff is 255, never drawn
  });
  const scales = Float32Array.from({ length: Math.ceil(m / block[0]) * Math.ceil(n / block[1]) }, () => f(scale(next)));
  return { codes, scales, m, n, block };
}

/** Each weight as float32: fround(value · scale). */
function widened({ codes, scales, m, n, block: [br, bc] }: Case): Float32Array {
  const nsc = Math.ceil(n / bc);
  const w = new Float32Array(m * n);
  for (let o = 0; o < m; o++)
    for (let i = 0; i < n; i++)
      w[o * n + i] = e4m3(codes[o * n + i]) * scales[Math.floor(o / br) * nsc + Math.floor(i / bc)];
  return w;
}

/** x · wᵀ summed as the kernel documents: four float32 lanes (column i in lane i % 4), then (l0 + l1) + (l2 + l3). */
function laneOrder(x: Float32Array, w: Float32Array, rows: number, n: number, m: number): Float32Array {
  const y = new Float32Array(rows * m);
  for (let r = 0; r < rows; r++)
    for (let o = 0; o < m; o++) {
      const l = [0, 0, 0, 0];
      for (let i = 0; i < n; i++) l[i % 4] = f(l[i % 4] + f(x[r * n + i] * w[o * n + i]));
      y[r * m + o] = f(f(l[0] + l[1]) + f(l[2] + l[3]));
    }
  return y;
}

/** The case's codes and scales in the weight store. */
const weightOf = (c: Case): StoredWeight => storeFp8(c.codes, [c.m, c.n], c.scales, c.block);

function run(c: Case, x: Float32Array, rows: number): Float32Array {
  const w = weightOf(c);
  const xt = tf.tensor2d(x, [rows, c.n]);
  const y = fp8MatMul(xt, w);
  const out = y.dataSync() as Float32Array;
  w.release();
  tf.dispose([xt, y]);
  return out;
}

const CASES: [number, number, number, [number, number]][] = [
  // rows, n, m, block: edge blocks in both directions, rows that are not a multiple of 4, m not of 4
  [1, 64, 13, [8, 32]],
  [5, 48, 9, [4, 16]],
  [4, 256, 8, [128, 128]],
  [7, 160, 11, [3, 48]],
  [2, 32, 6, [128, 128]],
];

describe("FP8 kernels on wasm", () => {
  beforeAll(() => setBackend("wasm"));

  it.each(CASES)("rows %i, n %i, m %i, block %j: the documented float32 sums, bit for bit", (rows, n, m, block) => {
    const c = randomCase(m, n, block, rows * 1000 + n + m, (r) => 2 ** -8 * (1 + r()));
    const next = rng(n);
    const x = Float32Array.from({ length: rows * n }, () => f(next() * 4 - 2));
    const want = laneOrder(x, widened(c), rows, n, m);
    expect(Array.from(run(c, x, rows))).toEqual(Array.from(want));
  });

  it("scales that keep every product bf16 (powers of two): the bf16 kernel's bits on the expanded weights", () => {
    const [rows, n, m] = [3, 128, 24];
    const c = randomCase(m, n, [16, 64], 9, (r) => 2 ** -(4 + Math.floor(r() * 6)));
    const w = widened(c);
    const { packed, inexact } = packBf16(w);
    expect(inexact).toBe(0); // a 4-bit significand times a power of two
    const next = rng(3);
    const x = Float32Array.from({ length: rows * n }, () => f(next() * 2 - 1));
    const xt = tf.tensor2d(x, [rows, n]);
    const pt = storeWords(packed, [m, n / 2], "bf16");
    const bf16 = bf16MatMul(xt, pt);
    expect(Array.from(run(c, x, rows))).toEqual(Array.from(bf16.dataSync()));
    pt.release();
    tf.dispose([xt, bf16]);
  });

  it("on the kernel pool: the single-threaded bits, with the workers taking part", () => {
    const prev = setParallelMinMacs(0);
    setKernelThreads(2);
    const [rows, n, m] = [3, 1024, 1000];
    const c = randomCase(m, n, [128, 128], 11, (r) => 2 ** -9 * (1 + r()));
    const next = rng(5);
    const x = Float32Array.from({ length: rows * n }, () => f(next() * 2 - 1));
    const want = Array.from(laneOrder(x, widened(c), rows, n, m));
    const w = weightOf(c);
    const xt = tf.tensor2d(x, [rows, n]);
    const once = () => {
      const y = fp8MatMul(xt, w);
      const out = Array.from(y.dataSync());
      y.dispose();
      return out;
    };
    try {
      const pool = kernelPool()!;
      expect(pool.workersStarted()).toBe(true);
      const jobs = pool.jobs;
      expect(once()).toEqual(want);
      expect(pool.jobs, "ran on the pool").toBe(jobs + 1);
      // a worker spins between jobs, so it claims chunks as soon as it is scheduled; bounded, not timed
      for (let i = 0; i < 200 && pool.workerChunks === 0; i++) expect(once()).toEqual(want);
      expect(pool.workerChunks).toBeGreaterThan(0);
    } finally {
      w.release();
      tf.dispose([xt]);
      setParallelMinMacs(prev);
      setKernelThreads();
    }
  });

  it("a gather widens rows to fround(value · scale); bad shapes and ids are named errors", () => {
    const c = randomCase(10, 48, [4, 16], 13, (r) => 2 ** -7 * (1 + r()));
    const w = weightOf(c);
    const full = widened(c);
    const ids = tf.tensor2d([9, 0, 4, 4], [2, 2], "int32");
    const rows = fp8Embedding(w, ids);
    expect(rows.shape).toEqual([2, 2, 48]);
    const want = [9, 0, 4, 4].flatMap((o) => Array.from(full.subarray(o * 48, (o + 1) * 48)));
    expect(Array.from(rows.dataSync())).toEqual(want);
    const bad = tf.tensor1d([10], "int32");
    expect(() => fp8Embedding(w, bad)).toThrow(ShapeError);
    const x = tf.tensor2d(new Float32Array(2 * 40), [2, 40]);
    expect(() => fp8MatMul(x, w)).toThrow(ShapeError);
    w.release();
    tf.dispose([ids, rows, bad, x]);
  });
});

describe("FP8 kernels on cpu", () => {
  beforeAll(() => setBackend("cpu"));

  it.each(CASES)("rows %i, n %i, m %i, block %j: the float64 sums within float32 rounding", (rows, n, m, block) => {
    const c = randomCase(m, n, block, rows * 7 + n, (r) => 2 ** -8 * (1 + r()));
    const next = rng(m);
    const x = Float32Array.from({ length: rows * n }, () => f(next() * 4 - 2));
    const w = widened(c);
    const got = run(c, x, rows);
    for (let r = 0; r < rows; r++)
      for (let o = 0; o < m; o++) {
        let s = 0;
        let mag = 0;
        for (let i = 0; i < n; i++) {
          s += x[r * n + i] * w[o * n + i];
          mag += Math.abs(x[r * n + i] * w[o * n + i]);
        }
        expect(Math.abs(got[r * m + o] - s)).toBeLessThanOrEqual(2 ** -23 * mag);
      }
  });
});

// Kernel-friendly widths (multiples of 16) and blocks with edges: q [128, 128] in [64, 48] blocks ends in a
// 32-wide block; gate [192, 128]; down [128, 192].
const CONFIG = {
  vocab_size: 96,
  hidden_size: 128,
  intermediate_size: 192,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  head_dim: 32,
  rope_theta: 10000,
  rms_norm_eps: 1e-6,
  tie_word_embeddings: false,
};
const BLOCK: [number, number] = [64, 48];
const IDS = [[5, 17, 3, 42, 8, 60]];

/** A model's parameter by checkpoint key. */
const param = (model: PreTrainedModel, key: string) => new Map(model.namedParameters()).get(key)!;

const dirs: string[] = [];
afterAll(async () => Promise.all(dirs.map((d) => fsp.rm(d, { recursive: true, force: true }))));
const scratch = () => {
  const d = tmpDir("fusekit-fp8-storage-");
  dirs.push(d);
  return d;
};

/** An FP8 checkpoint as `quantize-fp8` writes it from a BF16 one (every Linear but lm_head; the rest BF16). */
async function fp8Checkpoint(seed: number): Promise<string> {
  const random = AutoModelForCausalLM.fromConfig(new Qwen3Config(CONFIG), { seed });
  const bf16 = scratch();
  await random.savePretrained(bf16, { dtype: "BF16" });
  random.dispose();
  const model = await AutoModelForCausalLM.fromPretrained(bf16);
  quantizeToFp8(model, { weightBlockSize: BLOCK });
  const dir = scratch();
  await model.savePretrained(dir);
  model.dispose();
  return dir;
}

/** Each FP8 weight of a checkpoint as its E4M3 bytes and float32 scales (read back from the file). */
async function fp8Tensors(dir: string): Promise<Map<string, Case>> {
  const reader = await CheckpointReader.open(dir);
  const out = new Map<string, Case>();
  for (const k of reader.keys()) {
    const info = reader.infos.get(k)!;
    if (info.dtype !== "F8_E4M3") continue;
    const scales = new Float32Array((await reader.readBytes(`${k}_scale_inv`)).slice().buffer);
    const [m, n] = info.shape;
    out.set(k, { codes: (await reader.readBytes(k)).slice(), scales, m, n, block: BLOCK });
  }
  await reader.close();
  return out;
}

describe.each(["wasm", "cpu"])("FP8 checkpoints kept as stored on %s", (backend) => {
  beforeAll(() => setBackend(backend));

  it("auto keeps the codes and scales: fround(value · scale) weights, the planned bytes, and the same file saved back", async () => {
    const dir = await fp8Checkpoint(3);
    const stored = await fp8Tensors(dir);
    expect(stored.size).toBe(14); // 7 Linears a layer, lm_head left out
    const model = await AutoModelForCausalLM.fromPretrained(dir, { strict: true });
    try {
      expect(model.memoryPlan!.storage).toBe("fp8");
      const params = new Map(model.namedParameters());
      let weightBytes = 0;
      for (const [k, p] of params) {
        const c = stored.get(k);
        if (c) {
          expect(p.fp8, k).toBe(true);
          expect(Buffer.from(p.stateData().buffer).equals(Buffer.from(widened(c).buffer)), k).toBe(true);
          weightBytes += c.m * c.n + c.scales.length * 4;
        } else if (p.stateShape.length === 2) {
          expect(p.packed, k).toBe(true); // BF16 in the checkpoint: packed bf16, exact
          weightBytes += p.numel * 2;
        } else weightBytes += p.numel * 4;
      }
      expect(model.memoryPlan!.weightBytes).toBe(weightBytes);
      expect(flatLogitsOf(model, IDS).every(Number.isFinite)).toBe(true);
      const out = scratch();
      await model.savePretrained(out);
      const file = (d: string, name: string) => fsp.readFile(path.join(d, name));
      expect((await file(out, "model.safetensors")).equals(await file(dir, "model.safetensors"))).toBe(true);
      expect(JSON.parse((await file(out, "config.json")).toString())).toEqual(
        JSON.parse((await file(dir, "config.json")).toString()),
      );
    } finally {
      model.dispose();
    }
  });

  it("keeps each FP8 weight once, in the weight store: the file's codes and scales in one block, none in tfjs's heap, none copied by decoding, all given back", async () => {
    const dir = await fp8Checkpoint(13);
    const stored = await fp8Tensors(dir);
    const store = weightStore();
    const [storeBefore, tfBefore] = [store.used, tf.memory().numBytes];
    const model = await AutoModelForCausalLM.fromPretrained(dir);
    const block = (bytes: number) => Math.ceil(bytes / 64) * 64;
    let blocks = 0;
    let fp8Bytes = 0;
    for (const [k, p] of model.namedParameters()) {
      const c = stored.get(k);
      if (!c) {
        if (p.packed) blocks += block(p.numel * 2);
        continue;
      }
      const w = p.fp8Weight;
      const codes = new Uint8Array(w.words().buffer, w.at, c.m * c.n);
      expect(Buffer.from(codes).equals(Buffer.from(c.codes)), k).toBe(true); // the file's bytes, as they were
      expect(w.scales!.at, k).toBe(w.at + block(c.m * c.n)); // the scales right after the codes
      expect(Array.from(w.scaleValues()), k).toEqual(Array.from(c.scales));
      expect(w.bytes, k).toBe(block(c.m * c.n) + c.scales.length * 4);
      blocks += block(w.bytes);
      fp8Bytes += c.m * c.n + c.scales.length * 4;
    }
    expect(store.used - storeBefore).toBe(blocks);
    // tfjs keeps the norms only
    const norms = model.parameters().filter((p) => !p.packed && !p.fp8);
    expect(tf.memory().numBytes - tfBefore).toBe(norms.reduce((n, p) => n + p.numel * 4, 0));
    const cache = new DynamicCache();
    for (const ids of [[[5, 17, 3, 42, 8, 60, 1, 2, 9]], [[11]], [[12]]]) {
      const { logits } = model.forward({ inputIds: ids, pastKeyValues: cache, useCache: true, logitsToKeep: 1 });
      logits.dispose();
    }
    cache.dispose();
    expect(store.used - storeBefore - blocks).toBeLessThan(fp8Bytes / 4); // activation scratch, not a weight copy
    model.dispose();
    expect(store.used - storeBefore).toBeLessThan(fp8Bytes / 4);
  });

  it("the forward equals a float32 model holding the widened weights, within float32 summation", async () => {
    const dir = await fp8Checkpoint(5);
    const kept = await AutoModelForCausalLM.fromPretrained(dir);
    const plain = await AutoModelForCausalLM.fromPretrained(dir, { weightStorage: "f32" });
    try {
      for (const [k, p] of kept.namedParameters())
        if (p.fp8) param(plain, k).setStateData(p.stateData() as Float32Array);
      const [a, b] = [flatLogitsOf(kept, IDS), flatLogitsOf(plain, IDS)];
      const scale = Math.max(...b.map(Math.abs));
      expect(maxAbsDiff(a, b)).toBeLessThan(1e-5 * scale);
    } finally {
      kept.dispose();
      plain.dispose();
    }
  });

  it("bf16 asked for expands as before; storeWeightsAs converts FP8 storage to bf16 (the same bits), f32 and int8", async () => {
    const dir = await fp8Checkpoint(7);
    const kept = await AutoModelForCausalLM.fromPretrained(dir);
    const bf16 = await AutoModelForCausalLM.fromPretrained(dir, { weightStorage: "bf16" });
    try {
      const key = "model.layers.1.mlp.down_proj.weight";
      expect(param(bf16, key).packed).toBe(true);
      const widenedValues = param(kept, key).stateData();
      storeWeightsAs(kept, "bf16");
      expect(param(kept, key).packed).toBe(true);
      for (const [k, p] of kept.namedParameters())
        expect(Buffer.from(p.stateData().buffer).equals(Buffer.from(param(bf16, k).stateData().buffer)), k).toBe(true);
      const again = await AutoModelForCausalLM.fromPretrained(dir);
      const report = storeWeightsAs(again, "f32");
      expect(report.converted).toContain(key);
      expect(Buffer.from(param(again, key).stateData().buffer).equals(Buffer.from(widenedValues.buffer))).toBe(true);
      again.dispose();
      const int8 = await AutoModelForCausalLM.fromPretrained(dir);
      storeWeightsAs(int8, "int8");
      expect(param(int8, key).quantized).toBe(true);
      int8.dispose();
    } finally {
      kept.dispose();
      bf16.dispose();
    }
  });
});

describe("values set on a weight kept as FP8 (cpu)", () => {
  beforeAll(() => setBackend("cpu"));

  it("stay FP8: re-encoded with the block scales when they hold them, else with fresh ones (448 / max|w|)", async () => {
    const dir = await fp8Checkpoint(11);
    const model = await AutoModelForCausalLM.fromPretrained(dir);
    try {
      const p = param(model, "model.layers.0.mlp.up_proj.weight"); // [192, 128] in [64, 48] blocks
      const same = p.stateData() as Float32Array;
      p.setStateData(same.slice());
      expect(p.fp8).toBe(true);
      expect(Buffer.from(p.stateData().buffer).equals(Buffer.from(same.buffer))).toBe(true); // the same codes back
      const values = Float32Array.from({ length: p.numel }, (_, i) => ((i % 29) - 14) / 8); // max |w| 14/8 a block
      p.setStateData(values.slice());
      expect(p.fp8).toBe(true);
      expect(Array.from(p.checkpointLayout!.scales)).toEqual(Array(9).fill(f(1 / f(448 / 1.75))));
      const back = p.stateData();
      for (let i = 0; i < values.length; i++)
        expect(Math.abs(back[i] - values[i]), `element ${i}`).toBeLessThanOrEqual(Math.abs(values[i]) / 16 + 1e-6);
    } finally {
      model.dispose();
    }
  });
});

describe("the memory plan of FP8 storage", () => {
  it("counts codes + scales for kept weights, bf16 for the BF16 ones, float32 (and wasm's copy) for the rest", () => {
    const entry = (name: string, numel: number, storedDtype: "BF16" | "F32", fp8Bytes?: number): WeightEntry => ({
      name,
      numel,
      storedDtype,
      packable: name !== "norm",
      fp8Bytes,
      matmul: name !== "norm",
    });
    // q [256, 128] in 128 × 128 blocks: 2 × 1 scales; down [128, 384]: 1 × 3
    const weights = [
      entry("q", 256 * 128, "BF16", 256 * 128 + 2 * 4),
      entry("down", 128 * 384, "BF16", 128 * 384 + 3 * 4),
      entry("embed", 1000 * 128, "BF16"),
      entry("head", 1000 * 128, "F32"),
      entry("norm", 128, "F32"),
    ];
    const shape = { numLayers: 1, hidden: 128, intermediate: 384, heads: 4, kvHeads: 2, headDim: 32, vocab: 1000 };
    const req = { weights, shape, contextLength: 64, promptLength: 8 };
    const limits = { backend: "wasm", ceilingBytes: 2 ** 40, bf16: true, packedCopy: true, storeBytes: 2 ** 40 };
    const plan = planMemory(req, "auto", limits);
    expect(plan.storage).toBe("fp8");
    const stored = 256 * 128 + 8 + 128 * 384 + 12 + 2 * 1000 * 128;
    expect(plan.storedWeightBytes).toBe(stored);
    expect(plan.weightBytes).toBe(stored + 4 * 1000 * 128 + 4 * 128);
    expect(plan.backendCopyBytes).toBe(4 * 1000 * 128); // the F32 head, a float32 matmul operand on wasm
    expect(plan.roundedWeights).toBe(0);
    expect(() => planMemory({ ...req, weights: weights.slice(2) }, "fp8", limits)).toThrow(WeightStorageError);
  });
});

describe("FP8 storage is chosen only where it keeps the checkpoint's meaning", () => {
  beforeAll(() => setBackend("cpu"));

  it('"fp8" asked for a checkpoint with no FP8 weights is a WeightStorageError', async () => {
    const model = AutoModelForCausalLM.fromConfig(new Qwen3Config(CONFIG), { seed: 1 });
    const dir = scratch();
    await model.savePretrained(dir, { dtype: "BF16" });
    model.dispose();
    await expect(AutoModelForCausalLM.fromPretrained(dir, { weightStorage: "fp8" })).rejects.toThrow(
      WeightStorageError,
    );
  });

  it("a weight holding a NaN code is expanded to bf16 as before (the kernels have no NaN code); the others stay FP8", async () => {
    const dir = await fp8Checkpoint(9);
    const file = path.join(dir, "model.safetensors");
    const key = "model.layers.0.self_attn.o_proj.weight";
    const reader = await CheckpointReader.open(dir);
    const at = reader.infos.get(key)!.begin;
    await reader.close();
    const bytes = await fsp.readFile(file);
    const header = 8 + Number(bytes.readBigUInt64LE(0));
    bytes[header + at + 5] = 0x7f;
    await fsp.writeFile(file, bytes);
    const model = await AutoModelForCausalLM.fromPretrained(dir);
    try {
      expect(param(model, key).packed).toBe(true);
      expect(Number.isNaN(param(model, key).stateData()[5])).toBe(true);
      expect(param(model, "model.layers.0.self_attn.q_proj.weight").fp8).toBe(true);
    } finally {
      model.dispose();
    }
  });
});
