// Recipe: the checkpoint side of patches/norm-mlp.ts. Each layer's post-attention norm weight
// becomes the fused MLP's `norm_weight` on load, and goes back on save. Llama, Qwen2 and Qwen3
// checkpoints name it alike, so one rule serves the three model types.
import { getCheckpointConversionMapping, registerCheckpointConversionMapping, WeightRenaming } from "../src/index.js";

export const normMLPConversions = [
  new WeightRenaming({ sourcePatterns: "post_attention_layernorm\\.weight", targetPatterns: "mlp.norm_weight" }),
];

/** The model types the rules are registered for. */
export const NORM_MLP_MODEL_TYPES = ["llama", "qwen2", "qwen3"];

/** Registers the rules for every Llama, Qwen2 and Qwen3 checkpoint. */
export function registerNormMLPConversions(options?: { overwrite?: boolean }): void {
  // All or nothing: a type that already has rules fails (the registry's own error) before any is added.
  const taken = NORM_MLP_MODEL_TYPES.find((t) => getCheckpointConversionMapping(t) !== undefined);
  if (taken && !options?.overwrite) registerCheckpointConversionMapping(taken, normMLPConversions);
  for (const modelType of NORM_MLP_MODEL_TYPES)
    registerCheckpointConversionMapping(modelType, normMLPConversions, options);
}

/** Earlier names (kept for one release): the same rules, registered for "qwen3" only. */
export const qwen3NormMLPConversions = normMLPConversions;
export function registerQwen3NormMLPConversions(options?: { overwrite?: boolean }): void {
  registerCheckpointConversionMapping("qwen3", normMLPConversions, options);
}
