// The code each pool worker runs (src/backend/pool.ts starts it with `eval`, from the sources of `workerMain`
// and `takeChunk`, so the same file serves the TS sources under vitest and the built dist/). Both must stay
// self-contained: no imports, no closures, no module constants; they get everything through workerData.
//
// Protocol (no messages per call): the main thread writes a job into the Int32Array `ctrl` while the claim
// word is closed, opens it, and bumps ctrl[SEQ] to wake the workers. Every thread (the main one too) then
// claims chunks with `takeChunk` and adds 1 to ctrl[COMPLETED] per chunk done (ctrl[FAILED] = 1 if it
// trapped). The main thread closes the claim word and waits only for the chunks that were claimed, so a
// worker that wakes late — or is descheduled on a busy machine — is never waited for. ctrl[STOP] ends the loop.

import type { AttentionExports, attendPrefill } from "./prefill-attention.js";

/** Slots of the control array (shared with pool.ts). */
export const CTRL = {
  SEQ: 0,
  COMPLETED: 1,
  STOP: 2,
  READY: 3,
  X: 4,
  W: 5,
  Y: 6,
  ROWS: 7,
  N: 8,
  M: 9,
  FAILED: 10,
  OP: 11,
  COUNT: 12,
  CHUNK: 13,
  WORKER_CHUNKS: 14,
  IL: 15,
  ARENA: 16,
  STALL_MS: 17,
  SLOTS: 18,
} as const;

export interface WorkerData {
  memories: { readonly buffer: ArrayBufferLike }[]; // the weight store's arenas (shared WebAssembly.Memory)
  module: object; // the compiled arena module
  ctrl: SharedArrayBuffer;
  claim: SharedArrayBuffer; // one BigInt64: job number << 32 | next chunk (CLOSED_CHUNK: closed)
  index: number; // 1, 2, … (the main thread is 0)
  spin: number; // polls of ctrl[SEQ] before sleeping in Atomics.wait
  slots: typeof CTRL;
}

/**
 * ctrl[OP]: what a job is, on arena ctrl[ARENA]. GEMM: columns [o0, o1) of y = x · wᵀ; READ: sum 64-byte blocks
 * [o0, o1) from X; (2 is unused); GEMM_I8: columns
 * [o0, o1) of y = x · wᵀ for 8-bit block weights W and activations X already quantized (int8.wat). The
 * decoder-layer kernel's phases (src/backend/decoder-layer.ts): MATVECS: columns [o0, o1) of the matrices
 * listed at X (`matvecSpan`); HEADS: KV heads [o0, o1) of a decode step's attention, described at X
 * (`attendKvHeads`). TGEMM: columns [o0, o1) of the tiled prefill GEMM (gemm.wat) from activations X already
 * packed, each thread in its own scratch (`tgScratchAt`); TGEMM_PEAK: each chunk runs the GEMM's tile `o1 - o0`
 * times on data in its thread's scratch (the bench's in-cache peak); PREFILL_ATTENTION: KV heads [o0, o1) of a blocked
 * prefill attention described at X (src/backend/prefill-attention.ts `attendPrefill`); GEMM_F8: columns [o0, o1) of
 * y = x · wᵀ for an FP8 block weight (fp8.wat), its operands described at X (`FP8_DESC`).
 */
export const OPS = {
  GEMM: 0,
  READ: 1,
  GEMM_I8: 3,
  MATVECS: 4,
  HEADS: 5,
  GEMM_F8: 6,
  TGEMM: 7,
  TGEMM_PEAK: 8,
  PREFILL_ATTENTION: 9,
} as const;

/** A GEMM_F8 job's operands at X (int32 words): fp8.wat's f8GemmCols arguments before o0, o1. */
export const FP8_DESC = { X: 0, W: 1, S: 2, Y: 3, ROWS: 4, N: 5, M: 6, BR: 7, BC: 8, WORDS: 9 } as const;

/** gemm.wat's exports (the tiled prefill GEMM), on an arena or on a tfjs heap alone. */
export interface TiledGemmExports {
  tgPackedXBytes(rows: number, n: number): number;
  tgPackX(x: number, xp: number, rows: number, n: number): void;
  tgScratchBytes(): number;
  tgScratchAt(y: number, rows: number, m: number, thread: number): number;
  tgemmCols(
    xp: number,
    w: number,
    y: number,
    rows: number,
    n: number,
    m: number,
    o0: number,
    o1: number,
    il: number,
    scratch: number,
  ): void;
  tgPeak(scratch: number, reps: number): number;
}

