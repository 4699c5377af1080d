import "./llama/index.js";
import "./qwen2/index.js";
import "./qwen3/index.js";
import { fromPretrained } from "../loading/from-pretrained.js";
import type { FromPretrainedOptions } from "../loading/options.js";
import { buildModel, familyFor } from "../loading/registry.js";
import type { ModelConfig, PreTrainedModel } from "../loading/pretrained.js";
import { ConfigError } from "../errors.js";
import { planConfigMemory } from "../loading/memory-plan.js";
import { tf } from "../tensor/tf.js";

/** Builds the right causal-LM class for a checkpoint directory or config, like transformers' Auto class. */
export class AutoModelForCausalLM {
  /** A checkpoint folder, or a hub model id ("org/name") from the Hugging Face cache (see fromPretrained). */
  static fromPretrained(idOrDir: string, options: FromPretrainedOptions = {}): Promise<PreTrainedModel> {
    return fromPretrained(idOrDir, options);
  }

  /** A randomly initialised model (seeded: the same seed gives the same weights on every backend). */
  static fromConfig(config: ModelConfig | Record<string, unknown>, { seed = 0 } = {}): PreTrainedModel {
    const parsed =
      typeof (config as ModelConfig).toDict === "function"
        ? (config as ModelConfig)
        : configFromDict(config as Record<string, unknown>);
    planConfigMemory(parsed.toDict(), tf.getBackend()); // before a module is built
    const model = buildModel(parsed);
    model.initializeWeights(seed);
    return model.eval();
  }
}

function configFromDict(raw: Record<string, unknown>): ModelConfig {
  if (typeof raw !== "object" || raw === null) throw new ConfigError("fromConfig needs a config object");
  return familyFor(raw, "config").configFromDict(raw, "config");
}
