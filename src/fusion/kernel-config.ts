// KernelConfig (transformers PR #46339): kernels chosen at load time, per layer name or per group of
// modules. An entry is `[key, "org/repo:Layer"]`:
//   - single layer: key "RMSNorm" — modules tagged with that layer name get `Layer` from the repo;
//   - n-to-1: key [["RMSNorm", "model.layers.*.post_attention_layernorm"], ["MLP", "model.layers.*.mlp"]] —
//     the repo's `{Layer}Layout` (a module built from those children, owning their weights in its own
//     layout, with a `conversionMapping`) goes into the first child's slot of a generated `Fused{Parent}`,
//     Identities into the others, and kernelize gives the Layout the repo's `Layer`.
// Class names in a key are regexes searched in the child's class name; paths are dotted globs, `*` one segment.
import { tf } from "../tensor/tf.js";
import { Module } from "../nn/module.js";
import { Parameter } from "../nn/parameter.js";
import { Linear, rmsNorm, silu } from "../nn/layers.js";
import { WeightConverter, WeightRenaming, type ConversionRule } from "../conversion/rules.js";
import { Chunk, Concatenate } from "../conversion/ops.js";
import { KernelConfigError } from "../errors.js";
import type { ModuleClass } from "../patching/construct.js";
import type { PatchMapping } from "../patching/registry.js";
import { findRepo } from "../hub/repos.js";
import { importBuildModule } from "../hub/importer.js";
import { LayerRepository } from "../hub/repository.js";
import type { KernelMapping } from "../hub/mapping.js";
import { useKernelForwardFromHub } from "../hub/decorator.js";
import { KERNEL_BACKENDS } from "../hub/types.js";
import { makeKernelParentClass, makeParentClassForKernelFusion } from "./generated.js";
import { matchesModulePath } from "./paths.js";

/** One n-to-1 key: [class-name regex, module glob] per fused child, all children of one parent. */
export type KernelFusionKey = readonly (readonly [className: string, path: string])[];
export type KernelConfigEntry = readonly [key: string | KernelFusionKey, repoLayer: string];

/** What a Layout module gets from fusekit (an outside repo cannot import it). */
export interface LayoutEnv {
  tf: typeof tf;
  Module: typeof Module;
  Parameter: typeof Parameter;
  Linear: typeof Linear;
  rmsNorm: typeof rmsNorm;
  silu: typeof silu;
  WeightRenaming: typeof WeightRenaming;
  WeightConverter: typeof WeightConverter;
  Concatenate: typeof Concatenate;
  Chunk: typeof Chunk;
}

/** A Layout class: built from the fused children; may carry the checkpoint rules of its weight layout. */
export interface KernelLayoutClass {
  new (...children: Module[]): Module;
  readonly name: string;
  conversionMapping?: readonly ConversionRule[];
}

export class KernelConfig {
  readonly entries: readonly KernelConfigEntry[];

  constructor(entries: readonly KernelConfigEntry[]) {
    if (!Array.isArray(entries))
      throw new KernelConfigError(
        `KernelConfig takes a list of [key, "org/repo:Layer"] entries, got ${typeof entries}`,
      );
    entries.forEach((e, i) => checkEntry(e, i));
    this.entries = entries.map((e) => [e[0], e[1]] as const);
  }
}

function checkEntry(entry: unknown, i: number): void {
  const bad = (why: string) =>
    new KernelConfigError(
      `kernelConfig entry ${i}: ${why}; expected [key, "org/repo:Layer"], got ${JSON.stringify(entry)}`,
    );
  if (!Array.isArray(entry) || entry.length !== 2) throw bad("not a pair");
  const [key, repo] = entry as [unknown, unknown];
  if (typeof repo !== "string" || !/^[\w.-]+\/[\w.-]+:\w+$/.test(repo))
    throw bad(`"${String(repo)}" is not "org/repo:Layer"`);
  if (typeof key === "string" ? key.trim() === "" : !Array.isArray(key) || key.length < 2)
    throw bad("the key must be a layer name or at least two [class, path] pairs");
  if (
    Array.isArray(key) &&
    !key.every((p) => Array.isArray(p) && p.length === 2 && p.every((s) => typeof s === "string" && s !== ""))
  ) {
    throw bad("every n-to-1 pair must be [class name, module path]");
  }
}

export interface KernelConfigPlan {
  patches: PatchMapping;
  conversions: ConversionRule[];
  kernelMapping: KernelMapping;
}