/**
 * The arena module's exports (bf16.wat, attention.wat, int8.wat, convert.wat, gemm.wat, fp8.wat), as the pool and its
 * workers call them.
 */
export interface SharedExports extends AttentionExports, TiledGemmExports {
  gemmCols(
    x: number,
    w: number,
    y: number,
    rows: number,
    n: number,
    m: number,
    o0: number,
    o1: number,
    il: number,
  ): void;
  interleave(src: number, dst: number, rows: number, n: number): void;
  unpack(src: number, dst: number, count: number): void;
  f16ToBf16(p: number, count: number): void;
  f32ToBf16(src: number, dst: number, count: number): void;
  readsum(p: number, blocks: number): number;
  dots(q: number, k: number, out: number, T: number, d: number, scale: number): void;
  wsum(p: number, v: number, out: number, T: number, d: number): void;
  i8QxBytes(rows: number, n: number): number;
  i8Quant(x: number, qx: number, rows: number, n: number): void;
  i8GemmCols(qx: number, w: number, y: number, rows: number, n: number, m: number, o0: number, o1: number): void;
  f8GemmCols(
    x: number,
    w: number,
    s: number,
    y: number,
    rows: number,
    n: number,
    m: number,
    br: number,
    bc: number,
    o0: number,
    o1: number,
  ): void;
}

/** The claim word's low half while no chunk may be taken. */
export const CLOSED_CHUNK = 0xffffffff;

/**
 * Claims the next chunk of the open job: its index, or -1 when the job is closed or fully taken. The job's
 * size is read between loading the claim word and swapping it: a successful swap means the word never
 * changed (the job number only grows), so the job was open, and its values in `ctrl` were final, throughout.
 * Self-contained: the workers get its source.
 */
export function takeChunk(claim: BigInt64Array, ctrl: Int32Array, S: typeof CTRL): number {
  for (;;) {
    const word = Atomics.load(claim, 0);
    const i = Number(word & 0xffffffffn);
    if (i === 0xffffffff /* CLOSED_CHUNK */ || i >= Math.ceil(ctrl[S.COUNT] / ctrl[S.CHUNK])) return -1;
    if (Atomics.compareExchange(claim, 0, word, word + 1n) === word) return i;
  }
}

/**
 * A MATVECS job's list at `desc` (int32 words): count, x, n, x quantized per block (for 8-bit matrices), then per
 * matrix its weight, output, rows and KIND: 0 bf16 rows, 1 bf16 rows interleaved by 8 (bf16.wat), 2 8-bit
 * blocks (int8.wat), 3 FP8 blocks (fp8.wat; its weight word is the address of 4 words: codes, scales, br, bc).
 */
export const MATVEC_LIST = { COUNT: 0, X: 1, N: 2, QX: 3, FIRST: 4, W: 0, Y: 1, M: 2, KIND: 3, STRIDE: 4 } as const;

/**
 * Columns [o0, o1) of the concatenated outputs of the matrices listed at `desc` (one input row, each matrix
 * as the pool stores it): each output by the single-threaded kernel's `gemmCols` / `i8GemmCols`, so the same
 * bits. Self-contained: the workers get its source.
 */
export function matvecSpan(
  ex: SharedExports,
  memory: { buffer: ArrayBufferLike },
  desc: number,
  o0: number,
  o1: number,
): void {
  const L = { COUNT: 0, X: 1, N: 2, QX: 3, FIRST: 4, W: 0, Y: 1, M: 2, KIND: 3, STRIDE: 4 }; // MATVEC_LIST
  const w = new Int32Array(memory.buffer, desc, L.FIRST + L.STRIDE * new Int32Array(memory.buffer, desc, 1)[0]);
  for (let i = 0, start = 0; i < w[L.COUNT] && start < o1; i++) {
    const e = L.FIRST + L.STRIDE * i;
    const m = w[e + L.M];
    const lo = Math.max(o0, start) - start;
    const hi = Math.min(o1, start + m) - start;
    if (lo < hi && w[e + L.KIND] === 3) {
      const d = new Int32Array(memory.buffer, w[e + L.W] >>> 0, 4); // codes, scales, br, bc
      ex.f8GemmCols(w[L.X], d[0], d[1], w[e + L.Y], 1, w[L.N], m, d[2], d[3], lo, hi);
    } else if (lo < hi && w[e + L.KIND] === 2) ex.i8GemmCols(w[L.QX], w[e + L.W], w[e + L.Y], 1, w[L.N], m, lo, hi);
    else if (lo < hi) ex.gemmCols(w[L.X], w[e + L.W], w[e + L.Y], 1, w[L.N], m, lo, hi, w[e + L.KIND]);
    start += m;
  }
}

