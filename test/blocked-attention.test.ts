// Blocked attention at prefill (src/backend/prefill-attention.ts on gemm.wat) against a float64 softmax at every
// block boundary (16 query rows, 64 keys), with grouped-query heads, a cache before the prompt, padding (rows
// that attend to nothing) and no mask; the same bits on one thread and on the pool; and the plain tfjs path
// agrees with it within the same bound.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Rng, scaledDotProductAttention, setBackend, setKernelThreads, tf } from "fusekit/internals";
import { buildCausalMask } from "../src/nn/masks.js";
import { BLOCKED_MIN_QUERIES, blockedAttentionApplies } from "../src/backend/prefill-attention-kernel.js";

const U = 2 ** -24;
const gamma = (k: number) => (k * U) / (1 - k * U);

/**
 * The bound on |out - exact| (to first order): every score is off by at most Δs = γ(d + 2)·scale·Σ|q_t k_t|, which
 * moves each weight by a factor e^(±2Δs) after normalising; the exp polynomial adds 2^-22 per weight, the sums
 * γ(64 + ⌈T/64⌉ + 2) (a block's 64 keys, then the blocks). Times max|v|.
 */
function bound(c: Case, q: Float32Array, k: Float32Array, v: Float32Array): number {
  const T = c.past + c.s;
  let sumAbs = 0;
  for (let bi = 0; bi < c.b; bi++)
    for (let h = 0; h < c.heads; h++)
      for (let i = 0; i < c.s; i++)
        for (let j = 0; j < T; j++) {
          const u = bi * c.kv + Math.floor(h / (c.heads / c.kv));
          let a = 0;
          for (let t = 0; t < c.d; t++)
            a += Math.abs(q[((bi * c.heads + h) * c.s + i) * c.d + t] * k[(u * T + j) * c.d + t]);
          sumAbs = Math.max(sumAbs, a);
        }
  const ds = gamma(c.d + 2) * c.d ** -0.5 * sumAbs;
  const vmax = v.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
  return (Math.expm1(4 * ds) + 2 ** -21 + gamma(64 + Math.ceil(T / 64) + 2)) * vmax;
}

interface Case {
  b: number;
  heads: number;
  kv: number;
  s: number;
  past: number;
  d: number;
  padding?: number; // left padding of batch row 0 (its first rows attend to nothing)
  noMask?: boolean;
}

function inputs(c: Case, seed: number) {
  const rng = new Rng(seed);
  const T = c.past + c.s;
  const q = Float32Array.from({ length: c.b * c.heads * c.s * c.d }, () => 2 * rng.normal());
  const k = Float32Array.from({ length: c.b * c.kv * T * c.d }, () => 2 * rng.normal());
  const v = Float32Array.from({ length: c.b * c.kv * T * c.d }, () => rng.normal());
  const rows = c.padding
    ? Array.from({ length: c.b }, (_, bi) => Array.from({ length: T }, (_, j) => (bi === 0 && j < c.padding! ? 0 : 1)))
    : undefined;
  return { q, k, v, rows, T };
}

/** float64 softmax(q kᵀ·scale + mask) v; a row with every key masked averages all of V (equal scores). */
function reference(c: Case, q: Float32Array, k: Float32Array, v: Float32Array, mask: Float32Array | undefined) {
  const T = c.past + c.s;
  const scale = c.d ** -0.5;
  const out = new Float64Array(c.b * c.heads * c.s * c.d);
  for (let bi = 0; bi < c.b; bi++)
    for (let h = 0; h < c.heads; h++) {
      const u = bi * c.kv + Math.floor(h / (c.heads / c.kv));
      for (let i = 0; i < c.s; i++) {
        const sc = new Float64Array(T);
        const masked = new Array<boolean>(T);
        for (let j = 0; j < T; j++) {
          let dot = 0;
          for (let t = 0; t < c.d; t++) dot += q[((bi * c.heads + h) * c.s + i) * c.d + t] * k[(u * T + j) * c.d + t];
          masked[j] = mask !== undefined && mask[(bi * c.s + i) * T + j] < -1e30;
          sc[j] = dot * scale;
        }
        const all = masked.every(Boolean);
        const mx = Math.max(...sc.filter((_, j) => all || !masked[j]));
        const p = sc.map((x, j) => (all ? 1 : masked[j] ? 0 : Math.exp(x - mx)));
        const sum = p.reduce((a, x) => a + x, 0);
        for (let t = 0; t < c.d; t++) {
          let acc = 0;
          for (let j = 0; j < T; j++) acc += p[j] * v[(u * T + j) * c.d + t];
          out[((bi * c.heads + h) * c.s + i) * c.d + t] = acc / sum;
        }
      }
    }
  return out;
}

