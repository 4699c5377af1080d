// The stand-ins a fused chain puts in place of its modules: RegistryCollectors for modules 0..n-2 and a
// FusedModule for the last one. They share one registry per chain (per parent).
//
// Both are returned from their constructors wrapped in a Proxy so that reading an attribute they do not
// have reads it from the module they stand for (`collector.weight`, `fused.gate_proj`), like
// transformers' `__getattr__`. Methods run with `this` = the proxy, so no #private fields here.
import { tf } from "../tensor/tf.js";
import { Module } from "../nn/module.js";
import type { Parameter } from "../nn/parameter.js";
import { FusionWiringError } from "../errors.js";
import { DROP_OUTPUT, type ModuleSpec } from "./spec.js";
import { tagInstanceLayer, type KernelChainHolder } from "../hub/fused.js";

/** One chain's wires: `in_{i}_{name}` (what module i was called with), `out_{i}_{name}` (what it returned). */
export type FusionRegistry = Map<string, unknown>;

/** What a stand-in needs to put the originals back. */
export interface ChainInfo {
  /** The module whose children the chain replaced (the object, so unfusing does not depend on paths). */
  readonly parent: Module;
  /** The children's names in `parent`, in chain order. */
  readonly names: readonly string[];
  /** Their dotted paths when the chain was fused (for messages). */
  readonly paths: readonly string[];
  readonly specs: readonly ModuleSpec[];
  readonly registry: FusionRegistry;
  /** The chain's FusedModule (set by its constructor): found from any stand-in, even once the user replaced it. */
  fused?: FusedModule;
}

/** Common ground of the two stand-ins: state, children and writes all go to the module stood for. */
abstract class StandIn extends Module {
  /** The module this stand-in replaces; attribute reads fall through to it. */
  declare readonly module: Module;
  declare readonly chainInfo: ChainInfo;
  /** This module's position in its chain. */
  declare readonly index: number;

  constructor(module: Module, chainInfo: ChainInfo, index: number) {
    super();
    // Non-enumerable, so own-property discovery (Module.namedChildren) can never see them.
    hide(this, { module, chainInfo, index });
    // `model.train()` / `eval()` reach the stand-in, not the original: pass the flag on.
    Object.defineProperty(this, "training", {
      get: () => module.training,
      set: (v: boolean) => void (module.training = v),
      enumerable: false,
      configurable: true,
    });
    return delegating(this, module);
  }

  get registry(): FusionRegistry {
    return this.chainInfo.registry;
  }

  /** The wrapped module's children, under their own names: the stand-in adds no path segment. */
  override namedChildren(): [string, Module][] {
    return this.module.namedChildren();
  }

  /** The wrapped module's parameters, so state-dict keys stay those of the unfused model. */
  override ownParameters(): [string, Parameter][] {
    return this.module.ownParameters();
  }

  /** `setSubmodule` through a stand-in replaces the child in the wrapped module. */
  protected override setChild(name: string, module: Module): void {
    this.module.setSubmodule(name, module);
  }

  /** Records this call's arguments as `in_{index}_{name}`; arguments not passed are recorded as undefined. */
  protected recordInputs(args: unknown[]): void {
    const spec = this.chainInfo.specs[this.index];
    spec.inputs.forEach((name, j) => this.registry.set(`in_${this.index}_${name}`, args[j]));
  }
}

/**
 * Stands in for module i < n-1 of a chain: records its arguments into the chain's registry and returns
 * its first argument unchanged. The module itself runs later, inside the chain's FusedModule.
 */
export class RegistryCollector extends StandIn {
  forward(...args: unknown[]): unknown {
    // The first module of a chain starts a new pass: forget whatever an interrupted pass left behind.
    if (this.index === 0) this.registry.clear();
    this.recordInputs(args);
    return args[0];
  }

  override toString(): string {
    return `RegistryCollector(${this.chainInfo.paths[this.index]} → ${this.module.constructor.name})`;
  }
}

/**
 * Stands in for the last module of a chain: records its own arguments, then runs the chain's original
 * modules in order — module i > 0 reads `out_{i-1}_{name}` if present, else `in_{i}_{name}` — and returns
 * the last module's output. The registry is emptied after every call, also when a module throws, and
 * also when `forward` was replaced on the instance (kernelize does that).
 */
