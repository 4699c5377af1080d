// Llama, with transformers' class and attribute names so state-dict keys equal checkpoint keys. The
// decoder-only families are built from these blocks: Qwen2 is Llama with q/k/v biases, Qwen3 is Qwen2
// without biases plus a per-head q/k RMSNorm (their files say only that). Math follows transformers'
// modeling_llama.py: RMSNorm in float32, RoPE (default / linear / llama3), grouped-query attention,
// SwiGLU MLP, optional tied embeddings. Backend fast paths live in src/nn/ and src/backend/, not here.
import { tf } from "../../tensor/tf.js";
import { Module, ModuleList } from "../../nn/module.js";
import { Embedding, Linear, RMSNorm, inRowBlocks, silu } from "../../nn/layers.js";
import { RotaryEmbedding, rotaryPosEmbOps, type PositionEmbeddings } from "../../nn/rope.js";
import { headsFirst, scaledDotProductAttention } from "../../nn/attention.js";
import { buildCausalMask, defaultPositions, readMask, toIds } from "../../nn/masks.js";
import type { BaseModelOutput, CausalLMInputs, CausalLMOutput } from "../../nn/outputs.js";
import { DynamicCache } from "../../cache/dynamic-cache.js";
import { construct } from "../../patching/construct.js";
import { useKernelForwardFromHub } from "../../hub/decorator.js";
import { useKernelFuncFromHub } from "../../hub/functions.js";
import { PreTrainedModel } from "../../loading/pretrained.js";
import type { DecoderConfig } from "../config.js";
import { LlamaConfig } from "./config.js";

/** RoPE as a hub function kernel: "rotary_pos_emb" (bundled: fusekit/rope) replaces the composed ops when installed. */
export const applyRotaryPosEmb = useKernelFuncFromHub("rotary_pos_emb")(rotaryPosEmbOps);

type AttentionArgs = [tf.Tensor, PositionEmbeddings, tf.Tensor?, DynamicCache?];

/**
 * What a family is built from: its classes (named as transformers names them, so patch keys find them)
 * and where its attention differs. Every block receives it, so a patched class built in place of one
 * family's block (e.g. a decoder layer) still builds that family's parts.
 */
export interface DecoderFamily {
  RMSNorm: new (hiddenSize: number, eps: number) => RMSNorm;
  MLP: new (config: DecoderConfig) => LlamaMLP;
  Attention: new (config: DecoderConfig, layerIdx: number, family: DecoderFamily) => LlamaAttention;
  DecoderLayer: new (config: DecoderConfig, layerIdx: number, family: DecoderFamily) => LlamaDecoderLayer;
  Model: new (config: DecoderConfig, family: DecoderFamily) => LlamaModel;
  /** Which attention projections carry a bias. */
  projectionBias(config: DecoderConfig): { qkv: boolean; o: boolean };
  /** An RMSNorm over each query and key head before RoPE (Qwen3's q_norm / k_norm). */
  qkNorm: boolean;
}

@useKernelForwardFromHub("RMSNorm")
export class LlamaRMSNorm extends RMSNorm {}

export class LlamaMLP extends Module<[tf.Tensor], tf.Tensor> {
  gate_proj: Linear;
  up_proj: Linear;
  down_proj: Linear;

  constructor(readonly config: DecoderConfig & { mlp_bias?: boolean }) {
    super();
    const { hidden_size: h, intermediate_size: i, initializer_range: std } = config;
    const bias = config.mlp_bias ?? false;
    this.gate_proj = construct(Linear, h, i, { bias, std });
    this.up_proj = construct(Linear, h, i, { bias, std });
    this.down_proj = construct(Linear, i, h, { bias, std });
  }

  forward(x: tf.Tensor): tf.Tensor {
    return inRowBlocks(x, (rows) =>
      this.down_proj.call(tf.mul(silu(this.gate_proj.call(rows)), this.up_proj.call(rows))),
    );
  }
}

export class LlamaAttention extends Module<AttentionArgs, tf.Tensor> {
  readonly headDim: number;
  readonly numHeads: number;
  readonly numKeyValueHeads: number;
  readonly scaling: number;
  q_proj: Linear;
  k_proj: Linear;
  v_proj: Linear;
  o_proj: Linear;
  q_norm?: RMSNorm;
  k_norm?: RMSNorm;

  constructor(
    readonly config: DecoderConfig,
    readonly layerIdx: number,
    family: DecoderFamily = LLAMA,
  ) {
    super();
    const { hidden_size: h, head_dim: d, num_attention_heads: nh, num_key_value_heads: nkv } = config;
    const std = config.initializer_range;
    this.headDim = d;
    this.numHeads = nh;
    this.numKeyValueHeads = nkv;
    this.scaling = d ** -0.5;
    const bias = family.projectionBias(config);
    this.q_proj = construct(Linear, h, nh * d, { bias: bias.qkv, std });
    this.k_proj = construct(Linear, h, nkv * d, { bias: bias.qkv, std });
    this.v_proj = construct(Linear, h, nkv * d, { bias: bias.qkv, std });
    this.o_proj = construct(Linear, nh * d, h, { bias: bias.o, std });
    if (family.qkNorm) {
      this.q_norm = construct(family.RMSNorm, d, config.rms_norm_eps);
      this.k_norm = construct(family.RMSNorm, d, config.rms_norm_eps);
    }
  }

