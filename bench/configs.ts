// The model configurations the bench measures, and the measurement of one of them (run in a child
// process by bench/run.ts, or in-process by the smoke test). Four families: the original model, runtime
// fusion + kernelize, patch mapping + conversion + kernelize, and the DecoderLayer kernel (a whole layer per
// pool job at decode) — each with float32 or packed bf16 weights — and a fifth, 8-bit weights: int8 blocks
// quantized at load, and an FP8 copy of the checkpoint kept at 8 bits (the original and the DecoderLayer kernel).
import {
  AutoModelForCausalLM,
  DECODER_LAYER,
  DynamicCache,
  Mode,
  kernelize,
  kernelThreads,
  setKernelThreads,
  tf,
  type PreTrainedModel,
  type FromPretrainedOptions,
  type KernelConfigEntry,
} from "../src/index.js";
import {
  decodeTokensPerSecond,
  decodeWithStackMs,
  decoderLayers,
  prefillTokensPerSecond,
  promptIds,
  repeatWithin,
  stat,
  type Figure,
} from "../src/compare/measure.js";
import { fuseNormMLP } from "../fusions/norm-mlp.js";
import { createHash } from "node:crypto";
import { existsSync, statSync } from "node:fs";
import path from "node:path";
import { cacheDir } from "../src/presets/presets.js";
import { quantizeToFp8 } from "../src/loading/fp8.js";
import { writeFolderAtomically } from "../src/io/atomic.js";
import { checkpointFolderTarget } from "../src/io/checkpoint.js";
import type { Parameter } from "../src/nn/parameter.js";
import { qwen3NormMLPPatches } from "../patches/norm-mlp.js";
import { qwen3NormMLPConversions } from "../conversions/norm-mlp.js";
import { qwen3GateUpQKVPatches } from "../patches/gate-up-qkv.js";
import { qwen3GateUpQKVConversions } from "../conversions/gate-up-qkv.js";

export type Family = "original" | "fused" | "patched" | "layer" | "8-bit";
export type Storage = "f32" | "bf16" | "int8" | "fp8";

export interface ConfigSpec {
  id: string;
  family: Family;
  storage: Storage;
  label: string;
  /** Kernel threads (default: FUSEKIT_THREADS, else every core). */
  threads?: number;
}

type Recipe = "norm-mlp-fusion" | "norm-mlp-patch" | "gate-up-qkv-patch" | "kernel-config" | "decoder-layer" | "none";

const CANDIDATES: [Family, Recipe, string][] = [
  ["original", "none", "original"],
  ["fused", "norm-mlp-fusion", "fused NormMLP + kernelize"], // fusions/norm-mlp.ts fuseNormMLP(model, { kernel: true })
  ["patched", "norm-mlp-patch", "patched NormMLP + kernelize"], // patches/ + conversions/norm-mlp.ts at load
  ["patched", "gate-up-qkv-patch", "patched gate_up/qkv + kernelize"], // patches/ + conversions/gate-up-qkv.ts at load
  ["patched", "kernel-config", "kernelConfig NormQKV + NormMLP"], // fromPretrained's useKernels + n-to-1 KernelConfig
  ["layer", "decoder-layer", "DecoderLayer kernel"], // DECODER_LAYER.fuse(model) + kernelize
];

/** Both n-to-1 kernels of the bundled repos: input norm + q/k/v, and post-attention norm + MLP. */
const BOTH_KERNELS: KernelConfigEntry[] = [
  [
    [
      ["Attention", "model.layers.*.self_attn"],
      ["RMSNorm", "model.layers.*.input_layernorm"],
    ],
    "fusekit/norm-qkv:NormQKV",
  ],
  [
    [
      ["RMSNorm", "model.layers.*.post_attention_layernorm"],
      ["MLP", "model.layers.*.mlp"],
    ],
    "fusekit/norm-mlp:NormMLP",
  ],
];

const recipeOf = (id: string) => id.split("·")[0] as Recipe;

