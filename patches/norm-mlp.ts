// Recipe: fold the post-attention RMSNorm into the MLP, so one "NormMLP" kernel can run both. The keys
// are class-name patterns, so the same two classes patch Llama, Qwen2 and Qwen3 (their MLPs and decoder
// layers are the same blocks under each family's names). Pair it with conversions/norm-mlp.ts,
// which moves `post_attention_layernorm.weight` to `mlp.norm_weight` on load and back on save.
// (Outside this repo, import from "fusekit".)
import {
  LlamaDecoderLayer,
  LlamaMLP,
  Parameter,
  registerPatchMapping,
  rmsNorm,
  tf,
  useKernelForwardFromHub,
} from "../src/index.js";
import type { DecoderConfig, DecoderFamily, DynamicCache, PositionEmbeddings } from "../src/index.js";

/** RMSNorm (exactly as the families' RMSNorm computes it) followed by the SwiGLU MLP. */
@useKernelForwardFromHub("NormMLP")
export class FusedNormMLP extends LlamaMLP {
  norm_weight: Parameter;
  eps: number;

  constructor(config: DecoderConfig) {
    super(config);
    this.norm_weight = new Parameter([config.hidden_size], { kind: "ones" });
    this.eps = config.rms_norm_eps;
  }

  forward(x: tf.Tensor): tf.Tensor {
    return super.forward(rmsNorm(x, this.norm_weight.tensor, this.eps));
  }
}

/** A decoder layer whose MLP normalises its own input: it has no post_attention_layernorm at all. */
export class FusedNormMLPDecoderLayer extends LlamaDecoderLayer {
  constructor(config: DecoderConfig, layerIdx: number, family: DecoderFamily) {
    super(config, layerIdx, family);
    delete (this as { post_attention_layernorm?: unknown }).post_attention_layernorm;
  }

  forward(
    hiddenStates: tf.Tensor,
    positionEmbeddings: PositionEmbeddings,
    attentionMask?: tf.Tensor,
    pastKeyValues?: DynamicCache,
  ): tf.Tensor {
    const h = tf.add(
      hiddenStates,
      this.self_attn.call(this.input_layernorm.call(hiddenStates), positionEmbeddings, attentionMask, pastKeyValues),
    );
    return tf.add(h, this.mlp.call(h));
  }
}

/** The mapping, for scoped use: `fromPretrained(dir, { patches: normMLPPatches })`. */
export const normMLPPatches = {
  "^(Llama|Qwen2|Qwen3)MLP$": FusedNormMLP,
  "^(Llama|Qwen2|Qwen3)DecoderLayer$": FusedNormMLPDecoderLayer,
};

/** Registers both classes globally. */
export function registerNormMLPPatches(options?: { overwrite?: boolean }): void {
  registerPatchMapping(normMLPPatches, options);
}

/** Earlier names, from when the recipe covered Qwen3 only (kept for one release). */
export const FusedQwen3DecoderLayer = FusedNormMLPDecoderLayer;
export const qwen3NormMLPPatches = normMLPPatches;
export const registerQwen3NormMLPPatches = registerNormMLPPatches;
