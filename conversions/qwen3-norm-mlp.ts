// Recipe: the checkpoint side of patches/qwen3-norm-mlp.ts. Each layer's post-attention norm weight
// becomes the fused MLP's `norm_weight` on load, and goes back on save.
import { registerCheckpointConversionMapping, WeightRenaming } from "../src/index.js";

export const qwen3NormMLPConversions = [
  new WeightRenaming({ sourcePatterns: "post_attention_layernorm\\.weight", targetPatterns: "mlp.norm_weight" }),
];

/** Registers the rules for every "qwen3" checkpoint. */
export function registerQwen3NormMLPConversions(options?: { overwrite?: boolean }): void {
  registerCheckpointConversionMapping("qwen3", qwen3NormMLPConversions, options);
}
