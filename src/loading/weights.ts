// Reading a checkpoint's tensors into a model's parameters: each under its own key or the one a conversion
// rule moves it to, one tensor (or one conversion group) in memory at a time, packed bf16 weights read
// straight into the backend's memory.
import { encode, type StorageDtype } from "../tensor/dtypes.js";
import type { TensorSource } from "../io/checkpoint.js";
import { parameterAliases, type Module } from "../nn/module.js";
import type { Parameter } from "../nn/parameter.js";
import { packableWeights } from "../nn/storage.js";
import {
  convertGroup,
  planConversions,
  type ConversionGroup,
  type ConversionPlan,
  type ConversionRecord,
} from "../conversion/apply.js";
import type { HostTensor } from "../conversion/ops.js";
import { ConversionError } from "../errors.js";
import { IN_PLACE_DTYPES, fillPacked, readPackedInPlace } from "./in-place.js";
import { storeWords, weightStore, type StoredWeight } from "../backend/weight-store.js";
import { Fp8CheckpointView, concatLayouts, fp8ConcatGroup, fp8Keepable, keepsFp8 } from "./fp8.js";
import { Chunk } from "../conversion/ops.js";
import { blocksOf, type Fp8BlockLayout } from "../tensor/fp8.js";
import type { FromPretrainedOptions } from "./options.js";
import { PreTrainedModel } from "./pretrained.js";
import type { LoadReport } from "./types.js";

/** What `loadWeights` reads: the rules, a seed for what the checkpoint leaves out, progress, and bf16 packing. */
export interface LoadWeightsOptions extends Pick<FromPretrainedOptions, "conversions" | "seed" | "onProgress"> {
  /** Load Linear / Embedding weights straight into packed bf16 storage (BF16 bytes as they are; others rounded). */
  packBf16?: boolean;
  /** Keep the FP8 weights of an FP8 checkpoint as stored, in FP8 storage (where they can be; else as packBf16). */
  keepFp8?: boolean;
}

interface LoadState {
  reader: TensorSource;
  params: Map<string, Parameter>;
  aliases: Map<string, Parameter>;
  report: LoadReport;
  loaded: Set<Parameter>;
  /** Parameters loaded straight into packed bf16 storage. */
  packed: Set<Parameter>;
  /** Whether FP8 weights are kept as stored. */
  keepFp8: boolean;
  progress: (key: string) => void;
}

/**
 * Loads every checkpoint tensor into the parameter of its runtime key — the same key, or the one
 * `options.conversions` moves it to — one tensor (or one conversion group) in memory at a time.
 * On a PreTrainedModel the conversions done are recorded in `checkpointConversion` for saving.
 */
export async function loadWeights(
  model: Module,
  reader: TensorSource,
  options: LoadWeightsOptions = {},
): Promise<LoadReport> {
  const rules = options.conversions ?? [];
  const state = startLoad(model, reader, options);
  const plan = planConversions(reader.keys(), rules, (k) => (state.params.get(k) ?? state.aliases.get(k))?.stateShape);
  state.report.conversionErrors = plan.errors;
  state.report.unmatchedRules = plan.unmatchedRules;
  const record: ConversionRecord = { rules: [...rules], renamed: new Map(), groups: [] };
  await loadDirect(state, plan.direct, record);
  await loadGroups(state, plan.groups, record);
  for (const e of plan.errors) for (const k of e.keys) state.progress(k);
  for (const [key, p] of state.params) if (!state.loaded.has(p)) state.report.missingKeys.push(key);
  model.initializeWeights(options.seed ?? 0, { onlyMissing: true });
  if (rules.length && model instanceof PreTrainedModel) model.checkpointConversion = record;
  return state.report;
}

function startLoad(model: Module, reader: TensorSource, options: LoadWeightsOptions): LoadState {
  let bytesDone = 0;
  return {
    reader,
    params: new Map(model.namedParameters()),
    aliases: parameterAliases(model),
    report: {
      missingKeys: [],
      unexpectedKeys: [],
      mismatchedKeys: [],
      conversionErrors: [],
      unmatchedRules: [],
      convertedKeys: [],
    },
    loaded: new Set(),
    packed: new Set(options.packBf16 ? packableWeights(model).map(([, p]) => p) : []),
    keepFp8: options.keepFp8 === true,
    progress: (key) => {
      bytesDone += reader.infos.get(key)!.end - reader.infos.get(key)!.begin;
      options.onProgress?.({ bytesDone, bytesTotal: reader.totalBytes, key });
    },
  };
}

/** The parameter to fill for `target`, or undefined (reported) if there is none or it does not fit. */
function slotFor(state: LoadState, target: string, shape: number[]): Parameter | undefined {
  const p = state.params.get(target) ?? state.aliases.get(target);
  if (!p) state.report.unexpectedKeys.push(target);
  else if (state.loaded.has(p))
    return undefined; // a tied alias (e.g. lm_head.weight next to embed_tokens.weight): the first copy wins
  else if (p.stateShape.length !== shape.length || p.stateShape.some((d, i) => d !== shape[i])) {
    state.report.mismatchedKeys.push({ key: target, expected: [...p.stateShape], got: shape });
  } else return p;
  return undefined;
}

