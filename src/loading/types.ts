// The shapes loading and saving share, apart from the PreTrainedModel class itself, so the registry and the
// saver can name a model without importing the class that imports them.
import type { Module } from "../nn/module.js";
import type { ModelConfig } from "../io/checkpoint.js";
import type { StorageDtype } from "../tensor/dtypes.js";
import type { ConversionRecord } from "../conversion/apply.js";
import type { CompanionFiles } from "../io/companions.js";
import type { MemoryPlan } from "./memory-plan.js";
import type { GenerateKwargs } from "../generation/kwargs.js";

/** What happened to each checkpoint key during a load. */
export interface LoadReport {
  /** Parameters the checkpoint did not provide (they were initialised randomly). */
  missingKeys: string[];
  /** Checkpoint tensors no parameter took. */
  unexpectedKeys: string[];
  /** Keys whose checkpoint shape differs from the parameter's (left initialised randomly). */
  mismatchedKeys: { key: string; expected: number[]; got: number[] }[];
  /** Conversion groups that failed (their targets stay missing). */
  conversionErrors: { rule: string; keys: string[]; message: string }[];
  /** Conversion rules that matched no checkpoint key. */
  unmatchedRules: string[];
  /** Which rule moved which checkpoint keys to which runtime keys. */
  convertedKeys: { rule: string; sources: string[]; targets: string[] }[];
}

export interface SaveOptions {
  /** Shard above this many bytes (a number, or "500MB", "2GB"); default 5GB like transformers. */
  maxShardSize?: number | string;
  /** Store every tensor as this dtype instead of the dtype each was loaded as. */
  dtype?: StorageDtype;
  /** Undo the conversions the model was loaded with, writing the checkpoint's original layout (default true). */
  saveOriginalFormat?: boolean;
  /**
   * Milliseconds to wait while another save writes into the same folder (default 10 minutes); then a
   * SaveLockError. Saves into one folder run one at a time, across processes.
   */
  lockTimeout?: number;
}

/** A model built from a config that knows how it was loaded: what PreTrainedModel is, as the registry and saver see it. */
export interface CheckpointModel extends Module {
  readonly config: ModelConfig;
  loadReport?: LoadReport;
  memoryPlan?: MemoryPlan;
  checkpointConversion?: ConversionRecord;
  companionFiles?: CompanionFiles;
  savePretrained(dir: string, options?: SaveOptions): Promise<void>;
  generate(kwargs: GenerateKwargs): Promise<number[][]>;
}
