import { promises as fsp } from "node:fs";
import path from "node:path";
import { CONFIG_NAME, WEIGHTS_INDEX_NAME, WEIGHTS_NAME } from "../io/checkpoint.js";
import { writeSafetensorsStaged, type TensorToWrite } from "../io/safetensors.js";
import { completePendingSave, removeStaleTemporaries, writeFilesAtomically, writeTextFile } from "../io/atomic.js";
import { readJsonObject } from "../io/json.js";
import { DTYPE_BYTES, encode, type StorageDtype } from "../tensor/dtypes.js";
import type { CheckpointModel, SaveOptions } from "./types.js";
import { ConversionError, FusekitError } from "../errors.js";
import { revertGroup, synthesizeRecord, type ConversionRecord } from "../conversion/apply.js";
import { conversionRulesFor } from "../conversion/registry.js";
import { buildInScope } from "../patching/registry.js";
import { buildModel, causalLMClassFor, familyFor } from "./registry.js";
import type { Parameter } from "../nn/parameter.js";
import { storedRowMajor } from "../backend/weight-store.js";
import type { HostTensor } from "../conversion/ops.js";
import { fp8Entries, fp8GroupEntries } from "./fp8.js";
import { companionWrites, saveIntoFolder } from "../io/companions.js";
import { tf } from "../tensor/tf.js";

const TORCH_DTYPE: Partial<Record<StorageDtype, string>> = {
  F32: "float32",
  F16: "float16",
  BF16: "bfloat16",
  F64: "float64",
};

/** "5GB", "500MB", "10KB" or a byte count → bytes (decimal units, as transformers). */
export function parseSize(size: number | string): number {
  if (typeof size === "number") return size;
  const m = /^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|KIB|MIB|GIB)?\s*$/i.exec(size);
  if (!m) throw new FusekitError(`cannot parse size "${size}" (use a byte count or e.g. "500MB", "2GB")`);
  const unit = (m[2] ?? "B").toUpperCase();
  const mult: Record<string, number> = { B: 1, KB: 1e3, MB: 1e6, GB: 1e9, KIB: 2 ** 10, MIB: 2 ** 20, GIB: 2 ** 30 };
  return Math.floor(Number(m[1]) * mult[unit]);
}

/**
 * The tensors a model saves, sorted by key, each in its stored dtype (or `dtype`). With
 * `saveOriginalFormat` (the default) the conversions the model was loaded with are undone: renamed
 * keys get their checkpoint names back and each converted group is reverted when the writer reaches it.
 */
/**
 * A parameter's checkpoint bytes in `dtype`. Packed bf16 storage holds the BF16 bytes (in checkpoint order once
 * the kernel layout is undone), so those are written as they are: no float32 round trip (0.6B: ~7× faster), and
 * every bit kept, NaN payloads too.
 */
function stateBytes(p: Parameter, dtype: StorageDtype): Uint8Array {
  if (!p.packed || dtype !== "BF16") return encode(p.stateData(), dtype);
  const packed = storedRowMajor(p.packedWeight);
  return new Uint8Array(packed.buffer, packed.byteOffset, packed.byteLength);
}

