// Runtime module fusion: ModuleSpec, RegistryCollector, FusedModule, fuseModules / unfuseModules.
export { ModuleSpec, DROP_OUTPUT, forwardParameters, type ModuleSpecInit, type ForwardParameters } from "./spec.js";
export { RegistryCollector, FusedModule, type FusionRegistry, type ChainInfo } from "./modules.js";
export { fuseModules, unfuseModules, getFusedChains, type FuseOptions, type FusedChain } from "./fuse.js";
export { matchModulePaths, matchesModulePath, closestPaths } from "./paths.js";
export { globToRegexSource } from "./paths.js";
export {
  Identity,
  FusedChainModule,
  MergedLinearView,
  makeSequentialParentClass,
  makeMergedParentClass,
  makeParentClassForKernelFusion,
  type LayoutClass,
} from "./generated.js";
export { FusionRecipe, defineFusionRecipe, type FusionRecipeInit, type KernelConfigKeyPair } from "./recipe.js";
export {
  registerFusionSpec,
  unregisterFusionSpec,
  fusionSpecNames,
  resolveFusionConfig,
  planFusionConfig,
  FUSION_CONFIG_KEY,
  type FusionSpec,
  type FusionConfig,
  type FusionPlan,
} from "./config.js";
export { NORM_MLP, GATE_UP, QKV, NORM_QKV, BUILTIN_RECIPES } from "./recipes.js";
export {
  KernelConfig,
  planKernelConfig,
  type KernelConfigEntry,
  type KernelFusionKey,
  type KernelLayoutClass,
  type LayoutEnv,
  type KernelConfigPlan,
} from "./kernel-config.js";
