// Applying conversion rules to a checkpoint's keys (load) and undoing them (save).
//
// Load: plan first from the key names alone — renamings in order, then converters, which group keys
// by the target names they produce — so a collision or an incomplete group is known before any tensor
// is read. Then each group is read, converted and dropped before the next one.
// Save: the model keeps a ConversionRecord of what the load did (original names, shapes, dtypes and
// each group's concrete reverse operations), so the original layout is written back byte for byte.
import { ConversionError } from "../errors.js";
import type { StorageDtype } from "../tensor/dtypes.js";
import type { ConversionOperation, HostTensor, Slot } from "./ops.js";
import { WeightConverter, WeightRenaming, type ConversionRule } from "./rules.js";
import { tf } from "../tensor/tf.js";

export interface ConversionGroup {
  rule: WeightConverter;
  /** Checkpoint keys per source pattern (a module list when a pattern matched several). */
  sources: string[][];
  /** Runtime keys it produces. */
  targets: string[];
  /** The model's parameter shape per target, when known (Chunk without sizes splits by them). */
  targetShapes?: (number[] | undefined)[];
}

export interface ConversionPlan {
  /** Tensors no converter touches: checkpoint key → runtime key (equal unless a renaming matched). */
  direct: { source: string; target: string; rules: WeightRenaming[] }[];
  groups: ConversionGroup[];
  /** Groups that could not be formed (a source pattern matched nothing for that target). */
  errors: { rule: string; keys: string[]; message: string }[];
  /** Rules that matched no key at all. */
  unmatchedRules: string[];
}

export interface SourceInfo {
  key: string;
  shape: number[];
  dtype: StorageDtype;
}

/** What a load converted, kept on the model so saving can restore the checkpoint's own layout. */
export interface ConversionRecord {
  rules: ConversionRule[];
  /** Runtime key → checkpoint key, for renamed tensors. */
  renamed: Map<string, string>;
  groups: { rule: WeightConverter; targets: string[]; sources: SourceInfo[][]; reverse: ConversionOperation[] }[];
}

const natural = (a: string, b: string) => a.localeCompare(b, "en", { numeric: true });

/**
 * Plans a load from the key names alone: renamings in order, then the first converter that matches.
 * `targetShape` (the model's parameter shape for a runtime key) lets `Chunk` without sizes split into
 * pieces of the targets' sizes, e.g. a GQA qkv tensor into q 4, k 2, v 2 rows, as transformers does.
 */
export function planConversions(
  keys: string[],
  rules: ConversionRule[],
  targetShape?: (runtimeKey: string) => readonly number[] | undefined,
): ConversionPlan {
  const used = new Set<ConversionRule>();
  const plan: ConversionPlan = { direct: [], groups: [], errors: [], unmatchedRules: [] };
  const groups = groupKeys(keys, rules, used, plan);
  for (const g of groups) {
    g.sources.forEach((s) => s.sort(natural));
    const empty = g.sources.findIndex((s) => !s.length);
    if (empty >= 0) plan.errors.push(incompleteGroup(g, empty));
    else plan.groups.push(g);
  }
  if (targetShape) for (const g of plan.groups) g.targetShapes = g.targets.map((t) => targetShape(t)?.slice());
  refuseCollisions(plan);
  plan.unmatchedRules = rules.filter((r) => !used.has(r)).map(String);
  return plan;
}

/** Renames each key, then sends it to the first converter that matches (a group per target set) or to `direct`. */
function groupKeys(
  keys: string[],
  rules: ConversionRule[],
  used: Set<ConversionRule>,
  plan: ConversionPlan,
): ConversionGroup[] {
  const renamings = rules.filter((r): r is WeightRenaming => r instanceof WeightRenaming);
  const converters = rules.filter((r): r is WeightConverter => r instanceof WeightConverter);
  const groups = new Map<string, ConversionGroup>();
  for (const key of keys) {
    const { name, by } = renameKey(key, renamings);
    by.forEach((r) => used.add(r));
    const hit = converters.map((c) => [c, c.match(name)] as const).find(([, m]) => m);
    if (!hit) {
      plan.direct.push({ source: key, target: name, rules: by });
      continue;
    }
    const [rule, m] = hit;
    used.add(rule);
    const id = `${converters.indexOf(rule)}\0${m!.targets.join("\0")}`;
    let g = groups.get(id);
    if (!g) groups.set(id, (g = { rule, sources: rule.sourcePatterns.map(() => []), targets: m!.targets }));
    g.sources[m!.slot].push(key);
  }
  return [...groups.values()];
}

/** A key after every renaming that matches it, in order, and the renamings that did. */
function renameKey(key: string, renamings: WeightRenaming[]): { name: string; by: WeightRenaming[] } {
  let name = key;
  const by: WeightRenaming[] = [];
  for (const r of renamings) {
    const next = r.rename(name);
    if (next !== undefined) {
      name = next;
      by.push(r);
    }
  }
  return { name, by };
}

