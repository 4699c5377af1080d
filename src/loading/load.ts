import path from "node:path";
import type { LoadReport, PreTrainedModel } from "./pretrained.js";
import { CheckpointReader, CONFIG_NAME, readConfigJson, type TensorSource } from "../io/checkpoint.js";
import { buildModel, causalLMClassFor, familyFor } from "./registry.js";
import type { Module } from "../nn/module.js";
import type { Parameter } from "../nn/parameter.js";
import { describe } from "../nn/module.js";
import { ensureBackend } from "../backend/backend.js";
import { applyKernelsAfterLoad, type KernelLoadOptions } from "../hub/kernelize.js";
import { bf16KernelsAvailable } from "../backend/kernels.js";
import {
  backendLimits,
  planMemory,
  WEIGHT_STORAGE_CHOICES,
  type MemoryPlan,
  type ModelShape,
  type WeightEntry,
  type WeightStorageChoice,
} from "./memory-plan.js";
import { Linear } from "../nn/layers.js";
import { tf } from "../tensor/tf.js";
import { encode, type StorageDtype } from "../tensor/dtypes.js";
import { packableWeights, packWeightsOnLoad } from "../nn/storage.js";
import { IN_PLACE_DTYPES, fillPacked, readPackedInPlace } from "./in-place.js";
import { getKernelMapping, useKernelMapping, type KernelMapping } from "../hub/mapping.js";
import { ConfigError, ConversionError, NoWeightsLoadedError, StateDictError, WeightStorageError } from "../errors.js";
import { buildInScope, withPatches, type PatchMapping } from "../patching/registry.js";
import type { ConversionRule } from "../conversion/rules.js";
import { checkRules, conversionRulesFor } from "../conversion/registry.js";
import { convertGroup, planConversions, type ConversionPlan, type ConversionRecord } from "../conversion/apply.js";
import type { HostTensor } from "../conversion/ops.js";
import { planLoad, type PlanOptions } from "./plan.js";
import { storeFusionConfig } from "../fusion/config.js";
import { ensureFunctionKernels } from "../hub/functions.js";
import { Fp8CheckpointView, fp8Source, keepFp8Layouts, packFp8OnLoad } from "./fp8.js";
import { readCompanionFiles } from "../io/companions.js";
import { PreTrainedModel as PreTrainedModelClass } from "./pretrained.js";

export interface LoadProgress {
  bytesDone: number;
  bytesTotal: number;
  key: string;
}

export interface FromPretrainedOptions extends KernelLoadOptions, PlanOptions {
  /** Throw a StateDictError if any key is missing, unexpected or mis-shaped (default false: report only). */
  strict?: boolean;
  /** Seed for initialising parameters the checkpoint does not provide. */
  seed?: number;
  /** Called after each tensor is loaded. */
  onProgress?: (progress: LoadProgress) => void;
  /** Patches applied only while this model is constructed, on top of the registered ones; other loads never see them. */
  patches?: PatchMapping;
  /**
   * Conversion rules for this load, instead of the registered ones (`[]` = none). Default: the rules
   * registered for the model's class name, else for its model_type.
   */
  conversions?: ConversionRule[];
  /**
   * How Linear / Embedding weights are kept. "bf16": packed as bf16 in the backend (half the memory and
   * bandwidth of float32; exact for BF16 checkpoints, rounded with a warning otherwise; wasm and cpu), packed
   * as they are read. "f32": float32. Default "auto": bf16 when exact or when float32 would not fit the
   * backend's memory, else f32 — decided by a memory plan made before any weight is read.
   */
  weightStorage?: WeightStorageChoice;
  /**
   * Tokens (prompt + generated) the memory plan reserves KV cache for. Default: max_position_embeddings,
   * at most 4096, halved until the plan fits; given explicitly, a plan that does not fit is a MemoryPlanError.
   */
  contextLength?: number;
  /** Longest prompt the plan reserves prefill activations for (default 512, at most `contextLength`). */
  promptLength?: number;
}

