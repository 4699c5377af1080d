// wasm build: works on the wasm heap (views taken after the output is allocated).
import type { TensorInfo } from "@tensorflow/tfjs-core";
import type { KernelEnv, KernelLayerClass } from "../../../src/kernels/types.js";
import { KERNEL_NAME, makeLayers, siluAndMulRows } from "./kernel.js";

export function createLayers(env: KernelEnv): Record<string, KernelLayerClass> {
  const { tf } = env;
  if (!tf.getKernel(KERNEL_NAME, "wasm")) {
    tf.registerKernel({
      kernelName: KERNEL_NAME,
      backendName: "wasm",
      kernelFunc: ({ inputs, backend }) => {
        const b = backend as any;
        const { x } = inputs as Record<string, TensorInfo>;
        const d = x.shape[x.shape.length - 1] / 2;
        const out = b.makeOutput([...x.shape.slice(0, -1), d], "float32");
        const xs = b.typedArrayFromHeap(x);
        siluAndMulRows(xs, b.typedArrayFromHeap(out), xs.length / (2 * d), d);
        return out;
      },
    });
  }
  return makeLayers(env);
}
