import { DECODER_REQUIRED, DecoderConfig, refuseSlidingWindow } from "../config.js";

/**
 * Qwen3Config with transformers' field names and defaults, so a config.json round-trips unchanged.
 * `fromDict` validates types; fields this runtime cannot honour are a ConfigError rather than ignored.
 */
export class Qwen3Config extends DecoderConfig {
  declare attention_bias: boolean;
  declare use_sliding_window: boolean;
  declare sliding_window: number | null;
  declare max_window_layers: number;

  constructor(fields: Partial<Omit<Qwen3Config, "extra" | "toDict">> = {}) {
    super(fields);
  }

  static readonly DEFAULTS = {
    model_type: "qwen3",
    architectures: ["Qwen3ForCausalLM"],
    vocab_size: 151936,
    hidden_size: 4096,
    intermediate_size: 22016,
    num_hidden_layers: 32,
    num_attention_heads: 32,
    num_key_value_heads: 32,
    head_dim: 128,
    hidden_act: "silu",
    max_position_embeddings: 32768,
    initializer_range: 0.02,
    rms_norm_eps: 1e-6,
    use_cache: true,
    tie_word_embeddings: false,
    rope_theta: 10000.0,
    rope_scaling: null,
    attention_bias: false,
    use_sliding_window: false,
    sliding_window: 4096 as number | null,
    max_window_layers: 28,
    attention_dropout: 0.0,
    bos_token_id: null,
    eos_token_id: null,
    pad_token_id: null,
    torch_dtype: "bfloat16",
  };

  static readonly REQUIRED = DECODER_REQUIRED;

  protected override validate(): void {
    super.validate();
    refuseSlidingWindow(this);
  }
}
