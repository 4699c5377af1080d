// The tiled prefill GEMM (src/backend/gemm.wat): every tile edge against a float64 reference within its stated
// bound, the same bits on one thread and on the pool (row-major and interleaved weights), and decode rows still
// on the row-streaming kernel.
import { storeWords } from "../src/backend/weight-store.js";
import { execFileSync } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Rng, bf16MatMul, packBf16, setBackend, setKernelThreads, tf } from "fusekit/internals";
import { TILED_MIN_ROWS, tiledGemmPeak } from "../src/backend/gemm.js";
import { kernelPool, setParallelMinMacs } from "../src/backend/pool.js";

const KC = 256; // gemm.wat's input block
const U = 2 ** -24;
/** gemm.wat's bound on |ŷ - y| / Σ|x_i w_i|: γ(KC + ⌈n / KC⌉), γ(k) = k·u / (1 - k·u). */
const gamma = (n: number) => {
  const k = Math.min(n, KC) + Math.ceil(n / KC);
  return (k * U) / (1 - k * U);
};

/** Random bf16-exact W [m, n] (packed too) and x [rows, n], with a spread of magnitudes and signs. */
function operands(rows: number, n: number, m: number, seed: number) {
  const rng = new Rng(seed);
  const w = Float32Array.from({ length: m * n }, () => 0.1 * rng.normal());
  const x = Float32Array.from({ length: rows * n }, () => rng.normal() * Math.exp(rng.normal()));
  const bits = new Uint32Array(w.buffer);
  for (let i = 0; i < bits.length; i++) bits[i] &= 0xffff0000;
  return { x, w, packed: packBf16(w).packed };
}

function matmul(rows: number, n: number, m: number, seed: number, threads: number): Float32Array {
  setKernelThreads(threads);
  const { x, packed } = operands(rows, n, m, seed);
  const xt = tf.tensor2d(x, [rows, n]);
  const wt = storeWords(packed, [m, n / 2], "bf16");
  const y = bf16MatMul(xt, wt);
  const out = (y.dataSync() as Float32Array).slice();
  tf.dispose([xt, y]);
  wt.release();
  return out;
}

/** max over outputs of |ŷ - y| / (γ · Σ|x_i w_i|) against float64 sums: ≤ 1 is within the bound. */
function errorOverBound(y: Float32Array, rows: number, n: number, m: number, seed: number): number {
  const { x, w } = operands(rows, n, m, seed);
  let worst = 0;
  for (let r = 0; r < rows; r++) {
    for (let o = 0; o < m; o++) {
      let s = 0;
      let a = 0;
      for (let i = 0; i < n; i++) {
        const p = x[r * n + i] * w[o * n + i];
        s += p;
        a += Math.abs(p);
      }
      worst = Math.max(worst, Math.abs(y[r * m + o] - s) / (gamma(n) * a));
    }
  }
  return worst;
}

describe("the tiled bf16 GEMM (wasm)", () => {
  let prevMin: number;
  beforeAll(async () => {
    await setBackend("wasm");
    prevMin = setParallelMinMacs(0); // every size goes to the pool when it has threads
  });
  afterAll(() => {
    setParallelMinMacs(prevMin);
    setKernelThreads();
  });

  // rows: the threshold, not a multiple of the 4-row tile, past the 256-row block; columns: not a multiple of
  // the 8-column panel (row-major on the pool), a multiple (interleaved on the pool), fewer than a panel; inputs:
  // one 8-value step, not a multiple of the 256 block, several blocks
  it.each([
    [TILED_MIN_ROWS, 8, 8],
    [9, 264, 13],
    [11, 520, 16],
    [37, 256, 70],
    [64, 1032, 40],
    [261, 264, 24],
    [13, 776, 3],
  ])(
    "x [%i, %i] · W [%i, …]ᵀ is within γ(KC + ⌈n/KC⌉)·Σ|xw| of float64, the same bits on 1 and 2 threads",
    (rows, n, m) => {
      const seed = rows * 31 + n + m;
      const single = matmul(rows, n, m, seed, 1);
      const pooled = matmul(rows, n, m, seed, 2);
      expect(new Uint32Array(pooled.buffer)).toEqual(new Uint32Array(single.buffer));
      const ratio = errorOverBound(single, rows, n, m, seed);
      expect(ratio).toBeLessThanOrEqual(1);
      expect(ratio).toBeGreaterThan(0); // the reference is not the kernel: float32 rounding shows
    },
  );

  it("the pool's interleaved weights and the tfjs heap's row-major ones give the same bits (m a multiple of 8)", () => {
    const [rows, n, m] = [20, 512, 64];
    const single = matmul(rows, n, m, 3, 1); // row-major, on the tfjs heap
    const pooled = matmul(rows, n, m, 3, 2); // interleaved by 8 rows in the shared heap
    expect(kernelPool()?.threads).toBe(2);
    expect(new Uint32Array(pooled.buffer)).toEqual(new Uint32Array(single.buffer));
  });

  it("rows below the threshold stay on the row-streaming kernel: each row alone gives the rows' bits", () => {
    setKernelThreads(1);
    const [rows, n, m] = [TILED_MIN_ROWS - 1, 264, 24];
    const { x, packed } = operands(rows, n, m, 5);
    const wt = storeWords(packed, [m, n / 2], "bf16");
    const all = bf16MatMul(tf.tensor2d(x, [rows, n]), wt).dataSync();
    for (let r = 0; r < rows; r++) {
      const one = bf16MatMul(tf.tensor2d(x.slice(r * n, (r + 1) * n), [1, n]), wt).dataSync();
      expect(one).toEqual(all.slice(r * m, (r + 1) * m));
    }
    wt.release();
  });

  it("its inner loop's peak is measured on one core and on the pool", () => {
    setKernelThreads(2);
    const peak = tiledGemmPeak(200, 1);
    expect(peak.oneCore).toBeGreaterThan(0);
    expect(peak.threads).toBe(2);
    expect(peak.allCores).toBeGreaterThan(0);
  });
});

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