/** A HEADS job's description at `desc` (int32 words; EPS and SCALE hold float32 bits). */
export const HEADS_DESC = {
  QKV: 0, HEADS: 1, KV_HEADS: 2, D: 3, T: 4, K: 5, V: 6, CAP: 7, Q_NORM: 8, K_NORM: 9, EPS: 10,
  COS: 11, SIN: 12, OUT: 13, SCRATCH: 14, SCALE: 15, WORDS: 16,
} as const; // prettier-ignore

/**
 * A decode step's attention for KV heads [j0, j1): the new key (RMSNorm'd per head when K_NORM, then RoPE)
 * and value are written at row T of the cache, then each query head of the group (RMSNorm'd, RoPE) attends
 * to rows [0, T]: scores by `dots`, softmax, weighted sum by `wsum`, into OUT [heads · d]. Every rounding is
 * the unfused ops' own (the RMSNorm and RoPE as src/hub/helpers.ts and src/backend/rope.ts compute them, the
 * softmax as src/tensor/host.ts's softmaxInto), so the output is theirs, bit for bit. `thread` picks this
 * thread's scratch (a query row and the scores). Self-contained: the workers get its source.
 */
export function attendKvHeads(
  ex: SharedExports,
  memory: { buffer: ArrayBufferLike },
  desc: number,
  j0: number,
  j1: number,
  thread: number,
): void {
  const D = { QKV: 0, HEADS: 1, KV_HEADS: 2, D: 3, T: 4, K: 5, V: 6, CAP: 7, Q_NORM: 8, K_NORM: 9, EPS: 10, COS: 11, SIN: 12, OUT: 13, SCRATCH: 14, SCALE: 15 }; // prettier-ignore
  const w = new Int32Array(memory.buffer, desc, 16);
  const bits = new Float32Array(memory.buffer, desc, 16);
  const f = Math.fround;
  const [heads, kvHeads, d, T, cap] = [w[D.HEADS], w[D.KV_HEADS], w[D.D], w[D.T], w[D.CAP]];
  const group = heads / kvHeads;
  const heap = new Float32Array(memory.buffer);
  const at = (byteOffset: number) => byteOffset >>> 2;
  const [qkv, cos, sin] = [at(w[D.QKV]), at(w[D.COS]), at(w[D.SIN])];
  const scratch = w[D.SCRATCH] + thread * 4 * (2 * d + cap + 1); // [d] rotated row, [d] copy, [cap + 1] scores
  const row = at(scratch);
  const copy = row + d;
  const scores = scratch + 8 * d;
  const eps = bits[D.EPS];
  // RMSNorm (wasm rounding) then RoPE of the d floats at `x`, into `out` (may be `x`)
  const normRope = (x: number, norm: number, out: number) => {
    if (norm) {
      let mean = 0;
      for (let i = 0; i < d; i++) mean = f(mean + f(heap[x + i] * heap[x + i]));
      const inv = f(1 / f(Math.sqrt(f(f(mean / d) + eps))));
      const wn = at(norm);
      for (let i = 0; i < d; i++) heap[copy + i] = heap[wn + i] * f(heap[x + i] * inv);
    } else heap.copyWithin(copy, x, x + d);
    const half = d / 2;
    for (let i = 0; i < d; i++) {
      const rot = i < half ? -heap[copy + i + half] : heap[copy + i - half];
      heap[out + i] = f(f(heap[copy + i] * heap[cos + i]) + f(rot * heap[sin + i]));
    }
  };
  for (let j = j0; j < j1; j++) {
    const kRows = w[D.K] + 4 * j * cap * d;
    const vRows = w[D.V] + 4 * j * cap * d;
    normRope(qkv + (heads + j) * d, w[D.K_NORM], at(kRows) + T * d);
    const v = qkv + (heads + kvHeads + j) * d;
    heap.copyWithin(at(vRows) + T * d, v, v + d);
    for (let g = 0; g < group; g++) {
      const h = j * group + g;
      normRope(qkv + h * d, w[D.Q_NORM], row);
      ex.dots(4 * row, kRows, scores, T + 1, d, bits[D.SCALE]);
      const s = new Float32Array(memory.buffer, scores, T + 1);
      let max = -Infinity;
      for (let t = 0; t <= T; t++) if (s[t] > max) max = s[t];
      let sum = 0;
      for (let t = 0; t <= T; t++) {
        const e = Math.exp(s[t] - max);
        s[t] = e;
        sum += e;
      }
      for (let t = 0; t <= T; t++) s[t] /= sum;
      ex.wsum(scores, vRows, w[D.OUT] + 4 * h * d, T + 1, d);
    }
  }
}

