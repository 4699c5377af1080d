// Qwen2 (Qwen2 / Qwen2.5): Llama with a bias on the q / k / v projections (never on o_proj) and no
// mlp_bias. Everything else is Llama's blocks under Qwen2's names (modular_qwen2.py says the same).
import { LlamaAttention, LlamaDecoderLayer, LlamaForCausalLM, LlamaMLP, LlamaModel } from "../llama/modeling.js";
import { LlamaRMSNorm, type DecoderFamily } from "../llama/modeling.js";
import { useKernelForwardFromHub } from "../../hub/decorator.js";
import type { DecoderConfig } from "../config.js";
import { Qwen2Config } from "./config.js";

@useKernelForwardFromHub("RMSNorm")
export class Qwen2RMSNorm extends LlamaRMSNorm {}
export class Qwen2MLP extends LlamaMLP {}
export class Qwen2Attention extends LlamaAttention {
  constructor(config: DecoderConfig, layerIdx: number, family: DecoderFamily = QWEN2) {
    super(config, layerIdx, family);
  }
}
export class Qwen2DecoderLayer extends LlamaDecoderLayer {}
export class Qwen2Model extends LlamaModel {}

export const QWEN2: DecoderFamily = {
  RMSNorm: Qwen2RMSNorm,
  MLP: Qwen2MLP,
  Attention: Qwen2Attention,
  DecoderLayer: Qwen2DecoderLayer,
  Model: Qwen2Model,
  projectionBias: () => ({ qkv: true, o: false }),
  qkNorm: false,
};

export class Qwen2ForCausalLM extends LlamaForCausalLM<Qwen2Config> {
  constructor(config: Qwen2Config) {
    super(config, QWEN2);
  }
}

/** Qwen2's RoPE tables: the shared RotaryEmbedding. */
export { RotaryEmbedding as Qwen2RotaryEmbedding } from "../../nn/rope.js";
