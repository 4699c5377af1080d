import { Module } from "../nn/module.js";
import type { StorageDtype } from "../tensor/dtypes.js";

/** What every model config offers the loader and saver. */
export interface ModelConfig {
  model_type: string;
  architectures: string[];
  tie_word_embeddings: boolean;
  torch_dtype: string;
  toDict(): Record<string, unknown>;
}

/** What happened to each checkpoint key during a load. */
export interface LoadReport {
  /** Parameters the checkpoint did not provide (they were initialised randomly). */
  missingKeys: string[];
  /** Checkpoint tensors no parameter took. */
  unexpectedKeys: string[];
  /** Keys whose checkpoint shape differs from the parameter's (left initialised randomly). */
  mismatchedKeys: { key: string; expected: number[]; got: number[] }[];
}

export interface SaveOptions {
  /** Shard above this many bytes (a number, or "500MB", "2GB"); default 5GB like transformers. */
  maxShardSize?: number | string;
  /** Store every tensor as this dtype instead of the dtype each was loaded as. */
  dtype?: StorageDtype;
}

/** A model that can be loaded from and saved to a Hugging Face checkpoint directory. */
export abstract class PreTrainedModel<Args extends unknown[] = any[], Out = any, C extends ModelConfig = ModelConfig> extends Module<Args, Out> {
  /** Set by fromPretrained. */
  loadReport?: LoadReport;

  constructor(readonly config: C) {
    super();
  }

  async savePretrained(dir: string, options: SaveOptions = {}): Promise<void> {
    const { savePretrained } = await import("../loading/save.js");
    await savePretrained(this, dir, options);
  }
}
