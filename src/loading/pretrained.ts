import { Module } from "../nn/module.js";
import type { MemoryPlan } from "../loading/memory-plan.js";
import type { ConversionRecord } from "../conversion/apply.js";
import type { CompanionFiles } from "../io/companions.js";
import type { ModelConfig } from "../io/checkpoint.js";
import type { CheckpointModel, LoadReport, SaveOptions } from "./types.js";
import { savePretrained } from "./save.js";

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

  constructor(readonly config: C) {
    super();
  }

  async savePretrained(dir: string, options: SaveOptions = {}): Promise<void> {
    await savePretrained(this, dir, options);
  }
}
