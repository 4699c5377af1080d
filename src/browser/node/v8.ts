// node:v8 in the browser build: the JS heap's size where Chromium reports it, else a generous bound.
const memory = (globalThis as { performance?: { memory?: { jsHeapSizeLimit: number; usedJSHeapSize: number } } })
  .performance?.memory;

export function getHeapStatistics(): { heap_size_limit: number; used_heap_size: number } {
  return {
    heap_size_limit: memory?.jsHeapSizeLimit ?? 4 * 2 ** 30,
    used_heap_size: memory?.usedJSHeapSize ?? 0,
  };
}

/** V8 flags cannot be set from a page (relaxed SIMD is on by default in browsers). */
export function setFlagsFromString(): void {}

export default { getHeapStatistics, setFlagsFromString };
