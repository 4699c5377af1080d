// What a causal LM takes and returns — below the models, so generation/ and every family share them.
import type { tf } from "../tensor/tf.js";
import type { DynamicCache } from "../cache/dynamic-cache.js";

/** Inputs of a causal-LM forward. `attentionMask` covers past + new tokens (1 = attend, 0 = padding). */
export interface CausalLMInputs {
  inputIds: tf.Tensor | number[][];
  attentionMask?: tf.Tensor | number[][];
  /** Defaults to the count of attended tokens before each one (so left padding does not shift positions). */
  positionIds?: number[][];
  pastKeyValues?: DynamicCache;
  /** Creates a cache when none is passed; defaults to config.use_cache when a cache is passed in. */
  useCache?: boolean;
  /** Compute logits for only the last N positions (0 = all). Generation needs only the last one. */
  logitsToKeep?: number;
}

export interface BaseModelOutput {
  lastHiddenState: tf.Tensor;
  pastKeyValues?: DynamicCache;
}

export interface CausalLMOutput {
  logits: tf.Tensor;
  pastKeyValues?: DynamicCache;
}