/**
 * Checkpoint tensors that fill a parameter as they are (possibly renamed). BF16 / F16 / F32 tensors bound for
 * packed storage are read all at once, straight into the backend's memory (see in-place.ts); the others one at a
 * time while those reads run.
 */
async function loadDirect(state: LoadState, direct: ConversionPlan["direct"], record: ConversionRecord): Promise<void> {
  const inPlace: Parameters<typeof readPackedInPlace>[1] = [];
  const decoded: [Parameter, string][] = [];
  for (const { source, target, rules: by } of direct) {
    const { shape, dtype } = state.reader.infos.get(source)!;
    const p = slotFor(state, target, shape);
    if (p && readsInPlace(state, p, dtype)) inPlace.push({ p, key: source, dtype });
    else if (p) decoded.push([p, source]);
    else state.progress(source);
    if (p) state.loaded.add(p);
    if (by.length) {
      record.renamed.set(target, source);
      state.report.convertedKeys.push({ rule: by.join(" then "), sources: [source], targets: [target] });
    }
  }
  const reads = inPlace.length
    ? readPackedInPlace(state.reader.readBytesIntoMany!.bind(state.reader), inPlace, state.progress)
    : undefined;
  try {
    for (const [p, source] of decoded) {
      await readInto(state, p, source);
      state.progress(source);
    }
  } finally {
    await reads?.catch(() => undefined); // settled before anything is disposed; its own error is thrown below
  }
  await reads;
}

/** BF16 bytes are the packed layout; F16 (as wide) rounds where it lands, F32 half in place, half through staging. */
const readsInPlace = (state: LoadState, p: Parameter, dtype: StorageDtype) =>
  packs(state, p, dtype) && IN_PLACE_DTYPES.has(dtype) && state.reader.readBytesIntoMany !== undefined;

/** Whether a `dtype` tensor filling `p` goes to packed bf16 (next to kept FP8 weights: only where exact). */
const packs = (state: LoadState, p: Parameter, dtype: StorageDtype) =>
  state.packed.has(p) && (!state.keepFp8 || dtype === "BF16");

/** Reads one checkpoint tensor, decoded, into its parameter (an FP8 weight bound for bf16: dequantized in place). */
async function readInto(state: LoadState, p: Parameter, key: string): Promise<void> {
  const source = state.reader;
  if (state.keepFp8 && source instanceof Fp8CheckpointView && (await keepFp8(source, p, key))) return;
  if (state.packed.has(p) && source instanceof Fp8CheckpointView && source.isQuantized(key)) {
    p.setPacked(await fillPacked(p.packedShape!, (bytes) => source.readBf16Into(key, bytes)));
    p.storedDtype = "BF16";
    return;
  }
  if (p.quantizeOnLoad && p.int8Shape && source.infos.get(key)!.dtype === "BF16") {
    // bf16 bits straight into the 8-bit quantizer: no float32 copy
    const bytes = await source.readBytes(key);
    const aligned = bytes.byteOffset % 2 ? bytes.slice() : bytes;
    p.quantize(new Uint16Array(aligned.buffer, aligned.byteOffset, aligned.byteLength / 2), `parameter "${key}"`);
    p.storedDtype = "BF16";
    return;
  }
  const t = await source.read(key);
  setValue(state, p, t.data, t.dtype);
}

/**
 * FP8 weights `keys` (`cols` wide; their rows concatenated in order) as one block of the weight store, codes then
 * scales, each one's codes read straight from the file into its rows; released (undefined) unless FP8 storage can
 * keep them all (fp8Keepable, scales of one layout).
 */
async function readFp8(
  source: Fp8CheckpointView,
  keys: string[],
  cols: number,
): Promise<{ stored: StoredWeight; layouts: Fp8BlockLayout[] } | undefined> {
  const rows = keys.map((k) => source.infos.get(k)!.shape[0]);
  const block = source.config.weight_block_size;
  const total = rows.reduce((a, b) => a + b, 0);
  const scales = { shape: blocksOf([total, cols], block) as [number, number], block };
  const stored = weightStore().alloc([total, cols / 4], "fp8", undefined, scales);
  const layouts: Fp8BlockLayout[] = [];
  let keepable = true;
  try {
    for (let i = 0, at = stored.at; i < keys.length; at += rows[i] * cols, i++) {
      const bytes = () => stored.arena.bytes(at, rows[i] * cols); // taken after the reads' awaits
      layouts.push(await source.readCodesInto(keys[i], bytes));
      keepable &&= fp8Keepable(bytes(), layouts[i]);
    }
  } catch (err) {
    stored.release();
    throw err;
  }
  const layout = keepable ? concatLayouts(layouts) : undefined;
  if (!layout) {
    stored.release();
    return undefined;
  }
  stored.scaleValues().set(layout.scales);
  return { stored, layouts };
}

