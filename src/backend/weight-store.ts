// Where packed weights live: the one copy of every bf16 / 8-bit / FP8 weight, in the layout the kernels read fastest,
// outside tfjs's heap. A store is a few "arenas", each a WebAssembly.Memory of up to 4 GiB (shared between
// threads where the platform allows it), so a model may be larger than one wasm heap; a weight lies in one arena.
// Every thread runs the arena module (bf16.wat + attention.wat + int8.wat + convert.wat + gemm.wat + fp8.wat) on
// each arena, so kernels read weights in place; activations are copied in and out (small beside the weights at decode).
// tfjs's own heap keeps activations, norms and the KV cache. Hand-written: no npm allocator works over a
// WebAssembly.Memory handed to other threads.
import { ARENA_WASM_BASE64 } from "./arena-wasm.js";
import { ARENA_RELAXED_WASM_BASE64 } from "./arena-relaxed-wasm.js";
import { relaxedSimd } from "./relaxed-simd.js";
import { BackendError } from "../errors.js";
import { bf16Interleaved, deinterleaveBf16 } from "../tensor/bf16.js";
import type { SharedExports } from "./worker.js";

const WA = (globalThis as any).WebAssembly;
const PAGE = 65536;
const ALIGN = 64;
/** An arena's most pages (4 GiB: wasm32's limit). */
const ARENA_PAGES = 65536;
/** Arenas a store can open: 6 × 4 GiB covers any model this machine's 24 GiB can hold. */
export const MAX_ARENAS = 6;
/**
 * The top of every arena that weights leave free: the kernels' activations must be in the weight's own arena (a
 * kernel reads one memory), so a full arena still has room for them. Costs nothing until used (memories grow
 * on demand). The pool splits a matmul's rows so one call needs at most a quarter of it (src/backend/pool.ts).
 */
export const ACTIVATION_RESERVE_BYTES = 256 * 2 ** 20;
/** Bytes of weights one arena holds at most. */
export const ARENA_WEIGHT_BYTES = ARENA_PAGES * PAGE - ACTIVATION_RESERVE_BYTES;

interface WasmMemory {
  readonly buffer: ArrayBufferLike;
  grow(pages: number): number;
}

/** Whether wasm memories can be shared with other threads here (Node: yes; a page: only when cross-origin isolated). */
function sharedMemoryAvailable(): boolean {
  if (typeof SharedArrayBuffer !== "function") return false;
  try {
    new WA.Memory({ initial: 0, maximum: 1, shared: true });
    return true;
  } catch {
    return false;
  }
}

/**
 * The arena module's bytes (its relaxed-SIMD build where the runtime has it, src/backend/relaxed-simd.ts) with its
 * imported memory declared shared or not (the build declares it shared, with 65536 pages at most: limits flag
 * 0x03; unshared is 0x01 with the same limits, so the bytes keep their length).
 */
function arenaModuleBytes(shared: boolean): Uint8Array {
  const base64 = relaxedSimd() ? ARENA_RELAXED_WASM_BASE64 : ARENA_WASM_BASE64;
  const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  if (shared) return bytes;
  // the memory import: "env" "memory", kind 2, then the limits flag
  const pattern = [0x03, 0x65, 0x6e, 0x76, 0x06, 0x6d, 0x65, 0x6d, 0x6f, 0x72, 0x79, 0x02, 0x03];
  const at = bytes.findIndex((_, i) => pattern.every((b, j) => bytes[i + j] === b));
  if (at < 0) throw new BackendError("the arena module has no shared env.memory import");
  bytes[at + pattern.length - 1] = 0x01;
  return bytes;
}

/** One memory of the store: a first-fit allocator of 64-byte aligned blocks, and this thread's kernels on it. */
export class Arena {
  readonly memory: WasmMemory;
  /** The arena module instantiated on this memory, on the calling thread. */
  readonly main: SharedExports;
  private free: { at: number; size: number }[] = [];
  private top = ALIGN; // offset 0 is never handed out
  private readonly sizes = new Map<number, number>();
  private scratch = { at: 0, size: 0 };

