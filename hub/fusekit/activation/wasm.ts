// wasm build: works on the tfjs-wasm heap in place, the same bits as the unfused ops: the sigmoid is the
// backend's own, then (g · sigmoid) · u per row through a small SIMD module (silu.wat) that imports the
// backend's memory when d is a multiple of 4, else a JS loop over heap views (taken after the output is
// allocated, since heap growth detaches older views).
import type { TensorInfo } from "@tensorflow/tfjs-core";
import type { KernelEnv, KernelLayerClass } from "../../../src/hub/types.js";
import { KERNEL_NAME, gateSigmoid, makeLayers, siluAndMulRows } from "./kernel.js";
import { WASM_BASE64 } from "./silu.wasm.js";

type MulMul = { mul_mul(a: number, b: number, c: number, out: number, n: number): void };

export function createLayers(env: KernelEnv): Record<string, KernelLayerClass> {
  const { tf, helpers } = env;
  const simdFor = helpers.simdModule<MulMul>(WASM_BASE64); // per backend, null without wasm SIMD
  if (!tf.getKernel(KERNEL_NAME, "wasm")) {
    tf.registerKernel({
      kernelName: KERNEL_NAME,
      backendName: "wasm",
      kernelFunc: ({ inputs, backend }) => {
        const b = backend as any;
        const { x } = inputs as Record<string, TensorInfo>;
        const d = x.shape[x.shape.length - 1] / 2;
        const rows = tf.util.sizeFromShape(x.shape) / (2 * d);
        const sig = gateSigmoid(tf, backend, x, d);
        const out = b.makeOutput([...x.shape.slice(0, -1), d], "float32");
        const fns = d % 4 === 0 ? simdFor(b) : null;
        if (fns) {
          const [xp, sp, op] = [x, sig, out].map((t) => helpers.heapOffset(b, t));
          for (let r = 0; r < rows; r++)
            fns.mul_mul(xp + r * 8 * d, sp + r * 4 * d, xp + r * 8 * d + 4 * d, op + r * 4 * d, d);
        } else {
          siluAndMulRows(b.typedArrayFromHeap(x), b.typedArrayFromHeap(sig), b.typedArrayFromHeap(out), rows, d);
        }
        b.disposeData(sig.dataId);
        return out;
      },
    });
  }
  return makeLayers(env);
}
