// What fusekit's custom kernels need from tfjs's backends (their internals are untyped), and one way to
// run a separately compiled SIMD module in place on the wasm backend's heap.
import { tf } from "../tensor/tf.js";

// tsconfig's lib (ES2022, no DOM) has no WebAssembly types: the few used here (the global exists at run time).
declare global {
  namespace WebAssembly {
    class Memory {
      constructor(descriptor: { initial: number; maximum?: number; shared?: boolean });
      readonly buffer: ArrayBuffer;
    }
    class Module {
      constructor(bytes: Uint8Array);
    }
    class Instance {
      constructor(module: Module, imports: object);
      readonly exports: object;
    }
  }
}

/** The parts of tfjs-backend-wasm the kernels use. */
export interface WasmBackend {
  wasm: { asm: { memory: WebAssembly.Memory }; HEAPF32: Float32Array };
  dataIdMap: { get(id: tf.DataId): { memoryOffset: number } };
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  typedArrayFromHeap(t: tf.TensorInfo): Float32Array;
  disposeData(id: tf.DataId): boolean;
}

/** The parts of tfjs-backend-cpu the kernels use. */
export interface CpuBackend {
  data: { get(id: tf.DataId): { values: tf.backend_util.BackendValues } };
  makeTensorInfo(shape: number[], dtype: tf.DataType, values: tf.backend_util.BackendValues): tf.TensorInfo;
}

/** Byte offset of a tensor's data in the wasm heap (unsigned: the heap reaches 4 GiB). */
export const heapOffset = (b: WasmBackend, t: tf.TensorInfo) => b.dataIdMap.get(t.dataId).memoryOffset >>> 0;

/** Index of a float32 tensor's first element in HEAPF32: `>>> 2`, never `>> 2` (negative past 2 GiB). */
export const heapIndexF32 = (b: WasmBackend, t: tf.TensorInfo) => heapOffset(b, t) >>> 2;

/**
 * A module (given as base64 bytes) that imports `env.memory`, instantiated on a backend's heap: compiled
 * once, one instance per heap. The Memory object survives heap growth, so instances stay valid; typed-array
 * views do not, so kernels take offsets, never views.
 */
export function heapModule<Exports>(base64: string): (backend: WasmBackend) => Exports {
  let compiled: WebAssembly.Module | undefined;
  const instances = new WeakMap<WebAssembly.Memory, Exports>();
  return (backend) => {
    const memory = backend.wasm.asm.memory;
    let ex = instances.get(memory);
    if (!ex) {
      compiled ??= new WebAssembly.Module(Buffer.from(base64, "base64"));
      ex = new WebAssembly.Instance(compiled, { env: { memory } }).exports as unknown as Exports;
      instances.set(memory, ex);
    }
    return ex;
  };
}
