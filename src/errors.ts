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

/** config.json is missing, unreadable, or has a missing / ill-typed field. */
export class ConfigError extends FusekitError {}

/** config.json names a model_type / architecture no registered model implements. */
export class UnknownModelTypeError extends FusekitError {}

/** An unknown or unavailable tfjs backend was requested. */
export class BackendError extends FusekitError {}

/** A state dict does not fit a module: missing, unexpected or mis-shaped keys. */
export class StateDictError extends FusekitError {}

/** A module path does not name a submodule. */
export class ModulePathError extends FusekitError {}

/** A tensor argument has the wrong shape or dtype for the call it is passed to. */
export class ShapeError extends FusekitError {}

/**
 * A parameter stored packed (e.g. as bf16 by `storeWeightsAs`) was used as a float32 compute tensor
 * (`.tensor`), or was given values its packed storage cannot hold exactly.
 */
export class PackedParameterError extends FusekitError {}

/** `storeWeightsAs` refused: a weight is not exactly representable in the requested storage (pass `lossy`). */
export class WeightStorageError extends FusekitError {}
