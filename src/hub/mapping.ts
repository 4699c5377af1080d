// Which hub layer serves which layer name, per backend and mode. The global mapping can be overridden
// for a scope with useKernelMapping; the scope lives in an AsyncLocalStorage, so it is restored when the
// callback returns or throws, and a concurrent async caller never sees another caller's scope.
import { AsyncLocalStorage } from "node:async_hooks";
import { KernelMappingError } from "../errors.js";
import { MODE_FALLBACK_PRIORITY, Mode, checkMode, modeName } from "./mode.js";
import { isLayerRepository } from "./repository.js";
import { KERNEL_BACKENDS, type KernelMapping, type LayerRepositoryProtocol } from "./types.js";
import { DEFAULT_KERNEL_MAPPING } from "./defaults.js";

export type { KernelMapping } from "./types.js";

type Store = Map<string, Map<string, Map<Mode, LayerRepositoryProtocol>>>;

// The global mapping starts with the bundled hub's kernels (as huggingface/kernels ships its defaults),
// so `kernelize(model, { mode })` works without registering anything.
let globalStore: Store | undefined;
const scoped = new AsyncLocalStorage<Store>();
const current = (): Store => scoped.getStore() ?? (globalStore ??= defaultStore());

function defaultStore(): Store {
  const store: Store = new Map();
  mergeInto(store, DEFAULT_KERNEL_MAPPING);
  return store;
}

/** Checks a whole mapping before anything is registered, so a bad entry leaves the mapping untouched. */
function parse(mapping: KernelMapping): [string, string, Map<Mode, LayerRepositoryProtocol>][] {
  if (typeof mapping !== "object" || mapping === null)
    throw new KernelMappingError("a kernel mapping must be an object { layerName: { backend: repo } }");
  const out: [string, string, Map<Mode, LayerRepositoryProtocol>][] = [];
  for (const [layer, perBackend] of Object.entries(mapping)) {
    if (typeof perBackend !== "object" || perBackend === null) {
      throw new KernelMappingError(`kernel mapping for layer "${layer}" must be an object { backend: repo }`);
    }
    for (const [backend, value] of Object.entries(perBackend)) {
      if (!(KERNEL_BACKENDS as readonly string[]).includes(backend)) {
        throw new KernelMappingError(
          `kernel mapping for layer "${layer}": unknown backend "${backend}" (valid: ${KERNEL_BACKENDS.join(", ")})`,
        );
      }
      const modes = new Map<Mode, LayerRepositoryProtocol>();
      if (isLayerRepository(value)) {
        modes.set(Mode.FALLBACK, value);
      } else if (typeof value === "object" && value !== null) {
        for (const [key, repo] of Object.entries(value)) {
          const mode = checkMode(Number(key), `kernel mapping for layer "${layer}" on ${backend}`);
          if (!isLayerRepository(repo)) {
            throw new KernelMappingError(
              `kernel mapping for layer "${layer}" on ${backend} mode ${modeName(mode)}: expected a LayerRepository, got ${String(repo)}`,
            );
          }
          modes.set(mode, repo);
        }
      } else {
        throw new KernelMappingError(
          `kernel mapping for layer "${layer}" on ${backend}: expected a LayerRepository or { [Mode]: LayerRepository }, got ${String(value)}`,
        );
      }
      out.push([layer, backend, modes]);
    }
  }
  return out;
}

function mergeInto(store: Store, mapping: KernelMapping): void {
  for (const [layer, backend, modes] of parse(mapping)) {
    if (!store.has(layer)) store.set(layer, new Map());
    store.get(layer)!.set(backend, modes); // a backend's entry is replaced whole, as in huggingface/kernels
  }
}

function cloneStore(store: Store): Store {
  return new Map([...store].map(([l, b]) => [l, new Map([...b].map(([k, m]) => [k, new Map(m)]))]));
}

/**
 * Registers layer → backend → (mode →) repository entries in the current mapping (the scoped one inside
 * useKernelMapping). With `inherit: false` the current mapping is cleared first.
 */
export function registerKernelMapping(mapping: KernelMapping, { inherit = true }: { inherit?: boolean } = {}): void {
  parse(mapping); // validate first: a bad entry changes nothing
  const store = current();
  if (!inherit) store.clear();
  mergeInto(store, mapping);
}

/**
 * Runs `fn` with `mapping` added to (or, with `inherit: false`, replacing) the current mapping. The
 * previous mapping is back when `fn` returns, throws, or its promise settles.
 */
export function useKernelMapping<T>(
  mapping: KernelMapping,
  fn: () => T,
  { inherit = true }: { inherit?: boolean } = {},
): T {
  const store = inherit ? cloneStore(current()) : new Map();
  mergeInto(store, mapping);
  return scoped.run(store, fn);
}

/** A copy of the current mapping, with mode keys as numbers. */
export function getKernelMapping(): Record<string, Record<string, Record<number, LayerRepositoryProtocol>>> {
  const out: Record<string, Record<string, Record<number, LayerRepositoryProtocol>>> = {};
  for (const [layer, backends] of current()) {
    out[layer] = {};
    for (const [backend, modes] of backends) out[layer][backend] = Object.fromEntries(modes);
  }
  return out;
}

/** Empties the global mapping, bundled defaults included (scoped mappings are unaffected). */
export function clearKernelMapping(): void {
  globalStore = new Map();
}

export type Selection =
  { repo: LayerRepositoryProtocol; mode: Mode } | { missing: "layer" | "backend" | "mode"; reason: string };

/** The repository for a layer on a backend in a kernelize mode, following the mode priority chain. */
export function selectRepository(layerName: string, backend: string, mode: Mode): Selection {
  const backends = current().get(layerName);
  if (!backends) return { missing: "layer", reason: `no kernel mapping for layer "${layerName}"` };
  const modes = backends.get(backend);
  if (!modes)
    return {
      missing: "backend",
      reason: `no kernel mapping for layer "${layerName}" on backend "${backend}" (mapped: ${[...backends.keys()].join(", ")})`,
    };
  for (const m of MODE_FALLBACK_PRIORITY[mode] ?? []) {
    const repo = modes.get(m);
    if (repo) return { repo, mode: m };
  }
  return {
    missing: "mode",
    reason: `no kernel for layer "${layerName}" on "${backend}" in mode ${modeName(mode)} (mapped modes: ${[...modes.keys()].map(modeName).join(", ")})`,
  };
}
