import { tf } from "../tensor/tf.js";
import { Parameter } from "./parameter.js";
import { Rng } from "./init.js";
import { ModulePathError, ShapeError, StateDictError } from "../errors.js";

export type ForwardPreHook = (module: Module, args: unknown[]) => unknown[] | void;
export type ForwardHook = (module: Module, args: unknown[], output: unknown) => unknown | void;
export interface HookHandle {
  remove(): void;
}

export interface LoadStateDictResult {
  missingKeys: string[];
  unexpectedKeys: string[];
  mismatchedKeys: { key: string; expected: number[]; got: number[] }[];
}

/**
 * The base of every layer, modelled on torch.nn.Module.
 *
 * Children and parameters are the instance's own properties whose values are Modules / Parameters, in
 * the order they were assigned — so `this.mlp = new Qwen3MLP(config)` registers `mlp`, and replacing
 * the property (`setSubmodule`) is all it takes to swap a child: forwards read `this.mlp` at call time.
 *
 * Call a module with `call(...)`, which runs hooks around `forward(...)`; `forward` may be replaced
 * per instance (kernelize does that), never on the class.
 */
export abstract class Module<Args extends unknown[] = any[], Out = any> {
  training = false;
  protected _preHooks: ForwardPreHook[] = [];
  protected _postHooks: ForwardHook[] = [];

  abstract forward(...args: Args): Out;

  /** Runs forward pre-hooks, `forward`, then forward hooks (each may replace args / output). */
  call(...args: Args): Out {
    let a: unknown[] = args;
    for (const hook of this._preHooks) a = (hook(this, a) as unknown[] | undefined) ?? a;
    let out: unknown = this.forward(...(a as Args));
    for (const hook of this._postHooks) {
      const replaced = hook(this, a, out);
      if (replaced !== undefined) out = replaced;
    }
    return out as Out;
  }

  registerForwardPreHook(hook: ForwardPreHook): HookHandle {
    this._preHooks.push(hook);
    return { remove: () => void (this._preHooks = this._preHooks.filter((h) => h !== hook)) };
  }

  registerForwardHook(hook: ForwardHook): HookHandle {
    this._postHooks.push(hook);
    return { remove: () => void (this._postHooks = this._postHooks.filter((h) => h !== hook)) };
  }

  /** Direct children, in assignment order. */
  namedChildren(): [string, Module][] {
    return Object.entries(this).filter((e): e is [string, Module] => e[1] instanceof Module);
  }

  /** This module's own parameters (not its children's), in assignment order. */
  ownParameters(): [string, Parameter][] {
    return Object.entries(this).filter((e): e is [string, Parameter] => e[1] instanceof Parameter);
  }

  /** Every module below (and including) this one with its dotted path; shared modules appear once. */
  namedModules(prefix = "", seen = new Set<Module>()): [string, Module][] {
    if (seen.has(this)) return [];
    seen.add(this);
    const out: [string, Module][] = [[prefix, this]];
    for (const [name, child] of this.namedChildren()) out.push(...child.namedModules(join(prefix, name), seen));
    return out;
  }

  /** Every parameter with its state-dict key; a shared (tied) parameter appears once, at its first path. */
  namedParameters(prefix = ""): [string, Parameter][] {
    const seen = new Set<Parameter>();
    const out: [string, Parameter][] = [];
    for (const [path, mod] of this.namedModules(prefix)) {
      for (const [name, p] of mod.ownParameters()) {
        if (seen.has(p)) continue;
        seen.add(p);
        out.push([join(path, name), p]);
      }
    }
    return out;
  }

  parameters(): Parameter[] {
    return this.namedParameters().map(([, p]) => p);
  }

  /** Parameter count (each shared parameter once). */
  numParameters(): number {
    return this.parameters().reduce((n, p) => n + p.numel, 0);
  }

  /** New tensors in checkpoint layout, keyed like the checkpoint; the caller disposes them. */
  stateDict(): Record<string, tf.Tensor> {
    return Object.fromEntries(this.namedParameters().map(([k, p]) => [k, p.stateTensor()]));
  }

  /**
   * Copies tensors (checkpoint layout) into the parameters with the same keys. With `strict` (the
   * default) any missing, unexpected or mis-shaped key throws a StateDictError listing them all and
   * nothing is changed.
   */
  loadStateDict(dict: Record<string, tf.Tensor>, { strict = true } = {}): LoadStateDictResult {
    const params = new Map(this.namedParameters());
    const result: LoadStateDictResult = { missingKeys: [], unexpectedKeys: [], mismatchedKeys: [] };
    for (const key of params.keys()) if (!(key in dict)) result.missingKeys.push(key);
    for (const [key, t] of Object.entries(dict)) {
      const p = params.get(key);
      if (!p) result.unexpectedKeys.push(key);
      else if (!sameShape(p.stateShape, t.shape))
        result.mismatchedKeys.push({ key, expected: [...p.stateShape], got: t.shape });
    }
    const bad = result.missingKeys.length + result.unexpectedKeys.length + result.mismatchedKeys.length;
    if (strict && bad > 0)
      throw new StateDictError(`state dict does not fit ${this.constructor.name}: ${describe(result)}`);
    const mismatched = new Set(result.mismatchedKeys.map((m) => m.key));
    for (const [key, t] of Object.entries(dict)) {
      const p = params.get(key);
      if (p && !mismatched.has(key)) p.setStateTensor(t);
    }
    return result;
  }

