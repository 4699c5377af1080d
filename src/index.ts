// fusekit's public API.
import "reflect-metadata";

export * from "./errors.js";
export { tf } from "./tensor/tf.js";
export {
  setBackend,
  ensureBackend,
  getBackend,
  tensorflowAvailable,
  BACKENDS,
  type BackendName,
} from "./backend/backend.js";
export * from "./tensor/dtypes.js";

export {
  Module,
  ModuleList,
  type ForwardHook,
  type ForwardPreHook,
  type HookHandle,
  type LoadStateDictResult,
} from "./nn/module.js";
export { Parameter, type Layout } from "./nn/parameter.js";
export { Linear, Embedding, RMSNorm, rmsNorm, silu, ACT2FN } from "./nn/layers.js";
export { Rng, type Initializer } from "./nn/init.js";

export { construct, type ModuleClass } from "./patching/construct.js";
export { DynamicCache } from "./cache/dynamic-cache.js";

export {
  RotaryEmbedding,
  ropeInvFreq,
  rotateHalf,
  rotaryPosEmbOps,
  type PositionEmbeddings,
  type RopeConfig,
} from "./nn/rope.js";
export { scaledDotProductAttention, LOOP_THRESHOLD } from "./nn/attention.js";
export type { CausalLMInputs, BaseModelOutput, CausalLMOutput } from "./nn/outputs.js";
export { DecoderConfig } from "./models/config.js";
export * from "./models/llama/index.js";
export * from "./models/qwen2/index.js";
export * from "./models/qwen3/index.js";
export { PreTrainedModel, type ModelConfig, type LoadReport, type SaveOptions } from "./loading/pretrained.js";
export { registerModelFamily, registeredModelTypes, buildModel, type ModelFamily } from "./loading/registry.js";
export { AutoModelForCausalLM } from "./models/auto.js";
export {
  PRESETS,
  DEFAULT_PRESET,
  makeModel,
  ensureModel,
  defaultModelDir,
  cacheDir,
  qwen3TokenizerDir,
  tokenizerDir,
  type PresetName,
} from "./presets/presets.js";
export {
  writeRandomCheckpoint,
  checkpointBytes,
  RANDOM_CHECKPOINT_DTYPES,
  type RandomCheckpointDtype,
  type RandomCheckpointOptions,
} from "./presets/random-checkpoint.js";

export {
  SafetensorsFile,
  writeSafetensors,
  parseHeader,
  buildHeader,
  layoutOrder,
  MAX_HEADER_BYTES,
  type TensorInfo,
  type TensorData,
  type TensorToWrite,
} from "./io/safetensors.js";
export {
  CheckpointReader,
  readConfigJson,
  CONFIG_NAME,
  WEIGHTS_NAME,
  WEIGHTS_INDEX_NAME,
  type TensorSource,
} from "./io/checkpoint.js";
export { fromPretrained } from "./loading/from-pretrained.js";
export type { FromPretrainedOptions, LoadProgress } from "./loading/options.js";
// Hub ids ("org/name") from the Hugging Face cache, and the transformers.js-shaped entry points.
export { resolvePretrained, type ResolveOptions, type ResolvedModel } from "./io/hf-resolve.js";
export { hubCacheDir, DEFAULT_REVISION } from "./io/hf-cache.js";
export type { ProgressInfo } from "./io/hf-download.js";
export {
  pipeline,
  type TextGenerationPipeline,
  type PipelineOptions,
  type TextGenerationCallOptions,
  type TextGenerationSingle,
} from "./pipelines/text-generation.js";
export type { GenerateKwargs } from "./generation/kwargs.js";
export type { BaseStreamer, TextStreamerOptions } from "./generation/streamer.js";
export type { TokenizerLoadOptions } from "./tokenizer/tokenizer.js";
export { loadWeights, type LoadWeightsOptions } from "./loading/weights.js";
export { modelShape, weightInventory } from "./loading/memory-plan.js";
export {
  planMemory,
  backendLimits,
  describePlan,
  activationBytes,
  kvCapacity,
  WASM_HEAP_BYTES,
  WEIGHT_STORAGE_CHOICES,
  type MemoryPlan,
  type PlanRequest,
  type BackendLimits,
  type ModelShape,
  type WeightEntry,
  type WeightStorageChoice,
} from "./loading/memory-plan.js";
export { savePretrained, parseSize } from "./loading/save.js";
export {
  TOKENIZER_FILES,
  loadGenerationConfig,
  GENERATION_CONFIG_NAME,
  type CompanionFiles,
  type GenerationConfig,
} from "./io/companions.js";
export {
  quantizeToFp8,
  dequantizeFp8,
  fp8ConfigOf,
  scaleKeyFor,
  Fp8CheckpointView,
  FP8_E4M3_MAX,
  type QuantizeFp8Options,
} from "./loading/fp8.js";
export type { Fp8QuantizationConfig, Fp8BlockLayout } from "./io/fp8-layout.js";

