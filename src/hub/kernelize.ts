// kernelize: swap the forward of every tagged module instance for a hub kernel layer's forward.
// The class is never touched; the previous forward is remembered per instance so that kernelize with
// another mode, or unkernelize, puts it back.
import { tf } from "../tensor/tf.js";
import type { Module } from "../nn/module.js";
import { KernelMappingError, KernelNotFoundError, KernelValidationError, ArgumentError } from "../errors.js";
import { getKernelLayerName } from "./decorator.js";
import { type KernelMapping, getKernelMapping, selectRepository, useKernelMapping } from "./mapping.js";
import { Mode, checkKernelizeMode, modeName } from "./mode.js";
import type { LayerRepositoryProtocol } from "./repository.js";
import type { KernelLayerClass } from "./types.js";
import { parameterList, parameterMismatch } from "./signature.js";
import { DEFAULT_KERNEL_MAPPING } from "./defaults.js";
import { chainOf } from "./fused.js";

export interface KernelizeOptions {
  /** Mode.INFERENCE or Mode.TRAINING; default the model's own: TRAINING after `train()`, else INFERENCE. */
  mode?: Mode;
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
  Object.defineProperty(module, "forward", {
    value: layer.prototype.forward,
    writable: true,
    configurable: true,
    enumerable: false,
  });
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
type Forward = (...args: never[]) => unknown;
const validated = new WeakMap<object, Set<Forward | number>>();

/**
 * The kernel-layer rules (huggingface/kernels' `_validate_layer`): a class with no base class, no own
 * constructor, no state (instance fields, extra methods or statics other than capability flags), and a
 * forward whose parameter list matches the one it replaces (`original`: that forward, or a bare arity).
 */
export function validateKernelLayer(
  layer: KernelLayerClass,
  original: Forward | number,
  layerName: string,
  repo: string,
): void {
  const kernel = (layer as { name?: string })?.name || "<anonymous>";
  const fail = (msg: string) => new KernelValidationError(msg, kernel, layerName, repo);
  if (typeof layer !== "function" || typeof layer.prototype?.forward !== "function")
    throw fail("must be a class with a forward method");
  if (validated.get(layer)?.has(original)) return;
  const src = Function.prototype.toString.call(layer);
  if (!/^class\b/.test(src)) throw fail("must be a class (a plain function is its own constructor)");
  if (Object.getPrototypeOf(layer) !== Function.prototype)
    throw fail("must not extend another class (it would inherit a constructor and state)");
  if (/\bconstructor\s*\(/.test(classShell(src)))
    throw fail("must not define its own constructor: a kernel layer is stateless");
  const methods = Object.getOwnPropertyNames(layer.prototype).filter((n) => n !== "constructor" && n !== "forward");
  const statics = Object.getOwnPropertyNames(layer).filter((n) => !ALLOWED_STATICS.has(n));
  const fields = Object.keys(new layer());
  const extra = [
    ...methods.map((m) => `method ${m}`),
    ...statics.map((s) => `static ${s}`),
    ...fields.map((f) => `field ${f}`),
  ];
  if (extra.length)
    throw fail(
      `must not hold state or members besides forward and capability flags (hasBackward); found ${extra.join(", ")}`,
    );
  if ("hasBackward" in layer && typeof layer.hasBackward !== "boolean") throw fail("hasBackward must be a boolean");
  const mismatch = signatureMismatch(layer.prototype.forward, original);
  if (mismatch) throw fail(mismatch);
  if (!validated.has(layer)) validated.set(layer, new Set());
  validated.get(layer)!.add(original);
}

/** Parameter lists compared as huggingface/kernels does; a bare arity (or unreadable source) counts positionals. */
function signatureMismatch(forward: Forward, original: Forward | number): string | undefined {
  const kernel = parameterList(forward);
  const replaced = typeof original === "number" ? undefined : parameterList(original);
  if (kernel && replaced) return parameterMismatch(kernel, replaced);
  const arity = kernel ? kernel.length : forward.length;
  const want = typeof original === "number" ? original : original.length;
  if (arity === want) return undefined;
  return `forward takes ${arity} parameter${arity === 1 ? "" : "s"} but the forward it replaces takes ${want}`;
}

/**
 * Swaps the forward of every module whose class (or FusedModule instance) carries a kernel layer name for
 * the mapped hub layer's forward, on `backend` in `mode`. Modules without a usable kernel keep (or get
 * back) their original forward with one warning per layer name — or, with `useFallback: false`, nothing
 * is swapped and a KernelNotFoundError is thrown. FUSEKIT_DISABLE_KERNELS=1 restores every forward.
 */
export async function kernelize<M extends Module>(model: M, options: KernelizeOptions = {}): Promise<M> {
  if (typeof (model as Partial<Module> | undefined)?.namedModules !== "function") {
    throw new ArgumentError(`kernelize: expected a model (a Module), got ${ArgumentError.describe(model)}`);
  }
  const mode = checkKernelizeMode(options.mode ?? (model.training ? Mode.TRAINING : Mode.INFERENCE));
  const backend = options.backend ?? tf.getBackend();
  const useFallback = options.useFallback ?? true;
  const tagged = model.namedModules().filter(([, m]) => getKernelLayerName(m) !== undefined);
  if (process.env.FUSEKIT_DISABLE_KERNELS === "1") {
    for (const [, m] of tagged) restore(m);
    return model;
  }
  const loads = new Map<LayerRepositoryProtocol, Promise<KernelLayerClass | undefined>>();
  const plan: [Module, { layer: KernelLayerClass; repo: string } | undefined][] = [];
  const fallBack = fallbackReporter(useFallback);
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
    validateKernelLayer(layer, replacedForward(module), layerName, repo);
    if (mode === Mode.TRAINING && layer.hasBackward === false) {
      if (sel.mode === Mode.TRAINING) {
        throw new KernelValidationError(
          "is mapped for Mode.TRAINING but declares hasBackward = false",
          layer.name,
          layerName,
          repo,
        );
      }
      fallBack(
        layerName,
        path,
        `kernel layer "${layer.name}" from ${repo} has no backward, so it cannot serve ${modeName(mode)}`,
      );
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

/**
 * What kernelize does where no kernel fits: throw (useFallback false) or warn once per layer name and keep
 * the original forward.
 */
function fallbackReporter(useFallback: boolean): (layerName: string, path: string, reason: string) => void {
  const warned = new Set<string>();
  return (layerName, path, reason) => {
    if (!useFallback) throw new KernelNotFoundError(`kernelize: ${reason} (module "${path}"; useFallback is false)`);
    if (warned.has(layerName)) return;
    warned.add(layerName);
    process.emitWarning(`${reason}; keeping the original forward`, {
      type: "FusekitKernelWarning",
      code: "FUSEKIT_KERNEL_FALLBACK",
    });
  };
}

/** Puts back the original forward of every kernelized module in `model`. */
export function unkernelize<M extends Module>(model: M): M {
  for (const [, m] of model.namedModules()) restore(m);
  return model;
}

/**
 * A load's own kernel mapping may name only layers the model uses (transformers' KernelConfig check:
 * "Layer X is not registered in the model"): a misspelt layer name would otherwise leave the defaults in
 * place without a word. Registered and bundled mappings may name any layer, as in huggingface/kernels.
 */
export function checkMappingUsed(model: Module, mapping: KernelMapping): void {
  const used = new Set(
    model
      .namedModules()
      .map(([, m]) => getKernelLayerName(m))
      .filter((n) => n !== undefined),
  );
  const unused = Object.keys(mapping).filter((layer) => !used.has(layer));
  if (unused.length) {
    const names = unused.map((l) => `"${l}"`).join(", ");
    throw new KernelMappingError(
      `kernelMapping names layer${unused.length === 1 ? "" : "s"} ${names} that no module of ` +
        `${model.constructor.name} uses (its kernel layers: ${[...used].join(", ") || "none"})`,
    );
  }
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
  checkMappingUsed(model, options.kernelMapping ?? {});
  const mode = model.training ? Mode.TRAINING : Mode.INFERENCE;
  const registered = getKernelMapping() as KernelMapping;
  return useKernelMapping(
    DEFAULT_KERNEL_MAPPING,
    () =>
      useKernelMapping(registered, () =>
        useKernelMapping(options.kernelMapping ?? {}, () =>
          kernelize(model, { mode, backend: options.backend, useFallback: options.useFallback }),
        ),
      ),
    { inherit: false },
  );
}
