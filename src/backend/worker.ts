// The code each pool worker runs (src/backend/pool.ts starts it with `eval`, from the sources of `workerMain`
// and `takeChunk`, so the same file serves the TS sources under vitest and the built dist/). Both must stay
// self-contained: no imports, no closures, no module constants; they get everything through workerData.
//
// Protocol (no messages per call): the main thread writes a job into the Int32Array `ctrl` while the claim
// word is closed, opens it, and bumps ctrl[SEQ] to wake the workers. Every thread (the main one too) then
// claims chunks with `takeChunk` and adds 1 to ctrl[COMPLETED] per chunk done (ctrl[FAILED] = 1 if it
// trapped). The main thread closes the claim word and waits only for the chunks that were claimed, so a
// worker that wakes late — or is descheduled on a busy machine — is never waited for. ctrl[STOP] ends the loop.

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
  SLOTS: 16,
} as const;

export interface WorkerData {
  memory: object; // the shared WebAssembly.Memory
  module: object; // the compiled shared-memory bf16 module
  ctrl: SharedArrayBuffer;
  claim: SharedArrayBuffer; // one BigInt64: job number << 32 | next chunk (CLOSED_CHUNK: closed)
  index: number; // 1, 2, … (the main thread is 0)
  spin: number; // polls of ctrl[SEQ] before sleeping in Atomics.wait
  slots: typeof CTRL;
}

/**
 * ctrl[OP]: what a job is. GEMM: columns [o0, o1) of y = x · wᵀ; READ: sum 64-byte blocks [o0, o1) from X;
 * INTERLEAVE: 8-row blocks [o0, o1) of the bf16 rows [·, N] at X, interleaved into Y; GEMM_I8: columns
 * [o0, o1) of y = x · wᵀ for 8-bit block weights W and activations X already quantized (int8.wat).
 */
export const OPS = { GEMM: 0, READ: 1, INTERLEAVE: 2, GEMM_I8: 3 } as const;

/** The shared-memory bf16 module's exports (bf16.wat), as the pool and its workers call them. */
export interface SharedExports {
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
  readsum(p: number, blocks: number): number;
  /** int8.wat's functions (appended to the shared module). */
  i8QxBytes(rows: number, n: number): number;
  i8Quant(x: number, qx: number, rows: number, n: number): void;
  i8GemmCols(qx: number, w: number, y: number, rows: number, n: number, m: number, o0: number, o1: number): void;
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

export function workerMain(take: typeof takeChunk): void {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { workerData } = require("node:worker_threads") as { workerData: WorkerData };
  const { memory, module, spin, slots: S } = workerData;
  const WA = (globalThis as any).WebAssembly;
  const ex = new WA.Instance(module, { env: { memory } }).exports as SharedExports;
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
        const op = ctrl[S.OP]; // the OPS values (a module constant the worker's source cannot see)
        const block = 16 * ctrl[S.N]; // bytes of 8 bf16 rows
        if (op === 1) ex.readsum((ctrl[S.X] >>> 0) + 64 * o0, o1 - o0);
        else if (op === 2)
          ex.interleave((ctrl[S.X] >>> 0) + block * o0, (ctrl[S.Y] >>> 0) + block * o0, 8 * (o1 - o0), ctrl[S.N]);
        else if (op === 3) ex.i8GemmCols(ctrl[S.X], ctrl[S.W], ctrl[S.Y], ctrl[S.ROWS], ctrl[S.N], ctrl[S.M], o0, o1);
        else ex.gemmCols(ctrl[S.X], ctrl[S.W], ctrl[S.Y], ctrl[S.ROWS], ctrl[S.N], ctrl[S.M], o0, o1, ctrl[S.IL]);
        Atomics.add(ctrl, S.WORKER_CHUNKS, 1);
      } catch {
        Atomics.store(ctrl, S.FAILED, 1); // reported by the main thread; never leave it waiting
      }
      Atomics.add(ctrl, S.COMPLETED, 1);
      Atomics.notify(ctrl, S.COMPLETED);
    }
  }
}
