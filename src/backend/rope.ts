// Rotary position embedding as one kernel: y = x·cos + rotate_half(x)·sin for x [b, heads, s, d] and
// cos / sin [b, s, d] broadcast over heads. Each element gets exactly the float32 operations the composed
// ops do (one multiply per term, rounded, then the rounded sum; rotate_half only moves and negates), so
// the result is bit-identical to applyRotaryPosEmb's ops — in one dispatch instead of six (plus four
// expandDims). Plain JS over the wasm heap / cpu arrays: a decode step's q is a few thousand values.
import { tf } from "../tensor/tf.js";
import type { CpuBackend, WasmBackend } from "./heap.js";
import { registerKernelConfigs } from "./register.js";

export const ROPE = "FusekitRope";

const f32 = Math.fround;

function rope(
  x: Float32Array,
  cos: Float32Array,
  sin: Float32Array,
  out: Float32Array,
  b: number,
  h: number,
  s: number,
  d: number,
): void {
  const half = d / 2;
  for (let bi = 0; bi < b; bi++) {
    for (let hi = 0; hi < h; hi++) {
      for (let t = 0; t < s; t++) {
        const o = ((bi * h + hi) * s + t) * d;
        const c = (bi * s + t) * d;
        for (let j = 0; j < d; j++) {
          const rot = j < half ? -x[o + j + half] : x[o + j - half];
          out[o + j] = f32(f32(x[o + j] * cos[c + j]) + f32(rot * sin[c + j]));
        }
      }
    }
  }
}

const kernels: tf.KernelConfig[] = [
  {
    kernelName: ROPE,
    backendName: "wasm",
    kernelFunc: ({ inputs, backend }) => {
      const bk = backend as unknown as WasmBackend;
      const { x, cos, sin } = inputs as Record<string, tf.TensorInfo>;
      const [b, h, s, d] = x.shape;
      const out = bk.makeOutput([b, h, s, d], "float32");
      const view = (t: tf.TensorInfo) => bk.typedArrayFromHeap(t); // views taken after the allocation
      rope(view(x), view(cos), view(sin), view(out), b, h, s, d);
      return out;
    },
  },
  {
    kernelName: ROPE,
    backendName: "cpu",
    kernelFunc: ({ inputs, backend }) => {
      const bk = backend as unknown as CpuBackend;
      const { x, cos, sin } = inputs as Record<string, tf.TensorInfo>;
      const [b, h, s, d] = x.shape;
      const vals = (t: tf.TensorInfo) => bk.data.get(t.dataId).values as Float32Array;
      const out = new Float32Array(b * h * s * d);
      rope(vals(x), vals(cos), vals(sin), out, b, h, s, d);
      return bk.makeTensorInfo([b, h, s, d], "float32", out);
    },
  },
];
/** The rope kernel, both backends (registered by src/backend/registry.ts). */
export const ropeKernels = kernels;

/** True when the rope kernel exists for the active backend (wasm, cpu). */
export function ropeKernelAvailable(): boolean {
  registerKernelConfigs(ropeKernels);
  return tf.getKernel(ROPE, tf.getBackend()) !== undefined;
}

/** x·cos + rotate_half(x)·sin, x [b, heads, s, d] float32, cos / sin [b, s, d]. */
export function applyRope(x: tf.Tensor, cos: tf.Tensor, sin: tf.Tensor): tf.Tensor {
  return tf.engine().runKernel(ROPE, { x, cos, sin }) as tf.Tensor;
}