export function stateEntries(
  model: CheckpointModel,
  dtype?: StorageDtype,
  { saveOriginalFormat = true } = {},
): TensorToWrite[] {
  const params = model.namedParameters();
  const record = saveOriginalFormat ? (model.checkpointConversion ?? unloadedRecord(model, params)) : undefined;
  const grouped = new Set(record?.groups.flatMap((g) => g.targets));
  const out: TensorToWrite[] = params
    .filter(([name]) => !grouped.has(name))
    .flatMap(([name, p]) => {
      const key = record?.renamed.get(name) ?? name;
      // An FP8 block-quantized weight goes back as it was stored, unless another dtype is asked for.
      if (!dtype && p.checkpointLayout) return fp8Entries(key, p, p.checkpointLayout);
      const dt = dtype ?? p.storedDtype;
      return [{ name: key, dtype: dt, shape: p.stateShape, bytes: () => stateBytes(p, dt) }];
    });
  const byName = new Map(params);
  for (const group of record?.groups ?? []) {
    const fp8 = dtype ? undefined : fp8GroupEntries(group.sources.flat(), byName.get(group.targets[0]));
    if (fp8 && group.targets.length === 1) {
      out.push(...fp8); // kept FP8 rows: each source's codes and scales as they were read
      continue;
    }
    // Revert once, hand out one source per call, drop the result when the last one is taken.
    let cache: HostTensor[] | undefined;
    let taken = 0;
    const sources = group.sources.flat();
    const revert = (i: number): HostTensor => {
      cache ??= revertGroup(
        group,
        group.targets.map((t) => {
          const p = byName.get(t);
          if (!p)
            throw new ConversionError(
              `cannot save in the original format: "${t}" (made by ${group.rule}) is no longer a parameter of ${model.constructor.name}`,
            );
          return { data: p.stateData(), shape: [...p.stateShape], dtype: p.storedDtype };
        }),
      );
      const t = cache[i];
      if (++taken === sources.length) {
        cache = undefined;
        taken = 0;
      }
      return t;
    };
    sources.forEach((s, i) => {
      const dt = dtype ?? s.dtype;
      out.push({ name: s.key, dtype: dt, shape: s.shape, bytes: () => encode(revert(i).data, dt) });
    });
  }
  out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const dup = out.find((t, i) => i > 0 && out[i - 1].name === t.name);
  if (dup)
    throw new ConversionError(
      `cannot save in the original format: two tensors would be written as "${dup.name}" (check the conversion rules)`,
    );
  return out;
}

/**
 * For a model that was not loaded through conversions: if rules are registered for it and its keys
 * differ from the plain (unpatched) model's, plan the rules over the plain model's keys.
 */
function unloadedRecord(model: CheckpointModel, params: [string, Parameter][]): ConversionRecord | undefined {
  const plainClass = causalLMClassFor(familyFor(model.config.toDict(), "config"), model.config);
  const rules = conversionRulesFor([model.constructor.name, plainClass.name], model.config.model_type);
  if (!rules.length) return undefined;
  // Parameters allocate nothing until loaded or initialised, so the plain twin is only a key/shape list.
  const plain = buildInScope(null, () => buildModel(model.config)).namedParameters();
  const keys = new Set(params.map(([k]) => k));
  if (plain.length === keys.size && plain.every(([k]) => keys.has(k))) return undefined;
  const byName = new Map(params);
  const dtypeOf = (k: string) => byName.get(k)?.storedDtype ?? "F32";
  return synthesizeRecord(
    plain.map(([key, p]) => ({ key, shape: [...p.stateShape] })),
    rules,
    dtypeOf,
    (k) => byName.get(k)?.stateShape,
  );
}

/** Splits tensors into shards of at most `max` bytes (a tensor larger than `max` gets a shard of its own). */
export function planShards(tensors: TensorToWrite[], max: number): TensorToWrite[][] {
  const shards: TensorToWrite[][] = [];
  let current: TensorToWrite[] = [];
  let size = 0;
  for (const t of tensors) {
    const n = tf.util.sizeFromShape([...t.shape]) * DTYPE_BYTES[t.dtype];
    if (current.length && size + n > max) {
      shards.push(current);
      current = [];
      size = 0;
    }
    current.push(t);
    size += n;
  }
  if (current.length || !shards.length) shards.push(current);
  return shards;
}

/**
 * Writes config.json + safetensors (sharded with an index above `maxShardSize`), and the generation config and
 * tokenizer files the model was loaded with. Refuses a folder that is not a checkpoint. Every file is written
 * under a temporary name and renamed into place only when all are complete, config.json last, so an
 * interrupted save leaves the previous checkpoint as it was.
 */
export async function savePretrained(model: CheckpointModel, dir: string, options: SaveOptions = {}): Promise<void> {
  await saveIntoFolder(dir, () => writeCheckpoint(model, dir, options), options.lockTimeout);
}