  constructor(
    readonly index: number,
    module: object,
    shared: boolean,
  ) {
    this.memory = new WA.Memory({ initial: 1, maximum: ARENA_PAGES, shared });
    this.main = new WA.Instance(module, { env: { memory: this.memory } }).exports as SharedExports;
  }

  /** A block of `bytes` (64-byte aligned) ending at most at `limit`, or undefined when the arena cannot hold it. */
  alloc(bytes: number, limit = ARENA_PAGES * PAGE): number | undefined {
    const size = Math.ceil(Math.max(bytes, 1) / ALIGN) * ALIGN;
    const i = this.free.findIndex((b) => b.size >= size && b.at + size <= limit);
    let at: number;
    if (i >= 0) {
      at = this.free[i].at;
      if (this.free[i].size > size) this.free[i] = { at: at + size, size: this.free[i].size - size };
      else this.free.splice(i, 1);
    } else {
      at = this.top;
      if (at + size > limit) return undefined;
      const need = at + size - this.memory.buffer.byteLength;
      try {
        if (need > 0) this.memory.grow(Math.ceil(need / PAGE));
      } catch {
        return undefined; // the machine refused the pages
      }
      this.top = at + size;
    }
    this.sizes.set(at, size);
    return at;
  }

  release(at: number): void {
    const size = this.sizes.get(at);
    if (size === undefined) return;
    this.sizes.delete(at);
    this.free.push({ at, size });
    this.free.sort((a, b) => a.at - b.at);
    const merged: { at: number; size: number }[] = [];
    for (const b of this.free) {
      const last = merged[merged.length - 1];
      if (last && last.at + last.size === b.at) last.size += b.size;
      else merged.push({ ...b });
    }
    if (merged.length && merged[merged.length - 1].at + merged[merged.length - 1].size === this.top) {
      this.top = merged.pop()!.at;
    }
    this.free = merged;
  }

  /** Bytes handed out (blocks in use, rounded to 64). */
  get used(): number {
    let n = 0;
    for (const s of this.sizes.values()) n += s;
    return n;
  }

  /** Bytes handed out for anything but the scratch block (weights, KV rows). */
  get held(): number {
    return this.used - (this.scratch.size ? Math.ceil(this.scratch.size / ALIGN) * ALIGN : 0);
  }

  /** A view of `length` bytes at `at` (valid until the memory next grows). */
  bytes(at: number, length: number): Uint8Array {
    return new Uint8Array(this.memory.buffer, at, length);
  }

  /** A scratch block of at least `bytes` (the same one each call: its contents last until the next call). */
  scratchAt(bytes: number): number | undefined {
    if (this.scratch.size < bytes) {
      if (this.scratch.size) this.release(this.scratch.at);
      this.scratch = { at: 0, size: 0 };
      const at = this.alloc(bytes);
      if (at === undefined) return undefined;
      this.scratch = { at, size: bytes };
    }
    return this.scratch.at;
  }
}

/**
 * The kinds of stored weight (src/tensor/bf16.ts's packed rows, src/tensor/int8.ts's blocks, an FP8 checkpoint's
 * E4M3 codes as stored with their block scales: src/backend/fp8.wat).
 */
export type StoredKind = "bf16" | "int8" | "fp8";

/**
 * An FP8 weight's block scales: float32 [ceil(m / br), ceil(n / bc)] at byte `at`, in the same block as the codes
 * (right after them, 64-byte aligned) — a kernel reads both from the one arena its job runs on.
 */
export interface StoredScales {
  readonly at: number;
  readonly shape: readonly [number, number];
  readonly block: readonly [number, number];
}

/** Where an FP8 weight's scales start in its block: after its `shape` int32 words, 64-byte aligned. */
const scalesOffset = (shape: readonly [number, number]) => Math.ceil((shape[0] * shape[1] * 4) / ALIGN) * ALIGN;

