// wasm build: one kernel call for the whole block, the same bits as the unfused modules. The norm and the
// gate·sigmoid·up products run in a small wasm module (normmlp.wat) that imports the backend's memory and works
// on the tensors in place, rounding as the backend's own kernels do (a JS loop over heap views serves sizes that
// are not multiples of 4, or runtimes without wasm SIMD); the sigmoid is the backend's own Sigmoid kernel (its
// approximation cannot be matched otherwise). The three matmuls call the wasm backend's own BatchMatMul kernel
// function directly (XNNPACK, 2-D, untransposed, against the persistent weight tensors), skipping the engine's
// per-op dispatch; packed bf16 weights (stored [out, in/2], given as attributes) go to src/backend' SIMD bf16
// matmul kernel function instead, which reads them in place. Intermediates live only in the backend and are freed before returning.
// Heap views are taken after the allocations they read, since heap growth detaches older views.
import type { TensorInfo } from "@tensorflow/tfjs-core";
import type { KernelEnv, KernelLayerClass } from "../../../src/hub/types.js";
import { KERNEL_NAME, makeLayers, siluMulInPlace } from "./kernel.js";
import { WASM_BASE64 } from "./normmlp.wasm.js";

interface Simd {
  rmsnorm(x: number, w: number, out: number, rows: number, h: number, eps: number): void;
  mul_mul(a: number, b: number, c: number, out: number, n: number): void;
}

/** The SIMD module on a backend's heap (null without wasm SIMD); set by createLayers from the env's helpers. */
let simdFor: ((backend: object) => Simd | null) | undefined;

/** True when the SIMD module runs on this backend (tests use it to know which path they cover). */
export function simdAvailable(backend: object): boolean {
  return simdFor?.(backend) != null;
}

export function createLayers(env: KernelEnv): Record<string, KernelLayerClass> {
  const { tf, helpers } = env;
  simdFor ??= helpers.simdModule<Simd>(WASM_BASE64);
  if (!tf.getKernel(KERNEL_NAME, "wasm")) {
    const matMul = tf.getKernel("BatchMatMul", "wasm")!.kernelFunc;
    const sigmoid = tf.getKernel("Sigmoid", "wasm")!.kernelFunc;
    // looked up per call: src/backend registers it when the model code loads, possibly after this build
    const bf16MatMul = () => tf.getKernel(helpers.BF16_MATMUL, "wasm")!.kernelFunc;
    tf.registerKernel({
      kernelName: KERNEL_NAME,
      backendName: "wasm",
      kernelFunc: ({ inputs, backend, attrs }) => {
        const b = backend as any;
        const eps = (attrs as { eps: number }).eps;
        const packed = (attrs as { gate?: unknown }).gate !== undefined; // stored bf16 [out, in/2], not float32 [in, out]
        const { x, normWeight, gate, up, down } = { ...inputs, ...(packed ? attrs : {}) } as Record<string, TensorInfo>;
        const h = x.shape[x.shape.length - 1];
        const inter = packed ? gate.shape[0] : gate.shape[1];
        const rows = tf.util.sizeFromShape(x.shape) / h;
        const at = (t: TensorInfo) => helpers.heapOffset(b, t);
        const mm = packed
          ? (a: TensorInfo, w: unknown) =>
              bf16MatMul()({ inputs: { x: a }, backend, attrs: { w } as never }) as TensorInfo
          : (a: TensorInfo, w: TensorInfo) =>
              matMul({ inputs: { a, b: w }, backend, attrs: { transposeA: false, transposeB: false } }) as TensorInfo;
        const fns = simdFor!(b);

        const normed = b.makeOutput([rows, h], "float32");
        if (fns && h % 4 === 0) fns.rmsnorm(at(x), at(normWeight), at(normed), rows, h, eps);
        else
          helpers.rmsNormRows(
            b.typedArrayFromHeap(x),
            b.typedArrayFromHeap(normWeight),
            b.typedArrayFromHeap(normed),
            rows,
            h,
            eps,
            "wasm",
          );
        const g = mm(normed, gate);
        const u = mm(normed, up);
        const sig = sigmoid({ inputs: { x: g }, backend, attrs: {} }) as TensorInfo;
        if (fns && inter % 4 === 0) fns.mul_mul(at(g), at(sig), at(u), at(g), rows * inter);
        else siluMulInPlace(b.typedArrayFromHeap(g), b.typedArrayFromHeap(sig), b.typedArrayFromHeap(u));
        const y = mm(g, down);
        for (const t of [normed, g, u, sig]) b.disposeData(t.dataId);
        return { dataId: y.dataId, shape: [...x.shape], dtype: "float32" };
      },
    });
  }
  return makeLayers(env);
}
export { createLayouts } from "./layout.js";