/**
 * Reads FP8 weight `key` as stored — its codes straight into the weight store — into FP8 storage; false (nothing
 * kept) when the kernels cannot take it (fp8Keepable, keepsFp8).
 */
async function keepFp8(source: Fp8CheckpointView, p: Parameter, key: string): Promise<boolean> {
  const info = source.infos.get(key)!;
  if (!source.isQuantized(key) || p.layout !== "transpose" || !keepsFp8(info, source.config, true)) return false;
  const read = await readFp8(source, [key], info.shape[1]);
  if (!read) return false;
  p.setFp8(read.stored, read.layouts[0]);
  p.storedDtype = "BF16"; // as the view reads it: saving writes the FP8 layout back
  return true;
}

/**
 * A row-concatenation group of FP8 weights (fp8ConcatGroup) kept as stored: each source's codes read straight
 * into its rows of the target, the scales concatenated; recorded so saving splits them back. False (nothing
 * kept) when FP8 storage cannot keep it.
 */
async function keepFp8Group(state: LoadState, group: ConversionGroup, record: ConversionRecord): Promise<boolean> {
  const source = state.reader;
  if (!state.keepFp8 || !(source instanceof Fp8CheckpointView)) return false;
  const infoOf = (k: string) => source.infos.get(k);
  if (!fp8ConcatGroup(group, infoOf, (k) => source.isQuantized(k), source.config)) return false;
  const keys = group.sources.map(([k]) => k);
  const shapes = keys.map((k) => infoOf(k)!.shape);
  const [rows, cols] = [shapes.reduce((n, s) => n + s[0], 0), shapes[0][1]];
  // a target that does not fit is left to the group's ordinary conversion, which reports it
  const p = state.params.get(group.targets[0]) ?? state.aliases.get(group.targets[0]);
  const fits = p && !state.loaded.has(p) && p.stateShape.length === 2 && p.stateShape[0] === rows;
  if (!p || !fits || p.stateShape[1] !== cols || p.layout !== "transpose") return false;
  const read = await readFp8(source, keys, cols);
  if (!read) return false;
  p.setFp8(read.stored, concatLayouts(read.layouts)!);
  p.storedDtype = "BF16"; // as the view reads the sources
  state.loaded.add(p);
  const sources = keys.map((key, i) => [{ key, shape: shapes[i], dtype: "BF16" as const }]);
  const reverse = [
    new Chunk(
      0,
      shapes.map((s) => s[0]),
    ),
  ];
  record.groups.push({ rule: group.rule, targets: group.targets, reverse, sources });
  state.report.convertedKeys.push({ rule: group.rule.toString(), sources: keys, targets: group.targets });
  return true;
}

/** Sets decoded checkpoint-layout values; a parameter bound for packed storage is packed (rounded unless BF16). */
function setValue(state: LoadState, p: Parameter, data: Float32Array | Int32Array, dtype: StorageDtype): void {
  if (!packs(state, p, dtype) || !(data instanceof Float32Array)) return p.setStateData(data, dtype);
  const bytes = encode(data, "BF16"); // round to nearest even; exact for values that came from BF16
  p.setPacked(storeWords(new Int32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4), p.packedShape!, "bf16"));
  p.storedDtype = dtype;
}

/** Conversion groups: read their sources, convert, fill their targets; a ConversionError is reported, not thrown. */
async function loadGroups(state: LoadState, groups: ConversionPlan["groups"], record: ConversionRecord): Promise<void> {
  for (const group of groups) {
    try {
      if (await keepFp8Group(state, group, record)) {
        for (const k of group.sources.flat()) state.progress(k);
        continue;
      }
      const inputs: HostTensor[][] = [];
      for (const keys of group.sources) inputs.push(await Promise.all(keys.map((k) => state.reader.read(k))));
      const { outputs, reverse } = convertGroup(
        group,
        inputs.map((l) => (l.length === 1 ? l[0] : l)),
      );
      outputs.forEach((t, i) => {
        const p = slotFor(state, group.targets[i], t.shape);
        if (p) {
          setValue(state, p, t.data, t.dtype);
          state.loaded.add(p);
        }
      });
      const sources = inputs.map((l, i) =>
        l.map((t, j) => ({ key: group.sources[i][j], shape: t.shape, dtype: t.dtype })),
      );
      record.groups.push({ rule: group.rule, targets: group.targets, reverse, sources });
      state.report.convertedKeys.push({
        rule: group.rule.toString(),
        sources: group.sources.flat(),
        targets: group.targets,
      });
    } catch (err) {
      if (!(err instanceof ConversionError)) throw err;
      state.report.conversionErrors.push({
        rule: group.rule.toString(),
        keys: group.sources.flat(),
        message: err.message,
      });
    }
    for (const k of group.sources.flat()) state.progress(k);
  }
}
