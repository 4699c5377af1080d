// Classes generated from a fusion's description, for the approaches that decide before loading
// (fusionConfig, recipes' patch classes, KernelConfig n-to-1). Each generator returns a subclass of the
// parent module's class named `Fused{Parent}` whose constructor runs the original and then rewires the
// children; the children themselves are never subclassed, so one generator serves every model family.
import { tf } from "../tensor/tf.js";
import { Module } from "../nn/module.js";
import { Linear } from "../nn/layers.js";
import type { Parameter } from "../nn/parameter.js";
import type { ModuleClass } from "../patching/construct.js";
import { tagInstanceLayer, type KernelChainHolder } from "../hub/fused.js";
import { useKernelForwardFromHub } from "../hub/decorator.js";
import { FusionRecipeError } from "../errors.js";

// Not abstract: a generated parent inherits its forward from the concrete class it extends.
type AnyModuleClass = new (...args: any[]) => Module & { forward(...args: any[]): any };

/** Returns its first argument: what a fused-away child slot becomes. */
export class Identity extends Module {
  forward(...args: unknown[]): unknown {
    return args[0];
  }
}

/**
 * A chain of modules run as one, placed in the LAST member's slot (the parent calls it with every argument
 * the last member takes). Members 0..n-2 become this module's children under their slot names; the last
 * member's own children and parameters appear as this module's, so its state-dict keys do not move.
 */
export class FusedChainModule extends Module implements KernelChainHolder {
  declare readonly chain: readonly Module[];

  constructor(chain: readonly Module[], names: readonly string[], kernelLayerName?: string) {
    super();
    Object.defineProperty(this, "chain", { value: Object.freeze([...chain]), enumerable: false });
    const slots = this as unknown as Record<string, Module>;
    names.slice(0, -1).forEach((name, i) => (slots[name] = chain[i]));
    const last = chain[chain.length - 1];
    Object.defineProperty(this, "training", {
      get: () => last.training,
      set: (v: boolean) => void (last.training = v),
      enumerable: false,
    });
    if (kernelLayerName !== undefined) tagInstanceLayer(this, kernelLayerName);
  }

  override namedChildren(): [string, Module][] {
    return [...this.chain[this.chain.length - 1].namedChildren(), ...super.namedChildren()];
  }

  override ownParameters(): [string, Parameter][] {
    return this.chain[this.chain.length - 1].ownParameters();
  }

  /** Module i < n-1 takes the previous output; the last takes it plus the rest of this call's arguments. */
  forward(...args: unknown[]): unknown {
    let value = args[0];
    for (let i = 0; i < this.chain.length - 1; i++) value = this.chain[i].call(value);
    return this.chain[this.chain.length - 1].call(value, ...args.slice(1));
  }
}

/** One matmul for several Linears that read the same input; each view hands out its part once. */
class SplitOutputs {
  private input?: tf.Tensor;
  private parts: (tf.Tensor | undefined)[] = [];

  constructor(
    readonly linear: Linear,
    readonly sizes: readonly number[],
  ) {}

  take(x: tf.Tensor, k: number): tf.Tensor {
    if (x !== this.input || this.parts[k] === undefined) {
      for (const p of this.parts) p?.dispose(); // parts nobody took from the previous input
      const y = this.linear.call(x);
      this.parts = tf.split(y, [...this.sizes], -1);
      y.dispose();
      this.input = x;
    }
    const part = this.parts[k]!;
    this.parts[k] = undefined;
    if (this.parts.every((p) => p === undefined)) this.input = undefined;
    return part;
  }
}

/** Stands in for one of the merged Linears: its part of the merged matmul. Holds no weights. */
export class MergedLinearView extends Module<[tf.Tensor], tf.Tensor> {
  constructor(
    private readonly outputs: SplitOutputs,
    readonly index: number,
  ) {
    super();
  }

  forward(x: tf.Tensor): tf.Tensor {
    return this.outputs.take(x, this.index);
  }
}

function named<C extends AnyModuleClass>(cls: C, name: string): C {
  Object.defineProperty(cls, "name", { value: name });
  return cls;
}

function children(parent: Module, names: readonly string[], what: string): Module[] {
  const slots = parent as unknown as Record<string, unknown>;
  return names.map((n) => {
    if (!(slots[n] instanceof Module)) {
      throw new FusionRecipeError(
        `${what}: ${parent.constructor.name} has no child module "${n}" (children: ${parent
          .namedChildren()
          .map(([c]) => c)
          .join(", ")})`,
      );
    }
    return slots[n] as Module;
  });
}

