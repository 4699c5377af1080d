// Runtime module fusion: ModuleSpec, RegistryCollector, FusedModule, fuseModules / unfuseModules.
export { ModuleSpec, DROP_OUTPUT, forwardParameters, type ModuleSpecInit, type ForwardParameters } from "./spec.js";
export { RegistryCollector, FusedModule, type FusionRegistry, type ChainInfo } from "./modules.js";
export { fuseModules, unfuseModules, getFusedChains, type FuseOptions, type FusedChain } from "./fuse.js";
export { matchModulePaths, matchesModulePath, closestPaths } from "./paths.js";
