// What every kernel build gets through its KernelEnv besides tfjs: fusekit's shared kernel helpers, so the
// bundled hub repos (and third-party ones) do not each carry their own copy.
import { tf } from "../tensor/tf.js";
import { heapModule, heapOffset, type WasmBackend } from "../backend/heap.js";
import { BF16_MATMUL } from "../backend/kernels.js";
import { rmsNormRows } from "../tensor/host.js";
import type { KernelEnv, KernelHelpers } from "./types.js";

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
