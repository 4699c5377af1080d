// The threads that run the kernels over stored weights (src/backend/weight-store.ts), on every core. The weights
// stay where the store put them; activations are copied into the weight's arena and back per call (small at
// decode). The main thread and each worker run the same SIMD module on chunks of output columns (weight rows)
// taken from an atomic counter, woken through Atomics on a SharedArrayBuffer — no messages per call. Every
// output is computed by one thread in the single-threaded kernel's order, so results are bit-identical to it.
// With one thread (FUSEKIT_THREADS=1, or no shared memory) the same kernels run here alone. Hand-written: no npm
// library runs SIMD wasm kernels over shared memories with futex-style wake-ups.
import { availableParallelism } from "node:os";
import type { tf } from "../tensor/tf.js";
import { BackendError } from "../errors.js";
import { bf16Interleaved } from "../tensor/bf16.js";
import { heapOffset, type WasmBackend } from "./heap.js";
import {
  ACTIVATION_RESERVE_BYTES,
  weightStore,
  type Arena,
  type StoredWeight,
  type WeightStore,
} from "./weight-store.js";
import { attendKvHeads, matvecSpan, takeChunk, workerMain } from "./worker.js";
import { CLOSED_CHUNK, CTRL, FP8_DESC, OPS, type WorkerData } from "./worker.js";
import { startKernelWorker, THREAD_MAY_BLOCK, type KernelWorker } from "./worker-host.js";
import { PREFILL_ATTENTION_DESC, attendPrefill, prefillAttentionScratchBytes } from "./prefill-attention.js";

/** Polls of the control word before a thread sleeps in Atomics.wait (wake-ups cost ~10–50 µs). */
const SPIN = 20000;
/**
 * Chunks per thread in a job: a thread that starts late still gets its share (8 measured better than 4 here:
 * the 0.6B lm_head 15.8 → 11.5 ms, min of 30; 16 no better). Each chunk costs one claim.
 */
const CHUNKS_PER_THREAD = 8;
/** How long `workersStarted` waits for the workers (matmuls never wait: this thread takes every chunk meanwhile). */
const START_TIMEOUT_MS = 10000;

/**
 * Whether to wait for the workers at all. On a machine whose other cores are busy, a worker that claimed a chunk
 * may be descheduled for a whole time slice (milliseconds), and this thread waits for it at the end of every job:
 * two threads then lose to one. A job is late when this thread waited longer for the workers than it worked
 * itself (and more than a wake-up costs); when a quarter of the last WINDOW jobs were late, jobs run on this
 * thread alone for SOLO_MS, then the workers are tried again.
 */
export class Lateness {
  static readonly WINDOW = 64;
  static readonly SOLO_MS = 1000;
  /** A wait shorter than this is a wake-up, not a descheduled worker. */
  static readonly MIN_WAIT_MS = 0.2;
  private readonly late: boolean[] = [];
  private lateCount = 0;
  private soloUntil = -Infinity;

  /** Jobs that have run alone so far. */
  soloJobs = 0;

  /** Records one job: ms this thread spent on its own chunks, and waiting for the workers' afterwards. */
  record(workMs: number, waitMs: number, now: number): void {
    const late = waitMs > Lateness.MIN_WAIT_MS && waitMs > workMs;
    this.late.push(late);
    this.lateCount += Number(late);
    if (this.late.length > Lateness.WINDOW) this.lateCount -= Number(this.late.shift());
    if (this.late.length === Lateness.WINDOW && this.lateCount * 4 >= Lateness.WINDOW) {
      this.soloUntil = now + Lateness.SOLO_MS;
      this.late.length = 0;
      this.lateCount = 0;
    }
  }

  /** True while jobs should run on the calling thread alone. */
  solo(now: number): boolean {
    return now < this.soloUntil;
  }
}

/** The threads to use: FUSEKIT_THREADS, else the core count. */
export function threadsFromEnv(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.FUSEKIT_THREADS;
  if (raw === undefined || raw === "") return availableParallelism();
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > 256) {
    throw new BackendError(`FUSEKIT_THREADS must be an integer from 1 to 256 (1 = one thread), got "${raw}"`);
  }
  return n;
}

