// Runs every approach on the same checkpoint and measures it against the original model.
import os from "node:os";
import { tf } from "../tensor/tf.js";
import { getBackend } from "../backend/backend.js";
import { defaultModelDir } from "../presets/presets.js";
import type { PreTrainedModel } from "../loading/pretrained.js";
import { AutoTokenizer } from "../tokenizer/tokenizer.js";
import { ArgumentError, MemoryPlanError } from "../errors.js";
import { decodeWithStackMs, decoderLayers, prefillMs } from "./measure.js";
import { CONFIDENCE, MIN_EFFECT, compareSpeed, medianCI, roundOrder, timingGroups } from "./stats.js";
import { original } from "./approaches.js";
import type { Approach, ApproachResult, ComparisonResult, Reference } from "./types.js";
import { checkNumbers, greedy, logitsArray } from "./numbers.js";
import { classNames, classSet, saveAndReload, stateKeys, tryProperties } from "./properties.js";
import { countCodeLines, countTextLines } from "./code-size.js";
import { plural } from "./sections.js";
import { RESERVE_BYTES, WASM_HEAP_BYTES, type WeightStorageChoice } from "../loading/memory-plan.js";
import type { FromPretrainedOptions } from "../loading/options.js";

export interface CompareOptions {
  /** Checkpoint directory (default: the embedded tiny model). */
  modelDir?: string;
  /** Prompt text, tokenized with the checkpoint's tokenizer (unless `promptIds` are given; then only shown)… */
  prompt?: string;
  /** …or its token ids directly (for checkpoints without a tokenizer, or a tokenizer already loaded). */
  promptIds?: number[];
  newTokens?: number;
  /** Timed rounds; each times every approach once (default DEFAULT_ROUNDS). */
  rounds?: number;
  /** Untimed rounds before them (default DEFAULT_WARMUP). */
  warmup?: number;
  /** The approaches; the original (id "original") is added first when missing: it is every row's reference. */
  approaches: Approach[];
  /**
   * Models loaded at once while timing, the original included (≥ 2; default: as many as the backend's memory
   * holds). Fewer than the approaches + 1: they are timed in groups, each beside the original.
   */
  maxLoadedModels?: number;
  /** Weight storage for every load: "auto" (default) is resolved once, by the reference load. */
  weightStorage?: WeightStorageChoice;
  /** Progress lines (default: silent). */
  log?: (line: string) => void;
  /** Called after each timing round, warm-up included: `done` of `total` over every group (default: silent). */
  onRound?: (done: number, total: number) => void;
}

export const DEFAULT_PROMPT = "Fused kernels make small models fast because";
/**
 * Rounds and warm-up rounds by default: 15 rounds give a 96.5% interval between the 4th and 12th of the 15
 * sorted values, and keep `npm start` (12 approaches of the tiny model) near half a minute.
 */
export const DEFAULT_ROUNDS = 15;
export const DEFAULT_WARMUP = 1;

