// The properties table, each found by trying it on a model: does the approach apply to a loaded model, how
// many classes does it add, is it reversible in place, does it keep the state-dict layout, survive save →
// reload and save the original layout.
import { mkdtempSync, promises as fsp } from "node:fs";
import os from "node:os";
import path from "node:path";
import { AutoModelForCausalLM } from "../models/auto.js";
import type { PreTrainedModel } from "../loading/pretrained.js";
import { CheckpointReader } from "../io/checkpoint.js";
import * as library from "../internals.js";
import { logitsArray, maxAbs } from "./numbers.js";
import type { Approach, Properties, Reference } from "./types.js";

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

/** The classes a model is built of. */
export const classSet = (m: PreTrainedModel) => new Set(m.namedModules().map(([, mod]) => mod.constructor));
/** The sorted set of class names a model is built of (read from prototypes, so no proxy can disguise one). */
export const classNames = (m: PreTrainedModel | string) =>
  typeof m === "string"
    ? m
    : [...new Set(m.namedModules().map(([, x]) => Object.getPrototypeOf(x).constructor.name as string))]
        .sort()
        .join(",");
/** The model's state-dict keys, one string. */
export const stateKeys = (m: PreTrainedModel) =>
  m
    .namedParameters()
    .map(([k]) => k)
    .join("\n");
const libraryValues = new Set<unknown>(Object.values(library));

/**
 * Saves the model, checks the tensors against the source checkpoint byte for byte, and loads the saved
 * directory again with no options: "survives" when that plain reload is built of the same classes.
 */
export async function saveAndReload(
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
export async function tryProperties(
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
