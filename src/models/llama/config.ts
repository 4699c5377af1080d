import { DecoderConfig } from "../config.js";

/** LlamaConfig (Llama 2/3.x, SmolLM2, TinyLlama) with transformers' field names and defaults. */
export class LlamaConfig extends DecoderConfig {
  declare attention_bias: boolean;
  declare mlp_bias: boolean;
  declare pretraining_tp: number;

  constructor(fields: Partial<Omit<LlamaConfig, "extra" | "toDict">> = {}) {
    super(fields);
  }

  static readonly DEFAULTS = {
    model_type: "llama",
    architectures: ["LlamaForCausalLM"],
    vocab_size: 32000,
    hidden_size: 4096,
    intermediate_size: 11008,
    num_hidden_layers: 32,
    num_attention_heads: 32,
    num_key_value_heads: 32,
    head_dim: 128,
    hidden_act: "silu",
    max_position_embeddings: 2048,
    initializer_range: 0.02,
    rms_norm_eps: 1e-6,
    use_cache: true,
    pad_token_id: null,
    bos_token_id: 1 as number | null,
    eos_token_id: 2 as number | number[] | null,
    pretraining_tp: 1,
    tie_word_embeddings: false,
    rope_theta: 10000.0,
    rope_scaling: null,
    attention_bias: false,
    attention_dropout: 0.0,
    mlp_bias: false,
    torch_dtype: "bfloat16",
  };
}
