// Runtime module fusion: ModuleSpec, RegistryCollector, FusedModule, fuseModules / unfuseModules.
export { ModuleSpec, DROP, forwardParameters, type ModuleSpecInit, type ForwardParameters } from "./spec.js";
export { RegistryCollector, FusedModule, type FusionRegistry, type ChainInfo } from "./modules.js";
export { fuseModules, unfuseModules, getFusedChains, type FuseOptions, type FusedChain } from "./fuse.js";
export { matchModulePaths, matchesModulePath, toSlashGlob, closestPaths, editDistance } from "./paths.js";