/** A buffer the workers can see (a plain one where memory cannot be shared: then there are none). */
const sharedBuffer = (bytes: number) =>
  typeof SharedArrayBuffer === "function" ? new SharedArrayBuffer(bytes) : new ArrayBuffer(bytes);

/** The main thread plus `threads - 1` workers, over the weight store's arenas. */
export class KernelPool {
  private readonly ctrl = new Int32Array(sharedBuffer(4 * CTRL.SLOTS));
  private readonly claim = new BigInt64Array(sharedBuffer(8));
  private job = 0n;
  private readonly workers: KernelWorker[] = [];
  private ready = false;
  private closed = false;
  /** Jobs run on the pool so far. */
  jobs = 0;
  /** When the workers are too late to wait for (a busy machine). */
  readonly lateness = new Lateness();

  constructor(
    readonly threads: number,
    readonly store: WeightStore,
  ) {
    if (threads > 1 && !store.shared)
      throw new BackendError(
        typeof SharedArrayBuffer === "function"
          ? "wasm memories cannot be shared with other threads here"
          : "SharedArrayBuffer is not available here",
      );
    Atomics.store(this.claim, 0, BigInt(CLOSED_CHUNK));
    const source = `(${workerMain})(${takeChunk}, ${matvecSpan}, ${attendKvHeads}, ${attendPrefill}, workerData)`;
    for (let index = 1; index < threads; index++) {
      const workerData: WorkerData = {
        memories: store.arenas.map((a) => a.memory),
        module: store.module,
        ctrl: this.ctrl.buffer as SharedArrayBuffer,
        claim: this.claim.buffer as SharedArrayBuffer,
        index,
        spin: SPIN,
        slots: CTRL,
      };
      const worker = startKernelWorker(source, workerData, (e) => {
        warnOnce(`a kernel worker thread stopped (${e instanceof Error ? e.message : String(e)})`);
        this.close();
      });
      this.workers.push(worker);
    }
  }

  /** Waits (once) for every worker to instantiate its modules; false when they did not start in time. */
  workersStarted(): boolean {
    if (this.ready) return true;
    const deadline = Date.now() + START_TIMEOUT_MS;
    for (let r; (r = Atomics.load(this.ctrl, CTRL.READY)) < this.workers.length;) {
      if (this.closed || Date.now() > deadline || !THREAD_MAY_BLOCK) return false; // a page's workers start once it yields
      Atomics.wait(this.ctrl, CTRL.READY, r, 50);
    }
    return (this.ready = true);
  }

  /**
   * out = x · wᵀ for tfjs-wasm tensors x f32 [rows, n] and out f32 [rows, m] (already allocated) and a stored bf16
   * weight w [m, n/2] (interleaved by 8 rows when m % 8 == 0): x is copied into w's arena, the columns split
   * among the threads, the result copied out.
   */
  gemm(
    b: WasmBackend,
    x: tf.TensorInfo,
    w: StoredWeight,
    out: tf.TensorInfo,
    rows: number,
    n: number,
    m: number,
  ): void {
    const arena = w.arena;
    inRowBlocks(rows, (n + m) * 4, (r0, rows) => {
      const xBytes = rows * n * 4;
      const xAt = this.scratch(arena, xBytes + rows * m * 4);
      const yAt = xAt + xBytes;
      this.copyIn(b, x, arena, xAt, xBytes, r0 * n * 4);
      const c = this.ctrl;
      const il = bf16Interleaved(m, n) ? 1 : 0;
      [c[CTRL.W], c[CTRL.Y], c[CTRL.ROWS], c[CTRL.N], c[CTRL.M], c[CTRL.IL]] = [w.at, yAt, rows, n, m, il];
      this.dispatch(OPS.GEMM, arena, xAt, m, 8, rows * n * m, (o0, o1) =>
        arena.main.gemmCols(xAt, w.at, yAt, rows, n, m, o0, o1, il),
      );
      this.copyOut(b, arena, yAt, out, rows * m * 4, r0 * m * 4);
    });
  }

