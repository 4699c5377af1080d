// Random checkpoints of real size written tensor by tensor: the model is built (no weights allocated), and
// each weight is drawn, encoded and written in turn, so a 1.7B-shaped checkpoint never has to fit a backend
// (its float32 weights alone would overflow wasm's 4 GiB heap) and at most one tensor lives in memory.
import path from "node:path";
import { promises as fsp } from "node:fs";
import { CONFIG_NAME, WEIGHTS_NAME } from "../io/checkpoint.js";
import { writeSafetensors, type TensorToWrite } from "../io/safetensors.js";
import { DTYPE_BYTES, encode, type StorageDtype } from "../tensor/dtypes.js";
import { initValues, Rng, type Initializer } from "../nn/init.js";
import { buildInScope } from "../patching/registry.js";
import { buildModel } from "../loading/registry.js";
import type { ModelConfig } from "../io/checkpoint.js";

/** The float dtypes a random checkpoint can be written in, with config.json's torch_dtype for each. */
export const RANDOM_CHECKPOINT_DTYPES = { BF16: "bfloat16", F16: "float16", F32: "float32" } as const;
export type RandomCheckpointDtype = keyof typeof RANDOM_CHECKPOINT_DTYPES;

export interface RandomCheckpointOptions {
  seed?: number;
  dtype?: RandomCheckpointDtype;
  /** Called after each tensor is written. */
  onProgress?: (bytesDone: number, bytesTotal: number) => void;
}

/** Bytes of the weights a checkpoint of `config` holds in `dtype` (tied parameters once). */
export function checkpointBytes(config: ModelConfig, dtype: StorageDtype): number {
  const model = buildInScope(null, () => buildModel(config));
  try {
    return model.namedParameters().reduce((n, [, p]) => n + p.numel * DTYPE_BYTES[dtype], 0);
  } finally {
    model.dispose();
  }
}

/** Writes config.json and model.safetensors of a seeded random model of `config` into `dir` (which must exist). */
export async function writeRandomCheckpoint(
  config: ModelConfig,
  dir: string,
  options: RandomCheckpointOptions = {},
): Promise<void> {
  const { seed = 0, dtype = "BF16", onProgress } = options;
  const model = buildInScope(null, () => buildModel(config));
  try {
    const rng = new Rng(seed);
    const params = model.namedParameters();
    const total = params.reduce((n, [, p]) => n + p.numel * DTYPE_BYTES[dtype], 0);
    let done = 0;
    const tensors: TensorToWrite[] = params.map(([name, p]) => ({
      name,
      dtype,
      shape: p.stateShape,
      bytes: () => {
        const bytes = encode(randomValues(p.init, p.numel, rng), dtype);
        onProgress?.((done += bytes.byteLength), total);
        return bytes;
      },
    }));
    await writeSafetensors(path.join(dir, WEIGHTS_NAME), tensors, { format: "pt" });
    const json = { ...config.toDict(), torch_dtype: RANDOM_CHECKPOINT_DTYPES[dtype] };
    await fsp.writeFile(path.join(dir, CONFIG_NAME), JSON.stringify(json, null, 2) + "\n");
  } finally {
    model.dispose();
  }
}

/**
 * As initValues, but normal draws come in pairs from Marsaglia's polar method: no cos / sin, ~21 ns a value
 * instead of Box–Muller's ~32 (a 0.6B-shaped checkpoint draws 600M of them).
 */
export function randomValues(init: Initializer, n: number, rng: Rng): Float32Array {
  if (init.kind !== "normal") return initValues(init, n, rng);
  const out = new Float32Array(n);
  for (let i = 0; i < n;) {
    const u = 2 * rng.next() - 1;
    const v = 2 * rng.next() - 1;
    const s = u * u + v * v;
    if (s >= 1 || s === 0) continue; // outside the unit disc: draw again (21% of pairs)
    const f = Math.sqrt((-2 * Math.log(s)) / s) * init.std;
    out[i++] = u * f;
    if (i < n) out[i++] = v * f;
  }
  return out;
}
