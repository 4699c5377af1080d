// Recipe: the checkpoint side of patches/qwen3-gate-up-qkv.ts. Weights (and biases, if any) are
// concatenated along the output dim on load; saving chunks them back with the sizes they had
// (q, k and v differ under grouped-query attention).
import { Concatenate, registerCheckpointConversionMapping, WeightConverter } from "../src/index.js";

export const qwen3GateUpQKVConversions = [
  new WeightConverter({
    sourcePatterns: ["mlp\\.gate_proj\\.weight", "mlp\\.up_proj\\.weight"],
    targetPatterns: "mlp.gate_up_proj.weight",
    operations: [new Concatenate(0)],
  }),
  new WeightConverter({
    sourcePatterns: ["self_attn\\.q_proj\\.(weight|bias)", "self_attn\\.k_proj\\.(weight|bias)", "self_attn\\.v_proj\\.(weight|bias)"],
    targetPatterns: "self_attn.qkv_proj.\\1",
    operations: [new Concatenate(0)],
  }),
];

/** Registers the rules for every "qwen3" checkpoint. */
export function registerQwen3GateUpQKVConversions(options?: { overwrite?: boolean }): void {
  registerCheckpointConversionMapping("qwen3", qwen3GateUpQKVConversions, options);
}