/** savePretrained's work, run holding the folder's save lock (so the leftovers removed are no live save's). */
async function writeCheckpoint(model: CheckpointModel, dir: string, options: SaveOptions): Promise<void> {
  // Finish a save of this folder that was killed after its commit point, then drop any staged leftovers.
  await completePendingSave(dir);
  await removeStaleTemporaries(dir);
  const tensors = stateEntries(model, options.dtype, { saveOriginalFormat: options.saveOriginalFormat });
  warnIfQuantized(model, dir);
  const shards = planShards(tensors, parseSize(options.maxShardSize ?? "5GB"));
  const names =
    shards.length === 1
      ? [WEIGHTS_NAME]
      : shards.map((_, i) => `model-${pad(i + 1)}-of-${pad(shards.length)}.safetensors`);
  const metadata = { format: "pt" };

  const files: { path: string; write: (tmp: string) => Promise<void> }[] = shards.map((shard, i) => ({
    path: path.join(dir, names[i]),
    write: (tmp) => writeSafetensorsStaged(tmp, shard, metadata),
  }));
  if (shards.length > 1) {
    const weightMap: Record<string, string> = {};
    shards.forEach((shard, i) => shard.forEach((t) => (weightMap[t.name] = names[i])));
    const totalSize = tensors.reduce((n, t) => n + tf.util.sizeFromShape([...t.shape]) * DTYPE_BYTES[t.dtype], 0);
    const index = { metadata: { total_size: totalSize }, weight_map: weightMap };
    files.push({
      path: path.join(dir, WEIGHTS_INDEX_NAME),
      write: (tmp) => writeTextFile(tmp, JSON.stringify(index, null, 2) + "\n"),
    });
  }
  const config = withQuantizationConfig(model, tensors);
  const dtypes = new Set(tensors.map((t) => t.dtype));
  if (dtypes.size === 1) config.torch_dtype = TORCH_DTYPE[[...dtypes][0]] ?? config.torch_dtype;
  files.push(...companionWrites(dir, model.companionFiles));
  files.push({
    path: path.join(dir, CONFIG_NAME),
    write: (tmp) => writeTextFile(tmp, JSON.stringify(config, null, 2) + "\n"),
  });

  // Weight files of the previous save that the new one does not overwrite are deleted after the commit, in
  // the same journal: a new single file must not be shadowed by an old index (or the reverse).
  const stale = await previousWeightFiles(dir);
  await writeFilesAtomically(files, { remove: [...stale] });
}

const pad = (n: number) => String(n).padStart(5, "0");

/** 8-bit weights are saved as their dequantized values in the checkpoint's dtype: not the bytes they came from. */
function warnIfQuantized(model: CheckpointModel, dir: string): void {
  const n = model.parameters().filter((p) => p.quantized).length;
  if (!n) return;
  process.emitWarning(
    `${dir}: ${n} weight(s) stored as int8 are written as their dequantized values in the checkpoint's dtype, ` +
      `not the values they were loaded from (reload the source checkpoint to save it unchanged)`,
    { type: "FusekitWeightStorageWarning", code: "FUSEKIT_INT8_SAVED_DEQUANTIZED" },
  );
}

/**
 * config.json's dict: `quantization_config` is the FP8 layout's when weights are written as FP8, and dropped
 * when none is (a dequantized save must not claim to be quantized).
 */
function withQuantizationConfig(model: CheckpointModel, tensors: TensorToWrite[]): Record<string, unknown> {
  const config = model.config.toDict();
  const fp8 = tensors.some((t) => t.dtype === "F8_E4M3");
  const layout = fp8 ? model.parameters().find((p) => p.checkpointLayout)?.checkpointLayout : undefined;
  if (layout) config.quantization_config = layout.config;
  else if ((config.quantization_config as { quant_method?: unknown } | undefined)?.quant_method === "fp8")
    delete config.quantization_config;
  return config;
}

async function previousWeightFiles(dir: string): Promise<Set<string>> {
  const out = new Set<string>();
  const names = await fsp.readdir(dir);
  if (names.includes(WEIGHTS_NAME)) out.add(WEIGHTS_NAME);
  if (names.includes(WEIGHTS_INDEX_NAME)) {
    out.add(WEIGHTS_INDEX_NAME);
    const index = (await readJsonObject(path.join(dir, WEIGHTS_INDEX_NAME)).catch(() => undefined)) as
      { weight_map?: Record<string, unknown> } | undefined;
    for (const shard of Object.values(index?.weight_map ?? {})) {
      if (typeof shard === "string" && names.includes(shard) && !shard.includes("/")) out.add(shard);
    }
  }
  return out;
}
