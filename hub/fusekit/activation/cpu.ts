// cpu build: works on the cpu backend's typed arrays; the sigmoid is the backend's own (the same bits as unfused).
import type { TensorInfo } from "@tensorflow/tfjs-core";
import type { KernelEnv, KernelLayerClass } from "../../../src/hub/types.js";
import { KERNEL_NAME, gateSigmoid, makeLayers, siluAndMulRows } from "./kernel.js";

export function createLayers(env: KernelEnv): Record<string, KernelLayerClass> {
  const { tf } = env;
  if (!tf.getKernel(KERNEL_NAME, "cpu")) {
    tf.registerKernel({
      kernelName: KERNEL_NAME,
      backendName: "cpu",
      kernelFunc: ({ inputs, backend }) => {
        const b = backend as any;
        const { x } = inputs as Record<string, TensorInfo>;
        const d = x.shape[x.shape.length - 1] / 2;
        const xs = b.data.get(x.dataId).values as Float32Array;
        const out = new Float32Array(xs.length / 2);
        const sig = gateSigmoid(tf, backend, x, d);
        siluAndMulRows(xs, b.data.get(sig.dataId).values as Float32Array, out, xs.length / (2 * d), d);
        b.disposeData(sig.dataId);
        return b.makeTensorInfo([...x.shape.slice(0, -1), d], "float32", out);
      },
    });
  }
  return makeLayers(env);
}