  /**
   * out = x · wᵀ for a stored 8-bit block weight w int32 [m, ceil(n/32)·9] (int8.wat): x is copied into w's
   * arena and quantized there once, and columns go in chunks of multiples of 8 (whole 4-row groups).
   */
  gemmInt8(b: WasmBackend, x: tf.TensorInfo, w: StoredWeight, out: tf.TensorInfo, rows: number, n: number, m: number) {
    const arena = w.arena;
    inRowBlocks(rows, (n + m) * 4 + arena.main.i8QxBytes(1, n), (r0, rows) => {
      const xBytes = rows * n * 4;
      const qBytes = arena.main.i8QxBytes(rows, n);
      const xAt = this.scratch(arena, xBytes + qBytes + rows * m * 4 + 64);
      const qAt = Math.ceil((xAt + xBytes) / 64) * 64;
      const yAt = qAt + qBytes;
      this.copyIn(b, x, arena, xAt, xBytes, r0 * n * 4);
      arena.main.i8Quant(xAt, qAt, rows, n);
      const c = this.ctrl;
      [c[CTRL.W], c[CTRL.Y], c[CTRL.ROWS], c[CTRL.N], c[CTRL.M]] = [w.at, yAt, rows, n, m];
      this.dispatch(OPS.GEMM_I8, arena, qAt, m, 8, rows * n * m, (o0, o1) =>
        arena.main.i8GemmCols(qAt, w.at, yAt, rows, n, m, o0, o1),
      );
      this.copyOut(b, arena, yAt, out, rows * m * 4, r0 * m * 4);
    });
  }

  /**
   * out = x · wᵀ for a stored FP8 block weight w (fp8.wat: codes [m, n] and block scales in one block): x is
   * copied into w's arena after a descriptor of the operands (FP8_DESC), and columns go in chunks of multiples of 4.
   */
  gemmFp8(b: WasmBackend, x: tf.TensorInfo, w: StoredWeight, out: tf.TensorInfo, rows: number, n: number, m: number) {
    const arena = w.arena;
    const [s, [br, bc]] = [w.scales!.at, w.scales!.block];
    inRowBlocks(rows, (n + m) * 4, (r0, rows) => {
      const xBytes = rows * n * 4;
      const desc = this.scratch(arena, 64 + xBytes + rows * m * 4);
      const [xAt, yAt] = [desc + 64, desc + 64 + xBytes];
      this.copyIn(b, x, arena, xAt, xBytes, r0 * n * 4);
      new Int32Array(arena.memory.buffer, desc, FP8_DESC.WORDS).set([xAt, w.at, s, yAt, rows, n, m, br, bc]);
      this.dispatch(OPS.GEMM_F8, arena, desc, m, 4, rows * n * m, (o0, o1) =>
        arena.main.f8GemmCols(xAt, w.at, s, yAt, rows, n, m, br, bc, o0, o1),
      );
      this.copyOut(b, arena, yAt, out, rows * m * 4, r0 * m * 4);
    });
  }

  /**
   * out = x · wᵀ as `gemm`, by the tiled prefill GEMM (gemm.wat): x is copied into w's arena and packed once
   * there, then every thread takes chunks of 8-column panels, each in its own scratch after y. Bits depend on n
   * only, not on the split (see gemm.wat).
   */
  gemmTiled(b: WasmBackend, x: tf.TensorInfo, w: StoredWeight, out: tf.TensorInfo, rows: number, n: number, m: number) {
    const arena = w.arena;
    const ex = arena.main;
    inRowBlocks(rows, (2 * n + m) * 4, (r0, rows) => {
      const xBytes = rows * n * 4;
      const pBytes = ex.tgPackedXBytes(rows, n);
      const yBytes = rows * m * 4;
      const xAt = this.scratch(arena, xBytes + pBytes + yBytes + 128 + this.threads * ex.tgScratchBytes());
      const pAt = Math.ceil((xAt + xBytes) / 64) * 64;
      const yAt = pAt + pBytes;
      this.copyIn(b, x, arena, xAt, xBytes, r0 * n * 4);
      ex.tgPackX(xAt, pAt, rows, n);
      const c = this.ctrl;
      const il = bf16Interleaved(m, n) ? 1 : 0;
      [c[CTRL.W], c[CTRL.Y], c[CTRL.ROWS], c[CTRL.N], c[CTRL.M], c[CTRL.IL]] = [w.at, yAt, rows, n, m, il];
      const scratch = ex.tgScratchAt(yAt, rows, m, 0);
      this.dispatch(OPS.TGEMM, arena, pAt, m, 8, rows * n * m, (o0, o1) =>
        ex.tgemmCols(pAt, w.at, yAt, rows, n, m, o0, o1, il, scratch),
      );
      this.copyOut(b, arena, yAt, out, yBytes, r0 * m * 4);
    });
  }

