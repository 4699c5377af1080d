// fusekit's public API.
import "reflect-metadata";

export * from "./errors.js";
export { tf } from "./tensor/tf.js";
export { setBackend, getBackend, tensorflowAvailable, BACKENDS, type BackendName } from "./tensor/backend.js";
export * from "./tensor/dtypes.js";

export { Module, ModuleList, type ForwardHook, type ForwardPreHook, type HookHandle, type LoadStateDictResult } from "./nn/module.js";
export { Parameter, type Layout } from "./nn/parameter.js";
export { Linear, Embedding, RMSNorm, rmsNorm, silu, ACT2FN } from "./nn/layers.js";
export { Rng, type Initializer } from "./nn/init.js";

export { construct, type ModuleClass } from "./patching/construct.js";
export { DynamicCache } from "./generation/cache.js";

export * from "./models/qwen3/index.js";
export { PreTrainedModel, type ModelConfig, type LoadReport, type SaveOptions } from "./models/pretrained.js";
export { registerModelFamily, registeredModelTypes, type ModelFamily } from "./models/registry.js";
export { AutoModelForCausalLM } from "./models/auto.js";
export { PRESETS, DEFAULT_PRESET, makeModel, ensureModel, defaultModelDir, cacheDir, qwen3TokenizerDir, type PresetName } from "./models/presets.js";

export { SafetensorsFile, writeSafetensors, parseHeader, buildHeader, MAX_HEADER_BYTES, type TensorInfo, type TensorData, type TensorToWrite } from "./io/safetensors.js";
export { CheckpointReader, readConfigJson, CONFIG_NAME, WEIGHTS_NAME, WEIGHTS_INDEX_NAME } from "./io/checkpoint.js";
export { fromPretrained, loadWeights, type FromPretrainedOptions, type LoadProgress } from "./loading/load.js";
export { savePretrained, parseSize } from "./loading/save.js";

export { useKernelForwardFromHub, getKernelLayerName } from "./kernels/decorator.js";

export { storeWeightsAs, packWeightsOnLoad, fromPretrainedAs, type WeightStorage, type StoreWeightsOptions, type StoreWeightsReport } from "./accel/store.js";
export { bf16MatMul, bf16Embedding, setBf16Options, type Bf16Options } from "./accel/ops.js";
export { bf16KernelsAvailable, BF16_MATMUL, BF16_UNPACK, BF16_UNPACK_T, BF16_PACK } from "./accel/kernels.js";
export { packBf16, unpackBf16 } from "./accel/bf16.js";
