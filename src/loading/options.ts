// What fromPretrained takes, checked once at the door: every later step reads the same resolved object.
import type { KernelLoadOptions } from "../hub/kernelize.js";
import type { PatchMapping } from "../patching/registry.js";
import type { ConversionRule } from "../conversion/rules.js";
import { checkRules } from "../conversion/registry.js";
import type { PlanOptions } from "./plan.js";
import { WEIGHT_STORAGE_CHOICES, type WeightStorageChoice } from "./memory-plan.js";
import { WeightStorageError } from "../errors.js";
import { checkOptionKeys } from "../option-keys.js";
import type { ProgressInfo } from "../io/hf-download.js";

export type { ProgressInfo };

export interface LoadProgress {
  bytesDone: number;
  bytesTotal: number;
  key: string;
}

export interface FromPretrainedOptions extends KernelLoadOptions, PlanOptions {
  /** Throw a StateDictError if any key is missing, unexpected or mis-shaped (default false: report only). */
  strict?: boolean;
  /**
   * Load a checkpoint whose tensors differ in shape from some parameters, keeping those parameters randomly
   * initialised (listed in `loadReport.mismatchedKeys`, with a warning). Default false: a StateDictError, as
   * transformers' `ignore_mismatched_sizes`. Ignored by `strict: true`, which refuses them anyway.
   */
  ignoreMismatchedSizes?: boolean;
  /** Seed for initialising parameters the checkpoint does not provide. */
  seed?: number;
  /** Called after each tensor is loaded. */
  onProgress?: (progress: LoadProgress) => void;
  /** Patches applied only while this model is constructed, on top of the registered ones; other loads never see them. */
  patches?: PatchMapping;
  /**
   * Conversion rules for this load, instead of the registered ones (`[]` = none). Default: the rules
   * registered for the model's class name, else for its model_type.
   */
  conversions?: ConversionRule[];
  /**
   * How Linear / Embedding weights are kept. "bf16": packed as bf16 in the backend (half the memory and
   * bandwidth of float32; exact for BF16 checkpoints, rounded with a warning otherwise; wasm and cpu), packed
   * as they are read. "f32": float32. Default "auto": bf16 when exact or when float32 would not fit the
   * backend's memory, else f32 — decided by a memory plan made before any weight is read. "int8": 8-bit blocks
   * (lossy). "fp8": an FP8 checkpoint's E4M3 codes and block scales kept as stored, read by the FP8 kernels —
   * what "auto" picks for an FP8 checkpoint.
   */
  weightStorage?: WeightStorageChoice;
  /**
   * Tokens (prompt + generated) the memory plan reserves KV cache for. Default: max_position_embeddings,
   * at most 4096, halved until the plan fits; given explicitly, a plan that does not fit is a MemoryPlanError.
   */
  contextLength?: number;
  /** Longest prompt the plan reserves prefill activations for (default 512, at most `contextLength`). */
  promptLength?: number;
  /** For a hub model id: the branch, tag or commit sha (default "main"). Ignored for a folder path. */
  revision?: string;
  /** For a hub model id: the cache root (default $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub). */
  cacheDir?: string;
  /** For a hub model id: use the cache only, never download (as `HF_HUB_OFFLINE=1` does). */
  localFilesOnly?: boolean;
  /**
   * transformers.js's progress callback: "initiate" / "download" / "progress" / "done" per file downloaded or
   * read (`progress` in %, `loaded` / `total` in bytes), then "ready".
   */
  progress_callback?: (info: ProgressInfo) => void;
}

// Every key, checked by the compiler against the interface: a new option cannot be forgotten here.
export const LOAD_OPTION_KEYS: Record<keyof FromPretrainedOptions, true> = {
  strict: true,
  seed: true,
  onProgress: true,
  patches: true,
  conversions: true,
  ignoreMismatchedSizes: true,
  weightStorage: true,
  contextLength: true,
  promptLength: true,
  revision: true,
  cacheDir: true,
  localFilesOnly: true,
  progress_callback: true,
  fusionConfig: true,
  kernelConfig: true,
  useKernels: true,
  kernelMapping: true,
  backend: true,
  useFallback: true,
};

const STORAGE_HINT = `fusekit calls it "weightStorage": ${WEIGHT_STORAGE_CHOICES.map((c) => `"${c}"`).join(", ")}`;
/** What transformers / transformers.js users type that fusekit spells otherwise or does not take. */
export const LOAD_OPTION_HINTS: Readonly<Record<string, string>> = {
  dtype: STORAGE_HINT,
  torch_dtype: STORAGE_HINT,
  device: 'pick the tfjs backend with setBackend("wasm" | "cpu" | "tensorflow") or FUSEKIT_BACKEND',
  device_map: 'pick the tfjs backend with setBackend("wasm" | "cpu" | "tensorflow") or FUSEKIT_BACKEND',
  progressCallback: 'fusekit takes transformers.js\'s "progress_callback" (or "onProgress" for bytes per tensor)',
  token: "set HF_TOKEN in the environment",
  use_auth_token: "set HF_TOKEN in the environment",
  trust_remote_code: "fusekit never runs a checkpoint's code",
};

/** Checks the options a user passed (their keys, conversions, weightStorage) before anything is read; returns them unchanged. */
export function checkLoadOptions(options: FromPretrainedOptions): Readonly<FromPretrainedOptions> {
  checkOptionKeys("fromPretrained", options, Object.keys(LOAD_OPTION_KEYS), LOAD_OPTION_HINTS);
  if (options.conversions !== undefined) checkRules(options.conversions, "fromPretrained: conversions");
  const choice = options.weightStorage;
  if (choice !== undefined && !WEIGHT_STORAGE_CHOICES.includes(choice)) {
    throw new WeightStorageError(
      `unknown weightStorage "${String(choice)}" (use ${WEIGHT_STORAGE_CHOICES.map((c) => `"${c}"`).join(", ")})`,
    );
  }
  return options;
}
