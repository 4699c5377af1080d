// worker-host.ts in the browser build: the kernel pool's threads are Web Workers started from a Blob of the
// pool's source; their data (the shared wasm memory, the compiled module, the control words) arrives in the
// first message. They start only once the page is cross-origin isolated (the pool checks SharedArrayBuffer).
import type { KernelWorker } from "./worker-host.js";

interface WebWorker {
  postMessage(data: unknown): void;
  terminate(): void;
  onerror: ((e: { message?: string }) => void) | null;
}

export function startKernelWorker(source: string, workerData: unknown, onError: (e: unknown) => void): KernelWorker {
  const code = `self.onmessage = (event) => {\n  self.onmessage = null;\n  const workerData = event.data;\n${source}\n};`;
  const g = globalThis as unknown as {
    Worker: new (url: string) => WebWorker;
    Blob: new (parts: string[], options: { type: string }) => object;
    URL: { createObjectURL(blob: object): string; revokeObjectURL(url: string): void };
  };
  const url = g.URL.createObjectURL(new g.Blob([code], { type: "text/javascript" }));
  const worker = new g.Worker(url);
  worker.onerror = (e) => onError(new Error(e.message ?? "worker error"));
  worker.postMessage(workerData);
  return {
    terminate: () => {
      worker.terminate();
      g.URL.revokeObjectURL(url);
    },
  };
}

/** A page's main thread cannot sleep in Atomics.wait (it throws): it spins instead; a worker may sleep. */
export const THREAD_MAY_BLOCK = typeof (globalThis as { document?: unknown }).document === "undefined";