export function workerMain(
  take: typeof takeChunk,
  matvecs: typeof matvecSpan,
  attend: typeof attendKvHeads,
  prefill: typeof attendPrefill,
  workerData: WorkerData,
): void {
  const { memories, module, spin, slots: S } = workerData;
  const WA = (globalThis as any).WebAssembly;
  const instances = memories.map((memory) => new WA.Instance(module, { env: { memory } }).exports as SharedExports);
  const ctrl = new Int32Array(workerData.ctrl);
  const claim = new BigInt64Array(workerData.claim);
  let seen = Atomics.load(ctrl, S.SEQ);
  Atomics.add(ctrl, S.READY, 1);
  Atomics.notify(ctrl, S.READY);
  for (;;) {
    let polls = 0;
    while (Atomics.load(ctrl, S.SEQ) === seen) if (++polls > spin) Atomics.wait(ctrl, S.SEQ, seen);
    seen = Atomics.load(ctrl, S.SEQ);
    if (Atomics.load(ctrl, S.STOP)) return;
    for (let i; (i = take(claim, ctrl, S)) >= 0;) {
      try {
        // the job's values are final while one of its chunks is claimed and not yet completed
        const chunk = ctrl[S.CHUNK];
        const o0 = i * chunk;
        const o1 = Math.min(ctrl[S.COUNT], o0 + chunk);
        // a worker descheduled mid-chunk, simulated for tests (KernelPool.stallWorkers)
        if (ctrl[S.STALL_MS]) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ctrl[S.STALL_MS]);
        const op = ctrl[S.OP]; // the OPS values (a module constant the worker's source cannot see)
        const [ex, memory] = [instances[ctrl[S.ARENA]], memories[ctrl[S.ARENA]]];
        if (op === 1) ex.readsum((ctrl[S.X] >>> 0) + 64 * o0, o1 - o0);
        else if (op === 4) matvecs(ex, memory, ctrl[S.X] >>> 0, o0, o1);
        else if (op === 5) attend(ex, memory, ctrl[S.X] >>> 0, o0, o1, workerData.index);
        else if (op === 3) ex.i8GemmCols(ctrl[S.X], ctrl[S.W], ctrl[S.Y], ctrl[S.ROWS], ctrl[S.N], ctrl[S.M], o0, o1);
        else if (op === 9) prefill(ex, memory, ctrl[S.X] >>> 0, o0, o1, workerData.index);
        else if (op === 6) {
          const d = new Int32Array(memory.buffer, ctrl[S.X] >>> 0, 9); // FP8_DESC, in order
          ex.f8GemmCols(d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7], d[8], o0, o1);
        } else if (op === 7 || op === 8) {
          const [y, rows, m] = [ctrl[S.Y] >>> 0, ctrl[S.ROWS], ctrl[S.M]];
          const scratch = ex.tgScratchAt(y, rows, m, workerData.index);
          if (op === 8) ex.tgPeak(scratch, o1 - o0);
          else ex.tgemmCols(ctrl[S.X], ctrl[S.W], y, rows, ctrl[S.N], m, o0, o1, ctrl[S.IL], scratch);
        } else ex.gemmCols(ctrl[S.X], ctrl[S.W], ctrl[S.Y], ctrl[S.ROWS], ctrl[S.N], ctrl[S.M], o0, o1, ctrl[S.IL]);
        Atomics.add(ctrl, S.WORKER_CHUNKS, 1);
      } catch {
        Atomics.store(ctrl, S.FAILED, 1); // reported by the main thread; never leave it waiting
      }
      Atomics.add(ctrl, S.COMPLETED, 1);
      Atomics.notify(ctrl, S.COMPLETED);
    }
  }
}
