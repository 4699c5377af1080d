// fusekit's public API, by concept. What a user of the library writes against lives here; the machinery
// behind it (codecs, backend kernels, planners, path matchers) is reachable as "fusekit/internals".
import "reflect-metadata";

// ── Errors: every failure fusekit reports is one of these (docs/errors.md) ─────────────────────────────────
export * from "./errors.js";

// ── Backends ────────────────────────────────────────────────────────────────────────────────────────────────
export { tf } from "./tensor/tf.js";
export { setBackend, getBackend, BACKENDS, type BackendName } from "./backend/backend.js";
export { setKernelThreads, kernelThreads } from "./backend/pool.js";
export { setRelaxedSimd, relaxedSimd } from "./backend/relaxed-simd.js";
export type { StorageDtype } from "./tensor/dtypes.js";

// ── Modules: the building blocks of models and of the classes a patch puts in ────────────────────────────
export {
  Module,
  ModuleList,
  type ForwardHook,
  type ForwardPreHook,
  type HookHandle,
  type LoadStateDictResult,
} from "./nn/module.js";
export { Parameter, type Layout } from "./nn/parameter.js";
export { Linear, Embedding, RMSNorm, rmsNorm, silu, ACT2FN, inRowBlocks } from "./nn/layers.js";
export { RotaryEmbedding, rotateHalf, type PositionEmbeddings, type RopeConfig } from "./nn/rope.js";
export { scaledDotProductAttention } from "./nn/attention.js";
export type { CausalLMInputs, BaseModelOutput, CausalLMOutput } from "./nn/outputs.js";
export { DynamicCache } from "./cache/dynamic-cache.js";
export { storeWeightsAs, type WeightStorage, type StoreWeightsOptions, type StoreWeightsReport } from "./nn/storage.js";

// ── Models: Llama, Qwen2, Qwen3, the Auto class and the family registry ──────────────────────────────────
export { DecoderConfig } from "./models/config.js";
export * from "./models/llama/index.js";
export * from "./models/qwen2/index.js";
export * from "./models/qwen3/index.js";
export { AutoModelForCausalLM } from "./models/auto.js";
export { PreTrainedModel, type ModelConfig } from "./loading/pretrained.js";
export { registerModelFamily, registeredModelTypes, type ModelFamily } from "./loading/registry.js";

// ── Loading and saving checkpoints (a folder, or a hub id from the Hugging Face cache) ──────────────────────────────────────────────────────────────────────────
export { fromPretrained } from "./loading/from-pretrained.js";
export type { FromPretrainedOptions, LoadProgress } from "./loading/options.js";
export { resolvePretrained, type ResolveOptions, type ResolvedModel } from "./io/hf-resolve.js";
export { hubCacheDir, DEFAULT_REVISION } from "./io/hf-cache.js";
export type { ProgressInfo } from "./io/hf-download.js";
export type { LoadReport, SaveOptions } from "./loading/types.js";
export { loadWeights, type LoadWeightsOptions } from "./loading/weights.js";
export { savePretrained } from "./loading/save.js";
export {
  describePlan,
  WEIGHT_STORAGE_CHOICES,
  type MemoryPlan,
  type WeightStorageChoice,
} from "./loading/memory-plan.js";
export { quantizeToFp8, type QuantizeFp8Options } from "./loading/fp8.js";
export { exportGguf, GGUF_EXPORT_TYPES, type ExportGgufOptions, type GgufExportType } from "./export/llama-gguf.js";
export { dequantizeFp8 } from "./tensor/fp8.js";
export type { Fp8QuantizationConfig } from "./tensor/fp8.js";
export {
  SafetensorsFile,
  writeSafetensors,
  type TensorInfo,
  type TensorData,
  type TensorToWrite,
} from "./io/safetensors.js";
export { CheckpointReader, CONFIG_NAME, WEIGHTS_NAME, WEIGHTS_INDEX_NAME, type TensorSource } from "./io/checkpoint.js";
export type { CompanionFiles, GenerationConfig } from "./io/companions.js";

// ── Demo checkpoints: random weights with real shapes and real tokenizers ────────────────────────────────
export {
  PRESETS,
  DEFAULT_PRESET,
  makeModel,
  ensureModel,
  defaultModelDir,
  type PresetName,
} from "./presets/presets.js";