  /**
   * The tiled GEMM's inner loop on data in cache, on every thread at once: `reps` runs of its 4 × 8 × 256 tile
   * split over the threads. Returns the seconds it took (the bench's two-core peak), or undefined without workers.
   */
  tiledPeak(reps: number): number | undefined {
    if (this.threads < 2 || !this.workersStarted()) return undefined;
    const arena = this.store.arenas[0];
    const bytes = 64 + this.threads * arena.main.tgScratchBytes();
    const at = this.scratch(arena, bytes);
    arena.bytes(at, bytes).fill(0x3f); // finite values (0.75 as f32 bytes)
    const c = this.ctrl;
    [c[CTRL.Y], c[CTRL.ROWS], c[CTRL.M]] = [at, 0, 0];
    const scratch = arena.main.tgScratchAt(at, 0, 0, 0);
    const t0 = performance.now();
    this.dispatch(OPS.TGEMM_PEAK, arena, at, reps, 64, Infinity, (o0, o1) => arena.main.tgPeak(scratch, o1 - o0));
    return (performance.now() - t0) / 1000;
  }

  /**
   * Blocked attention at prefill on every thread, one KV head (of one batch row) per chunk, for tfjs-wasm
   * tensors q [b, heads, s, d], k / v [b, kvHeads, T, d], the additive mask [b, 1, s, T] (or none), out
   * [b, heads, s, d] (allocated); they are copied into the scratch of the arena with the fewest weights and back.
   */
  prefillAttention(
    b: WasmBackend,
    t: { q: tf.TensorInfo; k: tf.TensorInfo; v: tf.TensorInfo; mask?: tf.TensorInfo; out: tf.TensorInfo },
    scale: number,
  ): void {
    // the arena holding the fewest weights (the first of a tie): the same one every call, so one scratch serves
    const arena = this.store.arenas.reduce((a, b) => (b.held < a.held ? b : a));
    const [batch, heads, s, d] = t.q.shape;
    const [, kvHeads, T] = t.k.shape;
    const [qBytes, kvBytes, maskBytes] = [4 * batch * heads * s * d, 4 * batch * kvHeads * T * d, 4 * batch * s * T];
    const D = PREFILL_ATTENTION_DESC;
    const scratch = this.threads * prefillAttentionScratchBytes(T, d);
    const at = this.scratch(arena, 4 * D.WORDS + 2 * qBytes + 2 * kvBytes + (t.mask ? maskBytes : 0) + scratch + 64);
    const desc = at;
    const q = at + 4 * D.WORDS;
    const [k, v] = [q + qBytes, q + qBytes + kvBytes];
    const o = v + kvBytes; // the output
    const mask = t.mask ? o + qBytes : 0;
    this.copyIn(b, t.q, arena, q, qBytes);
    this.copyIn(b, t.k, arena, k, kvBytes);
    this.copyIn(b, t.v, arena, v, kvBytes);
    if (t.mask) this.copyIn(b, t.mask, arena, mask, maskBytes);
    const w = new Int32Array(arena.memory.buffer, desc, D.WORDS);
    w.set([q, k, v, mask, o, batch, heads, kvHeads, s, T, d, 0, o + qBytes + (t.mask ? maskBytes : 0)]);
    new Float32Array(arena.memory.buffer, desc, D.WORDS)[D.SCALE] = scale;
    this.dispatch(OPS.PREFILL_ATTENTION, arena, desc, batch * kvHeads, 1, Infinity, (u0, u1) =>
      attendPrefill(arena.main, arena.memory, desc, u0, u1, 0),
    );
    this.copyOut(b, arena, o, t.out, qBytes);
  }

  /** The arena's scratch block of at least `bytes`; a BackendError when the arena has no room left. */
  scratch(arena: Arena, bytes: number): number {
    const at = arena.scratchAt(bytes);
    if (at === undefined)
      throw new BackendError(
        `no room for ${(bytes / 2 ** 20).toFixed(1)} MiB of activations in weight arena ${arena.index}`,
      );
    return at;
  }

