// fusekit in the browser: the whole library (built by web/build.mjs into dist/browser/fusekit.js), plus what
// only a page needs — checkpoint sources (a served folder read by HTTP Range, or files the user picked)
// mounted as folders that fromPretrained and the tokenizer read as in Node, and how the kernels run here.
import { setWasmPaths } from "@tensorflow/tfjs-backend-wasm";
import { tf } from "./tensor/tf.js";
import { mountFiles, registerGrowableMemory } from "./browser/node/fs.js";
import type { CheckpointSource } from "./browser/source.js";
import { kernelPool } from "./backend/pool.js";
import { relaxedSimd } from "./backend/relaxed-simd.js";
import { MAX_ARENAS, openedArenas } from "./backend/weight-store.js";
import { ArgumentError } from "./errors.js";

export * from "./index.js";
export { sourceFromFiles, sourceFromUrl, urlFile } from "./browser/source.js";
export type { BlobLike, CheckpointSource, SourceFile } from "./browser/source.js";
// the comparison, as `fusekit compare` runs it, and its HTML report
export { runComparison, type CompareOptions } from "./compare/run.js";
export { defaultApproaches, selectApproaches } from "./compare/approaches.js";
export { htmlReport } from "./compare/report.js";
export { decodeTokensPerSecond } from "./compare/measure.js";

// tfjs-wasm's binaries sit beside the bundle. Its own pthread build stays off: the kernels run on fusekit's
// pool (as in Node), so a page computes exactly what Node computes on the same backend.
setWasmPaths(new URL("./", import.meta.url).href);
tf.env().set("WASM_HAS_MULTITHREAD_SUPPORT", false);
// tensors' bytes are read straight into tfjs-wasm's heap or the weight store's arenas, which may grow while a
// fetch is in flight
registerGrowableMemory(
  () => (tf.findBackend("wasm") as { wasm?: { asm?: { memory?: { buffer: ArrayBuffer } } } } | null)?.wasm?.asm?.memory,
);
for (let i = 0; i < MAX_ARENAS; i++) registerGrowableMemory(() => openedArenas()[i]?.memory);

let mounts = 0;

/** Mounts a checkpoint source as a folder and returns its path, for fromPretrained / AutoTokenizer. */
export function mountCheckpoint(source: CheckpointSource, name = `checkpoint-${++mounts}`): string {
  if (!/^[\w.-]+$/.test(name) || name === "." || name === "..")
    throw new ArgumentError(`mountCheckpoint: name "${name}" is not a plain folder name`);
  return mountFiles(`/checkpoints/${name}`, source);
}

/**
 * How the kernels run in this page: on Web Workers over shared memory (cross-origin isolated), or on one
 * thread; `workerChunks` counts the pieces of work the workers have computed so far; `relaxedSimd`, whether the
 * prefill kernels run their relaxed-SIMD build (`setRelaxedSimd`).
 */
export function kernelRuntime(): {
  threads: number;
  crossOriginIsolated: boolean;
  mode: "workers" | "one thread";
  workerChunks: number;
  relaxedSimd: boolean;
} {
  const isolated = (globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated === true;
  const pool = kernelPool();
  const threads = pool?.threads ?? 1;
  return {
    threads,
    crossOriginIsolated: isolated,
    mode: threads > 1 ? "workers" : "one thread",
    workerChunks: pool?.workerChunks ?? 0,
    relaxedSimd: relaxedSimd(),
  };
}
