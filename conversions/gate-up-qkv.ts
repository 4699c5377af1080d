// Recipe: the checkpoint side of patches/gate-up-qkv.ts. Weights (and biases, if any: Qwen2's
// q/k/v, Llama's attention_bias / mlp_bias) are concatenated along the output dim on load; saving chunks
// them back with the sizes they had (q, k and v differ under grouped-query attention). Llama, Qwen2 and
// Qwen3 checkpoints name them alike, so one rule list serves the three model types.
import {
  Concatenate,
  getCheckpointConversionMapping,
  registerCheckpointConversionMapping,
  WeightConverter,
} from "../src/index.js";

export const gateUpQKVConversions = [
  new WeightConverter({
    sourcePatterns: ["mlp\\.gate_proj\\.(weight|bias)", "mlp\\.up_proj\\.(weight|bias)"],
    targetPatterns: "mlp.gate_up_proj.\\1",
    operations: [new Concatenate(0)],
  }),
  new WeightConverter({
    sourcePatterns: [
      "self_attn\\.q_proj\\.(weight|bias)",
      "self_attn\\.k_proj\\.(weight|bias)",
      "self_attn\\.v_proj\\.(weight|bias)",
    ],
    targetPatterns: "self_attn.qkv_proj.\\1",
    operations: [new Concatenate(0)],
  }),
];

/** The model types the rules are registered for. */
export const GATE_UP_QKV_MODEL_TYPES = ["llama", "qwen2", "qwen3"];

/** Registers the rules for every Llama, Qwen2 and Qwen3 checkpoint. */
export function registerGateUpQKVConversions(options?: { overwrite?: boolean }): void {
  // All or nothing: a type that already has rules fails (the registry's own error) before any is added.
  const taken = GATE_UP_QKV_MODEL_TYPES.find((t) => getCheckpointConversionMapping(t) !== undefined);
  if (taken && !options?.overwrite) registerCheckpointConversionMapping(taken, gateUpQKVConversions);
  for (const modelType of GATE_UP_QKV_MODEL_TYPES)
    registerCheckpointConversionMapping(modelType, gateUpQKVConversions, options);
}

/** Earlier names (kept for one release): the same rules, registered for "qwen3" only. */
export const qwen3GateUpQKVConversions = gateUpQKVConversions;
export function registerQwen3GateUpQKVConversions(options?: { overwrite?: boolean }): void {
  registerCheckpointConversionMapping("qwen3", gateUpQKVConversions, options);
}
