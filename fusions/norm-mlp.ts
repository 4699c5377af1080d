// Runtime fusion recipe: fuse each layer's post_attention_layernorm + mlp on an already-loaded model
// (Llama, Qwen2 or Qwen3: the module paths are the same in every family).
// No new class and no weight conversion: the modules stay as loaded, only their wiring changes.
// (Outside this repo, import from "fusekit".)
import { ModuleSpec, fuseModules, unfuseModules, type Module } from "../src/index.js";

export const NORM_MLP_PATTERNS = ["model.layers.*.post_attention_layernorm", "model.layers.*.mlp"];

export function fuseNormMLP(model: Module, { kernel = false } = {}) {
  const hidden = new ModuleSpec({ inputs: ["hidden_states"], outputs: ["hidden_states"] });
  return fuseModules(model, NORM_MLP_PATTERNS, [hidden, hidden], kernel ? { kernelLayerName: "NormMLP" } : {});
}

export function unfuseNormMLP(model: Module) {
  return unfuseModules(model, NORM_MLP_PATTERNS);
}
