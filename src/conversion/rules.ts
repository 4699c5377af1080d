// Checkpoint conversion rules (transformers' WeightRenaming / WeightConverter).
//
// Source patterns are regexes searched in a checkpoint key (not anchored) with at most one capture
// group; the matched part of the key is replaced by the target pattern, where `\1` is the captured
// text. Targets are plain text apart from `\1` (a backslash before any other character is dropped,
// so "mlp\\.norm_weight" and "mlp.norm_weight" mean the same).
import { ConversionOperation } from "./ops.js";
import { ConversionRuleError } from "../errors.js";

/** Source patterns must be non-empty; a target may be "" (e.g. to strip a prefix). */
function list(p: string | string[], what: string, allowEmpty = false): string[] {
  const out = Array.isArray(p) ? p : [p];
  if (!out.length || out.some((s) => typeof s !== "string" || (s === "" && !allowEmpty))) {
    throw new ConversionRuleError(
      `${what} must be a non-empty string or a non-empty list of them, got ${JSON.stringify(p)}`,
    );
  }
  return out;
}

function compileSource(pattern: string, rule: string): RegExp {
  let re: RegExp;
  try {
    re = new RegExp(pattern);
  } catch (err) {
    throw new ConversionRuleError(
      `${rule}: source pattern "${pattern}" is not a valid regex (${(err as Error).message})`,
    );
  }
  const groups = new RegExp(`${pattern}|`).exec("")!.length - 1;
  if (groups > 1)
    throw new ConversionRuleError(
      `${rule}: source pattern "${pattern}" has ${groups} capture groups; at most one is allowed (use (?:…) for the others)`,
    );
  return re;
}

function checkTarget(target: string, sources: RegExp[], rule: string): void {
  const refs = target.match(/\\[0-9]/g) ?? [];
  if (refs.some((r) => r !== "\\1"))
    throw new ConversionRuleError(`${rule}: target pattern "${target}" may only refer to \\1`);
  if (refs.length && sources.some((s) => new RegExp(`${s.source}|`).exec("")!.length === 1)) {
    throw new ConversionRuleError(
      `${rule}: target pattern "${target}" uses \\1 but a source pattern has no capture group`,
    );
  }
}

/** The key with the match replaced by `target` (its `\1` filled in). */
function substitute(key: string, m: RegExpExecArray, target: string): string {
  const text = target.replace(/\\(.)/g, (_, c: string) => (c === "1" ? (m[1] ?? "") : c));
  return key.slice(0, m.index) + text + key.slice(m.index + m[0].length);
}

interface PatternOptions {
  sourcePatterns: string | string[];
  targetPatterns: string | string[];
}

/** Renames keys: source i → target i (or every source → the one target). Applied in order, before converters. */
export class WeightRenaming {
  readonly sourcePatterns: string[];
  readonly targetPatterns: string[];
  private readonly sources: RegExp[];

  constructor({ sourcePatterns, targetPatterns }: PatternOptions) {
    this.sourcePatterns = list(sourcePatterns, "WeightRenaming: sourcePatterns");
    this.targetPatterns = list(targetPatterns, "WeightRenaming: targetPatterns", true);
    const name = this.toString();
    if (this.targetPatterns.length !== 1 && this.targetPatterns.length !== this.sourcePatterns.length) {
      throw new ConversionRuleError(
        `${name}: needs one target pattern or one per source pattern (${this.sourcePatterns.length}), got ${this.targetPatterns.length}`,
      );
    }
    this.sources = this.sourcePatterns.map((p) => compileSource(p, name));
    for (const t of this.targetPatterns) checkTarget(t, this.sources, name);
  }

  /** The renamed key, or undefined if no source pattern matches. */
  rename(key: string): string | undefined {
    for (let i = 0; i < this.sources.length; i++) {
      const m = this.sources[i].exec(key);
      if (m) return substitute(key, m, this.targetPatterns[this.targetPatterns.length === 1 ? 0 : i]);
    }
    return undefined;
  }

  toString(): string {
    return `WeightRenaming(${this.sourcePatterns.join(", ")} → ${this.targetPatterns.join(", ")})`;
  }
}

/**
 * Turns the tensors matched by the source patterns into the target tensors through `operations`:
 * one-to-one, many-to-one (e.g. Concatenate) or one-to-many (e.g. Chunk). Keys that map to the same
 * target names form one group, with one entry per source pattern (a list if a pattern matches a
 * module list, e.g. every expert's weight).
 */
export class WeightConverter {
  readonly sourcePatterns: string[];
  readonly targetPatterns: string[];
  readonly operations: ConversionOperation[];
  private readonly sources: RegExp[];

  constructor({ sourcePatterns, targetPatterns, operations }: PatternOptions & { operations: ConversionOperation[] }) {
    this.sourcePatterns = list(sourcePatterns, "WeightConverter: sourcePatterns");
    this.targetPatterns = list(targetPatterns, "WeightConverter: targetPatterns", true);
    const name = `WeightConverter(${this.sourcePatterns.join(", ")} → ${this.targetPatterns.join(", ")})`;
    if (this.sourcePatterns.length > 1 && this.targetPatterns.length > 1) {
      throw new ConversionRuleError(`${name}: many-to-many is not supported; use one source or one target pattern`);
    }
    if (
      !Array.isArray(operations) ||
      !operations.length ||
      operations.some((op) => !(op instanceof ConversionOperation))
    ) {
      throw new ConversionRuleError(
        `${name}: operations must be a non-empty list of conversion operations (Concatenate, Chunk, Transpose, …)`,
      );
    }
    this.operations = [...operations];
    this.sources = this.sourcePatterns.map((p) => compileSource(p, name));
    for (const t of this.targetPatterns) checkTarget(t, this.sources, name);
  }

  /** Which source pattern `key` matches and the target keys it feeds, or undefined. */
  match(key: string): { slot: number; targets: string[] } | undefined {
    for (let i = 0; i < this.sources.length; i++) {
      const m = this.sources[i].exec(key);
      if (m) return { slot: i, targets: this.targetPatterns.map((t) => substitute(key, m, t)) };
    }
    return undefined;
  }

  toString(): string {
    return `WeightConverter(${this.sourcePatterns.join(", ")} → ${this.targetPatterns.join(", ")}: ${this.operations.join(", ")})`;
  }
}

export type ConversionRule = WeightRenaming | WeightConverter;
