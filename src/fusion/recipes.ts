// The built-in recipes (and so the built-in fusionConfig families). Paths are those of transformers'
// decoder-only models (Qwen3, Llama, Qwen2 share them).
import { ModuleSpec } from "./spec.js";
import { defineFusionRecipe } from "./recipe.js";
import { registerFusionSpec } from "./config.js";

const hidden = () => new ModuleSpec({ inputs: ["hidden_states"], outputs: ["hidden_states"] });
const projection = (out: string) => new ModuleSpec({ inputs: ["hidden_states"], outputs: [out] });

/** post_attention_layernorm + mlp, run as one (the NormMLP kernel can serve it). */
export const NORM_MLP = defineFusionRecipe({
  name: "norm_mlp",
  modules: ["model.layers.*.post_attention_layernorm", "model.layers.*.mlp"],
  specs: [hidden(), hidden()],
  kernelLayerName: "NormMLP",
});

/** The MLP's gate and up projections as one matmul over a merged `gate_up_proj` weight. */
export const GATE_UP = defineFusionRecipe({
  name: "gate_up",
  modules: ["model.layers.*.mlp.gate_proj", "model.layers.*.mlp.up_proj"],
  specs: [projection("gate"), projection("up")],
  merged: "gate_up_proj",
});

/** Attention's q, k and v projections as one matmul over a merged `qkv_proj` weight. */
export const QKV = defineFusionRecipe({
  name: "qkv",
  modules: ["model.layers.*.self_attn.q_proj", "model.layers.*.self_attn.k_proj", "model.layers.*.self_attn.v_proj"],
  specs: [projection("q"), projection("k"), projection("v")],
  merged: "qkv_proj",
});

/** input_layernorm + self_attn, run as one; with `qkv` on as well, the attention's projections are one matmul. */
export const NORM_QKV = defineFusionRecipe({
  name: "norm_qkv",
  modules: ["model.layers.*.input_layernorm", "model.layers.*.self_attn"],
  specs: [
    hidden(),
    new ModuleSpec({
      inputs: ["hidden_states", "position_embeddings", "attention_mask", "past_key_values"],
      outputs: ["hidden_states"],
    }),
  ],
});

/**
 * A whole decoder layer — norms, attention with its cache, MLP and the residual adds — as one unit, which
 * the DecoderLayer kernel runs as one job on the kernel pool at decode. Weights stay where they are.
 */
export const DECODER_LAYER = defineFusionRecipe({
  name: "decoder_layer",
  modules: [
    "model.layers.*.input_layernorm",
    "model.layers.*.self_attn",
    "model.layers.*.post_attention_layernorm",
    "model.layers.*.mlp",
  ],
  whole: new ModuleSpec({
    inputs: ["hidden_states", "position_embeddings", "attention_mask", "past_key_values"],
    outputs: ["hidden_states"],
  }),
  kernelLayerName: "DecoderLayer",
});

export const BUILTIN_RECIPES = [NORM_MLP, GATE_UP, QKV, NORM_QKV, DECODER_LAYER];

for (const recipe of BUILTIN_RECIPES) registerFusionSpec(recipe.name, recipe);
