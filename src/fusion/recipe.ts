// One recipe, every approach: a fusion declared once — module globs sharing one parent, the ModuleSpec
// wiring, the kernel-hub layer name, and (when the fused module owns weights in a new layout) the name of
// the merged Linear, or (when the members are the parent's whole forward, residual adds included) the
// parent's own spec — from which fusekit derives the runtime fusion, the patch classes and conversion rules,
// a fusionConfig family and a KernelConfig n-to-1 entry.
import type { Module } from "../nn/module.js";
import type { ModelConfig } from "../io/checkpoint.js";
import type { ModuleClass } from "../patching/construct.js";
import type { PatchMapping } from "../patching/registry.js";
import { WeightConverter, WeightRenaming, type ConversionRule } from "../conversion/rules.js";
import { Concatenate } from "../conversion/ops.js";
import { FusionRecipeError } from "../errors.js";
import { ModuleSpec } from "./spec.js";
import { fuseModules, unfuseModules, type FusedChain } from "./fuse.js";
import { globToRegexSource, matchesModulePath } from "./paths.js";
import { canFuse, makeKernelParentClass, makeMergedParentClass, makeSequentialParentClass } from "./generated.js";
import { discoverFusable, type FusionSpec } from "./config.js";

export interface FusionRecipeInit {
  /** The fusionConfig family name, e.g. "norm_mlp". */
  name: string;
  /** One dotted-path glob per chain member, in the order the parent calls them; all share one parent. */
  modules: readonly string[];
  /**
   * One ModuleSpec per member: the wires of runtime fusion (module i > 0 reads `out_{i-1}_x`, else `in_i_x`).
   * Not needed with `whole`.
   */
  specs?: readonly ModuleSpec[];
  /** The kernel-hub layer that may serve the fused chain as one (e.g. "NormMLP"). */
  kernelLayerName?: string;
  /** New weight layout: the members are parallel Linears on one input, merged into one Linear of this name. */
  merged?: string;
  /**
   * The members are all the parent's forward does (e.g. a decoder layer's norms, attention, MLP and the
   * residual adds between them), so the fused unit is the parent itself: this is the parent's spec. Runtime
   * fusion makes each parent a FusedModule; the generated classes are the parent's class tagged with the
   * kernel layer; weights stay where they are. Needs `kernelLayerName`.
   */
  whole?: ModuleSpec;
}

/** A [class-name pattern, module glob] pair of a KernelConfig n-to-1 key. */
export type KernelConfigKeyPair = readonly [className: string, path: string];

export class FusionRecipe implements FusionSpec {
  readonly name: string;
  readonly modules: readonly string[];
  readonly specs: readonly ModuleSpec[];
  readonly kernelLayerName?: string;
  readonly merged?: string;
  readonly whole?: ModuleSpec;
  /** The glob of the parent all members share, and the members' names in it. */
  readonly parentGlob: string;
  readonly childNames: readonly string[];
  private readonly fusedClasses = new WeakMap<ModuleClass, ModuleClass>();

  constructor(init: FusionRecipeInit) {
    const where = `fusion recipe ${JSON.stringify(init?.name)}`;
    if (typeof init?.name !== "string" || !/^\w+$/.test(init.name))
      throw new FusionRecipeError(`${where}: name must be a word (letters, digits, _)`);
    if (!Array.isArray(init.modules) || init.modules.length < 2)
      throw new FusionRecipeError(`${where}: modules must list at least two globs`);
    if (init.whole !== undefined) {
      if (!(init.whole instanceof ModuleSpec) || init.merged !== undefined || !init.kernelLayerName)
        throw new FusionRecipeError(`${where}: whole takes the parent's ModuleSpec, a kernelLayerName, and no merged`);
    } else if (
      !Array.isArray(init.specs) ||
      init.specs.length !== init.modules.length ||
      !init.specs.every((s) => s instanceof ModuleSpec)
    ) {
      throw new FusionRecipeError(`${where}: give one ModuleSpec per module glob (${init.modules.length})`);
    }
    this.name = init.name;
    this.modules = [...init.modules];
    this.specs = [...(init.specs ?? [])];
    this.kernelLayerName = init.kernelLayerName;
    this.merged = init.merged;
    this.whole = init.whole;
    const cut = init.modules.map((g) => [g.slice(0, Math.max(0, g.lastIndexOf("."))), g.slice(g.lastIndexOf(".") + 1)]);
    if (new Set(cut.map(([p]) => p)).size !== 1 || cut.some(([, c]) => !/^\w+$/.test(c))) {
      throw new FusionRecipeError(
        `${where}: the module globs must share one parent and end in a plain child name, got ${init.modules.join(", ")}`,
      );
    }
    this.parentGlob = cut[0][0];
    this.childNames = cut.map(([, c]) => c);
    if (!this.whole) checkWiring(this, where);
  }

  // ── runtime fusion, on a loaded model ──

