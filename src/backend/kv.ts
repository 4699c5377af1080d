// KV-cache kernels over preallocated buffers [b, kvHeads, capacity, d] (see src/cache/dynamic-cache.ts):
// an in-place write of new rows, a read of the valid prefix, and decode-step attention that reads the
// buffers where they are. wasm works on the tfjs heap (attention's dot products / weighted sums in a small
// SIMD module, attention.wat); cpu on the backend's typed arrays. Other backends use none of this.
import { tf } from "../tensor/tf.js";
import { ATTENTION_WASM_BASE64 } from "./attention-wasm.js";
import { heapIndexF32, heapModule, heapOffset, type CpuBackend, type WasmBackend } from "./heap.js";
import { registerKernelConfigs } from "./register.js";
import { softmaxInto } from "../tensor/host.js";

export const KV_READ = "FusekitKVRead"; // {buf: [b, kv, cap, d]}, {length} → [b, kv, length, d]
export const DECODE_ATTENTION = "FusekitDecodeAttention"; // {q: [b, h, 1, d], k, v: buffers}, {length, scale} → [b, 1, h·d]

interface AttentionExports {
  dots(q: number, k: number, out: number, T: number, d: number, scale: number): void;
  wsum(p: number, v: number, out: number, T: number, d: number): void;
}

const attentionExports = heapModule<AttentionExports>(ATTENTION_WASM_BASE64);

/** The backend's float32 storage of a tensor and its element offset: the heap on wasm, the values array on cpu. */
function storage(t: tf.TensorInfo): [Float32Array, number] {
  const name = tf.getBackend();
  if (name === "wasm") {
    const b = tf.backend() as unknown as WasmBackend;
    return [b.wasm.HEAPF32, heapIndexF32(b, t)]; // HEAPF32 is re-read after any growth
  }
  const b = tf.backend() as unknown as CpuBackend;
  return [b.data.get(t.dataId).values as Float32Array, 0];
}

/** True when the active backend can keep a KV cache in place (wasm and cpu). */
export function kvInPlaceAvailable(): boolean {
  registerKernelConfigs(kvKernels);
  const name = tf.getBackend();
  return name === "wasm" || name === "cpu";
}

/**
 * Copies rows [0, count) of every head of `src` ([b, kv, srcCap, d]) into rows [offset, offset + count) of
 * `dst` ([b, kv, dstCap, d]), in place. `dst` must be a tensor no one else holds (the cache's own buffer):
 * tfjs tensors are otherwise immutable. Exact (a copy).
 */
export function copyRowsInPlace(dst: tf.Tensor4D, src: tf.Tensor4D, offset: number, count: number): void {
  const [b, kv, dstCap, d] = dst.shape;
  const srcCap = src.shape[2];
  const [srcArr, s0] = storage(src);
  const [dstArr, d0] = storage(dst);
  for (let h = 0; h < b * kv; h++) {
    const from = s0 + h * srcCap * d;
    dstArr.set(srcArr.subarray(from, from + count * d), d0 + (h * dstCap + offset) * d);
  }
}

/** The decode-attention kernel's inputs and sizes, as both backends read them. */
function attentionArgs(inputs: tf.NamedTensorInfoMap, attrs: tf.NamedAttrMap) {
  const { q, k, v } = inputs as Record<string, tf.TensorInfo>;
  const [bs, heads, , d] = q.shape;
  const [, kv, cap] = k.shape;
  // T: cached positions to attend to; group: query heads per KV head (repeat_kv)
  return { q, k, v, bs, heads, d, kv, cap, T: attrs.length as number, scale: attrs.scale as number, group: heads / kv };
}

