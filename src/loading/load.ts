import path from "node:path";
import { CheckpointReader, CONFIG_NAME, readConfigJson } from "../io/checkpoint.js";
import { causalLMClassFor, familyFor } from "../models/registry.js";
import type { LoadReport, ModelConfig, PreTrainedModel } from "../models/pretrained.js";
import type { Module } from "../nn/module.js";
import type { Parameter } from "../nn/parameter.js";
import { describe } from "../nn/module.js";
import { construct } from "../patching/construct.js";
import { ConfigError, StateDictError } from "../errors.js";

export interface LoadProgress {
  bytesDone: number;
  bytesTotal: number;
  key: string;
}

export interface FromPretrainedOptions {
  /** Throw a StateDictError if any key is missing, unexpected or mis-shaped (default false: report only). */
  strict?: boolean;
  /** Seed for initialising parameters the checkpoint does not provide. */
  seed?: number;
  /** Called after each tensor is loaded. */
  onProgress?: (progress: LoadProgress) => void;
}

/** Reads config.json and builds the (patched) model class it names, with no weights allocated yet. */
export async function buildFromConfigDir(dir: string): Promise<PreTrainedModel> {
  const raw = await readConfigJson(dir);
  const where = path.join(dir, CONFIG_NAME);
  const family = familyFor(raw, where);
  return buildModel(family.configFromDict(raw, where), raw, where);
}

export function buildModel(config: ModelConfig, raw: Record<string, unknown> = config.toDict(), where = "config"): PreTrainedModel {
  const Cls = causalLMClassFor(familyFor(raw, where), config);
  return construct(Cls as new (c: ModelConfig) => PreTrainedModel, config);
}

/** config.json → class → construct → load weights → model with `loadReport`, in eval mode. */
export async function fromPretrained(dir: string, options: FromPretrainedOptions = {}): Promise<PreTrainedModel> {
  const raw = await readConfigJson(dir);
  const where = path.join(dir, CONFIG_NAME);
  const family = familyFor(raw, where);
  const config = family.configFromDict(raw, where);
  // Headers first: config.json's sizes are checked against them before anything is built.
  const reader = await CheckpointReader.open(dir);
  let model: PreTrainedModel | undefined;
  try {
    checkSizesAgainstCheckpoint(raw, reader, where, undefined);
    model = buildModel(config, raw, where);
    checkSizesAgainstCheckpoint(raw, reader, where, model);
    const report = await loadWeights(model, reader, options);
    if (options.strict && (report.missingKeys.length || report.unexpectedKeys.length || report.mismatchedKeys.length)) {
      throw new StateDictError(`${dir}: checkpoint does not fit ${model.constructor.name}: ${describe(report)}`);
    }
    model.loadReport = report;
    return model.eval();
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

/** Loads every checkpoint tensor into the parameter of the same key, one tensor in memory at a time. */
export async function loadWeights(model: Module, reader: CheckpointReader, options: FromPretrainedOptions = {}): Promise<LoadReport> {
  const params = new Map(model.namedParameters());
  const aliases = parameterAliases(model);
  const report: LoadReport = { missingKeys: [], unexpectedKeys: [], mismatchedKeys: [] };
  const loaded = new Set<Parameter>();
  const bytesTotal = reader.totalBytes;
  let bytesDone = 0;
  for (const key of reader.keys()) {
    const info = reader.infos.get(key)!;
    const p = params.get(key) ?? aliases.get(key);
    if (!p) {
      report.unexpectedKeys.push(key);
    } else if (loaded.has(p)) {
      // A tied alias (e.g. lm_head.weight saved next to embed_tokens.weight): the first copy wins.
    } else if (p.stateShape.length !== info.shape.length || p.stateShape.some((d, i) => d !== info.shape[i])) {
      report.mismatchedKeys.push({ key, expected: [...p.stateShape], got: info.shape });
    } else {
      const t = await reader.read(key);
      p.setStateData(t.data, t.dtype);
      loaded.add(p);
    }
    bytesDone += info.end - info.begin;
    options.onProgress?.({ bytesDone, bytesTotal, key });
  }
  for (const [key, p] of params) if (!loaded.has(p)) report.missingKeys.push(key);
  model.initializeWeights(options.seed ?? 0, { onlyMissing: true });
  return report;
}
