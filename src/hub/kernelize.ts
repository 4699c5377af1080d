// kernelize: swap the forward of every tagged module instance for a hub kernel layer's forward.
// The class is never touched; the previous forward is remembered per instance so that kernelize with
// another mode, or unkernelize, puts it back.
import { tf } from "../tensor/tf.js";
import type { Module } from "../nn/module.js";
import { KernelNotFoundError, KernelValidationError } from "../errors.js";
import { getKernelLayerName } from "./decorator.js";
import { type KernelMapping, getKernelMapping, selectRepository, useKernelMapping } from "./mapping.js";
import { Mode, checkKernelizeMode, modeName } from "./mode.js";
import type { LayerRepositoryProtocol } from "./repository.js";
import type { KernelLayerClass } from "./types.js";
import { DEFAULT_KERNEL_MAPPING } from "./defaults.js";
import { chainOf } from "./fused.js";

export interface KernelizeOptions {
  /** Mode.INFERENCE or Mode.TRAINING. */
  mode: Mode;
  /** The backend to pick kernels for; default the active tfjs backend. */
  backend?: string;
  /** Keep the original forward (with a warning) when no kernel fits; false throws KernelNotFoundError. Default true. */
  useFallback?: boolean;
}

interface Swap {
  /** The own `forward` property the instance had before (undefined: it used its class's). */
  previous?: PropertyDescriptor;
  layer: KernelLayerClass;
  repo: string;
}

const swaps = new WeakMap<object, Swap>();

/** The kernel currently serving a module's forward (`"<layer> from <repo>"`), or undefined. */
export function activeKernel(module: object): string | undefined {
  const s = swaps.get(module);
  return s && `${s.layer.name} from ${s.repo}`;
}

function restore(module: object): void {
  const s = swaps.get(module);
  if (!s) return;
  if (s.previous) Object.defineProperty(module, "forward", s.previous);
  else delete (module as { forward?: unknown }).forward;
  swaps.delete(module);
}

function install(module: object, layer: KernelLayerClass, repo: string): void {
  restore(module);
  swaps.set(module, { previous: Object.getOwnPropertyDescriptor(module, "forward"), layer, repo });
  // Non-enumerable, so module discovery (own enumerable properties) never sees it.
  Object.defineProperty(module, "forward", { value: layer.prototype.forward, writable: true, configurable: true, enumerable: false });
}

/** The forward a kernel must stand in for: the class's (for a FusedModule, the chain's last module's class's). */
function replacedForward(module: object): (...args: unknown[]) => unknown {
  const target = chainOf(module)?.at(-1) ?? module;
  return Object.getPrototypeOf(target).forward;
}

/** Top-level class text (method bodies removed), to tell whether a class declares its own constructor. */
function classShell(src: string): string {
  let depth = 0;
  let out = "";
  for (const ch of src) {
    if (ch === "{") depth++;
    else if (ch === "}") depth--;
    else if (depth === 1) out += ch;
  }
  return out;
}

const ALLOWED_STATICS = new Set(["length", "name", "prototype", "hasBackward"]);
const validated = new WeakMap<object, Set<number>>();

/**
 * The kernel-layer rules (huggingface/kernels' `_validate_layer`): a class with no base class, no own
 * constructor, no state (instance fields, extra methods or statics other than capability flags), and a
 * forward with as many parameters as the forward it replaces.
 */
