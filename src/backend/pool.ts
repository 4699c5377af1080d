// A worker pool for the bf16 matmul on every core. tfjs-wasm's heap is not shared (its threads cannot start in
// Node), so the pool owns a shared WebAssembly.Memory: each packed weight is copied into it once (on first
// use), activations are copied in and out per call (small at decode). The main thread and each worker run the
// same SIMD module (bf16.wat built for a shared memory) on chunks of output columns (weight rows) taken from
// an atomic counter, woken through Atomics on a SharedArrayBuffer — no messages per call. Every output is computed by one thread
// in the single-threaded kernel's order, so results are bit-identical to it. Hand-written: no npm library
// runs SIMD wasm kernels over a shared heap with futex-style wake-ups.
import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";
import type { tf } from "../tensor/tf.js";
import { BackendError } from "../errors.js";
import { BF16_SHARED_WASM_BASE64 } from "./bf16-shared-wasm.js";
import { BF16_SHARED_RELAXED_WASM_BASE64 } from "./bf16-shared-relaxed-wasm.js";
import { relaxedSimd } from "./relaxed-simd.js";
import { heapOffset, type WasmBackend } from "./heap.js";
import { attendKvHeads, matvecSpan, takeChunk, workerMain } from "./worker.js";
import { PREFILL_ATTENTION_DESC, attendPrefill, prefillAttentionScratchBytes } from "./prefill-attention.js";
import { CLOSED_CHUNK, CTRL, OPS, type SharedExports, type WorkerData } from "./worker.js";

const WA = (globalThis as any).WebAssembly;
const PAGE = 65536;
const ALIGN = 64;
/** Polls of the control word before a thread sleeps in Atomics.wait (wake-ups cost ~10–50 µs). */
const SPIN = 20000;
/**
 * Chunks per thread in a job: a thread that starts late still gets its share (8 measured better than 4 here:
 * the 0.6B lm_head 15.8 → 11.5 ms, min of 30; 16 no better). Each chunk costs one claim.
 */
const CHUNKS_PER_THREAD = 8;
/** How long `workersStarted` waits for the workers (matmuls never wait: this thread takes every chunk meanwhile). */
const START_TIMEOUT_MS = 10000;

interface SharedMemory {
  readonly buffer: SharedArrayBuffer;
  grow(pages: number): number;
}

/** First-fit allocator over the shared memory (64-byte aligned blocks; grows the memory when full). */
class SharedHeap {
  readonly memory: SharedMemory = new WA.Memory({ initial: 1, maximum: 65536, shared: true });
  private free: { at: number; size: number }[] = [];
  private top = ALIGN; // offset 0 is never handed out
  private readonly sizes = new Map<number, number>();