/**
 * `Fused{Parent}`: a subclass whose constructor runs the original one, then `rewire`s the parent's slots
 * around the named children (each generator below differs only in that step).
 */
function fusedParentClass(
  parentCls: ModuleClass,
  names: readonly string[],
  rewire: (slots: Record<string, unknown>, members: Module[]) => void,
): ModuleClass {
  const Base = parentCls as unknown as AnyModuleClass;
  const name = `Fused${parentCls.name}`;
  return named(
    class extends Base {
      constructor(...args: any[]) {
        super(...args);
        rewire(this as unknown as Record<string, unknown>, children(this, names, name));
      }
    },
    name,
  );
}

/** `Fused{Parent}` for a sequential chain: members 0..n-2 → Identity, member n-1 → FusedChainModule(all). */
export function makeSequentialParentClass(
  parentCls: ModuleClass,
  names: readonly string[],
  kernelLayerName?: string,
): ModuleClass {
  return fusedParentClass(parentCls, names, (slots, chain) => {
    names.slice(0, -1).forEach((n) => (slots[n] = new Identity()));
    slots[names[names.length - 1]] = new FusedChainModule(chain, names, kernelLayerName);
  });
}

/**
 * `Fused{Parent}` for parallel Linears on one input: one Linear `merged` (output features concatenated
 * in member order) replaces them as a child; their names stay readable as MergedLinearViews, which are
 * not children, so the state dict holds only `merged`.
 */
export function makeMergedParentClass(parentCls: ModuleClass, names: readonly string[], merged: string): ModuleClass {
  return fusedParentClass(parentCls, names, (slots, members) => {
    const linears = members.map((m, i) => asLinear(m, names[i]));
    const bias = linears[0].bias !== undefined;
    const out = linears.reduce((n, l) => n + l.outFeatures, 0);
    for (const n of names) delete slots[n];
    const linear = new Linear(linears[0].inFeatures, out, { bias });
    slots[merged] = linear;
    const outputs = new SplitOutputs(
      linear,
      linears.map((l) => l.outFeatures),
    );
    names.forEach((n, k) =>
      Object.defineProperty(slots, n, {
        value: new MergedLinearView(outputs, k),
        enumerable: false,
        configurable: true,
      }),
    );
  });
}

function asLinear(m: Module, name: string): Linear {
  if (!(m instanceof Linear))
    throw new FusionRecipeError(
      `"${name}" is a ${m.constructor.name}, not a Linear: only Linears can be merged into one matmul`,
    );
  return m;
}

/** Whether `parent` has every child in `names` (and, for a merge, they are Linears that can share one matmul). */
export function canFuse(parent: Module, names: readonly string[], merged?: string): boolean {
  const slots = parent as unknown as Record<string, unknown>;
  if (!names.every((n) => slots[n] instanceof Module)) return false;
  if (merged === undefined) return true;
  const ls = names.map((n) => slots[n]);
  if (!ls.every((l): l is Linear => l instanceof Linear)) return false;
  return ls.every((l) => l.inFeatures === ls[0].inFeatures && (l.bias === undefined) === (ls[0].bias === undefined));
}

/**
 * `Fused{Parent}` for a fusion that is the parent's whole forward: the parent's class, unchanged but for the
 * kernel layer's class tag, so `kernelize` gives its instances the layer's forward.
 */
export function makeKernelParentClass(parentCls: ModuleClass, kernelLayerName: string): ModuleClass {
  const Base = parentCls as unknown as AnyModuleClass;
  return useKernelForwardFromHub(kernelLayerName)(named(class extends Base {}, `Fused${parentCls.name}`));
}

/** A Layout class from a kernel repo: a Module built from the fused children, owning their weights. */
export type LayoutClass = new (...children: Module[]) => Module;

/**
 * transformers' `make_parent_class_for_kernel_fusion`: `Fused{Parent}` whose constructor runs the original,
 * then puts `new Layout(...children)` in the first child's slot and an Identity in every other one.
 */
export function makeParentClassForKernelFusion(
  parentCls: ModuleClass,
  names: readonly string[],
  Layout: LayoutClass,
): ModuleClass {
  return fusedParentClass(parentCls, names, (slots, members) => {
    slots[names[0]] = new Layout(...members);
    names.slice(1).forEach((n) => (slots[n] = new Identity()));
  });
}