export function validateKernelLayer(layer: KernelLayerClass, originalArity: number, layerName: string, repo: string): void {
  const kernel = (layer as { name?: string })?.name || "<anonymous>";
  const fail = (msg: string) => new KernelValidationError(msg, kernel, layerName, repo);
  if (typeof layer !== "function" || typeof layer.prototype?.forward !== "function") throw fail("must be a class with a forward method");
  if (validated.get(layer)?.has(originalArity)) return;
  const src = Function.prototype.toString.call(layer);
  if (!/^class\b/.test(src)) throw fail("must be a class (a plain function is its own constructor)");
  if (Object.getPrototypeOf(layer) !== Function.prototype) throw fail("must not extend another class (it would inherit a constructor and state)");
  if (/\bconstructor\s*\(/.test(classShell(src))) throw fail("must not define its own constructor: a kernel layer is stateless");
  const methods = Object.getOwnPropertyNames(layer.prototype).filter((n) => n !== "constructor" && n !== "forward");
  const statics = Object.getOwnPropertyNames(layer).filter((n) => !ALLOWED_STATICS.has(n));
  const fields = Object.keys(new layer());
  const extra = [...methods.map((m) => `method ${m}`), ...statics.map((s) => `static ${s}`), ...fields.map((f) => `field ${f}`)];
  if (extra.length) throw fail(`must not hold state or members besides forward and capability flags (hasBackward); found ${extra.join(", ")}`);
  if ("hasBackward" in layer && typeof layer.hasBackward !== "boolean") throw fail("hasBackward must be a boolean");
  const arity = layer.prototype.forward.length;
  if (arity !== originalArity) {
    throw fail(`forward takes ${arity} argument${arity === 1 ? "" : "s"} but the forward it replaces takes ${originalArity}`);
  }
  if (!validated.has(layer)) validated.set(layer, new Set());
  validated.get(layer)!.add(originalArity);
}

/**
 * Swaps the forward of every module whose class (or FusedModule instance) carries a kernel layer name for
 * the mapped hub layer's forward, on `backend` in `mode`. Modules without a usable kernel keep (or get
 * back) their original forward with one warning per layer name — or, with `useFallback: false`, nothing
 * is swapped and a KernelNotFoundError is thrown. FUSEKIT_DISABLE_KERNELS=1 restores every forward.
 */
export async function kernelize<M extends Module>(model: M, options: KernelizeOptions): Promise<M> {
  const mode = checkKernelizeMode(options.mode);
  const backend = options.backend ?? tf.getBackend();
  const useFallback = options.useFallback ?? true;
  const tagged = model.namedModules().filter(([, m]) => getKernelLayerName(m) !== undefined);
  if (process.env.FUSEKIT_DISABLE_KERNELS === "1") {
    for (const [, m] of tagged) restore(m);
    return model;
  }
  const loads = new Map<LayerRepositoryProtocol, Promise<KernelLayerClass | undefined>>();
  const warned = new Set<string>();
  const plan: [Module, { layer: KernelLayerClass; repo: string } | undefined][] = [];
  const fallBack = (layerName: string, path: string, reason: string) => {
    if (!useFallback) throw new KernelNotFoundError(`kernelize: ${reason} (module "${path}"; useFallback is false)`);
    if (!warned.has(layerName)) {
      warned.add(layerName);
      process.emitWarning(`${reason}; keeping the original forward`, { type: "FusekitKernelWarning", code: "FUSEKIT_KERNEL_FALLBACK" });
    }
  };
  // Every selection is made before the first await: a kernel mapping registered or restored by another
  // task while repositories load must not give one model a mix of two mappings' kernels.
  const selections = tagged.map(([path, module]) => {
    const layerName = getKernelLayerName(module)!;
    return { path, module, layerName, sel: selectRepository(layerName, backend, mode) };
  });
  for (const { path, module, layerName, sel } of selections) {
    if ("missing" in sel) {
      fallBack(layerName, path, sel.reason);
      plan.push([module, undefined]);
      continue;
    }
    if (!loads.has(sel.repo)) loads.set(sel.repo, sel.repo.loadLayer(backend));
    const layer = await loads.get(sel.repo)!;
    const repo = sel.repo.toString();
    if (!layer) {
      fallBack(layerName, path, `${repo} has no build for backend "${backend}" (layer "${layerName}")`);
      plan.push([module, undefined]);
      continue;
    }
    validateKernelLayer(layer, replacedForward(module).length, layerName, repo);
    if (mode === Mode.TRAINING && layer.hasBackward === false) {
      if (sel.mode === Mode.TRAINING) {
        throw new KernelValidationError("is mapped for Mode.TRAINING but declares hasBackward = false", layer.name, layerName, repo);
      }
      fallBack(layerName, path, `kernel layer "${layer.name}" from ${repo} has no backward, so it cannot serve ${modeName(mode)}`);
      plan.push([module, undefined]);
      continue;
    }
    plan.push([module, { layer, repo }]);
  }
  // Everything resolved: apply all swaps at once, so a failure above leaves the model as it was.
  for (const [module, swap] of plan) {
    if (swap) install(module, swap.layer, swap.repo);
    else restore(module);
  }
  return model;
}

/** Puts back the original forward of every kernelized module in `model`. */
export function unkernelize<M extends Module>(model: M): M {
  for (const [, m] of model.namedModules()) restore(m);
  return model;
}

export interface KernelLoadOptions {
  /** Kernelize after loading (default false). */
  useKernels?: boolean;
  /** Extra mapping entries, on top of the registered mapping and the bundled defaults. */
  kernelMapping?: KernelMapping;
  backend?: string;
  useFallback?: boolean;
}

/**
 * What fromPretrained runs after loading when `useKernels` is set: kernelize in the mode matching the
 * model's train/eval state, with the bundled hub's defaults under the registered mapping and `kernelMapping` on top.
 */
export async function applyKernelsAfterLoad<M extends Module>(model: M, options: KernelLoadOptions = {}): Promise<M> {
  if (!options.useKernels) return model;
  const mode = model.training ? Mode.TRAINING : Mode.INFERENCE;
  const registered = getKernelMapping() as KernelMapping;
  return useKernelMapping(
    DEFAULT_KERNEL_MAPPING,
    () =>
      useKernelMapping(registered, () =>
        useKernelMapping(options.kernelMapping ?? {}, () => kernelize(model, { mode, backend: options.backend, useFallback: options.useFallback })),
      ),
    { inherit: false },
  );
}
