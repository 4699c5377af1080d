// wasm build: works on the tfjs-wasm heap in place. When d is a multiple of 4, each row goes through a
// small SIMD module (silu.wat) that imports the backend's memory; otherwise a JS loop over heap views
// (taken after the output is allocated, since heap growth detaches older views).
import type { TensorInfo } from "@tensorflow/tfjs-core";
import type { KernelEnv, KernelLayerClass } from "../../../src/hub/types.js";
import { KERNEL_NAME, makeLayers, siluAndMulRows } from "./kernel.js";
import { WASM_BASE64 } from "./silu.wasm.js";

// Node's global WebAssembly, typed locally (this project compiles without the DOM lib).
const WA = (globalThis as any).WebAssembly;
type SiluMul = (g: number, u: number, out: number, n: number) => void;

/** One SIMD instance per backend (bound to its memory); null when wasm SIMD is unavailable. */
const simd = new WeakMap<object, SiluMul | null>();
function simdFor(b: any): SiluMul | null {
  if (!simd.has(b)) {
    let fn: SiluMul | null = null;
    try {
      const module = new WA.Module(Buffer.from(WASM_BASE64, "base64"));
      fn = new WA.Instance(module, { env: { memory: b.wasm.asm.memory } }).exports.silu_mul as SiluMul;
    } catch {
      fn = null;
    }
    simd.set(b, fn);
  }
  return simd.get(b)!;
}

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
        const rows = x.shape.reduce((a, s) => a * s, 1) / (2 * d);
        const out = b.makeOutput([...x.shape.slice(0, -1), d], "float32");
        const fn = d % 4 === 0 ? simdFor(b) : null;
        if (fn) {
          const xp = b.dataIdMap.get(x.dataId).memoryOffset as number;
          const op = b.dataIdMap.get(out.dataId).memoryOffset as number;
          for (let r = 0; r < rows; r++) fn(xp + r * 8 * d, xp + r * 8 * d + 4 * d, op + r * 4 * d, d);
        } else {
          siluAndMulRows(b.typedArrayFromHeap(x), b.typedArrayFromHeap(out), rows, d);
        }
        return out;
      },
    });
  }
  return makeLayers(env);
}
