// wasm build: the kernel works on the tfjs-wasm heap in place. Rows whose length is a multiple of 4 go
// through a small wasm module (rmsnorm.wat) that imports the backend's own memory; other shapes, or a
// runtime without wasm SIMD, use a JS loop over heap views (taken after the output is allocated, since
// heap growth detaches older views). Both round as the unfused ops on this backend do: the same bits.
import type { TensorInfo } from "@tensorflow/tfjs-core";
import type { KernelEnv, KernelLayerClass } from "../../../src/hub/types.js";
import { KERNEL_NAME, makeLayers } from "./kernel.js";
import { WASM_BASE64 } from "./rmsnorm.wasm.js";

type SimdRMSNorm = { rmsnorm(x: number, w: number, out: number, rows: number, h: number, eps: number): void };

/** The SIMD module on a backend's heap (null without wasm SIMD); set by createLayers from the env's helpers. */
let simdFor: ((backend: object) => SimdRMSNorm | null) | undefined;

/** True when the SIMD module runs on this backend (tests use it to know which path they cover). */
export function simdAvailable(backend: object): boolean {
  return simdFor?.(backend) != null;
}

export function createLayers(env: KernelEnv): Record<string, KernelLayerClass> {
  const { tf, helpers } = env;
  simdFor ??= helpers.simdModule<SimdRMSNorm>(WASM_BASE64);
  if (!tf.getKernel(KERNEL_NAME, "wasm")) {
    tf.registerKernel({
      kernelName: KERNEL_NAME,
      backendName: "wasm",
      kernelFunc: ({ inputs, backend, attrs }) => {
        const b = backend as any;
        const { x, weight } = inputs as Record<string, TensorInfo>;
        const eps = (attrs as { eps: number }).eps;
        const h = x.shape[x.shape.length - 1];
        const rows = tf.util.sizeFromShape(x.shape) / h;
        const out = b.makeOutput(x.shape, "float32");
        const fns = h % 4 === 0 ? simdFor!(b) : null;
        if (fns) {
          const at = (t: TensorInfo) => helpers.heapOffset(b, t);
          fns.rmsnorm(at(x), at(weight), at(out), rows, h, eps);
        } else {
          helpers.rmsNormRows(
            b.typedArrayFromHeap(x),
            b.typedArrayFromHeap(weight),
            b.typedArrayFromHeap(out),
            rows,
            h,
            eps,
            "wasm",
          );
        }
        return out;
      },
    });
  }
  return makeLayers(env);
}
