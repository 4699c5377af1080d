// The machine's own limits, measured in the bench run: memory read bandwidth (plain JS and a wasm SIMD
// read over the tfjs heap), the matmul GFLOP/s the active backend reaches, and the page-cache read speed
// of a checkpoint file (into a reused buffer, and into fresh memory). Each figure: median (min–max) of several runs.
import path from "node:path";
import { open } from "node:fs/promises";
import { bf16MatMul, kernelThreads, setKernelThreads, storeWords, tf } from "../src/internals.js";
import { kernelPool } from "../src/backend/pool.js";
import { wasmReadSum } from "../src/backend/kernels.js";
import { stat, type Figure } from "../src/compare/measure.js";
import { CheckpointReader } from "../src/io/checkpoint.js";

const figure = (runs: number[]): Figure => ({ ...stat(runs), runs });

/** GB/s of `fn` reading `bytes` once, over `repeats` runs (after one warm-up). */
function bandwidth(bytes: number, repeats: number, fn: () => void): Figure {
  fn();
  return figure(
    Array.from({ length: repeats }, () => {
      const t0 = performance.now();
      fn();
      return bytes / ((performance.now() - t0) / 1000) / 1e9;
    }),
  );
}

/** Read bandwidth of a plain JS loop summing a Float32Array of `bytes` (4 accumulators). */
export function jsReadBandwidth(bytes: number, repeats: number): Figure {
  const a = new Float32Array(bytes / 4).fill(1);
  let sink = 0;
  const fig = bandwidth(a.byteLength, repeats, () => {
    let s0 = 0,
      s1 = 0,
      s2 = 0,
      s3 = 0;
    for (let i = 0; i < a.length; i += 4) {
      s0 += a[i];
      s1 += a[i + 1];
      s2 += a[i + 2];
      s3 += a[i + 3];
    }
    sink += s0 + s1 + s2 + s3;
  });
  if (sink < 0) console.log(sink); // keeps the loop observable
  return fig;
}

/** Read bandwidth of the bf16 kernel module's SIMD `readsum` over a float32 tensor of `bytes` on the wasm heap; undefined off wasm. */
export function wasmReadBandwidth(bytes: number, repeats: number): Figure | undefined {
  if (tf.getBackend() !== "wasm") return undefined;
  const t = tf.fill([bytes / 4], 1, "float32");
  try {
    return bandwidth(bytes, repeats, () => void wasmReadSum(t));
  } finally {
    t.dispose();
  }
}

/** Read bandwidth of every kernel thread together over the pool's shared heap; undefined without a pool. */
export function poolReadBandwidth(bytes: number, repeats: number): Figure | undefined {
  if (tf.getBackend() !== "wasm") return undefined;
  const shared = kernelPool()?.sharedRead(bytes);
  if (!shared) return undefined;
  try {
    shared.read(); // once untimed: the workers wake and the pages are warm
    const runs = Array.from({ length: repeats }, () => {
      const t = performance.now();
      shared.read();
      return shared.bytes / ((performance.now() - t) / 1000) / 1e9;
    });
    return figure(runs);
  } finally {
    shared.release();
  }
}

export interface Bf16GemmFigure {
  /** [m, k, n]: x [m, k] · bf16 w [n, k]ᵀ (packed), fusekit's bf16 matmul. */
  shape: [number, number, number];
  threads: number;
  gflops: Figure;
}

/** GFLOP/s of fusekit's bf16 matmul per shape, on one thread and on every kernel thread (wasm only). */
export function bf16GemmGflops(shapes: [number, number, number][], repeats: number, minMs = 200): Bf16GemmFigure[] {
  if (tf.getBackend() !== "wasm") return [];
  const out: Bf16GemmFigure[] = [];
  for (const threads of [1, undefined]) {
    setKernelThreads(threads);
    for (const [m, k, n] of shapes) {
      const x = tf.randomNormal([m, k], 0, 1, "float32", 1);
      const w = storeWords(new Int32Array((n * k) / 2).fill(0x3f803f80), [n, k / 2], "bf16"); // ones (no denormals)
      const once = () => tf.tidy(() => void bf16MatMul(x as tf.Tensor2D, w).dataSync());
      once(); // warm-up
      const runs = Array.from({ length: repeats }, () => {
        let iters = 0;
        const t0 = performance.now();
        for (; iters === 0 || performance.now() - t0 < minMs; iters++) once();
        return (2 * m * k * n * iters) / ((performance.now() - t0) / 1000) / 1e9;
      });
      x.dispose();
      w.release();
      out.push({ shape: [m, k, n], threads: kernelThreads(), gflops: figure(runs) });
    }
  }
  return out;
}