export class FusedModule extends StandIn implements KernelChainHolder {
  /** The original modules, in chain order. */
  declare readonly chain: readonly Module[];
  /** The kernel-hub layer name, own property, present only when fuseModules got `kernelLayerName`. */
  declare kernelLayerName?: string;

  constructor(chain: readonly Module[], chainInfo: ChainInfo, { kernelLayerName }: { kernelLayerName?: string } = {}) {
    super(chain[chain.length - 1], chainInfo, chain.length - 1); // `this` is now the delegating proxy
    hide(this, { chain: Object.freeze([...chain]) });
    chainInfo.fused = this;
    if (kernelLayerName !== undefined) tagInstanceLayer(this, kernelLayerName); // the hub's instance tag
  }

  override call(...args: unknown[]): unknown {
    try {
      this.recordInputs(args); // a replaced forward may read the registry too
      return super.call(...args);
    } finally {
      this.registry.clear();
    }
  }

  forward(...args: unknown[]): unknown {
    try {
      this.recordInputs(args);
      // Intermediate outputs live only inside the chain: free them here even without an outer tidy.
      return tf.tidy(() => this.runChain() as tf.TensorContainer);
    } finally {
      this.registry.clear();
    }
  }

  private runChain(): unknown {
    const { specs, paths } = this.chainInfo;
    const reg = this.registry;
    let out: unknown;
    this.chain.forEach((module, i) => {
      const inputs = specs[i].inputs.map((name) => {
        if (i > 0 && reg.has(`out_${i - 1}_${name}`)) return reg.get(`out_${i - 1}_${name}`);
        if (reg.has(`in_${i}_${name}`)) return reg.get(`in_${i}_${name}`);
        const missing = i > 0 ? `neither "out_${i - 1}_${name}" nor "in_${i}_${name}" is` : `"in_${i}_${name}" is not`;
        throw new FusionWiringError(
          `fused chain at ${paths[0]}…: module ${i} (${paths[i]}, ${module.constructor.name}) needs "${name}", but ${missing} in the registry (registry: ${[...reg.keys()].join(", ") || "empty"}). Is module ${i} called by its parent before ` +
            `${paths[paths.length - 1]}, in chain order?`,
        );
      });
      const result: unknown = module.call(...inputs);
      out = result;
      const names = specs[i].outputs;
      if (names.length === 1) {
        if (names[0] !== DROP_OUTPUT) reg.set(`out_${i}_${names[0]}`, result);
      } else if (names.length > 1) {
        if (!Array.isArray(result) || result.length < names.length) {
          throw new FusionWiringError(
            `module ${i} (${paths[i]}, ${module.constructor.name}) returned ${Array.isArray(result) ? `${result.length} values` : "a single value"}, ` +
              `but its spec names ${names.length} outputs [${names.join(", ")}]`,
          );
        }
        names.forEach((name, j) => name !== DROP_OUTPUT && reg.set(`out_${i}_${name}`, result[j]));
      }
    });
    return out;
  }

  override toString(): string {
    return `FusedModule(${this.chainInfo.paths.join(" → ")})`;
  }
}

function hide(target: object, props: Record<string, unknown>): void {
  for (const [key, value] of Object.entries(props))
    Object.defineProperty(target, key, { value, enumerable: false, writable: false, configurable: true });
}

/** A proxy that reads from `target` first and from `module` for what `target` lacks; writes go to `target`. */
function delegating<T extends object>(target: T, module: Module): T {
  return new Proxy(target, {
    get(t, prop, receiver) {
      if (Reflect.has(t, prop)) return Reflect.get(t, prop, receiver);
      const value = Reflect.get(module, prop);
      // A method read through the stand-in is bound to the module, as Python's __getattr__ would give it.
      return typeof value === "function" && !Object.prototype.hasOwnProperty.call(module, prop)
        ? value.bind(module)
        : value;
    },
    has(t, prop) {
      return Reflect.has(t, prop) || Reflect.has(module, prop);
    },
  });
}
