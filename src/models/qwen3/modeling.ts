// Qwen3: Qwen2 without the q / k / v biases (attention_bias, default off, biases all four projections)
// plus an RMSNorm over each query and key head before RoPE. Everything else is Llama's blocks under
// Qwen3's names (modular_qwen3.py says the same).
import { LlamaAttention, LlamaDecoderLayer, LlamaForCausalLM, LlamaMLP, LlamaModel } from "../llama/modeling.js";
import { LlamaRMSNorm, type DecoderFamily } from "../llama/modeling.js";
import { useKernelForwardFromHub } from "../../hub/decorator.js";
import type { DecoderConfig } from "../config.js";
import { Qwen3Config } from "./config.js";

@useKernelForwardFromHub("RMSNorm")
export class Qwen3RMSNorm extends LlamaRMSNorm {}
export class Qwen3MLP extends LlamaMLP {}
export class Qwen3Attention extends LlamaAttention {
  declare q_norm: Qwen3RMSNorm;
  declare k_norm: Qwen3RMSNorm;

  constructor(config: DecoderConfig, layerIdx: number, family: DecoderFamily = QWEN3) {
    super(config, layerIdx, family);
  }
}
export class Qwen3DecoderLayer extends LlamaDecoderLayer {}
export class Qwen3Model extends LlamaModel {}

export const QWEN3: DecoderFamily = {
  RMSNorm: Qwen3RMSNorm,
  MLP: Qwen3MLP,
  Attention: Qwen3Attention,
  DecoderLayer: Qwen3DecoderLayer,
  Model: Qwen3Model,
  projectionBias: (config) => ({ qkv: config.attention_bias ?? false, o: config.attention_bias ?? false }),
  qkNorm: true,
};

export class Qwen3ForCausalLM extends LlamaForCausalLM<Qwen3Config> {
  constructor(config: Qwen3Config) {
    super(config, QWEN3);
  }
}

/** Qwen3's RoPE tables: the shared RotaryEmbedding. */
export { RotaryEmbedding as Qwen3RotaryEmbedding } from "../../nn/rope.js";
