// The code each pool worker runs (src/kernels/pool.ts starts it with `eval`, from this function's source, so
// the same file serves the TS sources under vitest and the built dist/). It must stay self-contained: no
// imports, no closures; it gets everything through workerData.
//
// Protocol over the Int32Array `ctrl` (a SharedArrayBuffer; no messages per call): the main thread writes a
// job and bumps ctrl[SEQ]; each worker computes its share and adds 1 to ctrl[DONE] (ctrl[FAILED] = 1 if it
// trapped). ctrl[STOP] ends the loop.

/** Slots of the control array (shared with pool.ts). */
export const CTRL = {
  SEQ: 0,
  DONE: 1,
  STOP: 2,
  READY: 3,
  FAILED: 10,
  OP: 11,
  NEXT: 12,
  COUNT: 13,
  CHUNK: 14,
  X: 4,
  W: 5,
  Y: 6,
  ROWS: 7,
  N: 8,
  M: 9,
  SLOTS: 16,
} as const;

export interface WorkerData {
  memory: object; // the shared WebAssembly.Memory
  module: object; // the compiled shared-memory bf16 module
  ctrl: SharedArrayBuffer;
  index: number; // 1, 2, … (the main thread is 0)
  spin: number; // polls of ctrl[SEQ] before sleeping in Atomics.wait
  slots: typeof CTRL;
}

/** ctrl[OP]: what a job is. GEMM: columns [o0, o1) of y = x · wᵀ; READ: sum 64-byte blocks [o0, o1) from X. */
export const OPS = { GEMM: 0, READ: 1 } as const;

interface SharedExports {
  gemmCols(x: number, w: number, y: number, rows: number, n: number, m: number, o0: number, o1: number): void;
  readsum(p: number, blocks: number): number;
}

export function workerMain(): void {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { workerData } = require("node:worker_threads") as { workerData: WorkerData };
  const { memory, module, spin, slots: S } = workerData;
  const WA = (globalThis as any).WebAssembly;
  const ex = new WA.Instance(module, { env: { memory } }).exports as SharedExports;
  const ctrl = new Int32Array(workerData.ctrl);
  let seen = Atomics.load(ctrl, S.SEQ);
  Atomics.add(ctrl, S.READY, 1);
  Atomics.notify(ctrl, S.READY);
  for (;;) {
    let polls = 0;
    while (Atomics.load(ctrl, S.SEQ) === seen) if (++polls > spin) Atomics.wait(ctrl, S.SEQ, seen);
    seen = Atomics.load(ctrl, S.SEQ);
    if (Atomics.load(ctrl, S.STOP)) return;
    try {
      // take chunks of [0, COUNT) until none is left (the main thread takes them too): a thread that gets less
      // of a core does less of the work
      const count = ctrl[S.COUNT];
      const chunk = ctrl[S.CHUNK];
      for (let o0; (o0 = Atomics.add(ctrl, S.NEXT, chunk)) < count;) {
        const o1 = Math.min(count, o0 + chunk);
        if (ctrl[S.OP] === 1) ex.readsum((ctrl[S.X] >>> 0) + 64 * o0, o1 - o0);
        else ex.gemmCols(ctrl[S.X], ctrl[S.W], ctrl[S.Y], ctrl[S.ROWS], ctrl[S.N], ctrl[S.M], o0, o1);
      }
    } catch {
      Atomics.store(ctrl, S.FAILED, 1); // reported by the main thread; never leave it waiting
    }
    Atomics.add(ctrl, S.DONE, 1);
    Atomics.notify(ctrl, S.DONE);
  }
}
