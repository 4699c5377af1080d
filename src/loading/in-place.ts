// Checkpoint bytes read straight into the backend tensors that keep them: BF16 weights bound for packed bf16
// storage are already in their final layout, so the file's bytes land in the backend's memory with no copy;
// F16 weights have the same width and are rounded to bf16 where they land; F32 weights (twice as wide) land half
// in place, half in a few 16 MiB staging buffers, and are rounded from there.
import { tf } from "../tensor/tf.js";
import type { StorageDtype } from "../tensor/dtypes.js";
import { roundF16ToBf16, roundF16ToBf16InHeap, roundF32ToBf16, roundF32ToBf16InHeap } from "../backend/convert.js";
import { heapOffset, type WasmBackend } from "../backend/heap.js";
import type { Parameter } from "../nn/parameter.js";
import type { TensorSource } from "../io/checkpoint.js";

/** Checkpoint dtypes read straight into packed bf16 storage (BF16 / F16 in place, F32 through staging buffers). */
export const IN_PLACE_DTYPES: ReadonlySet<StorageDtype> = new Set(["BF16", "F16", "F32"]);

/** Bytes of F32 read per staging buffer, and how many such reads run at once. */
const STAGING_BYTES = 16 * 2 ** 20;
const STAGING_BUFFERS = 4;

/** Bytes dlmalloc may add to an allocation (header, alignment): a generous bound. */
const ALLOCATION_OVERHEAD = 64;

/** A backend tensor not yet filled: its bytes, then the tensor. */
interface Slot {
  /** A view of the tensor's bytes, valid until the backend's memory next grows. */
  bytes(): Uint8Array;
  /** Rounds the F16 values its bytes hold to bf16, in place. */
  roundF16(): void;
  /** Rounds `count` float32s from the start of `staging` to bf16 at byte `at` of its bytes. */
  roundF32From(staging: Slot, at: number, count: number): void;
  /** Its byte offset in the wasm heap (0 elsewhere). */
  offset(): number;
  tensor(): tf.Tensor;
  dispose(): void;
}

/** An int32 tensor of `shape` whose bytes are still to be written: in the wasm heap, or in the array behind it. */
function allocate(shape: number[]): Slot {
  const n = tf.util.sizeFromShape(shape);
  if (tf.getBackend() === "wasm") {
    const b = tf.backend() as unknown as WasmBackend;
    const info = b.makeOutput(shape, "int32");
    const t = tf.engine().makeTensorFromTensorInfo(info);
    const offset = () => heapOffset(b, info);
    return {
      bytes: () => new Uint8Array(b.wasm.asm.memory.buffer, offset(), n * 4),
      roundF16: () => roundF16ToBf16InHeap(b, offset(), n * 2),
      roundF32From: (staging, at, count) => roundF32ToBf16InHeap(b, staging.offset(), offset() + at, count),
      offset,
      tensor: () => t,
      dispose: () => t.dispose(),
    };
  }
  const values = new Int32Array(n);
  const bytes = () => new Uint8Array(values.buffer);
  return {
    bytes,
    roundF16: () => roundF16ToBf16(bytes()),
    roundF32From: (staging, at, count) =>
      roundF32ToBf16(staging.bytes().subarray(0, count * 4), bytes().subarray(at, at + count * 2)),
    offset: () => 0,
    tensor: () => tf.tensor(values, shape, "int32"),
    dispose() {},
  };
}

/**
 * A packed bf16 tensor of `shape` (int32 [rows, cols/2]) filled by `fill` straight in the backend's memory (its
 * argument returns a view of the tensor's bytes; take it after any await). Disposed if `fill` fails.
 */
export async function fillPacked(
  shape: number[],
  fill: (bytes: () => Uint8Array) => Promise<void>,
): Promise<tf.Tensor> {
  const slot = allocate(shape);
  try {
    await fill(slot.bytes);
  } catch (err) {
    slot.dispose();
    throw err;
  }
  return slot.tensor();
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
 * Fills each parameter's packed bf16 storage with its checkpoint tensor (of an IN_PLACE_DTYPES dtype), several
 * reads at a time: BF16 and F16 read in place (F16 rounded to bf16 as each tensor completes); F32 reads its first
 * half in place and rounds it there, then its second half through staging buffers. Every tensor is allocated (in
 * one heap growth) before the first byte is read. Another task may still allocate while the reads run: each read
 * takes its view afresh, and a read in flight keeps writing to the right place because V8 reserves a wasm
 * memory's maximum up front and grows it in place. On a failure the tensors are disposed only once no read is
 * left in flight.
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
    const slot = slots[i];
    if (todo[i].dtype === "F16") slot.roundF16();
    // F32: its first half filled the slot; rounded in place (forwards), it takes the slot's first half
    if (todo[i].dtype === "F32") slot.roundF32From(slot, 0, slot.bytes().byteLength / 4);
    else onRead(key);
  };
  try {
    reserveHeap(todo.reduce((n, { p }) => n + p.numel * 2 + ALLOCATION_OVERHEAD, 0));
    for (const { p } of todo) slots.push(allocate(p.packedShape!));
    // every slot filled straight from the file (so the pool's threads fault its fresh pages in), F32 ones half
    await readBytesIntoMany(
      todo.map(({ key, dtype }, i) => (dtype === "F32" ? [key, slots[i].bytes, 0] : [key, slots[i].bytes])),
      landed,
    );
    const staged = todo.flatMap(({ key, dtype }, i) => (dtype === "F32" ? [{ key, slot: slots[i] }] : []));
    if (staged.length) await readF32Staged(readBytesIntoMany, staged, onRead);
  } catch (err) {
    for (const s of slots) s.dispose();
    throw err;
  }
  todo.forEach(({ p, dtype }, i) => {
    p.setPacked(slots[i].tensor());
    p.storedDtype = dtype;
  });
}

/**
 * The second half of F32 tensors into their packed bf16 slots (whose first half holds the first, rounded):
 * STAGING_BUFFERS pieces of STAGING_BYTES read at once into staging buffers, then each rounded into its place
 * (nearest even, as encode does); `onRead` as each tensor completes.
 */
async function readF32Staged(
  readBytesIntoMany: NonNullable<TensorSource["readBytesIntoMany"]>,
  tensors: { key: string; slot: Slot }[],
  onRead: (key: string) => void,
): Promise<void> {
  const pieces = tensors.flatMap(({ key, slot }) => {
    const half = slot.bytes().byteLength; // of the float32 bytes, twice the bf16 ones
    return Array.from({ length: Math.ceil(half / STAGING_BYTES) }, (_, k) => {
      const from = half + k * STAGING_BYTES;
      return { key, slot, from, to: Math.min(from + STAGING_BYTES, 2 * half), last: from + STAGING_BYTES >= 2 * half };
    });
  });
  for (const { key, slot } of tensors) if (slot.bytes().byteLength === 0) onRead(key);
  const staging: Slot[] = [];
  try {
    for (let k = 0; k < Math.min(STAGING_BUFFERS, pieces.length); k++) staging.push(allocate([STAGING_BYTES / 4]));
    for (let k = 0; k < pieces.length; k += STAGING_BUFFERS) {
      const batch = pieces.slice(k, k + STAGING_BUFFERS);
      await readBytesIntoMany(
        batch.map(({ key, from, to }, j) => [key, () => staging[j].bytes().subarray(0, to - from), from]),
      );
      batch.forEach(({ key, slot, from, to, last }, j) => {
        slot.roundF32From(staging[j], from / 2, (to - from) / 4);
        if (last) onRead(key);
      });
    }
  } finally {
    for (const s of staging) s.dispose();
  }
}