// ── Tokenizers and generation ───────────────────────────────────────────────────────────────────────────────
export {
  AutoTokenizer,
  PreTrainedTokenizer,
  type ChatMessage,
  type ChatTemplateOptions,
  type EncodeOptions,
  type DecodeOptions,
  type EncodedBatch,
} from "./tokenizer/tokenizer.js";
export { CHAT_TEMPLATE_LIMITS, type ChatTemplateLimits } from "./tokenizer/template-limits.js";
export {
  generate,
  streamGenerate,
  type GenerateOptions,
  type GenerateOutput,
  type GenerationStep,
  type FinishReason,
  type CausalLM,
  type PromptInput,
} from "./generation/generate.js";
export type { SamplingParams } from "./generation/sampling.js";
export { TextStreamer } from "./generation/streamer.js";
export type { BaseStreamer, TextStreamerOptions } from "./generation/streamer.js";
export type { GenerateKwargs } from "./generation/kwargs.js";
export type { TokenizerLoadOptions } from "./tokenizer/tokenizer.js";
export {
  pipeline,
  type TextGenerationPipeline,
  type PipelineOptions,
  type TextGenerationCallOptions,
  type TextGenerationSingle,
} from "./pipelines/text-generation.js";

// ── Patch mapping: swap classes while a model is built ──────────────────────────────────────────────────────
export { construct, type ModuleClass } from "./patching/construct.js";
export {
  registerPatchMapping,
  unregisterPatchMapping,
  getPatchMapping,
  clearPatchMapping,
  withPatches,
  withoutPatches,
  applyPatches,
  type PatchMapping,
} from "./patching/registry.js";

// ── Checkpoint conversion: move weights on load, and back on save ──────────────────────────────────────────
export { WeightRenaming, WeightConverter, type ConversionRule } from "./conversion/rules.js";
export {
  ConversionOperation,
  Concatenate,
  Chunk,
  Transpose,
  MergeModulelist,
  SplitModulelist,
  type HostTensor,
  type Slot,
} from "./conversion/ops.js";
export {
  registerCheckpointConversionMapping,
  getCheckpointConversionMapping,
  clearCheckpointConversionMapping,
} from "./conversion/registry.js";

// ── Runtime fusion, fusion recipes, fusionConfig and KernelConfig ──────────────────────────────────────────
export { ModuleSpec, DROP_OUTPUT, type ModuleSpecInit } from "./fusion/spec.js";
export { RegistryCollector, FusedModule, type FusionRegistry, type ChainInfo } from "./fusion/modules.js";
export { fuseModules, unfuseModules, getFusedChains, type FuseOptions, type FusedChain } from "./fusion/fuse.js";
export { Identity, type LayoutClass } from "./fusion/generated.js";
export { FusionRecipe, defineFusionRecipe, type FusionRecipeInit, type KernelConfigKeyPair } from "./fusion/recipe.js";
export { NORM_MLP, GATE_UP, QKV, NORM_QKV, DECODER_LAYER, BUILTIN_RECIPES } from "./fusion/recipes.js";
export {
  registerFusionSpec,
  unregisterFusionSpec,
  fusionSpecNames,
  type FusionSpec,
  type FusionConfig,
} from "./fusion/config.js";
export {
  KernelConfig,
  type KernelConfigEntry,
  type KernelFusionKey,
  type KernelLayoutClass,
  type LayoutEnv,
} from "./fusion/kernel-config.js";

// ── The kernel hub: tagged layers and functions, kernelize, repositories and locks ────────────────────────
export { useKernelForwardFromHub, getKernelLayerName } from "./hub/decorator.js";
export { Mode } from "./hub/mode.js";
export {
  registerKernelMapping,
  useKernelMapping,
  getKernelMapping,
  clearKernelMapping,
  type KernelMapping,
} from "./hub/mapping.js";
export {
  kernelize,
  unkernelize,
  activeKernel,
  type KernelizeOptions,
  type KernelLoadOptions,
} from "./hub/kernelize.js";
export { DEFAULT_KERNEL_MAPPING } from "./hub/defaults.js";
export {
  LayerRepository,
  LocalLayerRepository,
  LockedLayerRepository,
  type LayerRepositoryProtocol,
  type TrustOptions,
} from "./hub/repository.js";
export {
  useKernelFuncFromHub,
  kernelizeFunctions,
  unkernelizeFunctions,
  activeFuncKernel,
  FuncRepository,
  LocalFuncRepository,
  LockedFuncRepository,
  DEFAULT_FUNC_MAPPING,
  type FuncRepositoryProtocol,
  type FuncMapping,
  type KernelizeFuncsOptions,
} from "./hub/functions.js";
export { discoverRepos, findRepo, type KernelManifest, type HubRepo } from "./hub/repos.js";
export { readLockfile, writeLockfile, LOCKFILE_NAME } from "./hub/lock.js";
export {
  KERNEL_BACKENDS,
  type Lockfile,
  type LockEntry,
  type KernelEnv,
  type KernelHelpers,
  type KernelLayerClass,
  type KernelBuildModule,
} from "./hub/types.js";
export { SiluAndMul } from "./hub/silu-and-mul.js";
