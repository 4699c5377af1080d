// Checkpoint bytes read straight into the weight store that keeps them: BF16 weights bound for packed bf16
// storage land as they are (then reordered in place into the kernel layout), with no copy;
// F16 weights have the same width and are rounded to bf16 where they land; F32 weights (twice as wide) land half
// in place, half in a few 16 MiB staging buffers, and are rounded from there.
import type { StorageDtype } from "../tensor/dtypes.js";
import { toKernelLayout, weightStore, type Arena, type StoredWeight } from "../backend/weight-store.js";
import type { Parameter } from "../nn/parameter.js";
import type { TensorSource } from "../io/checkpoint.js";

/** Checkpoint dtypes read straight into packed bf16 storage (BF16 / F16 in place, F32 through staging buffers). */
export const IN_PLACE_DTYPES: ReadonlySet<StorageDtype> = new Set(["BF16", "F16", "F32"]);

/** Bytes of F32 read per staging buffer, and how many such reads run at once. */
const STAGING_BYTES = 16 * 2 ** 20;
const STAGING_BUFFERS = 4;

/** A stored weight (or staging block) not yet filled: its bytes, then the weight. */
interface Slot {
  /** A view of its bytes, valid until its arena next grows. */
  bytes(): Uint8Array;
  /** Rounds the F16 values its bytes hold to bf16, in place. */
  roundF16(): void;
  /** Rounds `count` float32s from the start of `staging` (a block of the same arena) to bf16 at byte `at` of its bytes. */
  roundF32From(staging: Slot, at: number, count: number): void;
  readonly stored: StoredWeight;
  dispose(): void;
}

/** A block of int32 `shape` in the weight store (in `arena` when given), whose bytes are still to be written. */
function allocate(shape: readonly [number, number], arena?: Arena): Slot {
  const stored = weightStore().alloc(shape, "bf16", arena);
  const { at } = stored;
  const n = shape[0] * shape[1];
  return {
    bytes: () => stored.arena.bytes(at, n * 4),
    roundF16: () => stored.arena.main.f16ToBf16(at, n * 2),
    roundF32From: (staging, to, count) => stored.arena.main.f32ToBf16(staging.stored.at, at + to, count),
    stored,
    dispose: () => stored.release(),
  };
}

/**
 * A packed bf16 weight of `shape` (int32 [rows, cols/2]) filled by `fill` straight in the weight store (its
 * argument returns a view of the weight's bytes in checkpoint order; take it after any await), then put in the
 * kernel layout. Released if `fill` fails.
 */
export async function fillPacked(
  shape: readonly [number, number],
  fill: (bytes: () => Uint8Array) => Promise<void>,
): Promise<StoredWeight> {
  const slot = allocate(shape);
  try {
    await fill(slot.bytes);
  } catch (err) {
    slot.dispose();
    throw err;
  }
  toKernelLayout(slot.stored, 2 * shape[1]);
  return slot.stored;
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
    toKernelLayout(slots[i].stored, 2 * p.packedShape![1]);
    p.setPacked(slots[i].stored);
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
  // staging blocks in the arena of the slot they serve (the rounding reads both in one memory)
  const staging = new Map<Arena, Slot[]>();
  const stage = (j: number, arena: Arena) => {
    const list = staging.get(arena) ?? staging.set(arena, []).get(arena)!;
    while (list.length <= j) list.push(allocate([1, STAGING_BYTES / 4], arena));
    return list[j];
  };
  try {
    for (let k = 0; k < pieces.length; k += STAGING_BUFFERS) {
      const batch = pieces.slice(k, k + STAGING_BUFFERS);
      const blocks = batch.map(({ slot }, j) => stage(j, slot.stored.arena));
      await readBytesIntoMany(
        batch.map(({ key, from, to }, j) => [key, () => blocks[j].bytes().subarray(0, to - from), from]),
      );
      batch.forEach(({ key, slot, from, to, last }, j) => {
        slot.roundF32From(blocks[j], from / 2, (to - from) / 4);
        if (last) onRead(key);
      });
    }
  } finally {
    for (const list of staging.values()) for (const s of list) s.dispose();
  }
}
