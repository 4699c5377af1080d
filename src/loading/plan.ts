// What one load adds on top of the registered patches and conversions: the classes and weight transforms
// of its fusionConfig. Everything here is scoped to that load (patches through withPatches, rules passed
// to loadWeights), so it never reaches another load, concurrent or later.
import type { ModelConfig, PreTrainedModel } from "../loading/pretrained.js";
import type { PatchMapping } from "../patching/registry.js";
import type { ConversionRule } from "../conversion/rules.js";
import { FUSION_CONFIG_KEY, planFusionConfig, resolveFusionConfig, type FusionConfig } from "../fusion/config.js";
import "../fusion/recipes.js";
import { planKernelConfig, type KernelConfig, type KernelConfigEntry } from "../fusion/kernel-config.js";
import type { KernelMapping } from "../hub/mapping.js";
import { KernelConfigError } from "../errors.js";

export interface LoadPlan {
  patches: PatchMapping;
  /** Appended to the load's conversion rules. */
  conversions: ConversionRule[];
  /** The fusion config in effect (stored in the model's config), if any. */
  fusion?: FusionConfig;
  /** Kernel mapping entries the KernelConfig adds for this load's kernelize. */
  kernelMapping: KernelMapping;
}

export interface PlanOptions {
  /** Fusion families for this load (`{}`: none, even if config.json stores some); default: config.json's `fusion_config`. */
  fusionConfig?: FusionConfig;
  /** Kernels per layer name or per group of modules (n-to-1, with the repo's Layout); needs `useKernels: true`. */
  kernelConfig?: KernelConfig | readonly KernelConfigEntry[];
  useKernels?: boolean;
}

export async function planLoad(
  raw: Record<string, unknown>,
  config: ModelConfig,
  modelClass: object,
  options: PlanOptions,
  where: string,
  skeleton: () => PreTrainedModel,
): Promise<LoadPlan> {
  const fusion = resolveFusionConfig(options.fusionConfig, raw[FUSION_CONFIG_KEY], where);
  const plan: LoadPlan = { patches: {}, conversions: [], fusion, kernelMapping: {} };
  if (fusion) Object.assign(plan, planFusionConfig(fusion, modelClass, config, skeleton));
  if (options.kernelConfig === undefined) return plan;
  if (!options.useKernels) throw new KernelConfigError("fromPretrained: kernelConfig needs useKernels: true");
  // A parent class both a fusion family and a KernelConfig key patch gets both: the key's class extends the family's.
  const kernels = await planKernelConfig(options.kernelConfig, skeleton, plan.patches);
  plan.patches = kernels.patches;
  plan.conversions.push(...kernels.conversions);
  plan.kernelMapping = kernels.kernelMapping;
  return plan;
}
