import path from "node:path";
import { CheckpointReader, CONFIG_NAME, readConfigJson } from "../io/checkpoint.js";
import { causalLMClassFor, familyFor } from "../models/registry.js";
import type { LoadReport, ModelConfig, PreTrainedModel } from "../models/pretrained.js";
import type { Module } from "../nn/module.js";
import type { Parameter } from "../nn/parameter.js";
import { describe } from "../nn/module.js";
import { construct } from "../patching/construct.js";
import { StateDictError } from "../errors.js";

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
  const model = await buildFromConfigDir(dir);
  let reader: CheckpointReader | undefined;
  try {
    reader = await CheckpointReader.open(dir);
    const report = await loadWeights(model, reader, options);
    if (options.strict && (report.missingKeys.length || report.unexpectedKeys.length || report.mismatchedKeys.length)) {
      throw new StateDictError(`${dir}: checkpoint does not fit ${model.constructor.name}: ${describe(report)}`);
    }
    model.loadReport = report;
    return model.eval();
  } catch (err) {
    model.dispose();
    throw err;
  } finally {
    await reader?.close();
  }
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
