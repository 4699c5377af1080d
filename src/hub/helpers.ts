// What every kernel build gets through its KernelEnv besides tfjs: fusekit's shared kernel helpers, so the
// bundled hub repos (and third-party ones) do not each carry their own copy.
import { tf } from "../tensor/tf.js";
import { heapModule, heapOffset, type WasmBackend } from "../backend/heap.js";
import { BF16_MATMUL } from "../backend/kernels.js";
import type { KernelEnv, KernelHelpers } from "./types.js";

/**
 * out[r] = w · (x[r] · 1/sqrt(mean(x[r]²) + eps)) for `rows` rows of length `h`, each step rounded as the
 * backend's own kernels round it (measured against them): tfjs-wasm's Mean sums the float32 squares in float32,
 * in order, then divides, and its Rsqrt works in float32; tfjs-cpu's divides each square by h first, sums the
 * quotients in float64, and its Rsqrt works in float64.
 */
function rmsNormRows(
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

/** heapModule, or null per backend when the module cannot be instantiated there (no wasm SIMD): callers fall back. */
function simdModule<Exports>(base64: string): (backend: object) => Exports | null {
  const instantiate = heapModule<Exports>(base64);
  const failed = new WeakSet<object>();
  return (backend) => {
    if (failed.has(backend)) return null;
    try {
      return instantiate(backend as WasmBackend);
    } catch {
      failed.add(backend);
      return null;
    }
  };
}

export const KERNEL_HELPERS: KernelHelpers = {
  simdModule,
  heapOffset: (backend, t) => heapOffset(backend as WasmBackend, t),
  rmsNormRows,
  BF16_MATMUL,
};

/** The environment a build module's createLayers receives. */
export const kernelEnv = (backend: string): KernelEnv => ({ tf, backend, helpers: KERNEL_HELPERS });
