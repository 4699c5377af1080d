// The code each pool worker runs (src/kernels/pool.ts starts it with `eval`, from this function's source, so
// the same file serves the TS sources under vitest and the built dist/). It must stay self-contained: no
// imports, no closures; it gets everything through workerData.
//
// Protocol over the Int32Array `ctrl` (a SharedArrayBuffer; no messages per call): the main thread writes a
// job and bumps ctrl[SEQ]; each worker computes its share and adds 1 to ctrl[DONE] (ctrl[FAILED] = 1 if it
// trapped). ctrl[STOP] ends the loop.

/** Slots of the control array (shared with pool.ts). */
export const CTRL = { SEQ: 0, DONE: 1, STOP: 2, READY: 3, FAILED: 10, OP: 11, X: 4, W: 5, Y: 6, ROWS: 7, N: 8, M: 9, RANGES: 16 } as const;

export interface WorkerData {
  memory: object; // the shared WebAssembly.Memory
  module: object; // the compiled shared-memory bf16 module
  ctrl: SharedArrayBuffer;
  index: number; // this worker's share: columns [ctrl[RANGES + index], ctrl[RANGES + index + 1])
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
  const { memory, module, index, spin, slots: S } = workerData;
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
    const o0 = ctrl[S.RANGES + index];
    const o1 = ctrl[S.RANGES + index + 1];
    try {
      if (o1 > o0 && ctrl[S.OP] === 1) ex.readsum((ctrl[S.X] >>> 0) + 64 * o0, o1 - o0);
      else if (o1 > o0) ex.gemmCols(ctrl[S.X], ctrl[S.W], ctrl[S.Y], ctrl[S.ROWS], ctrl[S.N], ctrl[S.M], o0, o1);
    } catch {
      Atomics.store(ctrl, S.FAILED, 1); // reported by the main thread; never leave it waiting
    }
    Atomics.add(ctrl, S.DONE, 1);
    Atomics.notify(ctrl, S.DONE);
  }
}
