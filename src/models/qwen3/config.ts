import { ConfigError } from "../../errors.js";

/**
 * Qwen3Config with transformers' field names and defaults, so a config.json round-trips unchanged.
 * `fromDict` validates types; fields this runtime cannot honour are a ConfigError rather than ignored.
 */
export class Qwen3Config {
  model_type = "qwen3";
  architectures: string[] = ["Qwen3ForCausalLM"];
  vocab_size = 151936;
  hidden_size = 4096;
  intermediate_size = 22016;
  num_hidden_layers = 32;
  num_attention_heads = 32;
  num_key_value_heads = 32;
  head_dim = 128;
  hidden_act = "silu";
  max_position_embeddings = 32768;
  initializer_range = 0.02;
  rms_norm_eps = 1e-6;
  use_cache = true;
  tie_word_embeddings = false;
  rope_theta = 10000.0;
  rope_scaling: Record<string, unknown> | null = null;
  attention_bias = false;
  use_sliding_window = false;
  sliding_window: number | null = 4096;
  max_window_layers = 28;
  attention_dropout = 0.0;
  bos_token_id: number | null = null;
  eos_token_id: number | number[] | null = null;
  pad_token_id: number | null = null;
  torch_dtype = "bfloat16";
  /** Fields of config.json this class does not model, kept so saving writes them back. */
  extra: Record<string, unknown> = {};

  static readonly REQUIRED = ["hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size"] as const;

  constructor(fields: Partial<Omit<Qwen3Config, "extra" | "toDict">> = {}) {
    Object.assign(this, fields);
    if (fields.head_dim === undefined && fields.hidden_size !== undefined && fields.num_attention_heads !== undefined) {
      this.head_dim = Math.floor(fields.hidden_size / fields.num_attention_heads);
    }
    if (fields.num_key_value_heads === undefined && fields.num_attention_heads !== undefined) {
      this.num_key_value_heads = fields.num_attention_heads;
    }
    this.validate();
  }

  /** Reads a parsed config.json; `where` names the file in errors. */
  static fromDict(raw: unknown, where = "config.json"): Qwen3Config {
    if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
      throw new ConfigError(`${where}: expected a JSON object, got ${raw === null ? "null" : typeof raw}`);
    }
    const dict = { ...(raw as Record<string, unknown>) };
    for (const key of Qwen3Config.REQUIRED) {
      if (!(key in dict)) throw new ConfigError(`${where}: required field "${key}" is missing`);
    }
    // Newer transformers nest rope settings under rope_parameters.
    const ropeParams = dict.rope_parameters as Record<string, unknown> | undefined;
    if (ropeParams && typeof ropeParams === "object") {
      if (dict.rope_theta === undefined && ropeParams.rope_theta !== undefined) dict.rope_theta = ropeParams.rope_theta;
      if (ropeParams.rope_type !== undefined && ropeParams.rope_type !== "default") dict.rope_scaling = ropeParams;
    }
    const defaults = new Qwen3Config();
    const known: Record<string, unknown> = {};
    const extra: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(dict)) {
      if (k in defaults && k !== "extra") {
        checkType(k, v, (defaults as unknown as Record<string, unknown>)[k], where);
        known[k] = v;
      } else {
        extra[k] = v;
      }
    }
    try {
      const config = new Qwen3Config(known as Partial<Qwen3Config>);
      config.extra = extra;
      return config;
    } catch (err) {
      if (err instanceof ConfigError) throw new ConfigError(`${where}: ${err.message}`);
      throw err;
    }
  }

  private validate(): void {
    const positive = ["vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim"] as const;
    for (const k of positive) {
      if (!Number.isInteger(this[k]) || this[k] <= 0) throw new ConfigError(`"${k}" must be a positive integer, got ${JSON.stringify(this[k])}`);
    }
    if (this.num_attention_heads % this.num_key_value_heads !== 0) {
      throw new ConfigError(`num_attention_heads (${this.num_attention_heads}) must be a multiple of num_key_value_heads (${this.num_key_value_heads})`);
    }
    if (this.head_dim % 2 !== 0) throw new ConfigError(`head_dim must be even for rotary embeddings, got ${this.head_dim}`);
    if (!(this.rms_norm_eps > 0)) throw new ConfigError(`rms_norm_eps must be > 0, got ${this.rms_norm_eps}`);
    if (!(this.rope_theta > 0)) throw new ConfigError(`rope_theta must be > 0, got ${this.rope_theta}`);
    if (this.hidden_act !== "silu" && this.hidden_act !== "swish") throw new ConfigError(`hidden_act "${this.hidden_act}" is not supported (only silu)`);
    const ropeType = this.rope_scaling && (this.rope_scaling.rope_type ?? this.rope_scaling.type);
    if (ropeType && ropeType !== "default") throw new ConfigError(`rope_scaling type "${String(ropeType)}" is not supported (only default RoPE)`);
    if (this.use_sliding_window) throw new ConfigError(`use_sliding_window=true is not supported`);
  }

  /** The config.json dictionary (HF field names; unknown fields from the source kept). */
  toDict(): Record<string, unknown> {
    const { extra, ...fields } = this as unknown as Record<string, unknown> & { extra: Record<string, unknown> };
    return { ...extra, ...fields };
  }
}

function checkType(key: string, value: unknown, example: unknown, where: string): void {
  if (value === null && (example === null || key.endsWith("_token_id"))) return;
  const bad = (want: string) => new ConfigError(`${where}: field "${key}" must be ${want}, got ${JSON.stringify(value)}`);
  if (key === "eos_token_id" || key === "bos_token_id" || key === "pad_token_id") {
    const ok = (v: unknown) => Number.isInteger(v);
    if (!(ok(value) || (Array.isArray(value) && value.every(ok)))) throw bad("an integer or list of integers");
    return;
  }
  if (key === "sliding_window") {
    if (value !== null && !Number.isInteger(value)) throw bad("an integer or null");
    return;
  }
  if (key === "rope_scaling") {
    if (value !== null && (typeof value !== "object" || Array.isArray(value))) throw bad("an object or null");
    return;
  }
  if (typeof example === "number" && (typeof value !== "number" || !Number.isFinite(value))) throw bad("a number");
  if (typeof example === "boolean" && typeof value !== "boolean") throw bad("a boolean");
  if (typeof example === "string" && typeof value !== "string") throw bad("a string");
  if (Array.isArray(example) && !(Array.isArray(value) && value.every((v) => typeof v === "string"))) throw bad("a list of strings");
}
