// What one load adds on top of the registered patches and conversions: the classes and weight transforms
// of its fusionConfig. Everything here is scoped to that load (patches through withPatches, rules passed
// to loadWeights), so it never reaches another load, concurrent or later.
import type { ModelConfig, PreTrainedModel } from "../models/pretrained.js";
import type { PatchMapping } from "../patching/registry.js";
import type { ConversionRule } from "../conversion/rules.js";
import { FUSION_CONFIG_KEY, planFusionConfig, resolveFusionConfig, type FusionConfig } from "../fusion/config.js";
import "../fusion/recipes.js";

export interface LoadPlan {
  patches: PatchMapping;
  /** Appended to the load's conversion rules. */
  conversions: ConversionRule[];
  /** The fusion config in effect (stored in the model's config), if any. */
  fusion?: FusionConfig;
}

export interface PlanOptions {
  fusionConfig?: FusionConfig;
}

export function planLoad(raw: Record<string, unknown>, config: ModelConfig, modelClass: object, options: PlanOptions, where: string, skeleton: () => PreTrainedModel): LoadPlan {
  const fusion = resolveFusionConfig(options.fusionConfig, raw[FUSION_CONFIG_KEY], where);
  if (!fusion) return { patches: {}, conversions: [] };
  return { ...planFusionConfig(fusion, modelClass, config, skeleton), fusion };
}