/** The original model with bf16 weights on one kernel thread: what the pool adds. */
export const ONE_THREAD: ConfigSpec = {
  id: "none·bf16·1t",
  family: "original",
  storage: "bf16",
  label: "original (bf16, 1 thread)",
  threads: 1,
};

/**
 * 8-bit weights: int8 blocks (quantized at load) and an FP8 checkpoint kept at 8 bits (`fp8Twin`), each as the
 * original and with the DecoderLayer kernel, and the original int8 on one thread (a page without isolation).
 */
export const EIGHT_BIT: ConfigSpec[] = [
  ...(["int8", "fp8"] as const).flatMap((storage): ConfigSpec[] => {
    const what = storage === "int8" ? "int8" : "FP8 checkpoint, kept";
    return [
      { id: `none·${storage}`, family: "8-bit", storage, label: `original (${what})` },
      { id: `decoder-layer·${storage}`, family: "8-bit", storage, label: `DecoderLayer kernel (${what})` },
    ];
  }),
  { id: "none·int8·1t", family: "8-bit", storage: "int8", label: "original (int8, 1 thread)", threads: 1 },
];

/** Every candidate configuration, float32 and bf16 storage, the original on one thread, and the 8-bit rows. */
export function allConfigs(): ConfigSpec[] {
  return [
    ...CANDIDATES.flatMap(([family, recipe, label]) =>
      (["f32", "bf16"] as Storage[]).map((storage) => ({
        id: `${recipe}·${storage}`,
        family,
        storage,
        label: `${label} (${storage})`,
      })),
    ),
    ONE_THREAD,
    ...EIGHT_BIT,
  ];
}

/**
 * The fusekit cache folder for what the bench derives from checkpoint `dir` (`kind`: "fp8", "gguf"), keyed by the
 * checkpoint's path, size and mtime (a changed checkpoint gets a new one).
 */
export function derivedDir(dir: string, kind: string): string {
  const st = statSync(path.join(dir, "model.safetensors"));
  const key = createHash("sha256")
    .update(`${path.resolve(dir)}:${st.size}:${st.mtimeMs}`)
    .digest("hex")
    .slice(0, 16);
  return path.join(cacheDir(), kind, key);
}

/** Where the FP8 copy of checkpoint `dir` lives. */
export const fp8Twin = (dir: string) => derivedDir(dir, "fp8");

/**
 * The FP8 copy of `dir` (`fusekit quantize-fp8`'s layout: E4M3 Linear weights in 128 × 128 blocks, lm_head and
 * norms as they were), written once (beside its final place, then renamed) when missing.
 */
export async function ensureFp8Twin(dir: string, log: (line: string) => void): Promise<string> {
  const out = fp8Twin(dir);
  if (existsSync(path.join(out, "model.safetensors"))) return out;
  log(`writing an FP8 copy of ${dir} (quantize-fp8) to ${out}…`);
  const model = await AutoModelForCausalLM.fromPretrained(dir);
  try {
    quantizeToFp8(model);
    await writeFolderAtomically(out, (tmp) => model.savePretrained(tmp), checkpointFolderTarget());
  } finally {
    model.dispose();
  }
  return out;
}