function incompleteGroup(g: ConversionGroup, empty: number): ConversionPlan["errors"][number] {
  const targets = g.targets.map((t) => `"${t}"`).join(", ");
  return {
    rule: g.rule.toString(),
    keys: g.sources.flat(),
    message:
      `${g.rule}: target ${targets} needs a key matching "${g.rule.sourcePatterns[empty]}", ` +
      `but the checkpoint has none (found: ${g.sources.flat().join(", ")})`,
  };
}

/** Two tensors landing on one runtime key would silently overwrite each other: refuse the load. */
function refuseCollisions(plan: ConversionPlan): void {
  const producer = new Map<string, string>();
  const claim = (target: string, source: string) => {
    const prev = producer.get(target);
    if (prev !== undefined) {
      throw new ConversionError(
        `checkpoint tensors ${prev} and ${source} both land on "${target}"; ` +
          `only a WeightConverter (e.g. with Concatenate) can combine tensors`,
      );
    }
    producer.set(target, source);
  };
  for (const d of plan.direct) claim(d.target, `"${d.source}"`);
  for (const g of plan.groups) {
    for (const t of g.targets)
      claim(
        t,
        g.sources
          .flat()
          .map((s) => `"${s}"`)
          .join(" + "),
      );
  }
}

/** Runs a group's operations; returns one tensor per target and the concrete reverse operations. */
export function convertGroup(
  group: ConversionGroup,
  inputs: Slot[],
): { outputs: HostTensor[]; reverse: ConversionOperation[] } {
  let slots = inputs;
  const reverse: ConversionOperation[] = [];
  const ops = group.rule.operations;
  ops.forEach((op, i) => {
    reverse.unshift(op.reverseFor(slots));
    // Target shapes describe the last operation's outputs only (a Transpose after a Chunk changes them).
    slots = op.apply(slots, group.targets.length, i === ops.length - 1 ? group.targetShapes : undefined);
  });
  if (slots.length !== group.targets.length || slots.some(Array.isArray)) {
    throw new ConversionError(
      `${group.rule}: operations produced ${slots.length} entr${slots.length === 1 ? "y" : "ies"} for ${group.targets.length} target(s) ${group.targets.map((t) => `"${t}"`).join(", ")}`,
    );
  }
  return { outputs: slots as HostTensor[], reverse };
}

/** Undoes a recorded group: runtime target tensors → the checkpoint's source tensors, in source order. */
export function revertGroup(group: ConversionRecord["groups"][number], targets: HostTensor[]): HostTensor[] {
  let slots: Slot[] = targets;
  for (const op of group.reverse) slots = op.apply(slots, group.sources.length);
  const out: HostTensor[] = [];
  if (slots.length !== group.sources.length)
    throw new ConversionError(
      `${group.rule}: reversing gave ${slots.length} entries for ${group.sources.length} source patterns`,
    );
  slots.forEach((s, i) => {
    const list = Array.isArray(s) ? s : [s];
    const want = group.sources[i];
    if (list.length !== want.length)
      throw new ConversionError(
        `${group.rule}: reversing gave ${list.length} tensors for ${want.length} source keys (${want.map((w) => w.key).join(", ")})`,
      );
    list.forEach((t, j) => {
      if (t.shape.length !== want[j].shape.length || t.shape.some((n, k) => n !== want[j].shape[k])) {
        throw new ConversionError(
          `${group.rule}: reversing gave shape [${t.shape}] for "${want[j].key}", which was [${want[j].shape}]`,
        );
      }
      out.push({ ...t, dtype: want[j].dtype });
    });
  });
  return out;
}

/**
 * A record for a model that was never loaded (e.g. built with fromConfig under patches): the rules are
 * planned over the plain model's keys and shapes — the layout a checkpoint of it has. Each group's ops
 * run once on zero-filled tensors of the right shapes to get their concrete reverses (`shapeOf`, the
 * model's own parameter shapes, sizes a Chunk without sizes).
 */
export function synthesizeRecord(
  plain: { key: string; shape: number[] }[],
  rules: ConversionRule[],
  dtypeOf: (runtimeKey: string) => StorageDtype,
  shapeOf?: (runtimeKey: string) => readonly number[] | undefined,
): ConversionRecord {
  const shapes = new Map(plain.map((p) => [p.key, p.shape]));
  const plan = planConversions(
    plain.map((p) => p.key),
    rules,
    shapeOf,
  );
  if (plan.errors.length) throw new ConversionError(`cannot save in the original format: ${plan.errors[0].message}`);
  const record: ConversionRecord = { rules: [...rules], renamed: new Map(), groups: [] };
  for (const d of plan.direct) if (d.rules.length) record.renamed.set(d.target, d.source);
  for (const g of plan.groups) {
    const dtype = dtypeOf(g.targets[0]);
    const sources = g.sources.map((keys) => keys.map((key) => ({ key, shape: shapes.get(key)!, dtype })));
    const inputs = sources.map((l) =>
      l.map((s) => ({ data: new Float32Array(tf.util.sizeFromShape(s.shape)), shape: s.shape, dtype })),
    );
    const { reverse } = convertGroup(
      g,
      inputs.map((l) => (l.length === 1 ? l[0] : l)),
    );
    record.groups.push({ rule: g.rule, targets: g.targets, reverse, sources });
  }
  return record;
}
