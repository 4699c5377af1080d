// fusionConfig (transformers' fusion_config, PR #45041): named fusion families chosen at load time. Each
// family is a FusionSpec that finds its target modules on a skeleton of the model (built once, no
// weights; cached per spec and model class), generates the fused classes and the weight transforms. The
// choice is stored in config.json as `fusion_config`, so a plain reload of a saved model fuses again.
import type { Module } from "../nn/module.js";
import type { ModelConfig } from "../io/checkpoint.js";
import type { ModuleClass } from "../patching/construct.js";
import type { PatchMapping } from "../patching/registry.js";
import type { ConversionRule } from "../conversion/rules.js";
import { FusionConfigError } from "../errors.js";
import { matchesModulePath } from "./paths.js";

/** A fusion family (transformers' ModuleFusionSpec). */
export interface FusionSpec {
  /** Globs on dotted module paths that pre-filter the candidates. */
  readonly targetModulesPatterns: readonly string[];
  /** Whether a candidate module can be fused (structural check). */
  isFusable(module: Module): boolean;
  /** The replacement class for a fusable module's class. */
  makeFusedClass(originalCls: ModuleClass): ModuleClass;
  /** Checkpoint rules from the original layout to the fused one (reversed on save). */
  makeTransforms(config: ModelConfig): ConversionRule[];
}

/** `{ family: true | false | options }`; `{}` turns fusion off. */
export type FusionConfig = Record<string, boolean | Record<string, unknown>>;

/** The config.json field the choice is stored in. */
export const FUSION_CONFIG_KEY = "fusion_config";

const registry = new Map<string, FusionSpec>();
/** spec → model class → patch mapping found on that class's skeleton. */
const discovered = new WeakMap<FusionSpec, WeakMap<object, PatchMapping>>();

const SPEC_METHODS = ["isFusable", "makeFusedClass", "makeTransforms"];

export function registerFusionSpec(name: string, spec: FusionSpec, { overwrite = false } = {}): void {
  if (typeof name !== "string" || name.trim() === "") {
    throw new FusionConfigError(`registerFusionSpec: the name must be a non-empty string, got ${JSON.stringify(name)}`);
  }
  const fields = spec as unknown as Record<string, unknown> | undefined;
  const missing = SPEC_METHODS.filter((k) => typeof fields?.[k] !== "function");
  if (!Array.isArray(fields?.targetModulesPatterns)) missing.push("targetModulesPatterns");
  if (missing.length) {
    throw new FusionConfigError(
      `registerFusionSpec("${name}"): a FusionSpec needs targetModulesPatterns, ${SPEC_METHODS.join(", ")} (missing: ${missing.join(", ")})`,
    );
  }
  if (registry.has(name) && !overwrite) {
    throw new FusionConfigError(
      `registerFusionSpec: "${name}" is already registered; pass { overwrite: true } to replace it`,
    );
  }
  registry.set(name, spec);
}

export function unregisterFusionSpec(name: string): void {
  if (!registry.delete(name))
    throw new FusionConfigError(
      `unregisterFusionSpec: "${name}" is not registered (known: ${fusionSpecNames().join(", ")})`,
    );
}

export function fusionSpecNames(): string[] {
  return [...registry.keys()];
}

/**
 * The fusion config in effect for one load: the requested one if given (`{}` = none), else the stored one.
 * Every name must be registered and every value true, false or an options object. Undefined when none is on.
 */
export function resolveFusionConfig(requested: unknown, stored: unknown, where: string): FusionConfig | undefined {
  const chosen = requested !== undefined ? requested : stored;
  const what = requested !== undefined ? "fromPretrained: fusionConfig" : `${where}: "${FUSION_CONFIG_KEY}"`;
  if (chosen === undefined || chosen === null) return undefined;
  if (typeof chosen !== "object" || Array.isArray(chosen))
    throw new FusionConfigError(`${what} must be an object { family: true | options }, got ${JSON.stringify(chosen)}`);
  const out: FusionConfig = {};
  for (const [name, value] of Object.entries(chosen as Record<string, unknown>)) {
    if (!registry.has(name))
      throw new FusionConfigError(`${what}: unknown fusion "${name}" (known: ${fusionSpecNames().join(", ")})`);
    if (value !== true && value !== false && (typeof value !== "object" || value === null || Array.isArray(value))) {
      throw new FusionConfigError(
        `${what}: "${name}" must be true, false or an options object, got ${JSON.stringify(value)}`,
      );
    }
    out[name] = value as boolean | Record<string, unknown>;
  }
  return Object.values(out).some((v) => v !== false) ? out : undefined;
}

export interface FusionPlan {
  patches: PatchMapping;
  conversions: ConversionRule[];
}

/**
 * Patches and conversion rules for the enabled families, in config order. `skeleton` builds the model with
 * no weights; it runs at most once, and only for a (spec, model class) pair not seen before. Two families
 * that patch the same class compose: the second generates from the first's class.
 */
export function planFusionConfig(
  fusion: FusionConfig,
  modelClass: object,
  config: ModelConfig,
  skeleton: () => Module,
): FusionPlan {
  let model: Module | undefined;
  try {
    return planFamilies(fusion, modelClass, config, () => (model ??= skeleton()));
  } finally {
    model?.dispose();
  }
}

function planFamilies(
  fusion: FusionConfig,
  modelClass: object,
  config: ModelConfig,
  skeleton: () => Module,
): FusionPlan {
  const plan: FusionPlan = { patches: {}, conversions: [] };
  for (const [name, value] of Object.entries(fusion)) {
    if (value === false) continue;
    const spec = registry.get(name)!;
    const perClass = discovered.get(spec) ?? new WeakMap<object, PatchMapping>();
    discovered.set(spec, perClass);
    let found = perClass.get(modelClass);
    if (!found) {
      found = discoverFusable(spec, skeleton());
      perClass.set(modelClass, found);
    }
    if (!Object.keys(found).length) {
      throw new FusionConfigError(
        `fusion "${name}" finds nothing to fuse in ${(modelClass as { name?: string }).name} (looked at ${spec.targetModulesPatterns.join(", ")})`,
      );
    }
    for (const [key, cls] of Object.entries(found)) {
      const base = plan.patches[key];
      plan.patches[key] = base ? spec.makeFusedClass(base) : cls;
    }
    plan.conversions.push(...spec.makeTransforms(config));
  }
  return plan;
}

/** Writes the fusion config in effect into the model's config (config.json on save), or removes it. */
export function storeFusionConfig(config: ModelConfig, fusion: FusionConfig | undefined): void {
  const target = ((config as { extra?: Record<string, unknown> }).extra ?? config) as Record<string, unknown>;
  if (fusion) target[FUSION_CONFIG_KEY] = structuredClone(fusion);
  else delete target[FUSION_CONFIG_KEY];
}

/** One generated class per distinct class among the fusable modules the patterns match. */
export function discoverFusable(spec: FusionSpec, model: Module): PatchMapping {
  const out: PatchMapping = {};
  for (const [path, m] of model.namedModules()) {
    if (!spec.targetModulesPatterns.some((g) => matchesModulePath(path, g)) || !spec.isFusable(m)) continue;
    const cls = Object.getPrototypeOf(m).constructor as ModuleClass;
    out[`^${cls.name}$`] ??= spec.makeFusedClass(cls);
  }
  return out;
}
