import { UnknownModelTypeError, ConfigError } from "../errors.js";
import type { ModelConfig } from "../io/checkpoint.js";
import type { CheckpointModel } from "./types.js";
import { construct } from "../patching/construct.js";
import { buildInScope } from "../patching/registry.js";

export interface ModelFamily {
  modelType: string;
  /** Parses a config.json dictionary (throws ConfigError on bad fields). */
  configFromDict(raw: Record<string, unknown>, where: string): ModelConfig;
  /** Architecture name (config.architectures[0]) → class. */
  architectures: Record<string, new (config: never) => CheckpointModel>;
  /** The class for causal LM when config.architectures names none of ours. */
  causalLM: new (config: never) => CheckpointModel;
}

const families = new Map<string, ModelFamily>();

export function registerModelFamily(family: ModelFamily): void {
  families.set(family.modelType, family);
}

export function registeredModelTypes(): string[] {
  return [...families.keys()];
}

/** Finds the family for a config.json dictionary by `model_type`. */
export function familyFor(raw: Record<string, unknown>, where: string): ModelFamily {
  const modelType = raw.model_type;
  if (typeof modelType !== "string")
    throw new ConfigError(`${where}: required field "model_type" is missing or not a string`);
  const family = families.get(modelType);
  if (!family) {
    // A checkpoint that needs its own modeling code: say plainly that it will not be run.
    const remote =
      raw.auto_map !== undefined ? `; its "auto_map" points at custom modeling code, which fusekit never runs` : "";
    throw new UnknownModelTypeError(
      `${where}: model_type "${modelType}" is not supported (supported: ${registeredModelTypes().join(", ")})${remote}`,
    );
  }
  return family;
}

/** The class to build for a config: its first listed architecture if we have it, else the family's causal LM. */
export function causalLMClassFor(family: ModelFamily, config: ModelConfig): new (config: never) => CheckpointModel {
  for (const arch of config.architectures ?? []) {
    // Own keys only: "constructor" or "__proto__" must not find Object's members.
    const cls = Object.hasOwn(family.architectures, arch) ? family.architectures[arch] : undefined;
    if (typeof cls === "function") return cls;
  }
  return family.causalLM;
}

/**
 * Builds the class a config names under the registered patches (fromPretrained and fromConfig apply them;
 * `new` does not), with no weights allocated yet.
 */
export function buildModel(
  config: ModelConfig,
  raw: Record<string, unknown> = config.toDict(),
  where = "config",
): CheckpointModel {
  const Cls = causalLMClassFor(familyFor(raw, where), config);
  return buildInScope({}, () => construct(Cls as new (c: ModelConfig) => CheckpointModel, config));
}