  /** `bytes` of tfjs tensor `t` (in the tfjs heap), `from` bytes in, copied to `at` in `arena`. */
  copyIn(b: WasmBackend, t: tf.TensorInfo, arena: Arena, at: number, bytes: number, from = 0): void {
    arena.bytes(at, bytes).set(new Uint8Array(b.wasm.asm.memory.buffer, heapOffset(b, t) + from, bytes));
  }

  /** `bytes` at `at` in `arena` copied into tfjs tensor `t`, `to` bytes in. */
  copyOut(b: WasmBackend, arena: Arena, at: number, t: tf.TensorInfo, bytes: number, to = 0): void {
    new Uint8Array(b.wasm.asm.memory.buffer, heapOffset(b, t) + to, bytes).set(arena.bytes(at, bytes));
  }

  /**
   * Runs job `op` on `arena` over [0, count) in CHUNKS_PER_THREAD chunks per thread (multiples of `step`): opens
   * the claim word, takes chunks here with `mine` until none is left, closes it, then waits for the chunks the
   * workers claimed. A worker that gets less of a (shared) core takes fewer chunks, or none; each output is still
   * computed by exactly one thread. Jobs of fewer than the pool's minimum multiply-adds (`work`), or with no
   * worker running, run here alone.
   */
  dispatch(
    op: number,
    arena: Arena,
    x: number,
    count: number,
    step: number,
    work: number,
    mine: (o0: number, o1: number) => void,
  ): void {
    this.jobs++;
    if (this.closed || !this.workers.length || work < minMacs) return mine(0, count);
    const start = performance.now();
    if (this.lateness.solo(start)) {
      this.lateness.soloJobs++;
      return mine(0, count);
    }
    const c = this.ctrl;
    const chunk = Math.max(step, Math.ceil(count / (CHUNKS_PER_THREAD * this.threads) / step) * step);
    const chunks = Math.ceil(count / chunk);
    const job = ++this.job << 32n;
    c[CTRL.OP] = op;
    c[CTRL.ARENA] = arena.index;
    c[CTRL.X] = x;
    c[CTRL.COUNT] = count;
    c[CTRL.CHUNK] = chunk;
    Atomics.store(c, CTRL.COMPLETED, 0);
    Atomics.store(this.claim, 0, job); // open at chunk 0
    Atomics.add(c, CTRL.SEQ, 1);
    Atomics.notify(c, CTRL.SEQ);
    try {
      for (let i; (i = takeChunk(this.claim, c, CTRL)) >= 0;) {
        try {
          mine(i * chunk, Math.min(count, (i + 1) * chunk));
        } finally {
          Atomics.add(c, CTRL.COMPLETED, 1);
        }
      }
    } finally {
      // closed before waiting (even if this thread threw): nothing more is taken, and the job's values may
      // change once the claimed chunks are done
      const claimed = Math.min(chunks, Number(Atomics.exchange(this.claim, 0, job | BigInt(CLOSED_CHUNK)) - job));
      const worked = performance.now();
      let polls = 0;
      for (let d; (d = Atomics.load(c, CTRL.COMPLETED)) < claimed;)
        if (++polls > SPIN && THREAD_MAY_BLOCK) Atomics.wait(c, CTRL.COMPLETED, d, 100);
      const done = performance.now();
      this.lateness.record(worked - start, done - worked, done);
    }
    if (Atomics.exchange(c, CTRL.FAILED, 0)) throw new BackendError("a kernel worker thread failed in a pool job");
  }

  /** Makes every worker stall `ms` on each chunk it claims, as a descheduled one would (tests; 0 ends it). */
  stallWorkers(ms: number): void {
    Atomics.store(this.ctrl, CTRL.STALL_MS, ms);
  }

  /** Chunks the workers (not the main thread) have computed so far: tests use it to see them take part. */
  get workerChunks(): number {
    return Atomics.load(this.ctrl, CTRL.WORKER_CHUNKS);
  }