/** The patches, appended conversions and kernel mapping one load gets from its KernelConfig. */
export async function planKernelConfig(
  config: KernelConfig | readonly KernelConfigEntry[],
  skeleton: () => Module,
  patches: PatchMapping = {},
): Promise<KernelConfigPlan> {
  const entries = config instanceof KernelConfig ? config.entries : new KernelConfig(config).entries;
  const plan: KernelConfigPlan = { patches: { ...patches }, conversions: [], kernelMapping: {} };
  let model: Module | undefined;
  try {
    for (const [key, repoLayer] of entries) {
      const [repoId, layerName] = repoLayer.split(":");
      const repo = new LayerRepository({ repoId, layerName });
      await repo.loadLayer(tf.getBackend()); // trust, and that the repo exports the layer
      if (typeof key === "string") {
        plan.kernelMapping[key] = allBackends(repo);
        continue;
      }
      const Layout = await loadLayout(repoId, layerName);
      const parent = sharedParent(key, repoLayer);
      fusedParents((model ??= skeleton()), parent, key, Layout, repoLayer, plan.patches);
      plan.conversions.push(...(Layout?.conversionMapping ?? []));
      plan.kernelMapping[layerName] = allBackends(repo);
    }
    return plan;
  } finally {
    model?.dispose();
  }
}

const allBackends = (repo: LayerRepository) => Object.fromEntries(KERNEL_BACKENDS.map((b) => [b, repo]));

/**
 * The repo's `{Layer}Layout`, from its build module's `createLayouts(env)`, tagged with the layer name;
 * undefined when it has none (the key must then name every child of its parent: the layer replaces the
 * parent's forward).
 */
async function loadLayout(repoId: string, layerName: string): Promise<KernelLayoutClass | undefined> {
  const build = await importBuildModule(await findRepo(repoId), tf.getBackend()); // trust was checked by loadLayer
  const mod = (build?.mod ?? {}) as { createLayouts?: (env: LayoutEnv) => Record<string, unknown> };
  const env: LayoutEnv = {
    tf,
    Module,
    Parameter,
    Linear,
    rmsNorm,
    silu,
    WeightRenaming,
    WeightConverter,
    Concatenate,
    Chunk,
  };
  const Layout = mod.createLayouts?.(env)?.[`${layerName}Layout`] as KernelLayoutClass | undefined;
  if (Layout === undefined) return undefined;
  if (typeof Layout !== "function" || !(Layout.prototype instanceof Module)) {
    throw new KernelConfigError(
      `kernel repository "${repoId}": ${layerName}Layout is not a Module class (built from the fused children)`,
    );
  }
  return useKernelForwardFromHub(layerName)(Layout);
}

/** The parent glob every path of the key shares. */
function sharedParent(key: KernelFusionKey, repoLayer: string): string {
  const parents = new Set(key.map(([, p]) => p.slice(0, Math.max(0, p.lastIndexOf(".")))));
  if (parents.size !== 1) {
    throw new KernelConfigError(
      `kernelConfig key for "${repoLayer}": paths ${key.map(([, p]) => p).join(", ")} do not share one parent module`,
    );
  }
  return [...parents][0];
}

/**
 * Adds to `patches` a `Fused{Parent}` for every class of module the parent glob matches (every one must have
 * every child); a class already patched (another entry, a fusion family) is extended, so both apply.
 */
function fusedParents(
  model: Module,
  parentGlob: string,
  key: KernelFusionKey,
  Layout: KernelLayoutClass | undefined,
  repoLayer: string,
  patches: PatchMapping,
): void {
  const names = key.map(([, p]) => p.slice(p.lastIndexOf(".") + 1));
  const layerName = repoLayer.split(":")[1];
  const out: PatchMapping = {};
  for (const [path, m] of model.namedModules()) {
    if (!matchesModulePath(path, parentGlob)) continue;
    const slots = m as unknown as Record<string, unknown>;
    const missing = key.filter(
      ([cls], i) =>
        !(slots[names[i]] instanceof Module) ||
        !new RegExp(cls).test(Object.getPrototypeOf(slots[names[i]]).constructor.name),
    );
    if (missing.length) {
      throw new KernelConfigError(
        `kernelConfig key for "${repoLayer}": module "${path}" (${m.constructor.name}) lacks the children ${missing.map(([c, p]) => `${c} at ${p}`).join(", ")} ` +
          `(its children: ${m
            .namedChildren()
            .map(([n, c]) => `${n}: ${c.constructor.name}`)
            .join(", ")})`,
      );
    }
    const unnamed = m.namedChildren().filter(([n]) => !names.includes(n));
    if (!Layout && unnamed.length) {
      throw new KernelConfigError(
        `kernelConfig key for "${repoLayer}": the repository has no ${layerName}Layout, so its layer replaces the forward of "${path}" ` +
          `(${m.constructor.name}) and the key must name every child of it; missing: ${unnamed.map(([n]) => n).join(", ")}`,
      );
    }
    const cls = Object.getPrototypeOf(m).constructor as ModuleClass;
    const k = `^${cls.name}$`;
    out[k] ??= Layout
      ? makeParentClassForKernelFusion(patches[k] ?? cls, names, Layout)
      : makeKernelParentClass(patches[k] ?? cls, layerName);
  }
  if (!Object.keys(out).length) {
    throw new KernelConfigError(
      `kernelConfig key for "${repoLayer}": no module matches the parent path "${parentGlob}"; give full dotted paths from the model root`,
    );
  }
  Object.assign(patches, out);
}
