// Runs every approach on the same checkpoint and measures it against the original model.
import { readFileSync, mkdtempSync, promises as fsp } from "node:fs";
import os from "node:os";
import path from "node:path";
import { tf } from "../tensor/tf.js";
import { getBackend } from "../backend/backend.js";
import { AutoModelForCausalLM } from "../models/auto.js";
import { defaultModelDir } from "../presets/presets.js";
import type { PreTrainedModel } from "../loading/pretrained.js";
import { CheckpointReader } from "../io/checkpoint.js";
import { generate } from "../generation/generate.js";
import { AutoTokenizer } from "../tokenizer/tokenizer.js";
import { ArgumentError } from "../errors.js";
import * as library from "../internals.js";
import { decodeWithStackMs, decoderLayers, prefillMs, repeat, stat } from "./measure.js";
import type { Approach, ApproachResult, ComparisonResult, Properties } from "./types.js";
import type { WeightStorageChoice } from "../loading/memory-plan.js";
import type { FromPretrainedOptions } from "../loading/options.js";
import { FUSEKIT_ROOT } from "../io/package.js";

export interface CompareOptions {
  /** Checkpoint directory (default: the embedded tiny model). */
  modelDir?: string;
  /** Prompt text, tokenized with the checkpoint's tokenizer (unless `promptIds` are given; then only shown)… */
  prompt?: string;
  /** …or its token ids directly (for checkpoints without a tokenizer, or a tokenizer already loaded). */
  promptIds?: number[];
  newTokens?: number;
  repeats?: number;
  approaches: Approach[];
  /** Weight storage for every load: "auto" (default) is resolved once, by the reference load. */
  weightStorage?: WeightStorageChoice;
  /** Progress lines (default: silent). */
  log?: (line: string) => void;
}

export const DEFAULT_PROMPT = "Fused kernels make small models fast because";

/** Non-blank, non-comment lines of the given repo-relative source files. */
export function countCodeLines(files: string[]): number {
  return files.reduce((n, f) => n + countTextLines(readFileSync(path.join(FUSEKIT_ROOT, f), "utf8")), 0);
}

/** Non-blank, non-comment lines of a source text. */
export function countTextLines(text: string): number {
  let n = 0;
  let inBlock = false;
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (inBlock) {
      if (line.includes("*/")) inBlock = false;
      continue;
    }
    if (line.startsWith("/*")) {
      inBlock = !line.includes("*/");
      continue;
    }
    if (line === "" || line.startsWith("//")) continue;
    n++;
  }
  return n;
}

function logitsArray(model: PreTrainedModel, ids: number[]): Float32Array {
  const { logits } = model.forward({ inputIds: [ids] });
  const data = logits.dataSync() as Float32Array;
  logits.dispose();
  return data;
}

async function greedy(model: PreTrainedModel, ids: number[], n: number): Promise<number[]> {
  const out = await generate(model, [ids], { maxNewTokens: n, doSample: false, eosTokenId: null });
  return out.newTokens[0];
}

