// cpu build: the kernel works on the cpu backend's typed arrays.
import type { KernelEnv, KernelLayerClass } from "../../../src/hub/types.js";
import { KERNEL_NAME, makeLayers } from "./kernel.js";

export function createLayers(env: KernelEnv): Record<string, KernelLayerClass> {
  const { tf, helpers } = env;
  if (!tf.getKernel(KERNEL_NAME, "cpu")) {
    tf.registerKernel({
      kernelName: KERNEL_NAME,
      backendName: "cpu",
      kernelFunc: ({ inputs, backend, attrs }) => {
        const b = backend as any;
        const { x, weight } = inputs as Record<string, import("@tensorflow/tfjs-core").TensorInfo>;
        const h = x.shape[x.shape.length - 1];
        const xs = b.data.get(x.dataId).values as Float32Array;
        const out = new Float32Array(xs.length);
        helpers.rmsNormRows(
          xs,
          b.data.get(weight.dataId).values,
          out,
          xs.length / h,
          h,
          (attrs as { eps: number }).eps,
          "cpu",
        );
        return b.makeTensorInfo(x.shape, "float32", out);
      },
    });
  }
  return makeLayers(env);
}
