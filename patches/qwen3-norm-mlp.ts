// Recipe: fold Qwen3's post-attention RMSNorm into the MLP, so one "NormMLP" kernel can run both.
// Pair it with conversions/qwen3-norm-mlp.ts, which moves `post_attention_layernorm.weight` to
// `mlp.norm_weight` on load and back on save. (Outside this repo, import from "fusekit".)
import { Parameter, Qwen3DecoderLayer, Qwen3MLP, registerPatchMapping, rmsNorm, tf, useKernelForwardFromHub } from "../src/index.js";
import type { DynamicCache, PositionEmbeddings, Qwen3Config } from "../src/index.js";

/** RMSNorm (exactly as Qwen3RMSNorm computes it) followed by the SwiGLU MLP. */
@useKernelForwardFromHub("NormMLP")
export class FusedNormMLP extends Qwen3MLP {
  norm_weight: Parameter;
  eps: number;

  constructor(config: Qwen3Config) {
    super(config);
    this.norm_weight = new Parameter([config.hidden_size], { kind: "ones" });
    this.eps = config.rms_norm_eps;
  }

  forward(x: tf.Tensor): tf.Tensor {
    return super.forward(rmsNorm(x, this.norm_weight.tensor, this.eps));
  }
}

/** A decoder layer whose MLP normalises its own input: it has no post_attention_layernorm at all. */
export class FusedQwen3DecoderLayer extends Qwen3DecoderLayer {
  constructor(config: Qwen3Config, layerIdx: number) {
    super(config, layerIdx);
    delete (this as { post_attention_layernorm?: unknown }).post_attention_layernorm;
  }

  forward(hiddenStates: tf.Tensor, positionEmbeddings: PositionEmbeddings, attentionMask?: tf.Tensor, pastKeyValues?: DynamicCache): tf.Tensor {
    const h = tf.add(hiddenStates, this.self_attn.call(this.input_layernorm.call(hiddenStates), positionEmbeddings, attentionMask, pastKeyValues));
    return tf.add(h, this.mlp.call(h));
  }
}

/** The mapping, for scoped use: `fromPretrained(dir, { patches: qwen3NormMLPPatches })`. */
export const qwen3NormMLPPatches = { Qwen3MLP: FusedNormMLP, Qwen3DecoderLayer: FusedQwen3DecoderLayer };

/** Registers both classes globally. */
export function registerQwen3NormMLPPatches(options?: { overwrite?: boolean }): void {
  registerPatchMapping(qwen3NormMLPPatches, options);
}
