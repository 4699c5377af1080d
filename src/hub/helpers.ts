// What every kernel build gets through its KernelEnv besides tfjs: fusekit's shared kernel helpers, so the
// bundled hub repos (and third-party ones) do not each carry their own copy.
import { tf } from "../tensor/tf.js";
import { heapModule, heapOffset, type WasmBackend } from "../kernels/heap.js";
import { BF16_MATMUL } from "../kernels/kernels.js";
import type { KernelEnv, KernelHelpers } from "./types.js";

/** out[r] = w · x[r] / sqrt(mean(x[r]²) + eps) for `rows` rows of length `h` (sums in float64). */
function rmsNormRows(x: Float32Array, w: Float32Array, out: Float32Array, rows: number, h: number, eps: number): void {
  for (let r = 0, o = 0; r < rows; r++, o += h) {
    let ss = 0;
    for (let i = 0; i < h; i++) ss += x[o + i] * x[o + i];
    const inv = 1 / Math.sqrt(ss / h + eps);
    for (let i = 0; i < h; i++) out[o + i] = w[i] * (x[o + i] * inv);
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
