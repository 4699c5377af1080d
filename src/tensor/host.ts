// Host-side tensor maths on typed arrays (no backend): the few operations that run on weights before they reach
// a backend, or on one row of numbers after they leave it. One home, so each exists once.

/** `[rows, cols]` → `[cols, rows]`, in 64×64 blocks so both sides stay in cache (weights are transposed at load). */
export function transpose2d<T extends Float32Array | Int32Array>(src: T, rows: number, cols: number): T {
  const out = new (src.constructor as new (n: number) => T)(src.length);
  const B = 64;
  for (let r0 = 0; r0 < rows; r0 += B) {
    const r1 = Math.min(r0 + B, rows);
    for (let c0 = 0; c0 < cols; c0 += B) {
      const c1 = Math.min(c0 + B, cols);
      for (let r = r0; r < r1; r++) for (let c = c0; c < c1; c++) out[c * rows + r] = src[r * cols + c];
    }
  }
  return out;
}

/**
 * Softmax of `xs` written to `out` (which may be `xs` itself): exponentials of `x − max`, summed in float64,
 * each divided by the sum; −∞ inputs get 0. `out`'s type sets the precision the values are stored in.
 */
export function softmaxInto(xs: ArrayLike<number>, out: Float32Array | Float64Array): void {
  let max = -Infinity;
  for (let i = 0; i < xs.length; i++) if (xs[i] > max) max = xs[i];
  let sum = 0;
  for (let i = 0; i < xs.length; i++) {
    const e = Math.exp(xs[i] - max);
    out[i] = e;
    sum += e;
  }
  for (let i = 0; i < xs.length; i++) out[i] /= sum;
}
