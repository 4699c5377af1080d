// The patch mapping: classes swapped at construction time (transformers' monkey_patching.py, scoped).
//
// Keys are class names or regexes. A key equal to the built class's name is an exact match and wins;
// otherwise the keys are tried in registration order as regexes SEARCHED in the class name (JS
// `RegExp.test`, no implicit anchoring), as transformers does with `re.search`: "Attention" patches
// "Qwen3Attention"; anchor with ^…$ to match a whole name.
//
// Patches apply only inside a scope — fromPretrained, AutoModelForCausalLM.fromConfig, `applyPatches(fn)`
// (transformers' `apply_patches()` context) or `withPatches(mapping, fn)` — never to a model built with
// `new` or `construct` outside one. Scopes live in an AsyncLocalStorage: they are undone when their
// function returns or throws, and concurrent async calls each see only their own. A scope's own mapping
// is searched before the scopes around it and before the registered (global) mapping. fusekit's own
// builds are synchronous and use `buildInScope`, which needs no AsyncLocalStorage.
import { AsyncLocalStorage } from "node:async_hooks";
import { Module } from "../nn/module.js";
import { setClassResolver, type ModuleClass } from "./construct.js";
import { PatchMappingError, PatchTypeError } from "../errors.js";

/** Class name (or a regex searched in class names) → the class to build in its place. */
export type PatchMapping = Record<string, ModuleClass>;

interface Entry {
  cls: ModuleClass;
  regex: RegExp;
}
type Layer = Map<string, Entry>;

const globalLayer: Layer = new Map();
/** Active scopes, innermost first; `isolated` hides the global mapping (and every outer scope). */
interface Scope {
  layers: Layer[];
  isolated: boolean;
}
const scopes = new AsyncLocalStorage<Scope>();
/**
 * The scope of a synchronous build (`buildInScope`), innermost while set: a plain variable, as no other code runs
 * until the build returns. Node 20's AsyncLocalStorage, once run, hooks every later promise of the process (an
 * await costs about twice as much from then on), so building a model must not switch it on.
 */
let buildScope: Scope | undefined;
const activeScope = () => buildScope ?? scopes.getStore();

/** Runs `fn` (sync or async) in `scope`, inner to any build scope around the call. */
function runScope<T>(scope: Scope, fn: () => T): T {
  const outerBuild = buildScope;
  buildScope = undefined; // until fn returns, the AsyncLocalStorage scope is the innermost
  try {
    return scopes.run(scope, fn);
  } finally {
    buildScope = outerBuild;
  }
}

/** `mapping` on top of the active scope. */
function scopeWith(mapping: PatchMapping, where: string): Scope {
  const layer = compile(mapping, where);
  const outer = activeScope();
  return { layers: [layer, ...(outer?.layers ?? [])], isolated: outer?.isolated ?? false };
}
const ISOLATED: Scope = { layers: [], isolated: true };

function isModuleSubclass(v: unknown): v is ModuleClass {
  return typeof v === "function" && v.prototype instanceof Module;
}

/** Validates a whole mapping before anything changes, so a bad entry leaves the registry as it was. */
function compile(mapping: PatchMapping, where: string): Layer {
  if (typeof mapping !== "object" || mapping === null || Array.isArray(mapping)) {
    throw new PatchMappingError(
      `${where}: expected an object of class name → Module subclass, got ${describeValue(mapping)}`,
    );
  }
  const layer: Layer = new Map();
  for (const [key, cls] of Object.entries(mapping)) {
    if (!isModuleSubclass(cls)) {
      throw new PatchTypeError(
        `${where}: the replacement for "${key}" must be a Module subclass (TypeError), got ${describeValue(cls)}`,
      );
    }
    let regex: RegExp;
    try {
      regex = new RegExp(key);
    } catch (err) {
      throw new PatchMappingError(
        `${where}: key "${key}" is neither a class name nor a valid regex (${(err as Error).message})`,
      );
    }
    layer.set(key, { cls, regex });
  }
  return layer;
}