/** Bytes of a weight of `shape` int32 words, with `scales` after them when given. */
const blockBytes = (shape: readonly [number, number], scales?: { shape: readonly [number, number] }) =>
  scales ? scalesOffset(shape) + scales.shape[0] * scales.shape[1] * 4 : shape[0] * shape[1] * 4;

const reclaim = new FinalizationRegistry<{ arena: Arena; at: number }>(({ arena, at }) => arena.release(at));

/**
 * One weight in the store: `bytes` at `at` of `arena`, an int32 [rows, words] matrix in its kind's kernel layout.
 * Released by `release()`, or when it is garbage-collected.
 */
export class StoredWeight {
  private live = true;

  constructor(
    readonly arena: Arena,
    readonly at: number,
    readonly shape: readonly [number, number],
    readonly kind: StoredKind,
    /** An FP8 weight's block scales (its codes are the words). */
    readonly scales?: StoredScales,
  ) {
    reclaim.register(this, { arena, at }, this);
  }

  get bytes(): number {
    return blockBytes(this.shape, this.scales);
  }

  get released(): boolean {
    return !this.live;
  }

  /** The weight's words (a fresh view: valid until the arena next grows). */
  words(): Int32Array {
    if (!this.live) throw new BackendError("a released weight was read");
    return new Int32Array(this.arena.memory.buffer, this.at, this.shape[0] * this.shape[1]);
  }

  /** An FP8 weight's scales (a fresh view: valid until the arena next grows). */
  scaleValues(): Float32Array {
    if (!this.live || !this.scales) throw new BackendError("a released or unscaled weight's scales were read");
    const [rows, cols] = this.scales.shape;
    return new Float32Array(this.arena.memory.buffer, this.scales.at, rows * cols);
  }

  release(): void {
    if (!this.live) return;
    this.live = false;
    reclaim.unregister(this);
    this.arena.release(this.at);
  }
}

/** The process's arenas (opened as weights arrive) and the compiled arena module every thread instantiates. */
export class WeightStore {
  readonly shared = sharedMemoryAvailable();
  readonly module: object = new WA.Module(arenaModuleBytes(this.shared));
  /** Every arena the store may use: their memories exist from the start so the pool's threads can see them. */
  readonly arenas: Arena[] = [];

  constructor(count = MAX_ARENAS) {
    for (let i = 0; i < count; i++) this.arenas.push(new Arena(i, this.module, this.shared));
  }

  /**
   * A new weight of `shape` int32 words (and, for FP8, block scales of `scales.shape` after them), not yet filled,
   * in `arena` or else the first arena with room.
   */
  alloc(
    shape: readonly [number, number],
    kind: StoredKind,
    preferred?: Arena,
    scales?: Omit<StoredScales, "at">,
  ): StoredWeight {
    const bytes = blockBytes(shape, scales);
    for (const arena of [...(preferred ? [preferred] : []), ...this.arenas]) {
      const at = arena.alloc(bytes, ARENA_WEIGHT_BYTES);
      if (at !== undefined)
        return new StoredWeight(arena, at, shape, kind, scales && { ...scales, at: at + scalesOffset(shape) });
    }
    throw new BackendError(
      `no room for a ${kind} weight of ${(bytes / 2 ** 20).toFixed(1)} MiB: the weight store's ${this.arenas.length} ` +
        `arenas (${(ARENA_WEIGHT_BYTES / 2 ** 30).toFixed(2)} GiB of weights each) hold ${(this.used / 2 ** 30).toFixed(2)} GiB`,
    );
  }

  /** Bytes of weights (and scratch) held. */
  get used(): number {
    return this.arenas.reduce((n, a) => n + a.used, 0);
  }
}

let store: WeightStore | undefined;
/** The process's weight store (opened on first use). */
export function weightStore(): WeightStore {
  return (store ??= new WeightStore());
}

