// wasm build: one kernel call for the whole block. The norm and silu·mul run on the wasm heap; the three
// matmuls call the wasm backend's own BatchMatMul kernel function directly (XNNPACK, 2-D, untransposed,
// against the persistent weight tensors), skipping the engine's per-op dispatch. Intermediates live only
// in the backend and are freed before returning. Heap views are taken after the allocations they read,
// since heap growth detaches older views.
import type { TensorInfo } from "@tensorflow/tfjs-core";
import type { KernelEnv, KernelLayerClass } from "../../../src/kernels/types.js";
import { KERNEL_NAME, makeLayers, rmsNormRows, siluMulInPlace } from "./kernel.js";

/** Up to this many gate elements, silu·mul runs as a JS loop on the heap; above, as backend kernels. */
const JS_SILU_MAX = 2048;

export function createLayers(env: KernelEnv): Record<string, KernelLayerClass> {
  const { tf } = env;
  if (!tf.getKernel(KERNEL_NAME, "wasm")) {
    const kernel = (name: string) => tf.getKernel(name, "wasm")!.kernelFunc;
    const matMul = kernel("BatchMatMul");
    const sigmoid = kernel("Sigmoid");
    const multiply = kernel("Multiply");
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
        let h2 = g;
        const temps: TensorInfo[] = [normed, g, u];
        if (g.shape[0] * g.shape[1] <= JS_SILU_MAX) {
          siluMulInPlace(b.typedArrayFromHeap(g), b.typedArrayFromHeap(u)); // small (decode): a JS loop beats three calls
        } else {
          // large (prefill): the backend's vectorised sigmoid and multiply, still without engine dispatch
          const call = (f: typeof sigmoid, inputs: Record<string, TensorInfo>) => f({ inputs, backend, attrs: {} }) as TensorInfo;
          const s = call(sigmoid, { x: g });
          const gs = call(multiply, { a: g, b: s });
          h2 = call(multiply, { a: gs, b: u });
          temps.push(s, gs, h2);
        }
        const y = mm(h2, down);
        for (const t of temps) b.disposeData(t.dataId);
        return { dataId: y.dataId, shape: [...x.shape], dtype: "float32" };
      },
    });
  }
  return makeLayers(env);
}
