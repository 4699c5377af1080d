// What the decoder-only families (Llama, Qwen2, Qwen3) share in their configs: transformers' field names,
// each family's defaults in one table, type checks from those defaults, and a round trip that keeps
// fields this runtime does not model. A family's config class says only its model_type and defaults.
import { ConfigError, UnsupportedConfigError } from "../errors.js";
import { ROPE_TYPES, ropeType } from "../nn/rope.js";
import type { ModelConfig } from "../loading/pretrained.js";

/** Fields config.json must have (the rest default). */
export const DECODER_REQUIRED = [
  "hidden_size",
  "intermediate_size",
  "num_hidden_layers",
  "num_attention_heads",
  "vocab_size",
] as const;
const REQUIRED = DECODER_REQUIRED;
const POSITIVE = [...REQUIRED, "num_key_value_heads", "head_dim"] as const;
const ROPE_FIELDS: Record<string, string[]> = {
  linear: ["factor"],
  llama3: ["factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"],
};

export type DecoderConfigFields = Partial<Omit<DecoderConfig, "extra" | "toDict">>;
type DecoderConfigClass<T extends DecoderConfig> = (new (fields?: DecoderConfigFields) => T) & { DEFAULTS: object };

export abstract class DecoderConfig implements ModelConfig {
  /** Fields of config.json this class does not model, kept so saving writes them back. */
  extra: Record<string, unknown> = {};
  declare model_type: string;
  declare architectures: string[];
  declare vocab_size: number;
  declare hidden_size: number;
  declare intermediate_size: number;
  declare num_hidden_layers: number;
  declare num_attention_heads: number;
  declare num_key_value_heads: number;
  declare head_dim: number;
  declare hidden_act: string;
  declare max_position_embeddings: number;
  declare initializer_range: number;
  declare rms_norm_eps: number;
  declare use_cache: boolean;
  declare tie_word_embeddings: boolean;
  declare rope_theta: number;
  declare rope_scaling: Record<string, unknown> | null;
  /** Llama and Qwen3 only (Qwen2 always biases q/k/v and never o_proj). */
  declare attention_bias?: boolean;
  declare attention_dropout: number;
  declare bos_token_id: number | null;
  declare eos_token_id: number | number[] | null;
  declare pad_token_id: number | null;
  declare torch_dtype: string;

  /** The family's transformers defaults, in config.json order; the subclass's `DEFAULTS` table. */
  constructor(fields: DecoderConfigFields = {}) {
    Object.assign(this, (new.target as unknown as { DEFAULTS: object }).DEFAULTS, fields);
    if (fields.head_dim === undefined && fields.hidden_size !== undefined && fields.num_attention_heads !== undefined) {
      this.head_dim = Math.floor(fields.hidden_size / fields.num_attention_heads);
    }
    if (fields.num_key_value_heads === undefined && fields.num_attention_heads !== undefined) {
      this.num_key_value_heads = fields.num_attention_heads;
    }
    this.validate();
  }

