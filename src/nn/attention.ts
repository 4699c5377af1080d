// Scaled dot-product attention with grouped-query heads, shared by every family. The wasm fast path
// (one 2-D problem per batch row and KV head for long prompts) lives here, not in the model files.
import { tf } from "../tensor/tf.js";
import { blockedAttention, blockedAttentionApplies } from "../backend/prefill-attention-kernel.js";

/** `[b, s, heads, d]` → `[b, heads, s, d]`. At s = 1 both have the same memory order: a reshape, no copy (perf). */
export function headsFirst(t: tf.Tensor): tf.Tensor {
  const [b, s, n, d] = t.shape;
  return s === 1 ? tf.reshape(t, [b, n, s, d]) : tf.transpose(t, [0, 2, 1, 3]);
}

/**
 * softmax(q kᵀ · scale + mask) v with grouped-query attention: the query heads sharing a KV head are
 * folded into the sequence axis (`[b, kv, group·s, d]`) instead of repeating K and V — same result as
 * transformers' repeat_kv, without the copies. `mask` is additive, `[b, 1, s, T]`.
 */
export function scaledDotProductAttention(
  q: tf.Tensor4D,
  k: tf.Tensor4D,
  v: tf.Tensor4D,
  scale: number,
  mask?: tf.Tensor,
): tf.Tensor4D {
  const [b, h, s, d] = q.shape;
  const kv = k.shape[1];
  const t = k.shape[2];
  const group = h / kv;
  // prefill on wasm: query × key blocks with an online softmax, no [heads, s, t] scores
  if (blockedAttentionApplies(q, k, mask)) return blockedAttention(q, k, v, scale, mask);
  if (b * kv > 1 && group * s * t * d >= LOOP_THRESHOLD) return attentionPerGroup(q, k, v, scale, mask);
  let scores = tf.mul(tf.matMul(tf.reshape(q, [b, kv, group * s, d]), k, false, true), scale);
  if (mask) scores = tf.add(tf.reshape(scores, [b, kv, group, s, t]), tf.reshape(mask, [b, 1, 1, s, t]));
  const probs = tf.reshape(tf.softmax(scores, -1), [b, kv, group * s, t]);
  return tf.reshape(tf.matMul(probs, v), [b, h, s, d]);
}

// tfjs-wasm runs batched (3-D+) matmuls on a slow generic path, while 2-D untransposed ones go to XNNPACK
// (~5× faster at prefill sizes), and its slices copy slowly (~0.3 GB/s). So large attentions run one 2-D
// problem per (batch, kv head), slicing only the small q / k / v, never the big score matrix. Small ones
// (decode steps) stay batched: one dispatch beats many.
export const LOOP_THRESHOLD = 1 << 18;

function attentionPerGroup(
  q: tf.Tensor4D,
  k: tf.Tensor4D,
  v: tf.Tensor4D,
  scale: number,
  mask?: tf.Tensor,
): tf.Tensor4D {
  const [b, h, s, d] = q.shape;
  const [, kv, t] = k.shape;
  const group = h / kv;
  const qs = tf.split(tf.reshape(q, [b * kv * group * s, d]), b * kv, 0);
  const kTs = tf.split(tf.reshape(tf.transpose(k, [0, 1, 3, 2]), [b * kv * d, t]), b * kv, 0);
  const vs = tf.split(tf.reshape(v, [b * kv * t, d]), b * kv, 0);
  const masks = mask ? tf.split(tf.reshape(mask, [b, s, t]), b, 0) : [];
  const outs = qs.map((qi, i) => {
    let scores = tf.mul(tf.matMul(qi, kTs[i]), scale);
    if (mask) scores = tf.add(tf.reshape(scores, [group, s, t]), masks[Math.floor(i / kv)]);
    return tf.matMul(tf.reshape(tf.softmax(scores, -1), [group * s, t]), vs[i]);
  });
  return tf.reshape(tf.concat(outs, 0), [b, h, s, d]);
}
