// fusekit's machinery behind the public API ("fusekit/internals"): codecs, backend kernels, planners, path
// matchers, the pieces tests, the bench and kernel authors reach for. Everything public is here too; nothing
// here is promised to stay.
export * from "./index.js";
export * from "./tensor/dtypes.js";
export { ensureBackend, tensorflowAvailable } from "./backend/backend.js";
export { Rng, type Initializer } from "./nn/init.js";
export { ropeInvFreq, rotaryPosEmbOps } from "./nn/rope.js";
export { LOOP_THRESHOLD } from "./nn/attention.js";
export { buildModel } from "./loading/registry.js";
export { cacheDir, qwen3TokenizerDir, tokenizerDir } from "./presets/presets.js";
export {
  writeRandomCheckpoint,
  checkpointBytes,
  RANDOM_CHECKPOINT_DTYPES,
  type RandomCheckpointDtype,
  type RandomCheckpointOptions,
} from "./presets/random-checkpoint.js";
export { parseHeader, buildHeader, layoutOrder, MAX_HEADER_BYTES } from "./io/safetensors.js";
export { readConfigJson } from "./io/checkpoint.js";
export {
  modelShape,
  weightInventory,
  planMemory,
  backendLimits,
  activationBytes,
  kvCapacity,
  WASM_HEAP_BYTES,
  type PlanRequest,
  type BackendLimits,
  type ModelShape,
  type WeightEntry,
} from "./loading/memory-plan.js";
export { parseSize } from "./loading/save.js";
export { TOKENIZER_FILES, loadGenerationConfig, GENERATION_CONFIG_NAME } from "./io/companions.js";
export { fp8ConfigOf, scaleKeyFor, Fp8CheckpointView } from "./loading/fp8.js";
export { FP8_E4M3_MAX } from "./tensor/fp8.js";
export type { Fp8BlockLayout } from "./tensor/fp8.js";
export { resolvePatchedClass } from "./patching/registry.js";
export { planConversions, type ConversionPlan, type ConversionRecord } from "./conversion/apply.js";
export { TOKENIZER_NAME, TOKENIZER_CONFIG_NAME } from "./tokenizer/tokenizer.js";
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
} from "./generation/sampling.js";
export { checkMode, combineModes, modeName, MODE_FALLBACK_PRIORITY } from "./hub/mode.js";
export { validateKernelLayer, applyKernelsAfterLoad } from "./hub/kernelize.js";
export { bundledHubDir, hubRoots, MANIFEST_NAME } from "./hub/repos.js";
export { hashRepo } from "./hub/verify.js";
export { ensureFunctionKernels, kernelFuncNames, validateKernelFunc } from "./hub/functions.js";
export { packWeightsOnLoad } from "./nn/storage.js";
export { bf16MatMul, bf16Embedding, setBf16Options, type Bf16Options } from "./backend/ops.js";
export { bf16KernelsAvailable, BF16_MATMUL, BF16_UNPACK, BF16_PACK } from "./backend/kernels.js";
export { packBf16, unpackBf16, bf16Bits, bf16Interleaved, interleaveBf16, deinterleaveBf16 } from "./tensor/bf16.js";
export {
  weightStore,
  storeWords,
  storeFp8,
  storedRowMajor,
  StoredWeight,
  WeightStore,
  MAX_ARENAS,
} from "./backend/weight-store.js";
export { int8MatMul, int8Embedding } from "./backend/int8-ops.js";
export { int8KernelsAvailable, INT8_MATMUL, INT8_GATHER } from "./backend/int8-kernels.js";
export { quantizeInt8 } from "./backend/int8-quantize.js";
export { quantizeInt8Reference, dequantizeInt8, int8BlockWord, int8Shape, INT8_BLOCK } from "./tensor/int8.js";
export { fp8MatMul, fp8Embedding } from "./backend/fp8-ops.js";
export { fp8KernelsAvailable, FP8_MATMUL, FP8_GATHER } from "./backend/fp8-kernels.js";
export { dequantizeFp8F32 } from "./tensor/fp8.js";
export { quantizeWeightsOnLoad } from "./nn/storage.js";
export { forwardParameters, type ForwardParameters } from "./fusion/spec.js";
export { matchModulePaths, matchesModulePath, closestPaths, globToRegexSource } from "./fusion/paths.js";
export {
  FusedChainModule,
  MergedLinearView,
  makeSequentialParentClass,
  makeMergedParentClass,
  makeParentClassForKernelFusion,
} from "./fusion/generated.js";
export { resolveFusionConfig, planFusionConfig, FUSION_CONFIG_KEY, type FusionPlan } from "./fusion/config.js";
export { planKernelConfig, type KernelConfigPlan } from "./fusion/kernel-config.js";