  /** fuseModules with this recipe's globs, specs and kernel layer name. A merged layout cannot be had at runtime. */
  fuse(model: Module): FusedChain[] {
    if (this.merged !== undefined) {
      throw new FusionRecipeError(
        `fusion recipe "${this.name}" merges weights into "${this.merged}": runtime rewiring keeps the loaded weights as they are; load with fusionConfig instead`,
      );
    }
    const options = this.kernelLayerName ? { kernelLayerName: this.kernelLayerName } : {};
    if (this.whole) {
      const parents = model
        .namedModules()
        .filter(([p, m]) => matchesModulePath(p, this.parentGlob) && this.isFusable(m));
      if (!parents.length)
        throw new FusionRecipeError(
          `fusion recipe "${this.name}": no module of ${model.constructor.name} at ${this.parentGlob} has ${this.childNames.join(", ")}`,
        );
      return fuseModules(model, [this.parentGlob], [this.whole], options);
    }
    return fuseModules(model, this.modules, this.specs, options);
  }

  unfuse(model: Module): FusedChain[] {
    return unfuseModules(model, this.whole ? [this.parentGlob] : this.modules);
  }

  // ── patch classes + conversion rules (also: the fusionConfig family, as a FusionSpec) ──

  get targetModulesPatterns(): readonly string[] {
    return [this.parentGlob];
  }

  isFusable(module: Module): boolean {
    return canFuse(module, this.childNames, this.merged);
  }

  /** The generated `Fused{Parent}` for a parent class (one per class). */
  makeFusedClass(parentCls: ModuleClass): ModuleClass {
    let cls = this.fusedClasses.get(parentCls);
    if (!cls) {
      cls = this.whole
        ? makeKernelParentClass(parentCls, this.kernelLayerName!)
        : this.merged !== undefined
          ? makeMergedParentClass(parentCls, this.childNames, this.merged)
          : makeSequentialParentClass(parentCls, this.childNames, this.kernelLayerName);
      this.fusedClasses.set(parentCls, cls);
    }
    return cls;
  }

  /** The checkpoint rules between the original layout and the generated classes' (reversed on save). */
  makeTransforms(_config?: ModelConfig): ConversionRule[] {
    if (this.whole) return []; // the parent keeps its children, and they their weights
    const parent = `(?<=^${globToRegexSource(this.parentGlob)}\\.)`;
    const names = this.childNames;
    if (this.merged !== undefined) {
      return [
        new WeightConverter({
          sourcePatterns: names.map((n) => `${parent}${n}\\.(weight|bias)$`),
          targetPatterns: `${this.merged}.\\1`,
          operations: [new Concatenate(0)],
        }),
      ];
    }
    const last = names[names.length - 1];
    return names
      .slice(0, -1)
      .map((n) => new WeightRenaming({ sourcePatterns: `${parent}${n}\\.`, targetPatterns: `${last}.${n}.` }));
  }

  /** The patch mapping for a model: one generated class per distinct parent class the recipe can fuse. */
  patchesFor(model: Module): PatchMapping {
    return discoverFusable(this, model);
  }

  // ── KernelConfig n-to-1 ──

  /** A KernelConfig n-to-1 entry for `repoLayer` ("org/repo:Layer"); class names come from `model` when given. */
  kernelConfigEntry(repoLayer: string, model?: Module): [KernelConfigKeyPair[], string] {
    const classes = new Map(
      model?.namedModules().map(([p, m]) => [p, Object.getPrototypeOf(m).constructor.name as string]),
    );
    const pairs = this.modules.map((glob): KernelConfigKeyPair => {
      const hit = [...classes].find(([p]) => matchesModulePath(p, glob));
      return [hit ? `^${hit[1]}$` : ".*", glob];
    });
    return [pairs, repoLayer];
  }
}

/** Generated classes handle two wirings: a sequential chain (each output feeds the next), or parallel Linears. */
function checkWiring(r: FusionRecipe, where: string): void {
  const { specs } = r;
  if (r.merged !== undefined) {
    if (!/^\w+$/.test(r.merged))
      throw new FusionRecipeError(`${where}: merged must be a plain child name, got ${JSON.stringify(r.merged)}`);
    const input = specs[0].inputs[0];
    if (!specs.every((s) => s.inputs.length === 1 && s.inputs[0] === input && s.outputs.length === 1)) {
      throw new FusionRecipeError(
        `${where}: a merged layout needs parallel members: each spec one input, the same for all ("${input}"), and one output`,
      );
    }
    return;
  }
  specs.slice(0, -1).forEach((s, i) => {
    if (s.inputs.length !== 1 || s.outputs.length !== 1 || specs[i + 1].inputs[0] !== s.outputs[0]) {
      throw new FusionRecipeError(
        `${where}: member ${i} must take one input and give one output that member ${i + 1} takes first (${s} then ${specs[i + 1]}); ` +
          `other wirings run with fuseModules but have no generated classes`,
      );
    }
  });
}

export function defineFusionRecipe(init: FusionRecipeInit): FusionRecipe {
  return new FusionRecipe(init);
}
