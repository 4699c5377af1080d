// Qwen3, with transformers' class and attribute names so state-dict keys equal checkpoint keys.
// Math follows transformers' modeling_qwen3.py: RMSNorm in float32, per-head q/k RMSNorm before RoPE,
// grouped-query attention, SwiGLU MLP, optional tied embeddings.
import { tf } from "../../tensor/tf.js";
import { Module, ModuleList, expectShape } from "../../nn/module.js";
import { Embedding, Linear, RMSNorm, as2d, silu } from "../../nn/layers.js";
import { construct } from "../../patching/construct.js";
import { DynamicCache } from "../../generation/cache.js";
import { ShapeError } from "../../errors.js";
import { Qwen3Config } from "./config.js";
import { PreTrainedModel } from "../pretrained.js";
import { useKernelForwardFromHub } from "../../hub/decorator.js";
import { useKernelFuncFromHub } from "../../hub/functions.js";

/** cos / sin tables `[batch, seq, headDim]` for the positions of this forward. */
export type PositionEmbeddings = [tf.Tensor3D, tf.Tensor3D];

@useKernelForwardFromHub("RMSNorm")
export class Qwen3RMSNorm extends RMSNorm {}

export class Qwen3MLP extends Module<[tf.Tensor], tf.Tensor> {
  gate_proj: Linear;
  up_proj: Linear;
  down_proj: Linear;

  constructor(readonly config: Qwen3Config) {
    super();
    const { hidden_size: h, intermediate_size: i, initializer_range: std } = config;
    this.gate_proj = construct(Linear, h, i, { std });
    this.up_proj = construct(Linear, h, i, { std });
    this.down_proj = construct(Linear, i, h, { std });
  }