/** What `loadWeights` takes beyond FromPretrainedOptions. */
export interface LoadWeightsOptions extends FromPretrainedOptions {
  /** Load Linear / Embedding weights straight into packed bf16 storage (BF16 bytes as they are; others rounded). */
  packBf16?: boolean;
}

const DEFAULT_CONTEXT = 4096;
const DEFAULT_PROMPT = 512;

/**
 * fusekit never runs code from a checkpoint directory: `auto_map` (transformers' pointer to modeling_*.py
 * files shipped with the weights) and `trust_remote_code` are ignored, with a warning, and the built-in
 * implementation of `model_type` is used. A warning, not an error: many ordinary checkpoints carry an
 * auto_map although their model_type is a standard one.
 */
export function warnIgnoredRemoteCode(raw: Record<string, unknown>, where: string): void {
  const fields = ["auto_map", "trust_remote_code"].filter(
    (k) => raw[k] !== undefined && raw[k] !== false && raw[k] !== null,
  );
  if (!fields.length) return;
  const target = raw.auto_map === undefined ? "" : ` (auto_map: ${JSON.stringify(raw.auto_map).slice(0, 200)})`;
  process.emitWarning(
    `${where}: ${fields.map((f) => `"${f}"`).join(" and ")} ignored${target}: fusekit never runs code from a checkpoint directory; ` +
      `it builds its own implementation of model_type ${JSON.stringify(raw.model_type)}`,
    { type: "FusekitRemoteCodeWarning", code: "FUSEKIT_REMOTE_CODE_IGNORED" },
  );
}

/**
 * config.json → class → construct (under `options.patches`) → plan the memory → load weights through the
 * conversion rules → model with `loadReport` (incl. its `memoryPlan`), in eval mode.
 */
export async function fromPretrained(dir: string, options: FromPretrainedOptions = {}): Promise<PreTrainedModel> {
  if (options.patches) {
    const { patches, ...rest } = options;
    return withPatches(patches, () => fromPretrained(dir, rest));
  }
  if (options.conversions !== undefined) checkRules(options.conversions, "fromPretrained: conversions");
  checkStorageChoice(options.weightStorage);
  await ensureBackend();
  const functionKernels = ensureFunctionKernels(); // installed while the checkpoint is read (never rejects)
  const raw = await readConfigJson(dir);
  const where = path.join(dir, CONFIG_NAME);
  warnIgnoredRemoteCode(raw, where);
  const family = familyFor(raw, where);
  const config = family.configFromDict(raw, where);
  // Headers first: config.json's sizes are checked against them before anything is built.
  const reader = await CheckpointReader.open(dir);
  let model: PreTrainedModel | undefined;
  try {
    checkSizesAgainstCheckpoint(raw, reader, where, undefined);
    const unpatched = causalLMClassFor(family, config).name;
    const plan = await planLoad(raw, config, causalLMClassFor(family, config), options, where, () =>
      buildModel(config, raw, where),
    );
    model = buildInScope(plan.patches, () => buildModel(config, raw, where));
    storeFusionConfig(model.config, plan.fusion);
    checkSizesAgainstCheckpoint(raw, reader, where, model);
    const source = fp8Source(reader, raw, where); // FP8 block-quantized weights read dequantized to bf16
    packFp8OnLoad(model, source, options.weightStorage);
    const registered =
      options.conversions ?? conversionRulesFor([model.constructor.name, unpatched], config.model_type);
    const conversions = [...registered, ...plan.conversions];
    // The kernel mapping is read in the same synchronous step as the patches and the conversions, so one load
    // sees one state of the registries even when another task registers or unregisters while it reads weights.
    const kernelMapping = options.useKernels ? (getKernelMapping() as KernelMapping) : undefined;
    const memoryPlan = planMemoryForLoad(model, reader, raw, conversions, options);
    const companions = settled(readCompanionFiles(dir)); // read while the weights are
    const report = await loadWeights(model, source, {
      ...options,
      conversions,
      packBf16: memoryPlan.storage === "bf16",
    });
    keepFp8Layouts(model, source, model.checkpointConversion?.renamed);
    packWeightsOnLoad(model, false);
    checkWeightsLoaded(model, report, dir, { warn: !options.strict });
    model.loadReport = checkStrict(dir, model, report, options.strict);
    model.memoryPlan = memoryPlan;
    model.companionFiles = await companions();
    await functionKernels;
    // awaited here so a kernel error still disposes the model below
    const loaded = model.eval();
    const kernelOptions = { ...options, kernelMapping: { ...options.kernelMapping, ...plan.kernelMapping } };
    return await (kernelMapping
      ? useKernelMapping(kernelMapping, () => applyKernelsAfterLoad(loaded, kernelOptions), { inherit: false })
      : loaded);
  } catch (err) {
    model?.dispose();
    throw err;
  } finally {
    await reader.close();
  }
}