export async function runComparison(options: CompareOptions): Promise<ComparisonResult> {
  const { log, newTokens, rounds, warmup, prompt } = settings(options);
  const dir = options.modelDir ?? (await defaultModelDir());
  const ids = options.promptIds ?? (await AutoTokenizer.fromPretrained(dir)).encode(prompt);
  // The original is the reference of every number, so it is always there, and always first.
  const reference = options.approaches.find((a) => a.id === original.id) ?? original;
  const others = options.approaches.filter((a) => a !== reference);

  log(`original: plain load of ${dir}`);
  const load: FromPretrainedOptions = { weightStorage: options.weightStorage ?? "auto" };
  const refBuilt = await build(reference, dir, load);
  const refModel = refBuilt.model;
  // every approach loads in the storage "auto" resolved to for the reference
  load.weightStorage = refModel.memoryPlan?.storage ?? load.weightStorage;
  const timingGroupIds: string[][] = [];
  let run: Run;
  try {
    run = {
      ...{ dir, load, ids, newTokens, rounds, warmup, log, rows: new Map(), roundDone: () => {} },
      refLogits: logitsArray(refModel, ids),
      refTokens: await greedy(refModel, ids, newTokens),
      refClasses: classSet(refModel),
      refKeys: stateKeys(refModel),
      refNames: classNames(refModel),
    };
    run.rows.set(reference, { ...refBuilt.row, ...(await checkNumbers(refModel, reference, run)) });
    // All approaches are timed together beside the original when they fit in memory; else in turns.
    const perGroup = Math.min(others.length, loadSlots(refBuilt, options.maxLoadedModels, others.length > 0));
    const groups = others.length ? timingGroups(others.length, perGroup).map((g) => g.map((i) => others[i])) : [[]];
    const originalTimes = emptyTimings();
    const roundsTotal = groups.length * (warmup + rounds);
    let roundsDone = 0;
    run.roundDone = () => options.onRound?.(++roundsDone, roundsTotal);
    for (const group of groups) {
      const members = await timeGroup(run, { approach: reference, model: refModel, times: emptyTimings() }, group);
      timingGroupIds.push(members.map((m) => m.approach.id));
      appendTimings(originalTimes, members[0].times);
    }
    const { savesOriginalLayout } = await saveAndReload(refModel, run);
    run.rows.set(reference, { ...run.rows.get(reference)!, ...figures(originalTimes), savesOriginalLayout });
  } finally {
    refModel.dispose();
    reference.teardown?.();
  }
  for (const approach of others) await findProperties(run, approach);

  const rows = [reference, ...others].map((a) => run.rows.get(a)!);
  return {
    date: new Date().toISOString(),
    model: dir,
    backend: getBackend(),
    weightStorage: load.weightStorage!,
    prompt: options.promptIds && options.prompt === undefined ? `${ids.length} token ids` : prompt,
    promptTokens: ids.length,
    newTokens,
    rounds,
    warmupRounds: warmup,
    confidence: CONFIDENCE,
    minEffect: MIN_EFFECT,
    timingGroups: timingGroupIds,
    rows,
    pass: rows.every((r) => r.pass),
  };
}

/** The options with their defaults, checked before anything is loaded. */
function settings(options: CompareOptions) {
  const s = {
    log: options.log ?? (() => {}),
    newTokens: options.newTokens ?? 16,
    rounds: options.rounds ?? DEFAULT_ROUNDS,
    warmup: options.warmup ?? DEFAULT_WARMUP,
    prompt: options.prompt ?? DEFAULT_PROMPT,
  };
  for (const [name, v, min] of [
    ["newTokens", s.newTokens, 1],
    ["rounds", s.rounds, 1],
    ["warmup", s.warmup, 0],
    ["maxLoadedModels", options.maxLoadedModels ?? 2, 2],
  ] as const) {
    if (!Number.isInteger(v) || v < min)
      throw new ArgumentError(`runComparison: ${name} must be an integer ≥ ${min}, got ${v}`);
  }
  return s;
}

/**
 * Builds a group's approaches (each checked against the reference's numbers), times them with the original
 * in interleaved rounds, records their rows, and frees them. Returns the members, the original first.
 */
async function timeGroup(run: Run, originalMember: Member, group: Approach[]): Promise<Member[]> {
  const members: Member[] = [originalMember];
  try {
    for (const approach of group) {
      run.log(`${approach.label}: build and check numbers`);
      let built: Built | undefined;
      try {
        built = await build(approach, run.dir, run.load);
        run.rows.set(approach, { ...built.row, ...(await checkNumbers(built.model, approach, run)) });
        members.push({ approach, model: built.model, times: emptyTimings() });
      } catch (err) {
        run.rows.set(approach, errorRow(approach, err, run));
        built?.model.dispose();
        approach.teardown?.();
      }
    }
    run.log(
      `timing ${members.map((m) => m.approach.id).join(", ")}: ${run.warmup} warm-up + ${plural(run.rounds, "round")}`,
    );
    timeInRounds(members, run);
    for (const m of members.slice(1)) {
      const row = run.rows.get(m.approach)!;
      run.rows.set(
        m.approach,
        m.error ? errorRow(m.approach, m.error, run) : withSpeed(row, m.times, originalMember.times),
      );
    }
    return members;
  } finally {
    for (const m of members.slice(1)) {
      m.model.dispose();
      m.approach.teardown?.();
    }
  }
}

/**
 * Properties, found by trying: the approach is built again (one model at a time beside a reload, however many
 * were timed together), saved, reloaded, applied to a plain model and undone in place — after the timing,
 * which undoing would change.
 */