  forward(x: tf.Tensor): tf.Tensor {
    return this.down_proj.call(tf.mul(silu(this.gate_proj.call(x)), this.up_proj.call(x)));
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
 * q·cos + rotate_half(q)·sin, with cos/sin `[b, s, d]` broadcast over heads of `[b, heads, s, d]`. A hub
 * function kernel ("rotary_pos_emb", bundled: fusekit/rope) may serve it in one dispatch.
 */
export const applyRotaryPosEmb = useKernelFuncFromHub("rotary_pos_emb")(function applyRotaryPosEmb(x: tf.Tensor, cos: tf.Tensor3D, sin: tf.Tensor3D): tf.Tensor {
  const c = tf.expandDims(cos, 1);
  const s = tf.expandDims(sin, 1);
  return tf.add(tf.mul(x, c), tf.mul(rotateHalf(x), s));
});

/** Default RoPE. Tables are computed on the host in float64 and rounded once — no per-step tensor ops. */
export class Qwen3RotaryEmbedding {
  readonly invFreq: Float64Array;

  constructor(readonly config: Qwen3Config) {
    const dim = config.head_dim;
    this.invFreq = new Float64Array(dim / 2);
    for (let i = 0; i < dim / 2; i++) this.invFreq[i] = 1 / config.rope_theta ** ((2 * i) / dim);
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

export class Qwen3Attention extends Module<[tf.Tensor, PositionEmbeddings, tf.Tensor?, DynamicCache?], tf.Tensor> {
  readonly headDim: number;
  readonly numHeads: number;
  readonly numKeyValueHeads: number;
  readonly scaling: number;
  q_proj: Linear;
  k_proj: Linear;
  v_proj: Linear;
  o_proj: Linear;
  q_norm: Qwen3RMSNorm;
  k_norm: Qwen3RMSNorm;

  constructor(readonly config: Qwen3Config, readonly layerIdx: number) {
    super();
    const { hidden_size: h, head_dim: d, num_attention_heads: nh, num_key_value_heads: nkv, initializer_range: std } = config;
    this.headDim = d;
    this.numHeads = nh;
    this.numKeyValueHeads = nkv;
    this.scaling = d ** -0.5;
    const bias = config.attention_bias;
    this.q_proj = construct(Linear, h, nh * d, { bias, std });
    this.k_proj = construct(Linear, h, nkv * d, { bias, std });
    this.v_proj = construct(Linear, h, nkv * d, { bias, std });
    this.o_proj = construct(Linear, nh * d, h, { bias, std });
    this.q_norm = construct(Qwen3RMSNorm, d, config.rms_norm_eps);
    this.k_norm = construct(Qwen3RMSNorm, d, config.rms_norm_eps);
  }

  /** Projections → `[b, heads, s, d]` query / key / value. Subclasses that fuse projections override this. */
  protected project(x: tf.Tensor): [tf.Tensor, tf.Tensor, tf.Tensor] {
    return [this.q_proj.call(x), this.k_proj.call(x), this.v_proj.call(x)];
  }

  forward(hiddenStates: tf.Tensor, positionEmbeddings: PositionEmbeddings, attentionMask?: tf.Tensor, pastKeyValues?: DynamicCache): tf.Tensor {
    const [b, s] = hiddenStates.shape;
    const d = this.headDim;
    const [q, k, v] = this.project(hiddenStates);
    const heads = (t: tf.Tensor, n: number) => tf.reshape(t, [b, s, n, d]);
    let queries = headsFirst(this.q_norm.call(heads(q, this.numHeads)));
    let keys = headsFirst(this.k_norm.call(heads(k, this.numKeyValueHeads)));
    let values = headsFirst(heads(v, this.numKeyValueHeads)) as tf.Tensor4D;

    const [cos, sin] = positionEmbeddings;
    queries = applyRotaryPosEmb(queries, cos, sin);
    keys = applyRotaryPosEmb(keys, cos, sin);
    if (pastKeyValues && !attentionMask && s === 1) {
      // Decode step (perf): attention reads the cache's buffers in place and returns [b, 1, heads·d] for
      // o_proj directly — no copy of the cached keys/values, no transposes (same math; see DynamicCache.attend).
      const out = pastKeyValues.attend(queries as tf.Tensor4D, keys as tf.Tensor4D, values, this.layerIdx, this.scaling);
      if (out) return this.o_proj.call(out);
    }
    if (pastKeyValues) [keys, values] = pastKeyValues.update(keys as tf.Tensor4D, values, this.layerIdx);

    const out = scaledDotProductAttention(queries as tf.Tensor4D, keys as tf.Tensor4D, values, this.scaling, attentionMask);
    return this.o_proj.call(tf.reshape(tf.transpose(out, [0, 2, 1, 3]), [b, s, this.numHeads * d]));
  }
}

/** `[b, s, heads, d]` → `[b, heads, s, d]`. At s = 1 both have the same memory order: a reshape, not a copy (perf). */
function headsFirst(t: tf.Tensor): tf.Tensor {
  const [b, s, n, d] = t.shape;
  return s === 1 ? tf.reshape(t, [b, n, s, d]) : tf.transpose(t, [0, 2, 1, 3]);
}

/**
 * softmax(q kᵀ · scale + mask) v with grouped-query attention: the query heads sharing a KV head are
 * folded into the sequence axis (`[b, kv, group·s, d]`) instead of repeating K and V — same result as
 * transformers' repeat_kv, without the copies. `mask` is additive, `[b, 1, s, T]`.
 */
export function scaledDotProductAttention(q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, scale: number, mask?: tf.Tensor): tf.Tensor4D {
  const [b, h, s, d] = q.shape;
  const kv = k.shape[1];
  const t = k.shape[2];
  const group = h / kv;
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
const LOOP_THRESHOLD = 1 << 18;

function attentionPerGroup(q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, scale: number, mask?: tf.Tensor): tf.Tensor4D {
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

export class Qwen3DecoderLayer extends Module<[tf.Tensor, PositionEmbeddings, tf.Tensor?, DynamicCache?], tf.Tensor> {
  self_attn: Qwen3Attention;
  mlp: Qwen3MLP;
  input_layernorm: Qwen3RMSNorm;
  post_attention_layernorm: Qwen3RMSNorm;

  constructor(readonly config: Qwen3Config, readonly layerIdx: number) {
    super();
    this.self_attn = construct(Qwen3Attention, config, layerIdx);
    this.mlp = construct(Qwen3MLP, config);
    this.input_layernorm = construct(Qwen3RMSNorm, config.hidden_size, config.rms_norm_eps);
    this.post_attention_layernorm = construct(Qwen3RMSNorm, config.hidden_size, config.rms_norm_eps);
  }

  forward(hiddenStates: tf.Tensor, positionEmbeddings: PositionEmbeddings, attentionMask?: tf.Tensor, pastKeyValues?: DynamicCache): tf.Tensor {
    let residual = hiddenStates;
    let h = this.input_layernorm.call(hiddenStates);
    h = tf.add(residual, this.self_attn.call(h, positionEmbeddings, attentionMask, pastKeyValues));
    residual = h;
    h = this.post_attention_layernorm.call(h);
    return tf.add(residual, this.mlp.call(h));
  }
}

/** Inputs of a causal-LM forward. `attentionMask` covers past + new tokens (1 = attend, 0 = padding). */
export interface CausalLMInputs {
  inputIds: tf.Tensor | number[][];
  attentionMask?: tf.Tensor | number[][];
  /** Defaults to the count of attended tokens before each one (so left padding does not shift positions). */
  positionIds?: number[][];
  pastKeyValues?: DynamicCache;
  /** Creates a cache when none is passed; defaults to config.use_cache when a cache is passed in. */
  useCache?: boolean;
  /** Compute logits for only the last N positions (0 = all). Generation needs only the last one. */
  logitsToKeep?: number;
}

export interface BaseModelOutput {
  lastHiddenState: tf.Tensor;
  pastKeyValues?: DynamicCache;
}

export interface CausalLMOutput {
  logits: tf.Tensor;
  pastKeyValues?: DynamicCache;
}

const MASKED = -3.4028234663852886e38; // float32 min, as transformers' eager attention uses

export class Qwen3Model extends Module<[CausalLMInputs], BaseModelOutput> {
  embed_tokens: Embedding;
  layers: ModuleList<Qwen3DecoderLayer>;
  norm: Qwen3RMSNorm;
  readonly rotaryEmb: Qwen3RotaryEmbedding;

  constructor(readonly config: Qwen3Config) {
    super();
    this.embed_tokens = construct(Embedding, config.vocab_size, config.hidden_size, { std: config.initializer_range });
    this.layers = new ModuleList(Array.from({ length: config.num_hidden_layers }, (_, i) => construct(Qwen3DecoderLayer, config, i)));
    this.norm = construct(Qwen3RMSNorm, config.hidden_size, config.rms_norm_eps);
    this.rotaryEmb = new Qwen3RotaryEmbedding(config);
  }

  forward(inputs: CausalLMInputs): BaseModelOutput {
    const ids = toIds(inputs.inputIds);
    const [b, s] = ids.shape;
    const cache = inputs.pastKeyValues ?? (inputs.useCache ? new DynamicCache() : undefined);
    const past = cache?.getSeqLength() ?? 0;
    const mask = readMask(inputs.attentionMask, b, past + s);
    const positionIds = inputs.positionIds ?? defaultPositions(mask, b, past, s);
    try {
      const hidden = tf.tidy(() => {
        let h = this.embed_tokens.call(ids);
        const pos = this.rotaryEmb.forward(positionIds);
        const additiveMask = buildCausalMask(mask, b, s, past);
        // One tidy per layer: a long prefill keeps only the hidden states between layers, not every
        // layer's intermediates (a 512-token prefill of the 0.6B model otherwise exhausts wasm's 4 GB heap).
        for (const layer of this.layers) {
          const next = tf.tidy(() => layer.call(h, pos, additiveMask, cache));
          if (next !== h) h.dispose();
          h = next;
        }
        return this.norm.call(h);
      });
      return { lastHiddenState: hidden, pastKeyValues: cache };
    } finally {
      if (ids !== inputs.inputIds) ids.dispose();
    }
  }
}

export class Qwen3ForCausalLM extends PreTrainedModel<[CausalLMInputs], CausalLMOutput, Qwen3Config> {
  model: Qwen3Model;
  lm_head: Linear;

  constructor(config: Qwen3Config) {
    super(config);
    this.model = construct(Qwen3Model, config);
    this.lm_head = construct(Linear, config.hidden_size, config.vocab_size, { std: config.initializer_range });
    // Tied: lm_head shares the embedding table, which Embedding already keeps as [hidden, vocab].
    if (config.tie_word_embeddings) this.lm_head.weight = this.model.embed_tokens.weight;
  }

  forward(inputs: CausalLMInputs): CausalLMOutput {
    const { lastHiddenState, pastKeyValues } = this.model.call(inputs);
    const keep = inputs.logitsToKeep ?? 0;
    const logits = tf.tidy(() => {
      const s = lastHiddenState.shape[1]!;
      const h = keep > 0 && keep < s ? tf.slice(lastHiddenState, [0, s - keep, 0], [-1, keep, -1]) : lastHiddenState;
      return this.lm_head.call(h);
    });
    lastHiddenState.dispose();
    return { logits, pastKeyValues };
  }
}

function toIds(ids: tf.Tensor | number[][]): tf.Tensor2D {
  if (Array.isArray(ids)) {
    if (!ids.length || !Array.isArray(ids[0]) || ids.some((r) => r.length !== ids[0].length)) {
      throw new ShapeError("inputIds: expected a non-empty rectangular number[][] ([batch, seq])");
    }
    return tf.tensor2d(ids, [ids.length, ids[0].length], "int32");
  }
  expectShape(ids, [undefined, undefined], "inputIds");
  if (ids.dtype !== "int32") throw new ShapeError(`inputIds: expected an int32 tensor, got ${ids.dtype}`);
  return ids as tf.Tensor2D;
}

/** The attention mask as host rows `[b][past+s]`, or undefined when every token is attended. */
function readMask(mask: tf.Tensor | number[][] | undefined, b: number, total: number): number[][] | undefined {
  if (mask === undefined) return undefined;
  const rows = Array.isArray(mask) ? mask : (mask.arraySync() as number[][]);
  if (rows.length !== b || rows.some((r) => !Array.isArray(r) || r.length !== total)) {
    throw new ShapeError(`attentionMask: expected shape [${b}, ${total}] (batch, past + new tokens)`);
  }
  return rows.every((r) => r.every((x) => x === 1)) ? undefined : rows;
}

function defaultPositions(mask: number[][] | undefined, b: number, past: number, s: number): number[][] {
  return Array.from({ length: b }, (_, bi) => {
    if (!mask) return Array.from({ length: s }, (_, t) => past + t);
    // position = number of attended tokens before this one (padding gets position 1, as transformers' generate)
    const row = mask[bi];
    const out: number[] = [];
    let count = 0;
    for (let j = 0; j < past + s; j++) {
      if (j >= past) out.push(row[j] ? count : 1);
      count += row[j] ? 1 : 0;
    }
    return out;
  });
}

/** Additive `[b, 1, s, past+s]` mask: causal plus padding; undefined when nothing is masked. */
function buildCausalMask(mask: number[][] | undefined, b: number, s: number, past: number): tf.Tensor | undefined {
  if (!mask && s === 1) return undefined;
  const total = past + s;
  const data = new Float32Array(b * s * total);
  for (let bi = 0; bi < b; bi++) {
    for (let i = 0; i < s; i++) {
      const base = (bi * s + i) * total;
      for (let j = 0; j < total; j++) {
        if (j > past + i || (mask && !mask[bi][j])) data[base + j] = MASKED;
      }
    }
  }
  return tf.tensor4d(data, [b, 1, s, total]);
}