  /** The module at a dotted path ("" is this module). */
  getSubmodule(path: string): Module {
    if (path === "") return this;
    let mod: Module = this;
    for (const part of path.split(".")) {
      const next = mod.namedChildren().find(([n]) => n === part)?.[1];
      if (!next) {
        throw new ModulePathError(
          `${this.constructor.name} has no submodule "${path}": "${part}" is not a child of ${mod.constructor.name} ` +
            `(children: ${
              mod
                .namedChildren()
                .map(([n]) => n)
                .join(", ") || "none"
            })`,
        );
      }
      mod = next;
    }
    return mod;
  }

  /** Replaces the module at a dotted path; the parent must already have a child of that name. */
  setSubmodule(path: string, module: Module): void {
    if (!(module instanceof Module)) throw new ModulePathError(`setSubmodule("${path}") needs a Module`);
    const cut = path.lastIndexOf(".");
    const parent = this.getSubmodule(cut < 0 ? "" : path.slice(0, cut));
    const name = path.slice(cut + 1);
    if (!parent.namedChildren().some(([n]) => n === name)) {
      throw new ModulePathError(`${parent.constructor.name} has no child "${name}" to replace (path "${path}")`);
    }
    parent.setChild(name, module);
  }

  /** Assigns a direct child; ModuleList overrides this to write its array. */
  protected setChild(name: string, module: Module): void {
    (this as unknown as Record<string, Module>)[name] = module;
  }

  /** Initialises every parameter not yet loaded, from one seeded stream in state-dict order. */
  initializeWeights(seed = 0, { onlyMissing = false } = {}): void {
    const rng = new Rng(seed);
    for (const [, p] of this.namedParameters()) if (!onlyMissing || !p.isMaterialized) p.initialize(rng);
  }

  train(mode = true): this {
    for (const [, m] of this.namedModules()) m.training = mode;
    return this;
  }

  eval(): this {
    return this.train(false);
  }

  /** Frees every parameter tensor. The module is unusable afterwards. */
  dispose(): void {
    for (const p of this.parameters()) p.dispose();
  }
}

/** An ordered list of modules whose state-dict keys are their indices (`layers.0.mlp…`). */
export class ModuleList<M extends Module = Module> extends Module<[], never> {
  constructor(private readonly items: M[]) {
    super();
  }
  forward(): never {
    throw new ModulePathError("ModuleList has no forward; iterate over it");
  }
  get length(): number {
    return this.items.length;
  }
  at(i: number): M {
    return this.items[i];
  }
  [Symbol.iterator](): Iterator<M> {
    return this.items[Symbol.iterator]();
  }
  override namedChildren(): [string, Module][] {
    return this.items.map((m, i) => [String(i), m]);
  }
  protected override setChild(name: string, module: Module): void {
    this.items[Number(name)] = module as M;
  }
}

function join(prefix: string, name: string): string {
  return prefix ? `${prefix}.${name}` : name;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

export function describe(r: LoadStateDictResult): string {
  const parts: string[] = [];
  if (r.missingKeys.length) parts.push(`missing keys: ${r.missingKeys.join(", ")}`);
  if (r.unexpectedKeys.length) parts.push(`unexpected keys: ${r.unexpectedKeys.join(", ")}`);
  if (r.mismatchedKeys.length) {
    parts.push(
      `mismatched shapes: ${r.mismatchedKeys.map((m) => `${m.key} expected [${m.expected}] got [${m.got}]`).join(", ")}`,
    );
  }
  return parts.join("; ") || "ok";
}

/** Throws a ShapeError unless `t` has rank `rank` (and the given trailing sizes where not undefined). */
export function expectShape(t: tf.Tensor, dims: (number | undefined)[], what: string): void {
  if (t.rank !== dims.length || dims.some((d, i) => d !== undefined && d !== t.shape[i])) {
    throw new ShapeError(`${what}: expected shape [${dims.map((d) => d ?? "?")}], got [${t.shape}]`);
  }
}

/** Every path under which a parameter is reachable (tied parameters have several). */
export function parameterAliases(model: Module): Map<string, Parameter> {
  const out = new Map<string, Parameter>();
  const walk = (m: Module, prefix: string, seen: Set<Module>) => {
    if (seen.has(m)) return;
    seen.add(m);
    for (const [n, p] of m.ownParameters()) out.set(prefix ? `${prefix}.${n}` : n, p);
    for (const [n, c] of m.namedChildren()) walk(c, prefix ? `${prefix}.${n}` : n, seen);
  };
  walk(model, "", new Set());
  return out;
}
