import type { tf } from "../tensor/tf.js";

/** Backend names a kernel mapping or a build may use: fusekit's backends plus tfjs' browser ones. */
export const KERNEL_BACKENDS = ["wasm", "cpu", "tensorflow", "webgl", "webgpu"] as const;
export type KernelBackend = (typeof KERNEL_BACKENDS)[number];

/** What a build module receives: the one tfjs instance fusekit runs on, and the backend it is built for. */
export interface KernelEnv {
  tf: typeof tf;
  backend: string;
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
