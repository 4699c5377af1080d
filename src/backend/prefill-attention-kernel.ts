// The blocked prefill attention as a tfjs kernel (wasm): on the kernel pool, one KV head per chunk (with one
// thread, all of them on this one). The same code whatever the thread count (src/backend/prefill-attention.ts),
// so the same bits.
import { tf } from "../tensor/tf.js";
import { type WasmBackend } from "./heap.js";
import { kernelPool } from "./pool.js";
import { registerKernelConfigs } from "./register.js";

export const PREFILL_ATTENTION = "FusekitPrefillAttention"; // {q, k, v, mask?}, {scale} → f32 [b, heads, s, d]

/** From this many query rows on (one query block), attention on wasm runs blocked. */
export const BLOCKED_MIN_QUERIES = 16;

const kernels: tf.KernelConfig[] = [
  {
    kernelName: PREFILL_ATTENTION,
    backendName: "wasm",
    kernelFunc: ({ inputs, backend, attrs }) => {
      const b = backend as unknown as WasmBackend;
      const { q, k, v, mask } = inputs as Record<string, tf.TensorInfo | undefined> as {
        q: tf.TensorInfo;
        k: tf.TensorInfo;
        v: tf.TensorInfo;
        mask?: tf.TensorInfo;
      };
      const scale = attrs!.scale as number;
      const out = b.makeOutput([...q.shape], "float32");
      kernelPool().prefillAttention(b, { q, k, v, mask, out }, scale); // every core (one thread: here alone)
      return out;
    },
  },
];

/** The blocked attention kernel (wasm only; registered by src/backend/registry.ts). */
export const prefillAttentionKernels: tf.KernelConfig[] = kernels;

/**
 * Whether softmax(q kᵀ · scale + mask) v for q [b, heads, s, d] runs blocked here: on wasm, from
 * BLOCKED_MIN_QUERIES query rows, d a multiple of 8, the mask (if any) [b, 1, s, T].
 */
export function blockedAttentionApplies(q: tf.Tensor4D, k: tf.Tensor4D, mask?: tf.Tensor): boolean {
  const [b, , s, d] = q.shape;
  const T = k.shape[2];
  if (tf.getBackend() !== "wasm" || s < BLOCKED_MIN_QUERIES || d % 8) return false;
  if (mask && (mask.shape.length !== 4 || mask.shape.join() !== [b, 1, s, T].join())) return false;
  registerKernelConfigs(kernels);
  return true;
}

/** softmax(q kᵀ · scale + mask) v, blocked (see blockedAttentionApplies). */
export function blockedAttention(
  q: tf.Tensor4D,
  k: tf.Tensor4D,
  v: tf.Tensor4D,
  scale: number,
  mask?: tf.Tensor,
): tf.Tensor4D {
  const inputs: tf.NamedTensorMap = { q, k, v };
  if (mask) inputs.mask = mask.dtype === "float32" ? mask : tf.cast(mask, "float32");
  return tf.engine().runKernel(PREFILL_ATTENTION, inputs, { scale }) as tf.Tensor4D;
}
