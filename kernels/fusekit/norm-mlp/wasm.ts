// wasm build: one kernel call for the whole block. The norm and silu·mul run on the wasm heap; the three
// matmuls call the wasm backend's own BatchMatMul kernel function directly (XNNPACK, 2-D, untransposed,
// against the persistent weight tensors), skipping the engine's per-op dispatch. Intermediates live only
// in the backend and are freed before returning. Heap views are taken after the allocations they read,
// since heap growth detaches older views.
import type { TensorInfo } from "@tensorflow/tfjs-core";
import type { KernelEnv, KernelLayerClass } from "../../../src/kernels/types.js";
import { KERNEL_NAME, makeLayers, rmsNormRows, siluMulInPlace } from "./kernel.js";

export function createLayers(env: KernelEnv): Record<string, KernelLayerClass> {
  const { tf } = env;
  if (!tf.getKernel(KERNEL_NAME, "wasm")) {
    const matMul = tf.getKernel("BatchMatMul", "wasm")!.kernelFunc;
    tf.registerKernel({
      kernelName: KERNEL_NAME,
      backendName: "wasm",
      kernelFunc: ({ inputs, backend, attrs }) => {
        const b = backend as any;
        const { x, normWeight, gate, up, down } = inputs as Record<string, TensorInfo>;
        const h = x.shape[x.shape.length - 1];
        const rows = x.shape.reduce((a, d) => a * d, 1) / h;
        const mm = (a: TensorInfo, w: TensorInfo) => matMul({ inputs: { a, b: w }, backend, attrs: { transposeA: false, transposeB: false } }) as TensorInfo;
        const normed = b.makeOutput([rows, h], "float32");
        rmsNormRows(b.typedArrayFromHeap(x), b.typedArrayFromHeap(normWeight), b.typedArrayFromHeap(normed), rows, h, (attrs as { eps: number }).eps);
        const g = mm(normed, gate);
        const u = mm(normed, up);
        siluMulInPlace(b.typedArrayFromHeap(g), b.typedArrayFromHeap(u));
        const y = mm(g, down);
        for (const t of [normed, g, u]) b.disposeData(t.dataId);
        return { dataId: y.dataId, shape: [...x.shape], dtype: "float32" };
      },
    });
  }
  return makeLayers(env);
}
