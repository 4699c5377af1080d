// cpu build: one kernel call for the whole block on the cpu backend, the same bits as the unfused modules: the
// norm rounds as the backend's own kernels do (helpers.rmsNormRows), and the matmuls and the sigmoid are the
// backend's own kernel functions (float32 weights [in, out] to BatchMatMul; packed bf16 weights, stored
// [out, in/2] and given as attributes, to src/backend' cpu bf16 matmul), called directly, skipping the engine's
// per-op dispatch.
import type { TensorInfo } from "@tensorflow/tfjs-core";
import type { KernelEnv, KernelLayerClass } from "../../../src/hub/types.js";
import { KERNEL_NAME, makeLayers, siluMulInPlace } from "./kernel.js";

export function createLayers(env: KernelEnv): Record<string, KernelLayerClass> {
  const { tf, helpers } = env;
  if (!tf.getKernel(KERNEL_NAME, "cpu")) {
    const matMul = tf.getKernel("BatchMatMul", "cpu")!.kernelFunc;
    const sigmoid = tf.getKernel("Sigmoid", "cpu")!.kernelFunc;
    tf.registerKernel({
      kernelName: KERNEL_NAME,
      backendName: "cpu",
      kernelFunc: ({ inputs, backend, attrs }) => {
        const b = backend as any;
        const packed = (attrs as { gate?: unknown }).gate !== undefined; // stored bf16, not float32 tensors
        const { x, normWeight, gate, up, down } = { ...inputs, ...(packed ? attrs : {}) } as Record<string, TensorInfo>;
        const vals = (t: TensorInfo) => b.data.get(t.dataId).values as Float32Array;
        const h = x.shape[x.shape.length - 1];
        const eps = (attrs as { eps: number }).eps;
        const xs = vals(x);
        const rows = xs.length / h;
        const normed = new Float32Array(xs.length);
        helpers.rmsNormRows(xs, vals(normWeight), normed, rows, h, eps, "cpu");
        // looked up per call: src/backend registers it when the model code loads, possibly after this build
        const bf16 = () => tf.getKernel(helpers.BF16_MATMUL, "cpu")!.kernelFunc;
        const mm = (a: TensorInfo, w: TensorInfo): TensorInfo =>
          (packed
            ? bf16()({ inputs: { x: a }, backend, attrs: { w } as never })
            : matMul({ inputs: { a, b: w }, backend, attrs: { transposeA: false, transposeB: false } })) as TensorInfo;
        const n = b.makeTensorInfo([rows, h], "float32", normed) as TensorInfo;
        const g = mm(n, gate);
        const u = mm(n, up);
        const sig = sigmoid({ inputs: { x: g }, backend, attrs: {} }) as TensorInfo;
        siluMulInPlace(vals(g), vals(sig), vals(u));
        const y = mm(g, down);
        for (const t of [n, g, u, sig]) b.disposeData(t.dataId);
        return { dataId: y.dataId, shape: [...x.shape], dtype: "float32" };
      },
    });
  }
  return makeLayers(env);
}
export { createLayouts } from "./layout.js";
