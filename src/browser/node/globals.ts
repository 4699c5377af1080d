// The Node globals fusekit's modules use, for the browser build (injected by esbuild into the modules that
// reference them, never set on the page's globalThis): Buffer from the `buffer` package, and a `process`
// with an empty environment whose warnings go to the console. `process.versions` stays undefined, so tfjs
// and emscripten still see a browser.
import { Buffer } from "buffer";

type Listener = (...args: unknown[]) => void;

export const process = {
  env: {} as Record<string, string | undefined>,
  pid: 1,
  platform: "browser",
  argv: [] as string[],
  umask: () => 0o022,
  cwd: () => "/",
  kill: (): never => {
    throw Object.assign(new Error("no processes in the browser"), { code: "ESRCH" });
  },
  emitWarning(warning: string | Error, options?: { type?: string; code?: string } | string): void {
    const type = typeof options === "string" ? options : (options?.type ?? "Warning");
    console.warn(`(fusekit) ${type}: ${warning instanceof Error ? warning.message : warning}`);
  },
  listeners: (): Listener[] => [],
  removeListener: () => process,
  on: () => process,
  once: () => process,
  nextTick: (fn: Listener, ...args: unknown[]) => queueMicrotask(() => fn(...args)),
  hrtime: Object.assign(
    (): [number, number] => {
      const ns = performance.now() * 1e6;
      return [Math.floor(ns / 1e9), Math.floor(ns % 1e9)];
    },
    { bigint: () => BigInt(Math.round(performance.now() * 1e6)) },
  ),
  memoryUsage: Object.assign(() => ({ rss: 0, heapUsed: 0, heapTotal: 0, external: 0, arrayBuffers: 0 }), {
    rss: () => 0,
  }),
  stdout: { write: (s: string) => (console.log(s.replace(/\n$/, "")), true), isTTY: false, columns: 100 },
  stderr: { write: (s: string) => (console.warn(s.replace(/\n$/, "")), true), isTTY: false, columns: 100 },
};

export { Buffer };