/** The store's arenas if it is open, else none (for code that must not open it). */
export const openedArenas = (): readonly Arena[] => store?.arenas ?? [];

/** Bytes a staging block for `toKernelLayout` may take. */
const STAGE_BYTES = 4 << 20;

/**
 * Reorders a stored bf16 weight of [rows, cols] values, written row-major, into the kernel layout (interleaved by
 * 8 rows where bf16Interleaved says), in place, through a staging block of ≤ ~4 MB in its arena.
 */
export function toKernelLayout(w: StoredWeight, cols: number): void {
  const rows = w.shape[0];
  if (w.kind !== "bf16" || !bf16Interleaved(rows, cols)) return;
  const rowBytes = cols * 2;
  const stageRows = Math.min(rows, 8 * Math.max(1, Math.floor(STAGE_BYTES / (8 * rowBytes))));
  const arena = w.arena;
  const stage = arena.alloc(stageRows * rowBytes);
  if (stage === undefined) throw new BackendError(`no room to stage a weight's rows in weight arena ${arena.index}`);
  try {
    for (let r = 0; r < rows; r += stageRows) {
      const n = Math.min(stageRows, rows - r);
      const from = w.at + r * rowBytes;
      new Uint8Array(arena.memory.buffer).copyWithin(stage, from, from + n * rowBytes);
      arena.main.interleave(stage, from, n, cols);
    }
  } finally {
    arena.release(stage);
  }
}

/** A new stored weight holding `words` (int32 [rows, ·] in row-major order), in its kind's kernel layout. */
export function storeWords(words: Int32Array, shape: readonly [number, number], kind: StoredKind): StoredWeight {
  const w = weightStore().alloc(shape, kind);
  w.words().set(words);
  toKernelLayout(w, 2 * shape[1]);
  return w;
}

/**
 * A new stored FP8 weight: E4M3 `codes` of `shape` [rows, cols] (checkpoint order; cols a multiple of 4) and their
 * float32 block `scales` for blocks of `block`, in one block of the store.
 */
export function storeFp8(
  codes: Uint8Array,
  shape: readonly number[],
  scales: Float32Array,
  block: readonly [number, number],
): StoredWeight {
  const scaleShape = [Math.ceil(shape[0] / block[0]), Math.ceil(shape[1] / block[1])] as const;
  const w = weightStore().alloc([shape[0], shape[1] / 4], "fp8", undefined, { shape: scaleShape, block });
  w.arena.bytes(w.at, codes.length).set(codes);
  w.scaleValues().set(scales);
  return w;
}

/** A stored weight's words in row-major order (a new array). */
export function storedRowMajor(w: StoredWeight): Int32Array {
  const words = w.words();
  return w.kind === "bf16" ? deinterleaveBf16(words, w.shape[0], 2 * w.shape[1]) : words.slice();
}

/**
 * Rows `ids` of a stored bf16 weight of `cols` values per row, widened to float32 into `out` ([ids.length, cols];
 * a new array by default), read through the kernel layout.
 */
export function bf16Rows(
  w: StoredWeight,
  ids: ArrayLike<number>,
  cols: number,
  out = new Float32Array(ids.length * cols),
): Float32Array {
  const halves = new Uint16Array(w.arena.memory.buffer, w.at, w.shape[0] * cols);
  const bits = new Uint32Array(out.buffer, out.byteOffset, ids.length * cols);
  const il = bf16Interleaved(w.shape[0], cols);
  for (let r = 0; r < ids.length; r++) {
    const o = ids[r];
    if (il) {
      const block = 2 * ((o & ~7) * (cols / 2) + (o & 7) * 4);
      for (let i = 0; i < cols; i++) bits[r * cols + i] = halves[block + 64 * (i >> 3) + (i & 7)] << 16;
    } else {
      for (let i = 0; i < cols; i++) bits[r * cols + i] = halves[o * cols + i] << 16;
    }
  }
  return out;
}