export { useKernelForwardFromHub, getKernelLayerName } from "./hub/decorator.js";

export * from "./fusion/index.js";

export {
  registerPatchMapping,
  unregisterPatchMapping,
  getPatchMapping,
  clearPatchMapping,
  withPatches,
  withoutPatches,
  applyPatches,
  resolvePatchedClass,
  type PatchMapping,
} from "./patching/registry.js";
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
export { planConversions, type ConversionPlan, type ConversionRecord } from "./conversion/apply.js";

export {
  AutoTokenizer,
  PreTrainedTokenizer,
  TOKENIZER_NAME,
  TOKENIZER_CONFIG_NAME,
  type ChatMessage,
  type ChatTemplateOptions,
  type EncodeOptions,
  type DecodeOptions,
  type EncodedBatch,
} from "./tokenizer/tokenizer.js";
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
export {
  selectToken,
  applyRepetitionPenalty,
  applyTemperature,
  topKFilter,
  topPFilter,
  softmax,
  argmax,
  sampleFrom,
  kthLargest,
  type SamplingParams,
} from "./generation/sampling.js";
export { TextStreamer } from "./generation/streamer.js";

export { Mode, checkMode, combineModes, modeName, MODE_FALLBACK_PRIORITY } from "./hub/mode.js";
export {
  registerKernelMapping,
  useKernelMapping,
  getKernelMapping,
  clearKernelMapping,
  type KernelMapping,
} from "./hub/mapping.js";
export {
  LayerRepository,
  LocalLayerRepository,
  LockedLayerRepository,
  type LayerRepositoryProtocol,
  type TrustOptions,
} from "./hub/repository.js";
export {
  kernelize,
  unkernelize,
  activeKernel,
  validateKernelLayer,
  applyKernelsAfterLoad,
  type KernelizeOptions,
  type KernelLoadOptions,
} from "./hub/kernelize.js";
export { DEFAULT_KERNEL_MAPPING } from "./hub/defaults.js";
export {
  discoverRepos,
  findRepo,
  bundledHubDir,
  hubRoots,
  MANIFEST_NAME,
  type KernelManifest,
  type HubRepo,
} from "./hub/repos.js";
export { readLockfile, writeLockfile, LOCKFILE_NAME } from "./hub/lock.js";
export { hashRepo } from "./hub/verify.js";
export type { Lockfile, LockEntry } from "./hub/types.js";
export {
  KERNEL_BACKENDS,
  type KernelEnv,
  type KernelHelpers,
  type KernelLayerClass,
  type KernelBuildModule,
} from "./hub/types.js";
export { SiluAndMul } from "./hub/silu-and-mul.js";
export {
  useKernelFuncFromHub,
  kernelizeFunctions,
  unkernelizeFunctions,
  ensureFunctionKernels,
  activeFuncKernel,
  kernelFuncNames,
  validateKernelFunc,
  FuncRepository,
  LocalFuncRepository,
  LockedFuncRepository,
  DEFAULT_FUNC_MAPPING,
  type FuncRepositoryProtocol,
  type FuncMapping,
  type KernelizeFuncsOptions,
} from "./hub/functions.js";

export {
  storeWeightsAs,
  packWeightsOnLoad,
  type WeightStorage,
  type StoreWeightsOptions,
  type StoreWeightsReport,
} from "./nn/storage.js";
export { bf16MatMul, bf16Embedding, setBf16Options, type Bf16Options } from "./backend/ops.js";
export { bf16KernelsAvailable, BF16_MATMUL, BF16_UNPACK, BF16_UNPACK_T, BF16_PACK } from "./backend/kernels.js";
export { packBf16, unpackBf16 } from "./backend/bf16.js";
export { setKernelThreads, kernelThreads } from "./backend/pool.js";
