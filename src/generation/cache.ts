// The KV cache moved below the models (src/cache/) so models no longer import from generation/; this
// alias keeps the old import path working for one release.
export { DynamicCache, type DynamicCacheOptions } from "../cache/dynamic-cache.js";