async function findProperties(run: Run, approach: Approach): Promise<void> {
  const row = run.rows.get(approach)!;
  if (row.error) return;
  run.log(`${approach.label}: properties`);
  let model: PreTrainedModel | undefined;
  try {
    model = (await approach.setup(run.dir, run.load)).model;
    const saved = await saveAndReload(model, run);
    const properties = await tryProperties(approach, model, run, saved.survivesSaveReload, row.userCodeLines);
    run.rows.set(approach, { ...row, savesOriginalLayout: saved.savesOriginalLayout, properties });
  } catch (err) {
    run.rows.set(approach, errorRow(approach, err, run));
  } finally {
    model?.dispose();
    approach.teardown?.();
  }
}

/** One comparison under way: the reference's numbers, the settings, and the rows so far. */
interface Run extends Reference {
  rounds: number;
  warmup: number;
  log: (line: string) => void;
  /** Counts one timing round done (for `onRound`). */
  roundDone: () => void;
  rows: Map<Approach, Row>;
}

type Row = ApproachResult;

/** Every round's value of each speed figure, in round order. */
type Timings = Record<"prefillMs" | "decodeTokensPerSecond" | "decoderStackMs", number[]>;
const emptyTimings = (): Timings => ({ prefillMs: [], decodeTokensPerSecond: [], decoderStackMs: [] });
function appendTimings(to: Timings, from: Timings): void {
  for (const k of Object.keys(to) as (keyof Timings)[]) to[k].push(...from[k]);
}

/** One approach taking part in a group's rounds. */
interface Member {
  approach: Approach;
  model: PreTrainedModel;
  times: Timings;
  /** Set when a timing run threw: the member sits out the remaining rounds. */
  error?: unknown;
}

interface Built {
  model: PreTrainedModel;
  /** The row's fields known once the approach is built (numbers and speed come later). */
  row: Row;
}

const NO_FIGURE = { median: NaN, low: NaN, high: NaN, coverage: 0, samples: 0 };

/** Builds an approach from a fresh load, measuring its setup steps and the tensors it adds. */
async function build(approach: Approach, dir: string, load: FromPretrainedOptions): Promise<Built> {
  const before = tf.memory();
  const { model, steps } = await approach.setup(dir, load);
  const after = tf.memory();
  return {
    model,
    row: {
      id: approach.id,
      label: approach.label,
      tolerance: approach.tolerance,
      maxAbsDiff: NaN,
      tokensIdentical: 0,
      tokensTotal: 0,
      prefillMs: NO_FIGURE,
      decodeTokensPerSecond: NO_FIGURE,
      decoderStackMs: NO_FIGURE,
      timings: emptyTimings(),
      speedVerdict: approach.id === original.id ? "reference" : "",
      setupMs: steps,
      parameterBytes: after.numBytes - before.numBytes,
      liveTensors: after.numTensors - before.numTensors,
      userCodeLines: countCodeLines(approach.recipeFiles) + countTextLines(approach.userCode ?? ""),
      savesOriginalLayout: false,
      pass: false,
      verdict: "",
    },
  };
}

/** A row for an approach that crashed: the error is its verdict, and it fails the comparison. */
function errorRow(approach: Approach, err: unknown, ref: Reference): Row {
  const e = err instanceof Error ? err : new Error(String(err));
  const error = `${e.name}: ${e.message}`;
  return {
    id: approach.id,
    label: approach.label,
    tolerance: approach.tolerance,
    maxAbsDiff: Infinity,
    tokensIdentical: 0,
    tokensTotal: ref.refTokens.length,
    prefillMs: NO_FIGURE,
    decodeTokensPerSecond: NO_FIGURE,
    decoderStackMs: NO_FIGURE,
    timings: emptyTimings(),
    speedVerdict: "",
    setupMs: {},
    parameterBytes: 0,
    liveTensors: 0,
    userCodeLines: 0,
    savesOriginalLayout: false,
    pass: false,
    verdict: `error: ${error}`,
    error,
  };
}

/** Each figure's median and interval over the rounds. */
function figures(times: Timings) {
  return {
    prefillMs: medianCI(times.prefillMs),
    decodeTokensPerSecond: medianCI(times.decodeTokensPerSecond),
    decoderStackMs: medianCI(times.decoderStackMs),
    timings: times,
  };
}