/** Starts `promise` now and returns its result (or throws its error) when asked; unasked, its error is dropped. */
function settled<T>(promise: Promise<T>): () => Promise<T> {
  const outcome = promise.then(
    (value) => ({ value }),
    (error: unknown) => ({ error }),
  );
  return async () => {
    const o = await outcome;
    if ("error" in o) throw o.error;
    return o.value;
  };
}

function checkStorageChoice(choice: unknown): void {
  if (choice !== undefined && !WEIGHT_STORAGE_CHOICES.includes(choice as WeightStorageChoice)) {
    throw new WeightStorageError(
      `unknown weightStorage "${String(choice)}" (use ${WEIGHT_STORAGE_CHOICES.map((c) => `"${c}"`).join(", ")})`,
    );
  }
}

function checkStrict(dir: string, model: PreTrainedModel, report: LoadReport, strict: boolean | undefined): LoadReport {
  const bad =
    report.missingKeys.length ||
    report.unexpectedKeys.length ||
    report.mismatchedKeys.length ||
    report.conversionErrors.length;
  if (strict && bad) {
    const errors = report.conversionErrors.map((e) => e.message).join("; ");
    throw new StateDictError(
      `${dir}: checkpoint does not fit ${model.constructor.name}: ${describe(report)}${errors ? `; conversion errors: ${errors}` : ""}`,
    );
  }
  return report;
}

/** The sizes of a decoder-only config.json that set its KV cache and activations. */
export function modelShape(raw: Record<string, unknown>): ModelShape {
  const n = (k: string, fallback?: number) => (typeof raw[k] === "number" ? (raw[k] as number) : (fallback ?? 0));
  const heads = n("num_attention_heads", 1);
  return {
    numLayers: n("num_hidden_layers"),
    hidden: n("hidden_size"),
    intermediate: n("intermediate_size"),
    heads,
    kvHeads: n("num_key_value_heads", heads),
    headDim: n("head_dim", Math.floor(n("hidden_size") / heads)),
    vocab: n("vocab_size"),
  };
}

/**
 * Every parameter as the memory planner sees it: its size, the dtype of the checkpoint tensor that fills it
 * (parameters nothing fills stay float32), and whether bf16 storage packs it / a matmul reads it.
 */
export function weightInventory(model: Module, reader: CheckpointReader, conversions: ConversionRule[]): WeightEntry[] {
  const plan = planConversions(reader.keys(), conversions);
  const sourceOf = new Map<string, string>(plan.direct.map((d) => [d.target, d.source]));
  for (const g of plan.groups) for (const t of g.targets) sourceOf.set(t, g.sources[0][0]);
  const dtypes = new Map<Parameter, StorageDtype>();
  for (const [name, p] of parameterAliases(model)) {
    const source = sourceOf.get(name);
    if (source && !dtypes.has(p)) dtypes.set(p, reader.infos.get(source)!.dtype);
  }
  const packable = new Set(packableWeights(model).map(([, p]) => p));
  const matmul = new Set(model.namedModules().flatMap(([, m]) => (m instanceof Linear ? [m.weight] : [])));
  return model.namedParameters().map(([name, p]) => ({
    name,
    numel: p.numel,
    storedDtype: plannedDtype(dtypes.get(p)),
    packable: packable.has(p) && dtypes.has(p),
    matmul: matmul.has(p),
  }));
}

