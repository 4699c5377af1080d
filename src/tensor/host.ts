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

/**
 * out[r] = w · (x[r] · 1/sqrt(mean(x[r]²) + eps)) for `rows` rows of length `h`, each step rounded as the
 * backend's own kernels round it (measured against them): tfjs-wasm's Mean sums the float32 squares in float32,
 * in order, then divides, and its Rsqrt works in float32; tfjs-cpu's divides each square by h first, sums the
 * quotients in float64, and its Rsqrt works in float64.
 */
export function rmsNormRows(
  x: Float32Array,
  w: Float32Array,
  out: Float32Array,
  rows: number,
  h: number,
  eps: number,
  backend: "wasm" | "cpu",
): void {
  const f = Math.fround;
  const eps32 = f(eps);
  for (let r = 0, o = 0; r < rows; r++, o += h) {
    let mean = 0;
    if (backend === "wasm") {
      for (let i = 0; i < h; i++) mean = f(mean + f(x[o + i] * x[o + i]));
      mean = f(mean / h);
    } else {
      for (let i = 0; i < h; i++) mean += f(f(x[o + i] * x[o + i]) / h);
      mean = f(mean);
    }
    const variance = f(mean + eps32);
    const inv = backend === "wasm" ? f(1 / f(Math.sqrt(variance))) : f(1 / Math.sqrt(variance));
    for (let i = 0; i < h; i++) out[o + i] = w[i] * f(x[o + i] * inv); // the store rounds the last product
  }
}
