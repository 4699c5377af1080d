// Where the kernel pool's threads come from, in Node: worker_threads running the pool's source (eval'd, its
// workerData in scope). The browser build swaps this file for worker-host.browser.ts (Web Workers).
import { Worker } from "node:worker_threads";

/** A started worker, as the pool holds it. */
export interface KernelWorker {
  terminate(): void;
}

/**
 * Starts a worker that runs `source` (a script that reads its data from the variable `workerData`); `onError`
 * hears of it if the worker stops on an error.
 */
export function startKernelWorker(source: string, workerData: unknown, onError: (e: unknown) => void): KernelWorker {
  const code = `const { workerData } = require("node:worker_threads");\n${source}`;
  // execArgv: the host's flags are not the workers' (`--input-type=module` would make this script ESM)
  const worker = new Worker(code, { eval: true, workerData, execArgv: [] });
  worker.unref(); // never keeps the process alive: an idle worker sleeps in Atomics.wait
  worker.on("error", onError);
  return { terminate: () => void worker.terminate() };
}

/** Whether this thread may sleep in Atomics.wait (every Node thread may; a page's main thread may not). */
export const THREAD_MAY_BLOCK = true;