export interface MatmulFigure {
  /** [m, k, n]: x [m, k] · w [k, n], w persistent (created once, the wasm XNNPACK fast path). */
  shape: [number, number, number];
  gflops: Figure;
}

export const MATMUL_SHAPES: [number, number, number][] = [
  [256, 256, 256],
  [512, 512, 512],
  [1024, 1024, 1024],
  [1, 1024, 3072],
  [64, 1024, 3072],
  [512, 1024, 3072],
];

/** GFLOP/s of tf.matMul (2-D, untransposed, persistent weight) per shape; each run loops for ≥ `minMs`. */
export function matmulGflops(shapes: [number, number, number][], repeats: number, minMs = 200): MatmulFigure[] {
  return shapes.map(([m, k, n]) => {
    const x = tf.randomNormal([m, k], 0, 1, "float32", 1);
    const w = tf.randomNormal([k, n], 0, 1, "float32", 2);
    const once = () => {
      const y = tf.matMul(x, w);
      y.dataSync();
      y.dispose();
    };
    once(); // warm-up (packs the weight)
    const runs = Array.from({ length: repeats }, () => {
      let iters = 0;
      const t0 = performance.now();
      while (iters === 0 || performance.now() - t0 < minMs) {
        once();
        iters++;
      }
      return (2 * m * k * n * iters) / ((performance.now() - t0) / 1000) / 1e9;
    });
    tf.dispose([x, w]);
    return { shape: [m, k, n], gflops: figure(runs) };
  });
}

/** Reads `file` through a reused 16 MB buffer; returns GB/s. */
async function readOnce(file: string): Promise<number> {
  const fh = await open(file, "r");
  const buf = Buffer.allocUnsafe(16 << 20);
  let total = 0;
  const t0 = performance.now();
  try {
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, total);
      if (bytesRead === 0) break;
      total += bytesRead;
    }
  } finally {
    await fh.close();
  }
  return total / ((performance.now() - t0) / 1000) / 1e9;
}

/** Page-cache read speed of `file`: one read to warm the cache, then `repeats` timed reads (GB/s). */
export async function pageCacheReadSpeed(file: string, repeats: number): Promise<Figure> {
  await readOnce(file);
  const runs: number[] = [];
  for (let i = 0; i < repeats; i++) runs.push(await readOnce(file));
  return figure(runs);
}

/**
 * Reads the checkpoint in `dir` once, from the page cache, into memory never touched before — a new wasm memory,
 * as the loader's tensors are — with the loader's own parallel reads (`readBytesIntoMany`), and nothing else: no
 * model, no plan. Unlike `readOnce` it pays for the kernel faulting in (and zeroing) a fresh page per 4 KiB, which
 * on these VMs costs several times the copy; so it is the fastest any loader can place these bytes here.
 */
const MEMORY_BYTES = 2 ** 32;

async function readFreshOnce(dir: string): Promise<number> {
  const reader = await CheckpointReader.open(dir);
  try {
    const sizes = reader.keys().map((k) => [k, reader.infos.get(k)!.end - reader.infos.get(k)!.begin] as const);
    const total = sizes.reduce((n, [, size]) => n + size, 0);
    // memories of up to 4 GiB (wasm32's limit; the store's arenas), not yet faulted in; a tensor never straddles two
    const memories: WebAssembly.Memory[] = [];
    let at = MEMORY_BYTES;
    const targets = sizes.map(([k, size]): [string, () => Uint8Array] => {
      if (at + size > MEMORY_BYTES) {
        memories.push(new WebAssembly.Memory({ initial: Math.ceil(Math.min(MEMORY_BYTES, total) / 65536) }));
        at = 0;
      }
      const [memory, from] = [memories[memories.length - 1], at];
      at += size;
      return [k, () => new Uint8Array(memory.buffer, from, size)];
    });
    const t0 = performance.now();
    await reader.readBytesIntoMany(targets);
    return total / ((performance.now() - t0) / 1000) / 1e9;
  } finally {
    await reader.close();
  }
}

/** Read speed of the checkpoint in `dir` into fresh memory (see `readFreshOnce`), after one warming read (GB/s). */
export async function freshMemoryReadSpeed(dir: string, repeats: number): Promise<Figure> {
  await readOnce(path.join(dir, "model.safetensors"));
  const runs: number[] = [];
  for (let i = 0; i < repeats; i++) runs.push(await readFreshOnce(dir));
  return figure(runs);
}
