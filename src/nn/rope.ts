// Rotary position embeddings shared by every family: the inverse frequencies (default, "linear" and
// "llama3" scaling, as transformers' modeling_rope_utils computes them), the cos / sin tables, and
// applying them to queries / keys (with the backend fast paths kept here, out of the model files).
import { tf } from "../tensor/tf.js";
import { as2d } from "./layers.js";

/** cos / sin tables `[batch, seq, headDim]` for the positions of this forward. */
export type PositionEmbeddings = [tf.Tensor3D, tf.Tensor3D];

/** The config fields RoPE reads (transformers' names). */
export interface RopeConfig {
  head_dim: number;
  rope_theta: number;
  rope_scaling: Record<string, unknown> | null;
}

/** The RoPE types this runtime computes; any other is refused when the config is read. */
export const ROPE_TYPES = ["default", "linear", "llama3"] as const;

/** `rope_scaling.rope_type` (or the older `type`), "default" when there is no scaling. */
export function ropeType(scaling: Record<string, unknown> | null): string {
  return String(scaling?.rope_type ?? scaling?.type ?? "default");
}

/** inv_freq[i] = θ^(−2i/d), then scaled as the config's rope type says. Float64 throughout. */
export function ropeInvFreq(config: RopeConfig): Float64Array {
  const d = config.head_dim;
  const invFreq = Float64Array.from({ length: d / 2 }, (_, i) => 1 / config.rope_theta ** ((2 * i) / d));
  const scaling = config.rope_scaling ?? {};
  const type = ropeType(config.rope_scaling);
  if (type === "linear") return invFreq.map((f) => f / Number(scaling.factor));
  if (type === "llama3") return llama3InvFreq(invFreq, scaling);
  return invFreq;
}

/**
 * Llama 3.1's frequency-dependent scaling (transformers' `_compute_llama3_parameters`): wavelengths
 * shorter than original_max / high_freq_factor stay, longer than original_max / low_freq_factor are
 * divided by `factor`, and those between are interpolated smoothly.
 */
function llama3InvFreq(invFreq: Float64Array, scaling: Record<string, unknown>): Float64Array {
  const factor = Number(scaling.factor);
  const low = Number(scaling.low_freq_factor);
  const high = Number(scaling.high_freq_factor);
  const oldContext = Number(scaling.original_max_position_embeddings);
  const lowFreqWavelen = oldContext / low;
  const highFreqWavelen = oldContext / high;
  return invFreq.map((f) => {
    const wavelen = (2 * Math.PI) / f;
    if (wavelen < highFreqWavelen) return f;
    if (wavelen > lowFreqWavelen) return f / factor;
    const smooth = (oldContext / wavelen - low) / (high - low);
    return ((1 - smooth) * f) / factor + smooth * f;
  });
}

/** RoPE tables. Computed on the host in float64 and rounded once — no per-step tensor ops. */
export class RotaryEmbedding {
  readonly invFreq: Float64Array;

  constructor(readonly config: RopeConfig) {
    this.invFreq = ropeInvFreq(config);
  }

  forward(positionIds: number[][]): PositionEmbeddings {
    const b = positionIds.length;
    const s = positionIds[0].length;
    const d = this.config.head_dim;
    const half = d / 2;
    const cos = new Float32Array(b * s * d);
    const sin = new Float32Array(b * s * d);
    for (let bi = 0; bi < b; bi++) {
      for (let t = 0; t < s; t++) {
        const base = (bi * s + t) * d;
        const pos = positionIds[bi][t];
        for (let i = 0; i < half; i++) {
          const angle = pos * this.invFreq[i];
          cos[base + i] = cos[base + i + half] = Math.cos(angle);
          sin[base + i] = sin[base + i + half] = Math.sin(angle);
        }
      }
    }
    return [tf.tensor3d(cos, [b, s, d]), tf.tensor3d(sin, [b, s, d])];
  }
}

/**
 * Rotates half the dims: (x1, x2) → (−x2, x1). Done as one 2-D matmul with a signed permutation matrix
 * (exact: each output is one ±1 · x term plus zeros) instead of split + neg + concat, which on wasm costs
 * three dispatches and two slow slice copies.
 */
export function rotateHalf(x: tf.Tensor): tf.Tensor {
  const d = x.shape[x.rank - 1];
  return as2d(x, (x2d) => tf.matMul(x2d, rotationMatrix(d)));
}

const rotationMatrices = new Map<string, tf.Tensor2D>();
function rotationMatrix(d: number): tf.Tensor2D {
  const key = `${tf.getBackend()}:${d}`;
  let r = rotationMatrices.get(key);
  if (!r || r.isDisposed) {
    const m = new Float32Array(d * d); // out[j] = Σ_i x[i] · m[i, j]
    for (let j = 0; j < d / 2; j++) m[(j + d / 2) * d + j] = -1; // out[j] = −x[j + d/2]
    for (let j = d / 2; j < d; j++) m[(j - d / 2) * d + j] = 1; // out[j] = x[j − d/2]
    r = tf.keep(tf.tensor2d(m, [d, d]));
    rotationMatrices.set(key, r);
  }
  return r;
}

/**
 * q·cos + rotate_half(q)·sin, with cos/sin `[b, s, d]` broadcast over heads of `[b, heads, s, d]`, as composed
 * ops. Models call it as `applyRotaryPosEmb`, its "rotary_pos_emb" function-kernel tag (models/llama/modeling.ts),
 * so the bundled fusekit/rope kernel serves it in one bit-identical dispatch once installed.
 */
export function rotaryPosEmbOps(x: tf.Tensor, cos: tf.Tensor3D, sin: tf.Tensor3D): tf.Tensor {
  const c = tf.expandDims(cos, 1);
  const s = tf.expandDims(sin, 1);
  return tf.add(tf.mul(x, c), tf.mul(rotateHalf(x), s));
}
