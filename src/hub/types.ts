import type { tf } from "../tensor/tf.js";

/** Backend names a kernel mapping or a build may use: fusekit's backends plus tfjs' browser ones. */
export const KERNEL_BACKENDS = ["wasm", "cpu", "tensorflow", "webgl", "webgpu"] as const;
export type KernelBackend = (typeof KERNEL_BACKENDS)[number];

/** What a build module receives: the one tfjs instance fusekit runs on, the backend it is built for, and helpers. */
export interface KernelEnv {
  tf: typeof tf;
  backend: string;
  helpers: KernelHelpers;
}

/** fusekit's shared kernel helpers (src/hub/helpers.ts), so kernel repos need no copies. */
export interface KernelHelpers {
  /**
   * A SIMD wasm module (base64 bytes) that imports `env.memory`, instantiated once per wasm backend on its heap
   * (it then works on tensors in place, by byte offset); null on a backend where it cannot run (no wasm SIMD).
   */
  simdModule<Exports>(base64: string): (backend: object) => Exports | null;
  /** Byte offset of a tensor's data in a wasm backend's heap. */
  heapOffset(backend: object, t: tf.TensorInfo): number;
  /**
   * out[r] = w · (x[r] · 1/sqrt(mean(x[r]²) + eps)) over float32 rows, rounded step by step as `backend`'s own
   * Square, Mean, Add, Rsqrt and Mul kernels round them: bit-identical to the unfused ops there.
   */
  rmsNormRows(
    x: Float32Array,
    w: Float32Array,
    out: Float32Array,
    rows: number,
    h: number,
    eps: number,
    backend: "wasm" | "cpu",
  ): void;
  /**
   * fusekit's bf16 matmul kernel ({x: f32 [rows, n], w: packed bf16 int32 [m, n/2]} → f32 [rows, m], on wasm
   * and cpu; on wasm it runs on every core through the kernel pool): call its kernelFunc for packed weights.
   */
  BF16_MATMUL: string;
}

/**
 * A kernel layer: a class with no constructor and no state, only `forward` (run with `this` bound to
 * the module it replaces) and static capability flags such as `hasBackward`.
 */
export interface KernelLayerClass {
  new (): object;
  readonly name: string;
  prototype: { forward: (...args: any[]) => unknown };
  /** False when the kernel registers no gradient: it is then skipped in TRAINING mode. Default true. */
  hasBackward?: boolean;
}

/** The shape of a build module in a kernel repository. */
export interface KernelBuildModule {
  createLayers(env: KernelEnv): Record<string, KernelLayerClass>;
}

/** What a kernel mapping points at (a hub repository, a local folder, a locked repository). */
export interface LayerRepositoryProtocol {
  readonly layerName: string;
  /** The layer class for `backend`, or undefined when the repository has no build for it. */
  loadLayer(backend: string): Promise<KernelLayerClass | undefined>;
  /** For messages. */
  toString(): string;
}

/** `{ [layerName]: { [backend]: repo | { [mode]: repo } } }`; a bare repo means `{ [Mode.FALLBACK]: repo }`. */
export type KernelMapping = Record<
  string,
  Partial<Record<string, LayerRepositoryProtocol | Record<number, LayerRepositoryProtocol>>>
>;

/** One repository in kernels.lock. */
export interface LockEntry {
  repoId: string;
  version: number;
  /** Relative path → sha256 hex of every file in the repository. */
  files: Record<string, string>;
}

export interface Lockfile {
  lockfileVersion: 1;
  kernels: LockEntry[];
}