/** FP8 weights load dequantized into bf16 (see fp8.ts): for the plan they are BF16 weights. */
const plannedDtype = (stored: StorageDtype | undefined): StorageDtype =>
  stored?.startsWith("F8_") ? "BF16" : (stored ?? "F32");

/** Plans the load's memory on the active backend (see memory-plan.ts); warns when bf16 storage will round weights. */
function planMemoryForLoad(
  model: Module,
  reader: CheckpointReader,
  raw: Record<string, unknown>,
  conversions: ConversionRule[],
  options: FromPretrainedOptions,
): MemoryPlan {
  const maxPositions = typeof raw.max_position_embeddings === "number" ? raw.max_position_embeddings : DEFAULT_CONTEXT;
  const contextLength = options.contextLength ?? Math.min(maxPositions, DEFAULT_CONTEXT);
  const request = {
    weights: weightInventory(model, reader, conversions),
    shape: modelShape(raw),
    contextLength,
    promptLength: Math.min(options.promptLength ?? DEFAULT_PROMPT, contextLength),
    contextExplicit: options.contextLength !== undefined,
  };
  const plan = planMemory(
    request,
    options.weightStorage ?? "auto",
    backendLimits(tf.getBackend(), bf16KernelsAvailable()),
  );
  if (plan.roundedWeights) {
    process.emitWarning(
      `${reader.dir}: ${plan.roundedWeights} weight tensor(s) not stored as BF16 are rounded to bf16 (${plan.reason}); ` +
        `load with weightStorage "f32" on a backend with room for exact values`,
      { type: "FusekitWeightStorageWarning", code: "FUSEKIT_WEIGHTS_ROUNDED" },
    );
  }
  return plan;
}

/**
 * A hostile config.json must not make the loader allocate what the checkpoint cannot justify (a vocab_size
 * of 1e308, 2^31 layers). Before building: every size-like field is at most the checkpoint's element count
 * and the layer count at most its tensor count. After building (parameters are still unallocated): the
 * model's float32 bytes are at most 4× the checkpoint's data bytes (BF16 → float32 doubles them; the rest
 * leaves room for parameters a partial checkpoint does not provide) plus 64 MiB.
 */
function checkSizesAgainstCheckpoint(
  raw: Record<string, unknown>,
  reader: CheckpointReader,
  where: string,
  model: PreTrainedModel | undefined,
): void {
  let elements = 0;
  for (const info of reader.infos.values()) elements += tf.util.sizeFromShape(info.shape);
  if (!model) {
    for (const [k, v] of Object.entries(raw)) {
      if (typeof v !== "number" || !/_size$|_dim$|^num_/.test(k)) continue;
      const limit = k === "num_hidden_layers" ? reader.keys().length : elements;
      if (v > limit)
        throw new ConfigError(
          `${where}: "${k}" is ${v}, more than the checkpoint's ${k === "num_hidden_layers" ? "tensor" : "element"} count (${limit}) can justify`,
        );
    }
    return;
  }
  let declared = 0;
  for (const [, p] of model.namedParameters()) declared += p.numel * 4;
  const limit = 4 * reader.totalBytes + 64 * 2 ** 20;
  if (declared > limit)
    throw new ConfigError(
      `${where}: the model it declares needs ${declared} bytes of weights, more than its ${reader.totalBytes}-byte checkpoint can justify`,
    );
}