/** Loads `dir` as configuration `spec`, ready to run (fused / patched / kernelized as the spec says). */
export async function buildConfig(dir: string, spec: ConfigSpec): Promise<PreTrainedModel> {
  const storage: FromPretrainedOptions = { weightStorage: spec.storage };
  if (spec.storage === "fp8") {
    dir = fp8Twin(dir);
    if (!existsSync(dir)) throw new Error(`no FP8 copy of the checkpoint at ${dir}: ensureFp8Twin writes it first`);
  }
  const recipe = recipeOf(spec.id);
  if (recipe === "none") return AutoModelForCausalLM.fromPretrained(dir, storage);
  if (recipe === "kernel-config") {
    return AutoModelForCausalLM.fromPretrained(dir, { ...storage, useKernels: true, kernelConfig: BOTH_KERNELS });
  }
  if (recipe === "norm-mlp-fusion" || recipe === "decoder-layer") {
    const model = await AutoModelForCausalLM.fromPretrained(dir, storage);
    if (recipe === "decoder-layer") DECODER_LAYER.fuse(model);
    else fuseNormMLP(model, { kernel: true });
    return kernelize(model, { mode: Mode.INFERENCE });
  }
  const [patches, conversions] =
    recipe === "norm-mlp-patch"
      ? [qwen3NormMLPPatches, qwen3NormMLPConversions]
      : [qwen3GateUpQKVPatches, qwen3GateUpQKVConversions];
  const model = await AutoModelForCausalLM.fromPretrained(dir, { ...storage, patches, conversions });
  return kernelize(model, { mode: Mode.INFERENCE });
}

/** What one measurement of a configuration runs. */
export interface Plan {
  prefill: number[];
  /** Prompt lengths after which decode is also measured (attention over a longer cache), besides the short one. */
  decodeContexts?: number[];
  decodeSteps: number;
  repeats: number;
  /** Per figure: no further run starts once the figure would pass this many seconds (≥ 1 run). */
  figureBudgetS: number;
}

export interface ConfigResult {
  /** Parameter count (float32 weights = 4 × params). */
  params: number;
  /** Seconds from fromPretrained to a model ready to run (load + fuse/patch + kernelize). */
  readyS: number;
  /** process.resourceUsage().maxRSS right after loading (bytes) — meaningful in a child process. */
  peakRssAfterLoadBytes: number;
  /** maxRSS at the end of the measurement (bytes). */
  peakRssBytes: number;
  /** Weight bytes one decode step reads: every 2-D weight except norms (lm_head / tied embedding once), in its storage. */
  decodeWeightBytes: number;
  /** tfjs kernels launched by one decode step. */
  kernelsPerDecodeStep: number;
  /** Threads the bf16 kernels ran on. */
  threads: number;
  /** Multiply-adds per token in the decoder layers' matmuls (prefill FLOPs = 2 × this × tokens). */
  layerMacsPerToken: number;
  prefill: Record<string, Figure>;
  /** Decode tokens/s after an 8-token prompt. */
  decode: Figure;
  /** Decode tokens/s after a prompt of each `Plan.decodeContexts` length. */
  decodeAt?: Record<string, Figure>;
  /** Milliseconds of the decoder layers alone per decode step (forward hooks on the first and last layer), per run. */
  decoderStackMs: Figure;
  /** Figures that failed ("prefill 512", …) and why; figures after a failure are not run. */
  errors?: Record<string, string>;
  /** numTensors after the measured runs minus before them (0: no leak). */
  tensorsLeaked: number;
}

/** Bytes a weight occupies in its storage (8-bit codes with their scales, packed bf16, or float32). */
const storedBytes = (p: Parameter) =>
  p.fp8 ? p.fp8Weight.bytes : p.quantized ? p.int8Weight.bytes : p.packed ? p.packedWeight.bytes : p.numel * 4;

export function decodeWeightBytes(model: PreTrainedModel): number {
  let n = 0;
  for (const [, p] of model.namedParameters()) if (p.stateShape.length === 2) n += storedBytes(p); // norm weights are 1-D
  return n;
}

export function layerMacsPerToken(model: PreTrainedModel): number {
  let n = 0;
  for (const [name, p] of model.namedParameters()) if (p.stateShape.length === 2 && /layers\./.test(name)) n += p.numel; // a module's path may say "norm" (n-to-1 layouts)
  return n;
}