  alloc(bytes: number): number {
    const size = Math.ceil(Math.max(bytes, 1) / ALIGN) * ALIGN;
    const i = this.free.findIndex((b) => b.size >= size);
    let at: number;
    if (i >= 0) {
      at = this.free[i].at;
      if (this.free[i].size > size) this.free[i] = { at: at + size, size: this.free[i].size - size };
      else this.free.splice(i, 1);
    } else {
      at = this.top;
      const need = at + size - this.memory.buffer.byteLength;
      if (need > 0) this.memory.grow(Math.ceil(need / PAGE)); // RangeError past 4 GiB: the caller falls back
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

  bytes(at: number, length: number): Uint8Array {
    return new Uint8Array(this.memory.buffer, at, length);
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

/** The main thread plus `threads - 1` workers over one shared heap. */
export class KernelPool {
  readonly heap = new SharedHeap();
  private readonly ctrl = new Int32Array(new SharedArrayBuffer(4 * CTRL.SLOTS));
  private readonly claim = new BigInt64Array(new SharedArrayBuffer(8));
  private job = 0n;
  private readonly workers: Worker[] = [];
  /** The shared module's exports on this thread. */
  readonly main: SharedExports;
  private ready = false;
  private closed = false;
  /** Packed weights already copied into the shared heap, by tfjs dataId; freed when the dataId is collected. */
  private readonly weights = new WeakMap<object, number>();
  private readonly reclaim = new FinalizationRegistry<number>((at) => this.closed || this.heap.release(at));
  private scratch = { at: 0, size: 0 };
  /** Matmuls run on the pool so far. */
  jobs = 0;

  constructor(readonly threads: number) {
    const shared = relaxedSimd() ? BF16_SHARED_RELAXED_WASM_BASE64 : BF16_SHARED_WASM_BASE64; // gemm.wat's build
    const module = new WA.Module(Buffer.from(shared, "base64"));
    this.main = new WA.Instance(module, { env: { memory: this.heap.memory } }).exports as SharedExports;
    Atomics.store(this.claim, 0, BigInt(CLOSED_CHUNK));
    const source = `(${workerMain})(${takeChunk}, ${matvecSpan}, ${attendKvHeads}, ${attendPrefill})`;
    for (let index = 1; index < threads; index++) {
      const workerData: WorkerData = {
        memory: this.heap.memory,
        module,
        ctrl: this.ctrl.buffer as SharedArrayBuffer,
        claim: this.claim.buffer as SharedArrayBuffer,
        index,
        spin: SPIN,
        slots: CTRL,
      };
      // execArgv: the host's flags are not the workers' (`--input-type=module` would make this script ESM)
      const worker = new Worker(source, { eval: true, workerData, execArgv: [] });
      worker.unref(); // never keeps the process alive: an idle worker sleeps in Atomics.wait
      worker.on("error", (e) => {
        warnOnce(`a kernel worker thread stopped (${e instanceof Error ? e.message : String(e)})`);
        this.close();
      });
      this.workers.push(worker);
    }
  }

  /** Waits (once) for every worker to instantiate its module; false when they did not start in time. */
  workersStarted(): boolean {
    if (this.ready) return true;
    const deadline = Date.now() + START_TIMEOUT_MS;
    for (let r; (r = Atomics.load(this.ctrl, CTRL.READY)) < this.workers.length;) {
      if (this.closed || Date.now() > deadline) return false;
      Atomics.wait(this.ctrl, CTRL.READY, r, 50);
    }
    return (this.ready = true);
  }

  /**
   * The weight's offset in the shared heap, copied from the tfjs heap on first use (undefined if it cannot fit).
   * Weights of a multiple of 8 rows are stored interleaved (bf16.wat `$row`): read as one stream per 8 rows.
   */
  weightAt(b: WasmBackend, w: tf.TensorInfo, m: number, n: number): number | undefined {
    let at = this.weights.get(w.dataId);
    if (at !== undefined) return at;
    try {
      at = this.heap.alloc(m * n * 2);
    } catch {
      return undefined;
    }
    const src = heapOffset(b, w) >>> 0;
    if (m % 8) {
      this.heap.bytes(at, m * n * 2).set(new Uint8Array(b.wasm.asm.memory.buffer, src, m * n * 2));
    } else if (!this.interleaveInto(at, b, src, m, n)) {
      this.heap.release(at);
      return undefined;
    }
    this.weights.set(w.dataId, at);
    this.reclaim.register(w.dataId, at);
    return at;
  }

  /** Copies [m, n] bf16 rows from the tfjs heap into `at`, interleaved, through a staging block of ≤ ~4 MB. */
  private interleaveInto(at: number, b: WasmBackend, src: number, m: number, n: number): boolean {
    const rowBytes = n * 2;
    const stageRows = Math.min(m, 8 * Math.max(1, Math.floor((4 << 20) / (8 * rowBytes))));
    let stage: number;
    try {
      stage = this.heap.alloc(stageRows * rowBytes);
    } catch {
      return false;
    }
    for (let r = 0; r < m; r += stageRows) {
      const rows = Math.min(stageRows, m - r);
      const from = new Uint8Array(b.wasm.asm.memory.buffer, src + r * rowBytes, rows * rowBytes);
      this.heap.bytes(stage, rows * rowBytes).set(from);
      // on every thread: the destination's fresh pages are faulted in on both cores
      const [dst, block] = [at + r * rowBytes, 8 * rowBytes]; // block: 8 rows
      this.ctrl[CTRL.Y] = dst;
      this.ctrl[CTRL.N] = n;
      this.dispatch(OPS.INTERLEAVE, stage, rows / 8, 1, (o0, o1) =>
        this.main.interleave(stage + block * o0, dst + block * o0, 8 * (o1 - o0), n),
      );
    }
    this.heap.release(stage);
    return true;
  }

  /** A scratch block of at least `bytes` (the same one each call: its contents last until the next call). */
  scratchAt(bytes: number): number | undefined {
    if (this.scratch.size < bytes) {
      if (this.scratch.size) this.heap.release(this.scratch.at);
      this.scratch = { at: 0, size: 0 };
      try {
        this.scratch = { at: this.heap.alloc(bytes), size: bytes };
      } catch {
        return undefined;
      }
    }
    return this.scratch.at;
  }

  /**
   * out = x · wᵀ on every thread, for tfjs-wasm tensors x f32 [rows, n], w packed bf16 [m, n/2], out f32
   * [rows, m] (already allocated). False (nothing written) when the pool cannot take it: the caller runs the
   * single-threaded kernel instead.
   */
  gemm(
    b: WasmBackend,
    x: tf.TensorInfo,
    w: tf.TensorInfo,
    out: tf.TensorInfo,
    rows: number,
    n: number,
    m: number,
  ): boolean {
    if (this.closed) return false; // workers still starting take no chunks yet: this thread does them all
    const xBytes = rows * n * 4;
    const yBytes = rows * m * 4;
    const wAt = this.weightAt(b, w, m, n);
    const xAt = wAt === undefined ? undefined : this.scratchAt(xBytes + yBytes);
    if (wAt === undefined || xAt === undefined) return false;
    const yAt = xAt + xBytes;
    this.copyIn(b, x, xAt, xBytes);
    this.run(xAt, wAt, yAt, rows, n, m);
    this.copyOut(b, yAt, out, yBytes);
    return true;
  }

  /**
   * out = x · wᵀ on every thread for 8-bit block weights w int32 [m, ceil(n/32)·9] (int8.wat): the weight is
   * copied as it is (its layout is already the streaming one), x is quantized here once, and columns go in
   * chunks of multiples of 8 (whole 4-row groups). False (nothing written) when the pool cannot take it.
   */
  gemmInt8(
    b: WasmBackend,
    x: tf.TensorInfo,
    w: tf.TensorInfo,
    out: tf.TensorInfo,
    rows: number,
    n: number,
    m: number,
  ): boolean {
    if (this.closed) return false;
    const xBytes = rows * n * 4;
    const qBytes = this.main.i8QxBytes(rows, n);
    const yBytes = rows * m * 4;
    const wAt = this.rawWeightAt(b, w, w.shape[0] * w.shape[1] * 4);
    const xAt = wAt === undefined ? undefined : this.scratchAt(xBytes + qBytes + yBytes + 64);
    if (wAt === undefined || xAt === undefined) return false;
    const qAt = Math.ceil((xAt + xBytes) / 64) * 64;
    const yAt = qAt + qBytes;
    this.copyIn(b, x, xAt, xBytes);
    this.main.i8Quant(xAt, qAt, rows, n);
    const c = this.ctrl;
    c[CTRL.W] = wAt;
    c[CTRL.Y] = yAt;
    c[CTRL.ROWS] = rows;
    c[CTRL.N] = n;
    c[CTRL.M] = m;
    this.dispatch(OPS.GEMM_I8, qAt, m, 8, (o0, o1) => this.main.i8GemmCols(qAt, wAt, yAt, rows, n, m, o0, o1));
    this.copyOut(b, yAt, out, yBytes);
    return true;
  }

  /**
   * out = x · wᵀ as `gemm`, by the tiled prefill GEMM (gemm.wat): x is packed once here, then every thread
   * takes chunks of 8-column panels, each in its own scratch after y. False (nothing written) when the pool
   * cannot take it. Bits depend on n only, not on the split (see gemm.wat).
   */
  gemmTiled(
    b: WasmBackend,
    x: tf.TensorInfo,
    w: tf.TensorInfo,
    out: tf.TensorInfo,
    rows: number,
    n: number,
    m: number,
  ): boolean {
    if (this.closed) return false;
    const xBytes = rows * n * 4;
    const pBytes = this.main.tgPackedXBytes(rows, n);
    const yBytes = rows * m * 4;
    const wAt = this.weightAt(b, w, m, n);
    const need = xBytes + pBytes + yBytes + 128 + this.threads * this.main.tgScratchBytes();
    const xAt = wAt === undefined ? undefined : this.scratchAt(need);
    if (wAt === undefined || xAt === undefined) return false;
    const pAt = Math.ceil((xAt + xBytes) / 64) * 64;
    const yAt = pAt + pBytes;
    this.copyIn(b, x, xAt, xBytes);
    this.main.tgPackX(xAt, pAt, rows, n);
    const c = this.ctrl;
    c[CTRL.W] = wAt;
    c[CTRL.Y] = yAt;
    c[CTRL.ROWS] = rows;
    c[CTRL.N] = n;
    c[CTRL.M] = m;
    c[CTRL.IL] = m % 8 ? 0 : 1; // as weightAt stored it
    const scratch = this.main.tgScratchAt(yAt, rows, m, 0);
    this.dispatch(OPS.TGEMM, pAt, m, 8, (o0, o1) =>
      this.main.tgemmCols(pAt, wAt, yAt, rows, n, m, o0, o1, c[CTRL.IL], scratch),
    );
    this.copyOut(b, yAt, out, yBytes);
    return true;
  }

  /**
   * The tiled GEMM's inner loop on data in cache, on every thread at once: `reps` runs of its 4 × 8 × 256 tile
   * split over the threads. Returns the seconds it took (the bench's two-core peak), or undefined without room.
   */
  tiledPeak(reps: number): number | undefined {
    if (!this.workersStarted()) return undefined;
    const bytes = 64 + this.threads * this.main.tgScratchBytes();
    const at = this.scratchAt(bytes);
    if (at === undefined) return undefined;
    this.heap.bytes(at, bytes).fill(0x3f); // finite values (0.75 as f32 bytes)
    const c = this.ctrl;
    c[CTRL.Y] = at;
    c[CTRL.ROWS] = 0;
    c[CTRL.M] = 0;
    const scratch = this.main.tgScratchAt(at, 0, 0, 0);
    const t0 = performance.now();
    this.dispatch(OPS.TGEMM_PEAK, at, reps, 64, (o0, o1) => this.main.tgPeak(scratch, o1 - o0));
    return (performance.now() - t0) / 1000;
  }

  /**
   * Blocked attention at prefill on every thread, one KV head (of one batch row) per chunk, for tfjs-wasm
   * tensors q [b, heads, s, d], k / v [b, kvHeads, T, d], the additive mask [b, 1, s, T] (or none), out
   * [b, heads, s, d] (allocated). False (nothing written) when the pool cannot take it.
   */
  prefillAttention(
    b: WasmBackend,
    t: { q: tf.TensorInfo; k: tf.TensorInfo; v: tf.TensorInfo; mask?: tf.TensorInfo; out: tf.TensorInfo },
    scale: number,
  ): boolean {
    if (this.closed) return false;
    const [batch, heads, s, d] = t.q.shape;
    const [, kvHeads, T] = t.k.shape;
    const [qBytes, kvBytes, maskBytes] = [4 * batch * heads * s * d, 4 * batch * kvHeads * T * d, 4 * batch * s * T];
    const D = PREFILL_ATTENTION_DESC;
    const scratch = this.threads * prefillAttentionScratchBytes(T, d);
    const at = this.scratchAt(4 * D.WORDS + 2 * qBytes + 2 * kvBytes + (t.mask ? maskBytes : 0) + scratch + 64);
    if (at === undefined) return false;
    const desc = at;
    const q = at + 4 * D.WORDS;
    const [k, v] = [q + qBytes, q + qBytes + kvBytes];
    const o = v + kvBytes; // the output
    const mask = t.mask ? o + qBytes : 0;
    this.copyIn(b, t.q, q, qBytes);
    this.copyIn(b, t.k, k, kvBytes);
    this.copyIn(b, t.v, v, kvBytes);
    if (t.mask) this.copyIn(b, t.mask, mask, maskBytes);
    const w = new Int32Array(this.heap.memory.buffer, desc, D.WORDS);
    w.set([q, k, v, mask, o, batch, heads, kvHeads, s, T, d, 0, o + qBytes + (t.mask ? maskBytes : 0)]);
    new Float32Array(this.heap.memory.buffer, desc, D.WORDS)[D.SCALE] = scale;
    this.dispatch(OPS.PREFILL_ATTENTION, desc, batch * kvHeads, 1, (u0, u1) =>
      attendPrefill(this.main, this.heap.memory, desc, u0, u1, 0),
    );
    this.copyOut(b, o, t.out, qBytes);
    return true;
  }

  /** `bytes` of tfjs tensor `t` (in the tfjs heap) copied to `at` in the shared heap. */
  private copyIn(b: WasmBackend, t: tf.TensorInfo, at: number, bytes: number): void {
    this.heap.bytes(at, bytes).set(new Uint8Array(b.wasm.asm.memory.buffer, heapOffset(b, t) >>> 0, bytes));
  }

  /** `bytes` at `at` in the shared heap copied into tfjs tensor `t`. */
  private copyOut(b: WasmBackend, at: number, t: tf.TensorInfo, bytes: number): void {
    new Uint8Array(b.wasm.asm.memory.buffer, heapOffset(b, t) >>> 0, bytes).set(this.heap.bytes(at, bytes));
  }

  /** A weight's bytes copied as they are into the shared heap on first use (undefined if they cannot fit). */
  rawWeightAt(b: WasmBackend, w: tf.TensorInfo, bytes: number): number | undefined {
    let at = this.weights.get(w.dataId);
    if (at !== undefined) return at;
    try {
      at = this.heap.alloc(bytes);
    } catch {
      return undefined;
    }
    this.copyIn(b, w, at, bytes);
    this.weights.set(w.dataId, at);
    this.reclaim.register(w.dataId, at);
    return at;
  }

  /** Output columns [0, m) in chunks of multiples of 8, taken by whichever thread is free (this one too). */
  private run(x: number, w: number, y: number, rows: number, n: number, m: number): void {
    const c = this.ctrl;
    c[CTRL.W] = w;
    c[CTRL.Y] = y;
    c[CTRL.ROWS] = rows;
    c[CTRL.N] = n;
    c[CTRL.M] = m;
    c[CTRL.IL] = m % 8 ? 0 : 1; // as weightAt stored it
    this.dispatch(OPS.GEMM, x, m, 8, (o0, o1) => this.main.gemmCols(x, w, y, rows, n, m, o0, o1, c[CTRL.IL]));
  }

  /**
   * Runs job `op` over [0, count) in CHUNKS_PER_THREAD chunks per thread (multiples of `step`): opens the claim
   * word, takes chunks here with `mine` until none is left, closes it, then waits for the chunks the workers
   * claimed. A worker that gets less of a (shared) core takes fewer chunks, or none; each output is still
   * computed by exactly one thread.
   */
  dispatch(op: number, x: number, count: number, step: number, mine: (o0: number, o1: number) => void): void {
    const c = this.ctrl;
    const chunk = Math.max(step, Math.ceil(count / (CHUNKS_PER_THREAD * this.threads) / step) * step);
    const chunks = Math.ceil(count / chunk);
    const job = ++this.job << 32n;
    this.jobs++;
    c[CTRL.OP] = op;
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
      let polls = 0;
      for (let d; (d = Atomics.load(c, CTRL.COMPLETED)) < claimed;)
        if (++polls > SPIN) Atomics.wait(c, CTRL.COMPLETED, d, 100);
    }
    if (Atomics.exchange(c, CTRL.FAILED, 0)) throw new BackendError("a kernel worker thread failed in the bf16 matmul");
  }

  /** Chunks the workers (not the main thread) have computed so far: tests use it to see them take part. */
  get workerChunks(): number {
    return Atomics.load(this.ctrl, CTRL.WORKER_CHUNKS);
  }

  /**
   * `bytes` of the shared heap that every thread can read together (a SIMD sum split like a matmul): what a
   * bandwidth-bound decode does, without the arithmetic. Undefined without workers or room. The bench times it.
   */
  sharedRead(bytes: number): { bytes: number; read(): void; release(): void } | undefined {
    if (!this.workersStarted()) return undefined;
    let at: number;
    try {
      at = this.heap.alloc(bytes);
    } catch {
      return undefined;
    }
    // written first: untouched pages all map the kernel's one zero page, which reads at cache speed
    this.heap.bytes(at, bytes).fill(1);
    const blocks = Math.floor(bytes / 64);
    return {
      bytes: blocks * 64,
      read: () => this.dispatch(OPS.READ, at, blocks, 1024, (o0, o1) => this.main.readsum(at + 64 * o0, o1 - o0)),
      release: () => this.heap.release(at),
    };
  }

  /** Stops the workers and frees the shared heap's contents (the pool is unusable afterwards). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    Atomics.store(this.ctrl, CTRL.STOP, 1);
    Atomics.add(this.ctrl, CTRL.SEQ, 1);
    Atomics.notify(this.ctrl, CTRL.SEQ);
    for (const w of this.workers) void w.terminate();
  }
}

let pool: KernelPool | null | undefined;
/** Below this many multiply-adds a matmul stays on the calling thread (waking the pool costs more). */
let minMacs = 1 << 18;

/** The pool for a matmul of `macs` multiply-adds, or null to run it on this thread. */
export function poolFor(macs: number): KernelPool | null {
  return macs >= minMacs ? kernelPool() : null;
}

/** Sets the smallest matmul (multiply-adds) the pool takes; returns the previous value (tests use 0). */
export function setParallelMinMacs(macs: number): number {
  const prev = minMacs;
  minMacs = macs;
  return prev;
}

/** The process's pool, started on first use; null when one thread is asked for or shared memory is unavailable. */
export function kernelPool(): KernelPool | null {
  if (pool === undefined) pool = startPool(threadsFromEnv());
  return pool;
}

function startPool(threads: number): KernelPool | null {
  if (threads < 2) return null;
  if (typeof SharedArrayBuffer !== "function") {
    warnOnce("SharedArrayBuffer is not available here");
    return null;
  }
  try {
    return new KernelPool(threads);
  } catch (e) {
    warnOnce(e instanceof Error ? e.message : String(e)); // no shared wasm memory / no workers here
    return null;
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
  const p = kernelPool();
  return p ? p.threads : 1;
}