/** Every path under which a parameter is reachable (tied parameters have several). */
export function parameterAliases(model: Module): Map<string, Parameter> {
  const out = new Map<string, Parameter>();
  const walk = (m: Module, prefix: string, seen: Set<Module>) => {
    if (seen.has(m)) return;
    seen.add(m);
    for (const [n, p] of m.ownParameters()) out.set(prefix ? `${prefix}.${n}` : n, p);
    for (const [n, c] of m.namedChildren()) walk(c, prefix ? `${prefix}.${n}` : n, seen);
  };
  walk(model, "", new Set());
  return out;
}

interface LoadState {
  reader: TensorSource;
  params: Map<string, Parameter>;
  aliases: Map<string, Parameter>;
  report: LoadReport;
  loaded: Set<Parameter>;
  /** Parameters loaded straight into packed bf16 storage. */
  packed: Set<Parameter>;
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
  if (rules.length && model instanceof PreTrainedModelClass) model.checkpointConversion = record;
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
  state.packed.has(p) && IN_PLACE_DTYPES.has(dtype) && state.reader.readBytesIntoMany !== undefined;

/** Reads one checkpoint tensor, decoded, into its parameter (an FP8 weight bound for bf16: dequantized in place). */
async function readInto(state: LoadState, p: Parameter, key: string): Promise<void> {
  const source = state.reader;
  if (state.packed.has(p) && source instanceof Fp8CheckpointView && source.isQuantized(key)) {
    p.setPacked(await fillPacked(p.packedShape!, (bytes) => source.readBf16Into(key, bytes)));
    p.storedDtype = "BF16";
    return;
  }
  const t = await source.read(key);
  setValue(state, p, t.data, t.dtype);
}

/** Sets decoded checkpoint-layout values; a parameter bound for packed storage is packed (rounded unless BF16). */
function setValue(state: LoadState, p: Parameter, data: Float32Array | Int32Array, dtype: StorageDtype): void {
  if (!state.packed.has(p) || !(data instanceof Float32Array)) return p.setStateData(data, dtype);
  const bytes = encode(data, "BF16"); // round to nearest even; exact for values that came from BF16
  p.setPacked(tf.tensor(new Int32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4), p.packedShape!, "int32"));
  p.storedDtype = dtype;
}

/** Conversion groups: read their sources, convert, fill their targets; a ConversionError is reported, not thrown. */
async function loadGroups(state: LoadState, groups: ConversionPlan["groups"], record: ConversionRecord): Promise<void> {
  for (const group of groups) {
    try {
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

/**
 * As transformers' from_pretrained: a load that gave the model no weight at all is an error (a conversion
 * mapping or checkpoint that matches nothing); otherwise every parameter left at its random initial value
 * is named in one loud warning, strict or not.
 */
export function checkWeightsLoaded(model: Module, report: LoadReport, dir: string, { warn = true } = {}): void {
  const total = model.namedParameters().length;
  const fresh = report.missingKeys;
  if (!fresh.length) return;
  const name = model.constructor.name;
  const errors = report.conversionErrors.map((e) => e.message).join("; ");
  const hints = errors ? `; conversion errors: ${errors}` : "";
  if (fresh.length === total) {
    const unexpected = report.unexpectedKeys.slice(0, 5).join(", ") + (report.unexpectedKeys.length > 5 ? ", …" : "");
    throw new NoWeightsLoadedError(
      `${dir}: no weight of ${name} was loaded from the checkpoint ` +
        `(all ${total} parameters would stay randomly initialised); ` +
        `unexpected checkpoint keys: ${unexpected || "none"}` +
        `${hints} — check the conversion rules and patches in effect`,
    );
  }
  if (!warn) return;
  const shown = fresh.slice(0, 10).join(", ") + (fresh.length > 10 ? `, … (${fresh.length - 10} more)` : "");
  process.emitWarning(
    `Some weights of ${name} were not initialized from the model checkpoint at ${dir} and are newly initialized: ` +
      `${fresh.length} of ${total} parameters: ${shown}${hints} (full list: model.loadReport.missingKeys)`,
    { type: "FusekitLoadWarning", code: "FUSEKIT_NEWLY_INITIALIZED" },
  );
}