/**
 * A child process (against dist/) that computes x · wᵀ for [rows, n] · [m, n]ᵀ with deterministic operands on the
 * wasm backend and prints its build ("relaxed" / "baseline") and the result's bits. `relaxed`: the V8 flag
 * that Node 20 needs is set before anything compiles; otherwise FUSEKIT_RELAXED_SIMD=0 picks the baseline.
 * `choose`: the child calls setRelaxedSimd(choose) first (with the flag set), and after the matmul tries the
 * other build, printing the error it gets.
 */
function childMatmul(
  relaxed: boolean,
  rows: number,
  n: number,
  m: number,
  choose?: boolean,
  env: NodeJS.ProcessEnv = { FUSEKIT_RELAXED_SIMD: relaxed ? "" : "0" },
) {
  const script = `
import v8 from "node:v8";
${relaxed ? 'v8.setFlagsFromString("--experimental-wasm-relaxed-simd");' : ""}
const { bf16MatMul, setBackend, storeWords, tf, packBf16, Rng } = await import("${path.join(root, "dist/src/internals.js")}");
const { relaxedSimd, setRelaxedSimd } = await import("${path.join(root, "dist/src/backend/relaxed-simd.js")}");
${choose === undefined ? "" : `setRelaxedSimd(${choose});`}
await setBackend("wasm");
const rng = new Rng(11);
const w = Float32Array.from({ length: ${m * n} }, () => 0.1 * rng.normal());
const bits = new Uint32Array(w.buffer);
for (let i = 0; i < bits.length; i++) bits[i] &= 0xffff0000;
const x = Float32Array.from({ length: ${rows * n} }, () => rng.normal());
const y = bf16MatMul(tf.tensor2d(x, [${rows}, ${n}]), storeWords(packBf16(w).packed, [${m}, ${n / 2}], "bf16"));
let late = "";
${choose === undefined ? "" : `try { setRelaxedSimd(${!choose}); } catch (e) { late = e.name + ": " + e.message; }`}
console.log(JSON.stringify({ build: relaxedSimd() ? "relaxed" : "baseline", y: Array.from(y.dataSync()), late }));
`;
  const out = execFileSync(process.execPath, ["--input-type=module", "-e", script], {
    cwd: root,
    env: { ...process.env, ...env },
    encoding: "utf8",
  });
  return JSON.parse(out.trim().split("\n").pop()!) as { build: string; y: number[]; late: string };
}

describe("the GEMM's relaxed-SIMD build (f32x4.relaxed_madd)", () => {
  it("is picked where the runtime has it, and agrees with the baseline within the same bound of float64", () => {
    const [rows, n, m] = [21, 776, 40];
    const base = childMatmul(false, rows, n, m);
    const relaxed = childMatmul(true, rows, n, m);
    expect(base.build).toBe("baseline");
    expect(relaxed.build).toBe("relaxed");
    // the same operands as the child's, in float64
    const rng = new Rng(11);
    const w = Float32Array.from({ length: m * n }, () => 0.1 * rng.normal());
    const bits = new Uint32Array(w.buffer);
    for (let i = 0; i < bits.length; i++) bits[i] &= 0xffff0000;
    const x = Float32Array.from({ length: rows * n }, () => rng.normal());
    for (const run of [base, relaxed]) {
      let worst = 0;
      for (let r = 0; r < rows; r++)
        for (let o = 0; o < m; o++) {
          let [s, a] = [0, 0];
          for (let i = 0; i < n; i++)
            [s, a] = [s + x[r * n + i] * w[o * n + i], a + Math.abs(x[r * n + i] * w[o * n + i])];
          worst = Math.max(worst, Math.abs(run.y[r * m + o] - s) / (gamma(n) * a));
        }
      expect(worst).toBeLessThanOrEqual(1);
    }
  }, 60000);

  it("FUSEKIT_RELAXED_SIMD=1 sets Node 20's V8 flag itself: the relaxed build, the bits of the flag set by hand", () => {
    const [rows, n, m] = [9, 264, 16];
    const byHand = childMatmul(true, rows, n, m);
    const byEnv = childMatmul(false, rows, n, m, undefined, { FUSEKIT_RELAXED_SIMD: "1" });
    expect(byEnv.build).toBe("relaxed");
    expect(byEnv.y).toEqual(byHand.y);
    expect(byEnv.y).not.toEqual(childMatmul(false, rows, n, m).y); // not the baseline's
  }, 60000);

  it("setRelaxedSimd chooses the build before the first kernel runs (a page's FUSEKIT_RELAXED_SIMD), never after", () => {
    const [rows, n, m] = [9, 264, 16];
    const base = childMatmul(false, rows, n, m);
    const chosenBase = childMatmul(true, rows, n, m, false); // the runtime has relaxed SIMD; the baseline asked for
    expect(chosenBase.build).toBe("baseline");
    expect(chosenBase.y).toEqual(base.y); // the baseline's bits
    expect(chosenBase.late).toBe(
      "BackendError: setRelaxedSimd(true): the prefill kernels already run their baseline build in this process; " +
        "choose before the first model runs",
    );
    const chosenRelaxed = childMatmul(true, rows, n, m, true);
    expect(chosenRelaxed.build).toBe("relaxed");
    expect(chosenRelaxed.y).not.toEqual(base.y); // one rounding per multiply-add: other bits
    expect(chosenRelaxed.late).toMatch(/^BackendError: setRelaxedSimd\(false\): .* their relaxed-SIMD build/);
  }, 60000);
});