async function kernelsPerStep(model: PreTrainedModel): Promise<number> {
  const vocab = (model.config as unknown as { vocab_size: number }).vocab_size;
  const cache = new DynamicCache();
  model
    .forward({ inputIds: [promptIds(8, vocab)], pastKeyValues: cache, useCache: true, logitsToKeep: 1 })
    .logits.dispose();
  const info = await tf.profile(
    () => model.forward({ inputIds: [[13]], pastKeyValues: cache, useCache: true, logitsToKeep: 1 }).logits,
  );
  cache.dispose();
  return info.kernels.length;
}

const maxRss = () => process.resourceUsage().maxRSS * 1024;

/** Loads and measures one configuration: prefill tokens/s per prompt length and decode tokens/s. */
export async function measureConfig(dir: string, spec: ConfigSpec, plan: Plan): Promise<ConfigResult> {
  setKernelThreads(spec.threads);
  const t0 = performance.now();
  const model = await buildConfig(dir, spec);
  const readyS = (performance.now() - t0) / 1000;
  const peakRssAfterLoadBytes = maxRss();
  let failedFigure = false;
  try {
    prefillTokensPerSecond(model, 8); // warm-up: kernels compiled, buffers and lazy caches (RoPE tables) made
    decodeTokensPerSecond(model, 2);
    const kernels = await kernelsPerStep(model);
    const before = tf.memory().numTensors;
    const budget = plan.figureBudgetS * 1000;
    // Decode first, then prefills from the shortest: a figure that fails (a long prefill that exhausts the
    // wasm heap) keeps the ones before it; after a failure the heap may be corrupt, so nothing more runs.
    const errors: Record<string, string> = {};
    const prefill: Record<string, Figure> = {};
    const decodeAt: Record<string, Figure> = {};
    let decode: Figure | undefined;
    const stackMs: number[] = [];
    const layers = decoderLayers(model);
    const decodeRun = () => {
      const run = decodeWithStackMs(model, plan.decodeSteps, layers);
      stackMs.push(run.stackMs);
      return run.tokensPerSecond;
    };
    const figures: [string, () => void][] = [
      ["decode", () => (decode = repeatWithin(plan.repeats, budget, decodeRun))],
      ...(plan.decodeContexts ?? []).map((n): [string, () => void] => [
        `decode after ${n}`,
        () =>
          (decodeAt[n] = repeatWithin(plan.repeats, budget, () => decodeTokensPerSecond(model, plan.decodeSteps, n))),
      ]),
      ...[...plan.prefill]
        .sort((a, b) => a - b)
        .map((n): [string, () => void] => [
          `prefill ${n}`,
          () => (prefill[n] = repeatWithin(plan.repeats, budget, () => prefillTokensPerSecond(model, n))),
        ]),
    ];
    for (const [name, run] of figures) {
      const failed = Object.keys(errors).length > 0;
      if (failed) errors[name] = "not run after an earlier failure";
      else {
        try {
          run();
        } catch (e) {
          failedFigure = true;
          errors[name] = e instanceof Error ? `${e.name}: ${e.message}`.split("\n")[0].slice(0, 200) : String(e);
        }
      }
    }
    if (!decode) throw new Error(`decode failed: ${errors.decode}`);
    return {
      params: model.numParameters(),
      readyS,
      peakRssAfterLoadBytes,
      peakRssBytes: maxRss(),
      decodeWeightBytes: decodeWeightBytes(model),
      layerMacsPerToken: layerMacsPerToken(model),
      kernelsPerDecodeStep: kernels,
      threads: kernelThreads(),
      prefill,
      decode,
      ...(Object.keys(decodeAt).length ? { decodeAt } : {}),
      decoderStackMs: { ...stat(stackMs), runs: stackMs },
      tensorsLeaked: tf.memory().numTensors - before,
      ...(Object.keys(errors).length ? { errors } : {}),
    };
  } finally {
    // after a failed figure the heap may be corrupt and dispose itself can throw: the figure's error is the news
    try {
      model.dispose();
    } catch (e) {
      // eslint-disable-next-line no-unsafe-finally -- a failing dispose is news only when every figure succeeded
      if (!failedFigure) throw e;
    }
  }
}
