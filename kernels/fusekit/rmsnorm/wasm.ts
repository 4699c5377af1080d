// wasm build: the kernel reads and writes the wasm heap directly (views are taken after every allocation,
// because heap growth detaches older views).
import type { KernelEnv, KernelLayerClass } from "../../../src/kernels/types.js";
import { KERNEL_NAME, makeLayers, rmsNormRows } from "./kernel.js";

export function createLayers(env: KernelEnv): Record<string, KernelLayerClass> {
  const { tf } = env;
  if (!tf.getKernel(KERNEL_NAME, "wasm")) {
    tf.registerKernel({
      kernelName: KERNEL_NAME,
      backendName: "wasm",
      kernelFunc: ({ inputs, backend, attrs }) => {
        const b = backend as any;
        const { x, weight } = inputs as Record<string, import("@tensorflow/tfjs-core").TensorInfo>;
        const h = x.shape[x.shape.length - 1];
        const out = b.makeOutput(x.shape, "float32");
        const xs = b.typedArrayFromHeap(x);
        rmsNormRows(xs, b.typedArrayFromHeap(weight), b.typedArrayFromHeap(out), xs.length / h, h, (attrs as { eps: number }).eps);
        return out;
      },
    });
  }
  return makeLayers(env);
}