/** True when `dir` holds exactly the source checkpoint's tensors: same keys, dtypes, shapes and bytes. */
export async function sameCheckpointTensors(sourceDir: string, dir: string): Promise<boolean> {
  const [a, b] = [await CheckpointReader.open(sourceDir), await CheckpointReader.open(dir)];
  try {
    const keys = a.keys().sort();
    if (keys.join("\n") !== b.keys().sort().join("\n")) return false;
    for (const k of keys) {
      const [ia, ib] = [a.infos.get(k)!, b.infos.get(k)!];
      if (ia.dtype !== ib.dtype || ia.shape.join() !== ib.shape.join()) return false;
      if (!Buffer.from(await a.readBytes(k)).equals(Buffer.from(await b.readBytes(k)))) return false;
    }
    return true;
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
}

const classSet = (m: PreTrainedModel) => new Set(m.namedModules().map(([, mod]) => mod.constructor));
/** The sorted set of class names a model is built of (read from prototypes, so no proxy can disguise one). */
const classNames = (m: PreTrainedModel | string) =>
  typeof m === "string"
    ? m
    : [...new Set(m.namedModules().map(([, x]) => Object.getPrototypeOf(x).constructor.name as string))]
        .sort()
        .join(",");
const stateKeys = (m: PreTrainedModel) =>
  m
    .namedParameters()
    .map(([k]) => k)
    .join("\n");
const libraryValues = new Set<unknown>(Object.values(library));

function maxAbs(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) return Infinity;
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

export async function runComparison(options: CompareOptions): Promise<ComparisonResult> {
  const dir = options.modelDir ?? (await defaultModelDir());
  const log = options.log ?? (() => {});
  const newTokens = options.newTokens ?? 16;
  const repeats = options.repeats ?? 3;
  for (const [name, v] of [
    ["newTokens", newTokens],
    ["repeats", repeats],
  ] as const) {
    if (!Number.isInteger(v) || v < 1)
      throw new ArgumentError(`runComparison: ${name} must be an integer ≥ 1, got ${v}`);
  }
  const prompt = options.prompt ?? DEFAULT_PROMPT;
  const ids = options.promptIds ?? (await AutoTokenizer.fromPretrained(dir)).encode(prompt);

  log(`reference: plain load of ${dir}`);
  const load: FromPretrainedOptions = { weightStorage: options.weightStorage ?? "auto" };
  const original = await AutoModelForCausalLM.fromPretrained(dir, load);
  // every approach loads in the storage "auto" resolved to for the reference
  load.weightStorage = original.memoryPlan?.storage ?? load.weightStorage;
  const refLogits = logitsArray(original, ids);
  const refTokens = await greedy(original, ids, newTokens);
  const refClasses = classSet(original);
  const refKeys = stateKeys(original);
  const refNames = classNames(original);
  original.dispose();

  const rows: ApproachResult[] = [];
  for (const approach of options.approaches) {
    log(`${approach.label}…`);
    rows.push(
      await measureApproach(approach, {
        dir,
        load,
        ids,
        refLogits,
        refTokens,
        refClasses,
        refKeys,
        refNames,
        newTokens,
        repeats,
      }),
    );
  }
  return {
    date: new Date().toISOString(),
    model: dir,
    backend: getBackend(),
    weightStorage: load.weightStorage!,
    prompt: options.promptIds && options.prompt === undefined ? `${ids.length} token ids` : prompt,
    promptTokens: ids.length,
    newTokens,
    repeats,
    rows,
    pass: rows.every((r) => r.pass),
  };
}

interface Reference {
  dir: string;
  load: FromPretrainedOptions;
  ids: number[];
  refLogits: Float32Array;
  refTokens: number[];
  refClasses: Set<unknown>;
  refKeys: string;
  /** The original's class names (for "survives save → reload"). */
  refNames: string;
  newTokens: number;
  repeats: number;
}

async function measureApproach(approach: Approach, ref: Reference): Promise<ApproachResult> {
  const base = { id: approach.id, label: approach.label, tolerance: approach.tolerance };
  const before = tf.memory();
  let model: PreTrainedModel | undefined;
  try {
    const { model: m, steps } = await approach.setup(ref.dir, ref.load);
    model = m;
    const after = tf.memory();
    const numbers = await measureNumbers(model, ref);
    const saved = await saveAndReload(model, ref);
    const userCodeLines = countCodeLines(approach.recipeFiles) + countTextLines(approach.userCode ?? "");
    const properties =
      approach.id === "original"
        ? undefined
        : await tryProperties(approach, model, ref, saved.survivesSaveReload, userCodeLines);
    const { maxAbsDiff, tokensIdentical } = numbers;
    const pass = maxAbsDiff <= approach.tolerance && tokensIdentical === ref.refTokens.length;
    return {
      ...base,
      ...numbers,
      tokensTotal: ref.refTokens.length,
      setupMs: steps,
      parameterBytes: after.numBytes - before.numBytes,
      liveTensors: after.numTensors - before.numTensors,
      userCodeLines,
      savesOriginalLayout: saved.savesOriginalLayout,
      pass,
      verdict: pass
        ? `pass (Δ ${maxAbsDiff === 0 ? "0" : maxAbsDiff.toExponential(1)} ≤ ${approach.tolerance.toExponential(0)})`
        : `FAIL (Δ ${maxAbsDiff.toExponential(1)} vs ${approach.tolerance.toExponential(0)}, ${tokensIdentical}/${ref.refTokens.length} tokens)`,
      properties,
    };
  } catch (err) {
    const error = `${(err as Error).name}: ${(err as Error).message}`;
    const nan = { median: NaN, min: NaN, max: NaN };
    return {
      ...base,
      maxAbsDiff: Infinity,
      tokensIdentical: 0,
      tokensTotal: ref.refTokens.length,
      prefillMs: nan,
      decodeTokensPerSecond: nan,
      decoderStackMs: nan,
      setupMs: {},
      parameterBytes: 0,
      liveTensors: 0,
      userCodeLines: 0,
      savesOriginalLayout: false,
      pass: false,
      verdict: `error: ${error}`,
      error,
    };
  } finally {
    model?.dispose();
    approach.teardown?.();
  }
}

/** Logits against the reference, greedy tokens, prefill latency, decode throughput and decoder-stack time. */
async function measureNumbers(model: PreTrainedModel, ref: Reference) {
  const maxAbsDiff = maxAbs(logitsArray(model, ref.ids), ref.refLogits);
  const tokens = await greedy(model, ref.ids, ref.newTokens);
  const tokensIdentical = tokens.filter((t, i) => t === ref.refTokens[i]).length;
  prefillMs(model, ref.ids); // warm-up
  const prefill = repeat(ref.repeats, () => prefillMs(model, ref.ids));
  const layers = decoderLayers(model);
  const runs = Array.from({ length: ref.repeats }, () => decodeWithStackMs(model, ref.newTokens, layers));
  return {
    maxAbsDiff,
    tokensIdentical,
    prefillMs: prefill,
    decodeTokensPerSecond: stat(runs.map((r) => r.tokensPerSecond)),
    decoderStackMs: stat(runs.map((r) => r.stackMs)),
  };
}

/**
 * Saves the model, checks the tensors against the source checkpoint byte for byte, and loads the saved
 * directory again with no options: "survives" when that plain reload is built of the same classes.
 */
async function saveAndReload(
  model: PreTrainedModel,
  ref: Reference,
): Promise<{ savesOriginalLayout: boolean; survivesSaveReload: boolean | null }> {
  const saveDir = mkdtempSync(path.join(os.tmpdir(), "fusekit-compare-"));
  try {
    await model.savePretrained(saveDir);
    const savesOriginalLayout = await sameCheckpointTensors(ref.dir, saveDir);
    const names = classNames(model);
    if (names === classNames(ref.refNames)) return { savesOriginalLayout, survivesSaveReload: null };
    const reloaded = await AutoModelForCausalLM.fromPretrained(saveDir, ref.load);
    try {
      return { savesOriginalLayout, survivesSaveReload: classNames(reloaded) === names };
    } finally {
      reloaded.dispose();
    }
  } finally {
    await fsp.rm(saveDir, { recursive: true, force: true });
  }
}

/** Each property is observed on a model, not declared by the approach. */
async function tryProperties(
  approach: Approach,
  model: PreTrainedModel,
  ref: Reference,
  survivesSaveReload: boolean | null,
  userCodeLines: number,
): Promise<Properties> {
  const userClasses = [...classSet(model)].filter((c) => !ref.refClasses.has(c) && !libraryValues.has(c));
  const stateDictLayoutUnchanged = stateKeys(model) === ref.refKeys;

  const plain = await AutoModelForCausalLM.fromPretrained(ref.dir, ref.load);
  let appliesToLoadedModel: boolean;
  try {
    appliesToLoadedModel = await approach.applyToLoaded(plain);
  } finally {
    plain.dispose();
  }

  let reversibleInPlace = false;
  if (approach.reverse(model)) {
    const back = [...classSet(model)].every((c) => ref.refClasses.has(c));
    reversibleInPlace =
      back &&
      stateKeys(model) === ref.refKeys &&
      maxAbs(logitsArray(model, ref.ids), ref.refLogits) <= approach.tolerance;
  }
  return {
    appliesToLoadedModel,
    classesPerFusion: userClasses.length,
    needsWeightConversion: (model.loadReport?.convertedKeys.length ?? 0) > 0,
    reversibleInPlace,
    stateDictLayoutUnchanged,
    survivesSaveReload,
    linesPerFusion: Math.ceil(userCodeLines / (approach.fusions ?? 1)),
  };
}