  /**
   * `bytes` of an arena that every thread can read together (a SIMD sum split like a matmul): what a
   * bandwidth-bound decode does, without the arithmetic. Undefined without workers or room. The bench times it.
   */
  sharedRead(bytes: number): { bytes: number; read(): void; release(): void } | undefined {
    if (this.threads < 2 || !this.workersStarted()) return undefined;
    const arena = this.store.arenas[0];
    const at = arena.alloc(bytes);
    if (at === undefined) return undefined;
    // written first: untouched pages all map the kernel's one zero page, which reads at cache speed
    arena.bytes(at, bytes).fill(1);
    const blocks = Math.floor(bytes / 64);
    return {
      bytes: blocks * 64,
      read: () =>
        this.dispatch(OPS.READ, arena, at, blocks, 1024, Infinity, (o0, o1) =>
          arena.main.readsum(at + 64 * o0, o1 - o0),
        ),
      release: () => arena.release(at),
    };
  }

  /** Stops the workers (the pool is unusable afterwards; the store and its weights stay). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    Atomics.store(this.ctrl, CTRL.STOP, 1);
    Atomics.add(this.ctrl, CTRL.SEQ, 1);
    Atomics.notify(this.ctrl, CTRL.SEQ);
    for (const w of this.workers) void w.terminate();
  }
}

/** Activation bytes one matmul call takes at most in its arena: a quarter of the room weights leave free there. */
let blockBytes = ACTIVATION_RESERVE_BYTES / 4;

/** Sets the activation bytes of one matmul call (its rows go in blocks beyond that); returns the previous value (tests). */
export function setActivationBlockBytes(bytes: number): number {
  const prev = blockBytes;
  blockBytes = bytes;
  return prev;
}

/**
 * Runs `call` over [0, rows) in blocks of rows whose activations (`bytesPerRow` each) fit the block bytes
 * (multiples of 4 rows; all of them at once for any ordinary prompt). The matmuls sum each output row alone, in
 * an order that does not depend on the rows beside it, so the blocks give the same bits as one call.
 */
function inRowBlocks(rows: number, bytesPerRow: number, call: (r0: number, rows: number) => void): void {
  const block = Math.max(4, Math.floor(blockBytes / bytesPerRow / 4) * 4);
  for (let r0 = 0; r0 < rows; r0 += block) call(r0, Math.min(block, rows - r0));
}

let pool: KernelPool | undefined;
/** Below this many multiply-adds a job stays on the calling thread (waking the workers costs more). */
let minMacs = 1 << 18;

/** Sets the smallest matmul (multiply-adds) the pool takes; returns the previous value (tests use 0). */
export function setParallelMinMacs(macs: number): number {
  const prev = minMacs;
  minMacs = macs;
  return prev;
}

/** The process's pool over the weight store, started on first use (one thread when only one is asked for). */
export function kernelPool(): KernelPool {
  return (pool ??= startPool(threadsFromEnv()));
}

/** The process's pool if something started it, without starting one. */
export const startedKernelPool = (): KernelPool | undefined => pool;

function startPool(threads: number): KernelPool {
  const store = weightStore();
  if (threads < 2) return new KernelPool(1, store);
  try {
    return new KernelPool(threads, store);
  } catch (e) {
    warnOnce(e instanceof Error ? e.message : String(e)); // no shared wasm memory / no workers here
    return new KernelPool(1, store);
  }
}

let warned = false;
/** Says once per process that the bf16 kernels run on one thread, and why (never a silent slowdown). */
function warnOnce(cause: string): void {
  if (warned) return;
  warned = true;
  process.emitWarning(`the kernel pool cannot run (${cause}): the bf16 kernels use one thread`, {
    type: "FusekitKernelWarning",
    code: "FUSEKIT_POOL",
  });
}

/**
 * Sets how many threads the bf16 kernels use from now on (1 = the single-threaded kernel; default: the
 * FUSEKIT_THREADS environment variable, else the core count). Stops the current pool; returns the count in use.
 */
export function setKernelThreads(threads?: number): number {
  const n = threads ?? threadsFromEnv();
  if (!Number.isInteger(n) || n < 1 || n > 256)
    throw new BackendError(`kernel threads must be an integer from 1 to 256, got ${n}`);
  pool?.close();
  pool = startPool(n);
  return kernelThreads();
}

/** Threads the bf16 kernels run on (1 when the pool is off or unavailable). */
export function kernelThreads(): number {
  return kernelPool().threads;
}
