// Error measures against float64 references, and a count of the kernels a call dispatches, for kernel tests.
import { vi } from "vitest";
import { tf } from "fusekit";

/** The smallest normal float32: below it float32 has no relative precision left, so errors there count as absolute. */
export const F32_MIN_NORMAL = 2 ** -126;

/** max_i |got_i − ref_i| / max(|ref_i|, floor): the worst relative error of any element (for elementwise kernels). */
export function maxRelErr(got: ArrayLike<number>, ref: ArrayLike<number>, floor = F32_MIN_NORMAL): number {
  if (got.length !== ref.length) throw new Error(`maxRelErr: ${got.length} values vs ${ref.length} in the reference`);
  let worst = 0;
  for (let i = 0; i < got.length; i++)
    worst = Math.max(worst, Math.abs(got[i] - ref[i]) / Math.max(Math.abs(ref[i]), floor));
  return Number.isNaN(worst) ? Infinity : worst;
}

/**
 * max_i |got_i − ref_i| / scale_i, where scale_i = Σ_k |a_k b_k| of the dot product behind element i: the
 * error of a sum of products relative to what float rounding of that sum can be blamed for (cancelling
 * outputs near zero do not inflate it, unlike an elementwise relative error).
 */
export function maxScaledErr(got: ArrayLike<number>, ref: ArrayLike<number>, scale: ArrayLike<number>): number {
  if (got.length !== ref.length || got.length !== scale.length) throw new Error("maxScaledErr: lengths differ");
  let worst = 0;
  for (let i = 0; i < got.length; i++)
    worst = Math.max(worst, Math.abs(got[i] - ref[i]) / Math.max(scale[i], F32_MIN_NORMAL));
  return Number.isNaN(worst) ? Infinity : worst;
}

/** Runs `fn` and counts the engine's runKernel dispatches by kernel name (proof that a given kernel ran). */
export function kernelCalls<T>(fn: () => T): { result: T; calls: (kernelName: string) => number } {
  const spy = vi.spyOn(tf.engine(), "runKernel");
  try {
    const result = fn();
    const names = spy.mock.calls.map((c) => c[0] as string);
    return { result, calls: (kernelName) => names.filter((n) => n === kernelName).length };
  } finally {
    spy.mockRestore();
  }
}

/** y = x·Wᵀ in float64 for x [rows, n] and W [m, n] (row-major), with the Σ|x||w| scale of each output. */
export function matmulT64(
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  rows: number,
  n: number,
  m: number,
): { y: Float64Array; scale: Float64Array } {
  const y = new Float64Array(rows * m);
  const scale = new Float64Array(rows * m);
  for (let r = 0; r < rows; r++) {
    for (let o = 0; o < m; o++) {
      let s = 0;
      let a = 0;
      for (let k = 0; k < n; k++) {
        s += x[r * n + k] * w[o * n + k];
        a += Math.abs(x[r * n + k] * w[o * n + k]);
      }
      y[r * m + o] = s;
      scale[r * m + o] = a;
    }
  }
  return { y, scale };
}

/** RMSNorm over rows of length h in float64: w · x / sqrt(mean(x²) + eps). */
export function rmsNorm64(x: ArrayLike<number>, w: ArrayLike<number>, h: number, eps: number): Float64Array {
  const out = new Float64Array(x.length);
  for (let o = 0; o < x.length; o += h) {
    let ss = 0;
    for (let i = 0; i < h; i++) ss += x[o + i] * x[o + i];
    const inv = 1 / Math.sqrt(ss / h + eps);
    for (let i = 0; i < h; i++) out[o + i] = w[i] * x[o + i] * inv;
  }
  return out;
}

export const silu64 = (g: number): number => g / (1 + Math.exp(-g));
