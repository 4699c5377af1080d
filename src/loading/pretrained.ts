import { Module } from "../nn/module.js";
import type { MemoryPlan } from "../loading/memory-plan.js";
import type { StorageDtype } from "../tensor/dtypes.js";
import type { ConversionRecord } from "../conversion/apply.js";
import type { CompanionFiles } from "../io/companions.js";
import type { ModelConfig } from "../io/checkpoint.js";
import type { GenerateKwargs } from "../generation/kwargs.js";
import type { CausalLM } from "../generation/generate.js";

export type { ModelConfig };

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
}

/** A model that can be loaded from and saved to a Hugging Face checkpoint directory. */
export abstract class PreTrainedModel<
  Args extends unknown[] = any[],
  Out = any,
  C extends ModelConfig = ModelConfig,
> extends Module<Args, Out> {
  /** Set by fromPretrained. */
  loadReport?: LoadReport;
  /** The memory plan `fromPretrained` made before reading weights, incl. the weight storage it chose. */
  memoryPlan?: MemoryPlan;
  /** Set by fromPretrained when conversion rules applied: what to undo when saving in the original layout. */
  checkpointConversion?: ConversionRecord;
  /** Set by fromPretrained: generation_config.json and tokenizer files of the source folder, which savePretrained writes too. */
  companionFiles?: CompanionFiles;
  /** Set by fromPretrained: the folder the checkpoint was read from (for a hub id, its snapshot in the cache). */
  sourceDir?: string;

  constructor(readonly config: C) {
    super();
  }

  /**
   * transformers(.js)'s `model.generate({ inputs, max_new_tokens, do_sample, temperature, top_k, top_p, streamer, … })`
   * (snake_case or camelCase): the prompt + generated ids per row, with the model's generation_config.json as
   * defaults. A text `inputs` is encoded with the model folder's own tokenizer.
   */
  async generate(kwargs: GenerateKwargs): Promise<number[][]> {
    // imported when called: generation builds on models, not the other way round
    const { generateWithKwargs } = await import("../generation/kwargs.js");
    return generateWithKwargs(this as unknown as CausalLM, kwargs);
  }

  async savePretrained(dir: string, options: SaveOptions = {}): Promise<void> {
    const { savePretrained } = await import("../loading/save.js");
    await savePretrained(this, dir, options);
  }
}