function run(c: Case, seed: number, threads: number) {
  setKernelThreads(threads);
  const { q, k, v, rows, T } = inputs(c, seed);
  return tf.tidy(() => {
    const qt = tf.tensor4d(q, [c.b, c.heads, c.s, c.d]);
    const kt = tf.tensor4d(k, [c.b, c.kv, T, c.d]);
    const vt = tf.tensor4d(v, [c.b, c.kv, T, c.d]);
    const mask = c.noMask ? undefined : buildCausalMask(rows, c.b, c.s, c.past);
    expect(blockedAttentionApplies(qt, kt, mask)).toBe(true);
    const out = scaledDotProductAttention(qt, kt, vt, c.d ** -0.5, mask).dataSync() as Float32Array;
    return { out: out.slice(), q, k, v, mask: mask ? (mask.dataSync() as Float32Array).slice() : undefined };
  });
}

const maxErr = (a: Float32Array, b: Float64Array) => a.reduce((m, x, i) => Math.max(m, Math.abs(x - b[i])), 0);

describe("blocked attention at prefill (wasm)", () => {
  beforeAll(async () => {
    await setBackend("wasm");
  });
  afterAll(() => setKernelThreads());

  const s16 = BLOCKED_MIN_QUERIES;
  // query lengths at the 16-row block and the 64-key block, keys after a cache, GQA groups, padding, no mask
  it.each<Case>([
    { b: 1, heads: 2, kv: 1, s: s16, past: 0, d: 16 },
    { b: 1, heads: 2, kv: 2, s: 17, past: 0, d: 8 },
    { b: 1, heads: 4, kv: 2, s: 63, past: 0, d: 16 },
    { b: 1, heads: 4, kv: 2, s: 64, past: 0, d: 16 },
    { b: 1, heads: 4, kv: 2, s: 65, past: 0, d: 16 },
    { b: 1, heads: 2, kv: 1, s: 127, past: 0, d: 32 },
    { b: 1, heads: 2, kv: 1, s: 129, past: 0, d: 32 },
    { b: 1, heads: 3, kv: 1, s: 20, past: 45, d: 16 },
    { b: 2, heads: 4, kv: 2, s: 40, past: 0, d: 16, padding: 21 },
    { b: 1, heads: 2, kv: 2, s: 70, past: 0, d: 16, noMask: true },
  ])("s=$s past=$past heads=$heads/$kv d=$d: within the bound of float64, same bits on 1 and 2 threads", (c) => {
    const seed = c.s * 7 + c.past + c.heads;
    const one = run(c, seed, 1);
    const two = run(c, seed, 2);
    expect(new Uint32Array(two.out.buffer)).toEqual(new Uint32Array(one.out.buffer));
    const ref = reference(c, one.q, one.k, one.v, one.mask);
    const err = maxErr(one.out, ref);
    expect(err).toBeLessThanOrEqual(bound(c, one.q, one.k, one.v));
    expect(err).toBeGreaterThan(0); // float32, not the reference
  });

  it("below one query block the plain path runs, within the same bound of float64", () => {
    setKernelThreads(1);
    const c: Case = { b: 1, heads: 2, kv: 1, s: 15, past: 50, d: 16 };
    const { q, k, v, T } = inputs(c, 9);
    tf.tidy(() => {
      const qt = tf.tensor4d(q, [1, 2, 15, 16]);
      const kt = tf.tensor4d(k, [1, 1, T, 16]);
      const vt = tf.tensor4d(v, [1, 1, T, 16]);
      const mask = buildCausalMask(undefined, 1, 15, 50)!;
      expect(blockedAttentionApplies(qt, kt, mask)).toBe(false);
      const plain = scaledDotProductAttention(qt, kt, vt, 0.25, mask).dataSync() as Float32Array;
      const ref = reference(c, q, k, v, mask.dataSync() as Float32Array);
      expect(maxErr(plain, ref)).toBeLessThanOrEqual(bound(c, q, k, v));
    });
  });
});
