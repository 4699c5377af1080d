// Which conversion rules a model is loaded with: registered per model class name or per model_type;
// a class-name entry wins over the model_type entry.
import { WeightConverter, WeightRenaming, type ConversionRule } from "./rules.js";
import { ConversionRuleError } from "../errors.js";

const mapping = new Map<string, ConversionRule[]>();

export function registerCheckpointConversionMapping(
  modelTypeOrClassName: string,
  rules: ConversionRule[],
  { overwrite = false } = {},
): void {
  if (typeof modelTypeOrClassName !== "string" || !modelTypeOrClassName) {
    throw new ConversionRuleError(
      `registerCheckpointConversionMapping: the key must be a model_type or class name, got ${JSON.stringify(modelTypeOrClassName)}`,
    );
  }
  checkRules(rules, `registerCheckpointConversionMapping("${modelTypeOrClassName}")`);
  if (mapping.has(modelTypeOrClassName) && !overwrite) {
    throw new ConversionRuleError(
      `registerCheckpointConversionMapping: "${modelTypeOrClassName}" already has conversion rules; pass { overwrite: true } to replace them`,
    );
  }
  mapping.set(modelTypeOrClassName, [...rules]);
}

/** The rules registered for a key (a copy), or, without a key, the whole mapping (a copy). */
export function getCheckpointConversionMapping(): Record<string, ConversionRule[]>;
export function getCheckpointConversionMapping(modelTypeOrClassName: string): ConversionRule[] | undefined;
export function getCheckpointConversionMapping(
  key?: string,
): ConversionRule[] | undefined | Record<string, ConversionRule[]> {
  if (key === undefined) return Object.fromEntries([...mapping].map(([k, v]) => [k, [...v]]));
  const rules = mapping.get(key);
  return rules && [...rules];
}

/** Removes one key's rules, or all of them. */
export function clearCheckpointConversionMapping(modelTypeOrClassName?: string): void {
  if (modelTypeOrClassName === undefined) mapping.clear();
  else mapping.delete(modelTypeOrClassName);
}

/** The rules for a model: the first class name with an entry, else its model_type's entry, else none. */
export function conversionRulesFor(classNames: string[], modelType: string): ConversionRule[] {
  for (const name of [...classNames, modelType]) {
    const rules = mapping.get(name);
    if (rules) return [...rules];
  }
  return [];
}

export function checkRules(rules: unknown, where: string): asserts rules is ConversionRule[] {
  if (!Array.isArray(rules))
    throw new ConversionRuleError(
      `${where}: rules must be a list of WeightRenaming / WeightConverter, got ${typeof rules}`,
    );
  rules.forEach((r, i) => {
    if (!(r instanceof WeightRenaming) && !(r instanceof WeightConverter)) {
      throw new ConversionRuleError(
        `${where}: rule ${i} is not a WeightRenaming or WeightConverter (got ${r?.constructor?.name ?? typeof r})`,
      );
    }
  });
}