  /** Reads a parsed config.json; `where` names the file in errors. */
  static fromDict<T extends DecoderConfig>(this: DecoderConfigClass<T>, raw: unknown, where = "config.json"): T {
    if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
      throw new ConfigError(`${where}: expected a JSON object, got ${raw === null ? "null" : typeof raw}`);
    }
    const dict = { ...(raw as Record<string, unknown>) };
    checkFinite(dict, where);
    for (const key of REQUIRED) {
      if (!(key in dict)) throw new ConfigError(`${where}: required field "${key}" is missing`);
    }
    // Newer transformers nest rope settings under rope_parameters.
    const ropeParams = dict.rope_parameters as Record<string, unknown> | undefined;
    if (ropeParams && typeof ropeParams === "object") {
      if (dict.rope_theta === undefined && ropeParams.rope_theta !== undefined) dict.rope_theta = ropeParams.rope_theta;
      if (ropeType(ropeParams) !== "default") dict.rope_scaling = ropeParams;
    }
    const defaults = this.DEFAULTS as Record<string, unknown>;
    const known: Record<string, unknown> = {};
    const extra: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(dict)) {
      if (k in defaults) {
        checkType(k, v, defaults[k], where);
        known[k] = v;
      } else {
        extra[k] = v;
      }
    }
    try {
      const config = new this(known as DecoderConfigFields);
      config.extra = extra;
      return config;
    } catch (err) {
      if (err instanceof UnsupportedConfigError) throw new UnsupportedConfigError(`${where}: ${err.message}`);
      if (err instanceof ConfigError) throw new ConfigError(`${where}: ${err.message}`);
      throw err;
    }
  }

  /** Checks what every family needs; a family adds its own checks by overriding and calling this. */
  protected validate(): void {
    for (const k of POSITIVE) {
      if (!Number.isInteger(this[k]) || this[k] <= 0) {
        throw new ConfigError(`"${k}" must be a positive integer, got ${JSON.stringify(this[k])}`);
      }
    }
    if (this.num_attention_heads % this.num_key_value_heads !== 0) {
      throw new ConfigError(
        `num_attention_heads (${this.num_attention_heads}) must be a multiple of ` +
          `num_key_value_heads (${this.num_key_value_heads})`,
      );
    }
    if (this.head_dim % 2 !== 0) {
      throw new ConfigError(`head_dim must be even for rotary embeddings, got ${this.head_dim}`);
    }
    if (!(this.rms_norm_eps > 0)) throw new ConfigError(`rms_norm_eps must be > 0, got ${this.rms_norm_eps}`);
    if (!(this.rope_theta > 0)) throw new ConfigError(`rope_theta must be > 0, got ${this.rope_theta}`);
    if (this.hidden_act !== "silu" && this.hidden_act !== "swish") {
      throw new ConfigError(`hidden_act "${this.hidden_act}" is not supported (only silu)`);
    }
    validateRopeScaling(this.rope_scaling);
  }

  /** The config.json dictionary (HF field names; unknown fields from the source kept). */
  toDict(): Record<string, unknown> {
    const { extra, ...fields } = this as unknown as Record<string, unknown> & { extra: Record<string, unknown> };
    return { ...extra, ...fields };
  }
}

/** The RoPE types we compute, with the fields each needs as positive numbers (transformers' required keys). */
function validateRopeScaling(scaling: Record<string, unknown> | null): void {
  const type = ropeType(scaling);
  if (!(ROPE_TYPES as readonly string[]).includes(type)) {
    const supported = ROPE_TYPES.join(", ");
    throw new UnsupportedConfigError(`rope_scaling type "${type}" is not supported (supported: ${supported})`);
  }
  for (const field of ROPE_FIELDS[type] ?? []) {
    const v = scaling?.[field];
    if (typeof v !== "number" || !(v > 0)) {
      throw new ConfigError(`rope_scaling "${type}" needs "${field}" as a positive number, got ${JSON.stringify(v)}`);
    }
  }
  if (type === "llama3" && !(Number(scaling!.high_freq_factor) > Number(scaling!.low_freq_factor))) {
    throw new ConfigError(`rope_scaling "llama3": high_freq_factor must be greater than low_freq_factor`);
  }
}

/**
 * JSON numbers beyond float64 (1e400) parse as Infinity, which a save would write back as null: refused at
 * load, anywhere in the config (e.g. rope_scaling.factor), so a loaded config always saves as it was read.
 */
function checkFinite(value: unknown, where: string, field = ""): void {
  if (typeof value === "number" && !Number.isFinite(value))
    throw new ConfigError(`${where}: field "${field}" must be a finite number, got ${value}`);
  if (typeof value !== "object" || value === null) return;
  for (const [k, v] of Object.entries(value)) checkFinite(v, where, field ? `${field}.${k}` : k);
}

function checkType(key: string, value: unknown, example: unknown, where: string): void {
  if (value === null && (example === null || key.endsWith("_token_id"))) return;
  const bad = (want: string) =>
    new ConfigError(`${where}: field "${key}" must be ${want}, got ${JSON.stringify(value)}`);
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
  if (Array.isArray(example) && !(Array.isArray(value) && value.every((v) => typeof v === "string"))) {
    throw bad("a list of strings");
  }
}

/** Qwen2 / Qwen3: sliding-window attention is refused until supported (Qwen2.5 checkpoints turn it off). */
export function refuseSlidingWindow(config: { use_sliding_window?: boolean }): void {
  if (config.use_sliding_window) {
    throw new UnsupportedConfigError("use_sliding_window=true is not supported (no sliding-window attention yet)");
  }
}
