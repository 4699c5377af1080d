// The tiled prefill GEMM (gemm.wat; the matmul runs it on the weight store's arenas through the kernel pool): its
// row threshold, and the measurement of its inner loop's own peak (the bench reports prefill against it).
import { GEMM_WASM_BASE64 } from "./gemm-wasm.js";
import { GEMM_RELAXED_WASM_BASE64 } from "./gemm-relaxed-wasm.js";
import { heapModule, type WasmBackend } from "./heap.js";
import { kernelPool } from "./pool.js";
import { relaxedSimd } from "./relaxed-simd.js";
import type { AttentionExports } from "./prefill-attention.js";
import type { TiledGemmExports } from "./worker.js";

/**
 * From this many rows on, the bf16 matmul runs the tiled GEMM; below it (decode: one row) the row-streaming
 * gemmCols of bf16.wat, whose 4-row blocks read each weight once per 4 rows and need no packing.
 */
export const TILED_MIN_ROWS = 8;

/** The tile's size and the input block it runs over (gemm.wat's TILE and KC): the flops of one tgPeak rep. */
const TILE_FLOPS = 2 * 4 * 8 * 256;

let module: ((b: WasmBackend) => TiledGemmExports & AttentionExports) | undefined;
/** gemm.wat on a tfjs heap: its relaxed-SIMD build where the runtime has it (src/backend/relaxed-simd.ts). */
export function gemmWasm(b: WasmBackend): TiledGemmExports & AttentionExports {
  module ??= heapModule(relaxedSimd() ? GEMM_RELAXED_WASM_BASE64 : GEMM_WASM_BASE64);
  return module(b);
}

/** GFLOP/s of the tiled GEMM's inner loop on data in L1: on this thread, and on every thread of the pool. */
export interface GemmPeak {
  oneCore: number;
  /** Undefined without a pool (one thread, or no shared memory here). */
  allCores?: number;
  threads: number;
}

/** Measures the tile's own peak (best of `tries` runs of `reps` tiles each), one core then the pool. */
export function tiledGemmPeak(reps = 20000, tries = 5): GemmPeak {
  const memory = new WebAssembly.Memory({ initial: 1 });
  const ex = gemmWasm({ wasm: { asm: { memory } } } as unknown as WasmBackend);
  new Uint8Array(memory.buffer).fill(0x3f); // finite values (0.75 as f32 bytes)
  let oneCore = 0;
  for (let t = 0; t < tries; t++) {
    const t0 = performance.now();
    ex.tgPeak(64, reps);
    oneCore = Math.max(oneCore, (TILE_FLOPS * reps) / ((performance.now() - t0) / 1000) / 1e9);
  }
  const pool = kernelPool();
  let allCores: number | undefined;
  for (let t = 0; pool && t < tries; t++) {
    const s = pool.tiledPeak(reps * pool.threads);
    if (s !== undefined) allCores = Math.max(allCores ?? 0, (TILE_FLOPS * reps * pool.threads) / s / 1e9);
  }
  return { oneCore, allCores, threads: pool?.threads ?? 1 };
}
