import { Module } from "../nn/module.js";
import type { MemoryPlan } from "../loading/memory-plan.js";
import type { ConversionRecord } from "../conversion/apply.js";
import type { CompanionFiles } from "../io/companions.js";
import type { ModelConfig } from "../io/checkpoint.js";
import type { CheckpointModel, LoadReport, SaveOptions } from "./types.js";
import { savePretrained } from "./save.js";
import { generateWithKwargs, type GenerateKwargs } from "../generation/kwargs.js";
import type { CausalLM } from "../generation/generate.js";

export type { ModelConfig };

/** A model that can be loaded from and saved to a Hugging Face checkpoint directory. */
export abstract class PreTrainedModel<Args extends unknown[] = any[], Out = any, C extends ModelConfig = ModelConfig>
  extends Module<Args, Out>
  implements CheckpointModel
{
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
    return generateWithKwargs(this as unknown as CausalLM, kwargs);
  }

  async savePretrained(dir: string, options: SaveOptions = {}): Promise<void> {
    await savePretrained(this, dir, options);
  }
}