function describeValue(v: unknown): string {
  if (typeof v === "function") return `function ${v.name || "(anonymous)"} (not a Module subclass)`;
  if (v === null) return "null";
  if (typeof v === "object") return `an object (${v.constructor?.name ?? "Object"})`;
  return `${typeof v} ${JSON.stringify(v)}`;
}

/** Adds entries to the global mapping. A key already present needs `overwrite: true`. */
export function registerPatchMapping(mapping: PatchMapping, { overwrite = false } = {}): void {
  const layer = compile(mapping, "registerPatchMapping");
  if (!overwrite) {
    const taken = [...layer.keys()].filter((k) => globalLayer.has(k));
    if (taken.length) {
      throw new PatchMappingError(
        `registerPatchMapping: ${taken.map((k) => `"${k}"`).join(", ")} already patched (by ${taken.map((k) => globalLayer.get(k)!.cls.name).join(", ")}); pass { overwrite: true } to replace`,
      );
    }
  }
  for (const [k, e] of layer) globalLayer.set(k, e);
}

/** Removes keys from the global mapping; an unknown key is an error (and nothing is removed). */
export function unregisterPatchMapping(keys: string | string[]): void {
  const list = Array.isArray(keys) ? keys : [keys];
  const unknown = list.filter((k) => !globalLayer.has(k));
  if (unknown.length) {
    throw new PatchMappingError(
      `unregisterPatchMapping: ${unknown.map((k) => `"${k}"`).join(", ")} not registered (registered: ${[...globalLayer.keys()].join(", ") || "none"})`,
    );
  }
  for (const k of list) globalLayer.delete(k);
}

/** A copy of the global mapping (changing it changes nothing). */
export function getPatchMapping(): PatchMapping {
  return Object.fromEntries([...globalLayer].map(([k, e]) => [k, e.cls]));
}

export function clearPatchMapping(): void {
  globalLayer.clear();
}

/**
 * Runs `fn` with the registered patches applied (transformers' `apply_patches()` context): models and
 * modules built inside get the patched classes. Inside another scope it keeps that scope (so
 * `withoutPatches` stays plain). The scope ends when `fn` returns, throws, or its promise settles.
 */
export function applyPatches<T>(fn: () => T): T {
  return activeScope() ? fn() : runScope({ layers: [], isolated: false }, fn);
}

/**
 * Runs `fn` with `mapping` applied on top of the global mapping (and of any enclosing scope). The
 * mapping is gone when `fn` returns, throws, or — for an async `fn` — settles; other concurrent calls
 * never see it.
 */
export function withPatches<T>(mapping: PatchMapping, fn: () => T): T {
  return runScope(scopeWith(mapping, "withPatches"), fn);
}

/** Runs `fn` with no patches at all (neither registered nor scoped): models built inside are plain. */
export function withoutPatches<T>(fn: () => T): T {
  return runScope(ISOLATED, fn);
}

/**
 * Runs a synchronous `build` as `withPatches(mapping, build)` would (`null`: as `withoutPatches`), without
 * AsyncLocalStorage. A `build` that returns a promise is refused: its later steps would run outside the scope.
 */
export function buildInScope<T>(mapping: PatchMapping | null, build: () => T): T {
  const outer = buildScope;
  buildScope = mapping === null ? ISOLATED : scopeWith(mapping, "buildInScope");
  try {
    const built = build();
    if (typeof (built as { then?: unknown } | null)?.then === "function")
      throw new TypeError("buildInScope: the build returned a promise; use withPatches for asynchronous work");
    return built;
  } finally {
    buildScope = outer;
  }
}

function lookup(layer: Layer, name: string): ModuleClass | undefined {
  const exact = layer.get(name);
  if (exact) return exact.cls;
  for (const e of layer.values()) if (e.regex.test(name)) return e.cls;
  return undefined;
}

/** The class to build for `cls` under the active scopes and the global mapping; outside any scope, `cls`. */
export function resolvePatchedClass(cls: ModuleClass): ModuleClass {
  const store = activeScope();
  if (!store) return cls;
  for (const layer of store.isolated ? store.layers : [...store.layers, globalLayer]) {
    const hit = lookup(layer, cls.name);
    if (hit) return hit;
  }
  return cls;
}

setClassResolver(resolvePatchedClass);