const wasmKernels: tf.KernelConfig[] = [
  {
    kernelName: KV_READ,
    backendName: "wasm",
    kernelFunc: ({ inputs, backend, attrs }) => {
      const b = backend as unknown as WasmBackend;
      const { buf } = inputs as { buf: tf.TensorInfo };
      const [bs, kv, cap, d] = buf.shape;
      const length = attrs!.length as number;
      const out = b.makeOutput([bs, kv, length, d], "float32");
      const heap = b.wasm.HEAPF32; // after the allocation
      const src = heapIndexF32(b, buf);
      const dst = heapIndexF32(b, out);
      for (let h = 0; h < bs * kv; h++)
        heap.copyWithin(dst + h * length * d, src + h * cap * d, src + (h * cap + length) * d);
      return out;
    },
  },
  {
    kernelName: DECODE_ATTENTION,
    backendName: "wasm",
    kernelFunc: ({ inputs, backend, attrs }) => {
      const b = backend as unknown as WasmBackend;
      const { q, k, v, bs, heads, d, kv, cap, T, scale, group } = attentionArgs(inputs, attrs!);
      const out = b.makeOutput([bs, 1, heads * d], "float32");
      const scores = b.makeOutput([T], "float32");
      const fns = attentionExports(b);
      const [qp, kp, vp, op, sp] = [q, k, v, out, scores].map((t) => heapOffset(b, t));
      for (let bi = 0; bi < bs; bi++) {
        for (let h = 0; h < heads; h++) {
          const head = bi * kv + Math.floor(h / group); // the KV head this query head shares (repeat_kv)
          fns.dots(qp + (bi * heads + h) * d * 4, kp + head * cap * d * 4, sp, T, d, scale);
          const weights = new Float32Array(b.wasm.asm.memory.buffer, sp, T); // a fresh view: the heap may have grown
          softmaxInto(weights, weights);
          fns.wsum(sp, vp + head * cap * d * 4, op + (bi * heads + h) * d * 4, T, d);
        }
      }
      b.disposeData(scores.dataId);
      return out;
    },
  },
];

const cpuKernels: tf.KernelConfig[] = [
  {
    kernelName: KV_READ,
    backendName: "cpu",
    kernelFunc: ({ inputs, backend, attrs }) => {
      const b = backend as unknown as CpuBackend;
      const { buf } = inputs as { buf: tf.TensorInfo };
      const [bs, kv, cap, d] = buf.shape;
      const length = attrs!.length as number;
      const src = b.data.get(buf.dataId).values as Float32Array;
      const out = new Float32Array(bs * kv * length * d);
      for (let h = 0; h < bs * kv; h++) out.set(src.subarray(h * cap * d, (h * cap + length) * d), h * length * d);
      return b.makeTensorInfo([bs, kv, length, d], "float32", out);
    },
  },
  {
    kernelName: DECODE_ATTENTION,
    backendName: "cpu",
    kernelFunc: ({ inputs, backend, attrs }) => {
      const b = backend as unknown as CpuBackend;
      const { q, k, v, bs, heads, d, kv, cap, T, scale, group } = attentionArgs(inputs, attrs!);
      const vals = (t: tf.TensorInfo) => b.data.get(t.dataId).values as Float32Array;
      const [qv, kvals, vvals] = [vals(q), vals(k), vals(v)];
      const out = new Float32Array(bs * heads * d);
      const s = new Float32Array(T);
      for (let bi = 0; bi < bs; bi++) {
        for (let h = 0; h < heads; h++) {
          const head = bi * kv + Math.floor(h / group);
          const qo = (bi * heads + h) * d;
          for (let t = 0; t < T; t++) {
            let dot = 0;
            for (let i = 0, ko = (head * cap + t) * d; i < d; i++) dot += qv[qo + i] * kvals[ko + i];
            s[t] = dot * scale;
          }
          softmaxInto(s, s);
          for (let i = 0; i < d; i++) {
            let acc = 0;
            for (let t = 0; t < T; t++) acc += s[t] * vvals[(head * cap + t) * d + i];
            out[qo + i] = acc;
          }
        }
      }
      return b.makeTensorInfo([bs, 1, heads * d], "float32", out);
    },
  },
];

/** The KV-cache kernels, both backends (registered by src/backend/registry.ts). */
export const kvKernels: tf.KernelConfig[] = [...wasmKernels, ...cpuKernels];

/** The first `length` rows of every head of a cache buffer, as a new [b, kv, length, d] tensor. */
export function readRows(buf: tf.Tensor4D, length: number): tf.Tensor4D {
  return tf.engine().runKernel(KV_READ, { buf }, { length }) as tf.Tensor4D;
}

/**
 * softmax(q kᵀ · scale) v for one query row per head against the first `length` rows of the cache buffers,
 * returned as [b, 1, heads · d] (the layout o_proj takes). Needs d % 4 == 0 on wasm.
 */
export function decodeAttention(
  q: tf.Tensor4D,
  k: tf.Tensor4D,
  v: tf.Tensor4D,
  length: number,
  scale: number,
): tf.Tensor3D {
  return tf.engine().runKernel(DECODE_ATTENTION, { q, k, v }, { length, scale }) as tf.Tensor3D;
}