/** The row's figures, and its speed against the original's timings of the same rounds. */
function withSpeed(row: Row, times: Timings, originalTimes: Timings): Row {
  const speed = {
    prefill: compareSpeed(originalTimes.prefillMs, times.prefillMs, "time"),
    decode: compareSpeed(originalTimes.decodeTokensPerSecond, times.decodeTokensPerSecond, "rate"),
    decoderStack: compareSpeed(originalTimes.decoderStackMs, times.decoderStackMs, "time"),
  };
  return { ...row, ...figures(times), speed, speedVerdict: speed.decoderStack.text };
}

/**
 * Times the members in interleaved rounds: `warmup` untimed rounds, then `rounds` timed ones, each running
 * every member once (a prefill, then a decode run that also times the decoder stack) in an order rotated
 * by one each round — so drift, load from other processes and position in the round fall on all alike.
 */
function timeInRounds(members: Member[], run: Run): void {
  const { warmup, rounds } = run;
  const layers = members.map((m) => decoderLayers(m.model));
  for (let round = -warmup; round < rounds; round++) {
    const t0 = performance.now();
    for (const i of roundOrder(members.length, round + warmup)) {
      const m = members[i];
      if (m.error) continue;
      try {
        const prefill = prefillMs(m.model, run.ids);
        const decode = decodeWithStackMs(m.model, run.newTokens, layers[i]);
        if (round < 0) continue;
        m.times.prefillMs.push(prefill);
        m.times.decodeTokensPerSecond.push(decode.tokensPerSecond);
        m.times.decoderStackMs.push(decode.stackMs);
      } catch (err) {
        if (i === 0) throw err; // the original is every row's reference: without it nothing can be compared
        m.error = err;
      }
    }
    run.roundDone();
    // a real-size model can time for minutes: say how long, once
    if (round === -warmup) {
      const s = (performance.now() - t0) / 1000;
      run.log(`one round took ${s.toFixed(1)} s: about ${Math.ceil(s * (rounds + warmup - 1))} s to go`);
    }
  }
}

/**
 * How many approaches can be loaded beside the original (already loaded) for timing: the user's limit, else
 * as many as the backend's memory holds. wasm's heap is capped (4 GiB) whatever the machine has; other
 * backends keep tensors in the process's memory, so the machine's available memory counts. Each copy is
 * the reference's size (its measured tensors, or its planned weights and backend copy when larger); one
 * prefill's activations and a reserve stay free (one approach runs at a time), and a tenth for fragmentation.
 */
function loadSlots(refBuilt: Built, maxLoadedModels: number | undefined, needed: boolean): number {
  if (maxLoadedModels !== undefined) return maxLoadedModels - 1;
  const plan = refBuilt.model.memoryPlan;
  const modelBytes = Math.max(refBuilt.row.parameterBytes, plan ? plan.weightBytes + plan.backendCopyBytes : 0, 1);
  const transient = RESERVE_BYTES + (plan?.activationBytes ?? 0);
  const free =
    getBackend() === "wasm"
      ? WASM_HEAP_BYTES - (tf.memory().numBytes - refBuilt.row.parameterBytes) - modelBytes - transient
      : os.freemem() - transient;
  const slots = Math.floor((0.9 * free) / modelBytes);
  if (slots < 1 && needed) {
    const wasm = getBackend() === "wasm";
    const fits = [
      plan?.storage === "f32" && `weightStorage "bf16" (--weight-storage bf16)`,
      wasm && "the tensorflow backend (@tensorflow/tfjs-node; no 4 GiB heap)",
    ].filter(Boolean);
    throw new MemoryPlanError(
      `compare times each approach loaded beside the original, and a second copy of the model ` +
        `(${gib(modelBytes)}) does not fit: ${gib(Math.max(0, free))} free ` +
        `${wasm ? "in the wasm backend's 4 GiB heap" : "on this machine"}. ` +
        `What would fit: ${fits.join("; ") || "a machine with more memory"}`,
    );
  }
  return Math.max(slots, 1);
}

const gib = (n: number) => `${(n / 2 ** 30).toFixed(2)} GiB`;
