// Checkpoint bytes read straight into the backend tensors that keep them: BF16 weights bound for packed bf16
// storage are already in their final layout, so the file's bytes land in the backend's memory with no copy;
// F16 weights have the same width and are rounded to bf16 where they land.
import { tf } from "../tensor/tf.js";
import type { StorageDtype } from "../tensor/dtypes.js";
import { roundF16ToBf16, roundF16ToBf16InHeap } from "../kernels/convert.js";
import { heapOffset, type WasmBackend } from "../kernels/heap.js";
import type { Parameter } from "../nn/parameter.js";
import type { TensorSource } from "../io/checkpoint.js";

/** Checkpoint dtypes read in place into packed bf16 storage (two bytes per value, as packed bf16). */
export const IN_PLACE_DTYPES: ReadonlySet<StorageDtype> = new Set(["BF16", "F16"]);

/** Bytes dlmalloc may add to an allocation (header, alignment): a generous bound. */
const ALLOCATION_OVERHEAD = 64;

/** A backend tensor not yet filled: its bytes, then the tensor. */
interface Slot {
  /** A view of the tensor's bytes, valid until the backend's memory next grows. */
  bytes(): Uint8Array;
  /** Rounds the F16 values its bytes hold to bf16, in place. */
  roundF16(): void;
  tensor(): tf.Tensor;
  dispose(): void;
}

/** An int32 tensor of `shape` whose bytes are still to be written: in the wasm heap, or in the array it is made from. */
function allocate(shape: number[]): Slot {
  const n = tf.util.sizeFromShape(shape);
  if (tf.getBackend() === "wasm") {
    const b = tf.backend() as unknown as WasmBackend;
    const info = b.makeOutput(shape, "int32");
    const t = tf.engine().makeTensorFromTensorInfo(info);
    return {
      bytes: () => new Uint8Array(b.wasm.asm.memory.buffer, heapOffset(b, info), n * 4),
      roundF16: () => roundF16ToBf16InHeap(b, heapOffset(b, info), n * 2),
      tensor: () => t,
      dispose: () => t.dispose(),
    };
  }
  const values = new Int32Array(n);
  const bytes = () => new Uint8Array(values.buffer);
  return {
    bytes,
    roundF16: () => roundF16ToBf16(bytes()),
    tensor: () => tf.tensor(values, shape, "int32"),
    dispose() {},
  };
}

/** tfjs-backend-wasm's allocator (emscripten's dlmalloc), untyped in tfjs. */
interface WasmAllocator {
  wasm: { _malloc(bytes: number): number; _free(offset: number): void };
}

/**
 * Grows the wasm heap once by `bytes` before many allocations: one growth instead of one per ~20% (emscripten's
 * step), each of which costs V8 a remapping. The block is freed at once; dlmalloc keeps it as its top chunk, which
 * the allocations that follow are carved from. Where it cannot be had, they grow the heap as usual.
 */
function reserveHeap(bytes: number): void {
  if (tf.getBackend() !== "wasm") return;
  const { wasm } = tf.backend() as unknown as WasmAllocator;
  const block = wasm._malloc(bytes);
  if (block) wasm._free(block);
}

/**
 * Fills each parameter's packed bf16 storage with its checkpoint tensor (of an IN_PLACE_DTYPES dtype), read in
 * place, several reads at a time; F16 values are rounded to bf16 as each tensor completes. Every tensor is
 * allocated (in one heap growth) before the first byte is read. Another task may still allocate while the reads
 * run: each read takes its view afresh, and a read in flight keeps writing to the right place because V8
 * reserves a wasm memory's maximum up front and grows it in place. On a failure the tensors are disposed only
 * once no read is left in flight.
 */
export async function readPackedInPlace(
  readBytesIntoMany: NonNullable<TensorSource["readBytesIntoMany"]>,
  todo: { p: Parameter; key: string; dtype: StorageDtype }[],
  onRead: (key: string) => void,
): Promise<void> {
  const slots: Slot[] = [];
  const index = new Map(todo.map(({ key }, i) => [key, i]));
  const landed = (key: string) => {
    const i = index.get(key)!;
    if (todo[i].dtype === "F16") slots[i].roundF16();
    onRead(key);
  };
  try {
    reserveHeap(todo.reduce((n, { p }) => n + p.numel * 2 + ALLOCATION_OVERHEAD, 0));
    for (const { p } of todo) slots.push(allocate(p.packedShape!));
    await readBytesIntoMany(
      todo.map(({ key }, i) => [key, slots[i].bytes]),
      landed,
    );
  } catch (err) {
    for (const s of slots) s.dispose();
    throw err;
  }
  todo.forEach(({ p, dtype }, i) => {
    p.setPacked(slots[i].tensor());
    p.storedDtype = dtype;
  });
}
