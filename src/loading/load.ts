import path from "node:path";
import type { LoadReport, PreTrainedModel } from "./pretrained.js";
import { CheckpointReader, CONFIG_NAME, readConfigJson, type TensorSource } from "../io/checkpoint.js";
import { buildModel, causalLMClassFor, familyFor } from "./registry.js";
import type { Module } from "../nn/module.js";
import type { Parameter } from "../nn/parameter.js";
import { describe } from "../nn/module.js";
import { ensureBackend } from "../kernels/backend.js";
import { applyKernelsAfterLoad, type KernelLoadOptions } from "../hub/kernelize.js";
import { packWeightsOnLoad, type WeightStorage } from "../nn/storage.js";
import { getKernelMapping, useKernelMapping, type KernelMapping } from "../hub/mapping.js";
import { ConfigError, ConversionError, NoWeightsLoadedError, StateDictError, WeightStorageError } from "../errors.js";
import { withPatches, type PatchMapping } from "../patching/registry.js";
import type { ConversionRule } from "../conversion/rules.js";
import { checkRules, conversionRulesFor } from "../conversion/registry.js";
import { convertGroup, planConversions, type ConversionRecord } from "../conversion/apply.js";
import type { HostTensor } from "../conversion/ops.js";
import { planLoad, type PlanOptions } from "./plan.js";
import { storeFusionConfig } from "../fusion/config.js";
import { ensureFunctionKernels } from "../hub/functions.js";
import { fp8Source, keepFp8Layouts, packFp8OnLoad } from "./fp8.js";
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
   * "bf16" keeps BF16-stored Linear / Embedding weights packed as bf16 in the backend (half the memory and
   * bandwidth of float32, exact; wasm and cpu), packed as they are read. Default "f32".
   */
  weightStorage?: WeightStorage;
}

/**
 * fusekit never runs code from a checkpoint directory: `auto_map` (transformers' pointer to modeling_*.py
 * files shipped with the weights) and `trust_remote_code` are ignored, with a warning, and the built-in
 * implementation of `model_type` is used. A warning, not an error: many ordinary checkpoints carry an
 * auto_map although their model_type is a standard one.
 */
export function warnIgnoredRemoteCode(raw: Record<string, unknown>, where: string): void {
  const fields = ["auto_map", "trust_remote_code"].filter((k) => raw[k] !== undefined && raw[k] !== false && raw[k] !== null);
  if (!fields.length) return;
  const target = raw.auto_map === undefined ? "" : ` (auto_map: ${JSON.stringify(raw.auto_map).slice(0, 200)})`;
  process.emitWarning(
    `${where}: ${fields.map((f) => `"${f}"`).join(" and ")} ignored${target}: fusekit never runs code from a checkpoint directory; ` +
      `it builds its own implementation of model_type ${JSON.stringify(raw.model_type)}`,
    { type: "FusekitRemoteCodeWarning", code: "FUSEKIT_REMOTE_CODE_IGNORED" },
  );
}

/**
 * config.json → class → construct (under `options.patches`) → load weights through the conversion
 * rules → model with `loadReport`, in eval mode.
 */
export async function fromPretrained(dir: string, options: FromPretrainedOptions = {}): Promise<PreTrainedModel> {
  if (options.patches) {
    const { patches, ...rest } = options;
    return withPatches(patches, () => fromPretrained(dir, rest));
  }
  if (options.conversions !== undefined) checkRules(options.conversions, "fromPretrained: conversions");
  if (options.weightStorage !== undefined && options.weightStorage !== "f32" && options.weightStorage !== "bf16") {
    throw new WeightStorageError(`unknown weightStorage "${String(options.weightStorage)}" (use "bf16" or "f32")`);
  }
  await ensureBackend();
  await ensureFunctionKernels();
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
    const plan = await planLoad(raw, config, causalLMClassFor(family, config), options, where, () => buildModel(config, raw, where));
    model = withPatches(plan.patches, () => buildModel(config, raw, where));
    storeFusionConfig(model.config, plan.fusion);
    checkSizesAgainstCheckpoint(raw, reader, where, model);
    if (options.weightStorage === "bf16") packWeightsOnLoad(model);
    const source = fp8Source(reader, raw, where); // FP8 block-quantized weights read dequantized to bf16
    packFp8OnLoad(model, source, options.weightStorage);
    const registered = options.conversions ?? conversionRulesFor([model.constructor.name, unpatched], config.model_type);
    const conversions = [...registered, ...plan.conversions];
    // The kernel mapping is read in the same synchronous step as the patches and the conversions, so one load
    // sees one state of the registries even when another task registers or unregisters while it reads weights.
    const kernelMapping = options.useKernels ? (getKernelMapping() as KernelMapping) : undefined;
    const report = await loadWeights(model, source, { ...options, conversions });
    keepFp8Layouts(model, source, model.checkpointConversion?.renamed);
    packWeightsOnLoad(model, false);
    const bad = report.missingKeys.length || report.unexpectedKeys.length || report.mismatchedKeys.length || report.conversionErrors.length;
    checkWeightsLoaded(model, report, dir, { warn: !(options.strict && bad) });
    if (options.strict && bad) {
      const errors = report.conversionErrors.map((e) => e.message).join("; ");
      throw new StateDictError(`${dir}: checkpoint does not fit ${model.constructor.name}: ${describe(report)}${errors ? `; conversion errors: ${errors}` : ""}`);
    }
    model.loadReport = report;
    model.companionFiles = await readCompanionFiles(dir);
    // awaited here so a kernel error still disposes the model below
    const loaded = model.eval();
    const kernelOptions = { ...options, kernelMapping: { ...options.kernelMapping, ...plan.kernelMapping } };
    return await (kernelMapping ? useKernelMapping(kernelMapping, () => applyKernelsAfterLoad(loaded, kernelOptions), { inherit: false }) : loaded);
  } catch (err) {
    model?.dispose();
    throw err;
  } finally {
    await reader.close();
  }
}

