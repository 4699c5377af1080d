// wasm build: the kernel works on the tfjs-wasm heap in place. Rows whose length is a multiple of 4 go
// through a small SIMD module (rmsnorm.wat) that imports the backend's own memory; other shapes, or a
// runtime without wasm SIMD, use a JS loop over heap views (taken after the output is allocated, since
// heap growth detaches older views).
import type { TensorInfo } from "@tensorflow/tfjs-core";
import type { KernelEnv, KernelLayerClass } from "../../../src/hub/types.js";
import { KERNEL_NAME, makeLayers, rmsNormRows } from "./kernel.js";
import { WASM_BASE64 } from "./rmsnorm.wasm.js";

// Node's global WebAssembly, typed locally (this project compiles without the DOM lib).
const WA = (globalThis as any).WebAssembly;
type SimdRMSNorm = (x: number, w: number, out: number, rows: number, h: number, eps: number) => void;

/** One SIMD instance per backend (it is bound to that backend's memory); null when SIMD is unavailable. */
const simd = new WeakMap<object, SimdRMSNorm | null>();
function simdFor(b: any): SimdRMSNorm | null {
  if (!simd.has(b)) {
    let fn: SimdRMSNorm | null = null;
    try {
      const module = new WA.Module(Buffer.from(WASM_BASE64, "base64"));
      fn = new WA.Instance(module, { env: { memory: b.wasm.asm.memory } }).exports.rmsnorm as SimdRMSNorm;
    } catch {
      fn = null; // no wasm SIMD here: the JS loop below serves
    }
    simd.set(b, fn);
  }
  return simd.get(b)!;
}

/** True when the SIMD module runs on this backend (tests use it to know which path they cover). */
export function simdAvailable(backend: object): boolean {
  return simdFor(backend) !== null;
}

export function createLayers(env: KernelEnv): Record<string, KernelLayerClass> {
  const { tf } = env;
  if (!tf.getKernel(KERNEL_NAME, "wasm")) {
    tf.registerKernel({
      kernelName: KERNEL_NAME,
      backendName: "wasm",
      kernelFunc: ({ inputs, backend, attrs }) => {
        const b = backend as any;
        const { x, weight } = inputs as Record<string, TensorInfo>;
        const eps = (attrs as { eps: number }).eps;
        const h = x.shape[x.shape.length - 1];
        const rows = x.shape.reduce((a, d) => a * d, 1) / h;
        const out = b.makeOutput(x.shape, "float32");
        const fn = h % 4 === 0 ? simdFor(b) : null;
        if (fn) {
          const at = (t: TensorInfo) => b.dataIdMap.get(t.dataId).memoryOffset as number;
          fn(at(x), at(weight), at(out), rows, h, eps);
        } else {
          rmsNormRows(b.typedArrayFromHeap(x), b.typedArrayFromHeap(weight), b.typedArrayFromHeap(out), rows, h, eps);
        }
        return out;
      },
    });
  }
  return makeLayers(env);
}