  /** Projections → query / key / value `[b, s, heads·d]`. Subclasses that fuse projections override this. */
  protected project(x: tf.Tensor): [tf.Tensor, tf.Tensor, tf.Tensor] {
    return [this.q_proj.call(x), this.k_proj.call(x), this.v_proj.call(x)];
  }

  forward(
    hiddenStates: tf.Tensor,
    positionEmbeddings: PositionEmbeddings,
    attentionMask?: tf.Tensor,
    pastKeyValues?: DynamicCache,
  ): tf.Tensor {
    const [b, s] = hiddenStates.shape;
    const d = this.headDim;
    const heads = (t: tf.Tensor, n: number) => tf.reshape(t, [b, s, n, d]);
    const qNorm = (t: tf.Tensor) => (this.q_norm ? this.q_norm.call(t) : t);
    const kNorm = (t: tf.Tensor) => (this.k_norm ? this.k_norm.call(t) : t);
    const [cos, sin] = positionEmbeddings;
    // a tidy of their own: the projections and their normed / transposed copies are freed before attention runs
    // (at a long prefill they are several times the hidden states)
    const [queries, rotatedKeys, headValues] = tf.tidy(() => {
      const [q, k, v] = this.project(hiddenStates);
      return [
        applyRotaryPosEmb(headsFirst(qNorm(heads(q, this.numHeads))), cos, sin),
        applyRotaryPosEmb(headsFirst(kNorm(heads(k, this.numKeyValueHeads))), cos, sin),
        headsFirst(heads(v, this.numKeyValueHeads)),
      ];
    }) as tf.Tensor4D[];
    let [keys, values] = [rotatedKeys, headValues];
    if (pastKeyValues && !attentionMask && s === 1) {
      // Decode step (perf): attention reads the cache's buffers in place and returns [b, 1, heads·d] for
      // o_proj directly — no copy of the cached keys/values, no transposes (same math; see DynamicCache.attend).
      const out = pastKeyValues.attend(queries, keys, values, this.layerIdx, this.scaling);
      if (out) return this.o_proj.call(out);
    }
    if (pastKeyValues) [keys, values] = pastKeyValues.update(keys, values, this.layerIdx);
    const out = scaledDotProductAttention(queries, keys, values, this.scaling, attentionMask);
    return this.o_proj.call(tf.reshape(tf.transpose(out, [0, 2, 1, 3]), [b, s, this.numHeads * d]));
  }
}

export class LlamaDecoderLayer extends Module<AttentionArgs, tf.Tensor> {
  self_attn: LlamaAttention;
  mlp: LlamaMLP;
  input_layernorm: RMSNorm;
  post_attention_layernorm: RMSNorm;

  constructor(
    readonly config: DecoderConfig,
    readonly layerIdx: number,
    family: DecoderFamily,
  ) {
    super();
    this.self_attn = construct(family.Attention, config, layerIdx, family);
    this.mlp = construct(family.MLP, config);
    this.input_layernorm = construct(family.RMSNorm, config.hidden_size, config.rms_norm_eps);
    this.post_attention_layernorm = construct(family.RMSNorm, config.hidden_size, config.rms_norm_eps);
  }

  forward(
    hiddenStates: tf.Tensor,
    positionEmbeddings: PositionEmbeddings,
    attentionMask?: tf.Tensor,
    pastKeyValues?: DynamicCache,
  ): tf.Tensor {
    let residual = hiddenStates;
    let h = this.input_layernorm.call(hiddenStates);
    h = tf.add(residual, this.self_attn.call(h, positionEmbeddings, attentionMask, pastKeyValues));
    residual = h;
    h = this.post_attention_layernorm.call(h);
    return tf.add(residual, this.mlp.call(h));
  }
}

export class LlamaModel extends Module<[CausalLMInputs], BaseModelOutput> {
  embed_tokens: Embedding;
  layers: ModuleList<LlamaDecoderLayer>;
  norm: RMSNorm;
  readonly rotaryEmb: RotaryEmbedding;

  constructor(
    readonly config: DecoderConfig,
    family: DecoderFamily,
  ) {
    super();
    const { vocab_size, hidden_size, rms_norm_eps, num_hidden_layers } = config;
    this.embed_tokens = construct(Embedding, vocab_size, hidden_size, { std: config.initializer_range });
    const layer = (i: number) => construct(family.DecoderLayer, config, i, family);
    this.layers = new ModuleList(Array.from({ length: num_hidden_layers }, (_, i) => layer(i)));
    this.norm = construct(family.RMSNorm, hidden_size, rms_norm_eps);
    this.rotaryEmb = new RotaryEmbedding(config);
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

export class LlamaForCausalLM<C extends DecoderConfig = LlamaConfig> extends PreTrainedModel<
  [CausalLMInputs],
  CausalLMOutput,
  C
> {
  model: LlamaModel;
  lm_head: Linear;

  constructor(config: C, family: DecoderFamily = LLAMA) {
    super(config);
    this.model = construct(family.Model, config, family);
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

export const LLAMA: DecoderFamily = {
  RMSNorm: LlamaRMSNorm,
  MLP: LlamaMLP,
  Attention: LlamaAttention,
  DecoderLayer: LlamaDecoderLayer,
  Model: LlamaModel,
  projectionBias: (config) => ({ qkv: config.attention_bias ?? false, o: config.attention_bias ?? false }),
  qkNorm: false,
};

/** Llama's RoPE tables (default, linear or llama3 scaling): the shared RotaryEmbedding. */
export { RotaryEmbedding as LlamaRotaryEmbedding } from "../../nn/rope.js";