/**
 * A hostile config.json must not make the loader allocate what the checkpoint cannot justify (a vocab_size
 * of 1e308, 2^31 layers). Before building: every size-like field is at most the checkpoint's element count
 * and the layer count at most its tensor count. After building (parameters are still unallocated): the
 * model's float32 bytes are at most 4× the checkpoint's data bytes (BF16 → float32 doubles them; the rest
 * leaves room for parameters a partial checkpoint does not provide) plus 64 MiB.
 */
function checkSizesAgainstCheckpoint(raw: Record<string, unknown>, reader: CheckpointReader, where: string, model: PreTrainedModel | undefined): void {
  let elements = 0;
  for (const info of reader.infos.values()) elements += info.shape.reduce((a, b) => a * b, 1);
  if (!model) {
    for (const [k, v] of Object.entries(raw)) {
      if (typeof v !== "number" || !(/_size$|_dim$|^num_/.test(k))) continue;
      const limit = k === "num_hidden_layers" ? reader.keys().length : elements;
      if (v > limit) throw new ConfigError(`${where}: "${k}" is ${v}, more than the checkpoint's ${k === "num_hidden_layers" ? "tensor" : "element"} count (${limit}) can justify`);
    }
    return;
  }
  let declared = 0;
  for (const [, p] of model.namedParameters()) declared += p.numel * 4;
  const limit = 4 * reader.totalBytes + 64 * 2 ** 20;
  if (declared > limit) throw new ConfigError(`${where}: the model it declares needs ${declared} bytes of weights, more than its ${reader.totalBytes}-byte checkpoint can justify`);
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

/**
 * Loads every checkpoint tensor into the parameter of its runtime key — the same key, or the one
 * `options.conversions` moves it to — one tensor (or one conversion group) in memory at a time.
 * On a PreTrainedModel the conversions done are recorded in `checkpointConversion` for saving.
 */
export async function loadWeights(model: Module, reader: TensorSource, options: FromPretrainedOptions = {}): Promise<LoadReport> {
  const rules = options.conversions ?? [];
  const params = new Map(model.namedParameters());
  const aliases = parameterAliases(model);
  const plan = planConversions(reader.keys(), rules, (k) => (params.get(k) ?? aliases.get(k))?.stateShape);
  const report: LoadReport = {
    missingKeys: [],
    unexpectedKeys: [],
    mismatchedKeys: [],
    conversionErrors: plan.errors,
    unmatchedRules: plan.unmatchedRules,
    convertedKeys: [],
  };
  const record: ConversionRecord = { rules: [...rules], renamed: new Map(), groups: [] };
  const loaded = new Set<Parameter>();
  const bytesTotal = reader.totalBytes;
  let bytesDone = 0;
  const progress = (key: string) => {
    bytesDone += reader.infos.get(key)!.end - reader.infos.get(key)!.begin;
    options.onProgress?.({ bytesDone, bytesTotal, key });
  };
  /** The parameter to fill for `target`, or undefined (reported) if there is none or it does not fit. */
  const slotFor = (target: string, shape: number[]): Parameter | undefined => {
    const p = params.get(target) ?? aliases.get(target);
    if (!p) report.unexpectedKeys.push(target);
    else if (loaded.has(p)) return undefined; // a tied alias (e.g. lm_head.weight next to embed_tokens.weight): the first copy wins
    else if (p.stateShape.length !== shape.length || p.stateShape.some((d, i) => d !== shape[i])) {
      report.mismatchedKeys.push({ key: target, expected: [...p.stateShape], got: shape });
    } else return p;
    return undefined;
  };

  for (const { source, target, rules: by } of plan.direct) {
    const p = slotFor(target, reader.infos.get(source)!.shape);
    if (p) {
      const t = await reader.read(source);
      p.setStateData(t.data, t.dtype);
      loaded.add(p);
    }
    if (by.length) {
      record.renamed.set(target, source);
      report.convertedKeys.push({ rule: by.join(" then "), sources: [source], targets: [target] });
    }
    progress(source);
  }

  for (const group of plan.groups) {
    try {
      const inputs: HostTensor[][] = [];
      for (const keys of group.sources) inputs.push(await Promise.all(keys.map((k) => reader.read(k))));
      const { outputs, reverse } = convertGroup(group, inputs.map((l) => (l.length === 1 ? l[0] : l)));
      outputs.forEach((t, i) => {
        const p = slotFor(group.targets[i], t.shape);
        if (p) {
          p.setStateData(t.data, t.dtype);
          loaded.add(p);
        }
      });
      const sources = inputs.map((l, i) => l.map((t, j) => ({ key: group.sources[i][j], shape: t.shape, dtype: t.dtype })));
      record.groups.push({ rule: group.rule, targets: group.targets, reverse, sources });
      report.convertedKeys.push({ rule: group.rule.toString(), sources: group.sources.flat(), targets: group.targets });
    } catch (err) {
      if (!(err instanceof ConversionError)) throw err;
      report.conversionErrors.push({ rule: group.rule.toString(), keys: group.sources.flat(), message: err.message });
    }
    for (const k of group.sources.flat()) progress(k);
  }
  for (const e of plan.errors) for (const k of e.keys) progress(k);

  for (const [key, p] of params) if (!loaded.has(p)) report.missingKeys.push(key);
  model.initializeWeights(options.seed ?? 0, { onlyMissing: true });
  if (rules.length && model instanceof PreTrainedModelClass) model.checkpointConversion = record;
  return report;
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
