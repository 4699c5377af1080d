// The memory plan of a load, made before a weight byte is read: weights in the chosen storage, the
// backend's own copy of them, the KV cache for the requested context, a prefill's activations and a
// runtime reserve, against the backend's ceiling — packed (bf16 / 8-bit) weights against the weight store's
// instead, where the backend has one apart (wasm: its heap is 4 GiB, the store's arenas are not part of it). It also decides what weightStorage "auto" means.
// `planMemory` is a pure function of its inputs (tested directly); the end of this file gathers them from a
// built model, its checkpoint and the backend (`weightInventory`, `modelShape`, `backendLimits`).
import os from "node:os";
import v8 from "node:v8";
import { MemoryPlanError, WeightStorageError } from "../errors.js";
import type { StorageDtype } from "../tensor/dtypes.js";
import { tf } from "../tensor/tf.js";
import type { CheckpointReader } from "../io/checkpoint.js";
import { parameterAliases, type Module } from "../nn/module.js";
import type { Parameter } from "../nn/parameter.js";
import { Linear } from "../nn/layers.js";
import { packableWeights } from "../nn/storage.js";
import type { ConversionRule } from "../conversion/rules.js";
import { planConversions } from "../conversion/apply.js";
import { bf16KernelsAvailable } from "../backend/kernels.js";
import { ARENA_WEIGHT_BYTES, MAX_ARENAS } from "../backend/weight-store.js";
import { fp8ConcatGroup, fp8ConfigOf, fp8StorageBytes, keepsFp8, scaleKeyFor } from "./fp8.js";
import type { Fp8QuantizationConfig } from "../tensor/fp8.js";

/**
 * "auto": an FP8 checkpoint's weights kept as stored (fp8); else packed bf16 when exact (BF16 checkpoint) or
 * when float32 would not fit; else float32. "int8": 8-bit blocks (src/tensor/int8.ts), lossy, only when asked
 * for. "fp8": an FP8 checkpoint's E4M3 codes and block scales kept as they are (its other weights packed bf16
 * where they are BF16).
 */
export type WeightStorageChoice = "auto" | "f32" | "bf16" | "int8" | "fp8";

export const WEIGHT_STORAGE_CHOICES: readonly WeightStorageChoice[] = ["auto", "f32", "bf16", "int8", "fp8"];

/** A storage a plan can end with. */
export type PlannedStorage = "f32" | "bf16" | "int8" | "fp8";

/** One parameter as the planner sees it. */
export interface WeightEntry {
  name: string;
  numel: number;
  /** The dtype the checkpoint stores it in. */
  storedDtype: StorageDtype;
  /** A Linear / Embedding weight that bf16 storage packs (int8 storage quantizes the same ones). */
  packable: boolean;
  /** Its bytes in 8-bit blocks (default: numel · 9/8, a whole number of 32-value blocks a row). */
  int8Bytes?: number;
  /** Its bytes kept as FP8 (codes and scales) when the checkpoint stores it so and the FP8 kernels take it. */
  fp8Bytes?: number;
  /** A matmul operand (a Linear's weight, incl. a tied lm_head): float32 on wasm gets XNNPACK's packed copy. */
  matmul: boolean;
}

/** The sizes that set the KV cache and activations (a decoder-only transformer). */
export interface ModelShape {
  numLayers: number;
  hidden: number;
  intermediate: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  vocab: number;
}

export interface BackendLimits {
  backend: string;
  /** Bytes everything the backend holds must fit in (Infinity: no ceiling fusekit knows of). */
  ceilingBytes: number;
  /** Whether the backend has the packed-bf16 kernels (the 8-bit ones exist on the same backends). */
  bf16: boolean;
  /** Whether a float32 matmul weight gets a second, packed copy (XNNPACK on wasm). */
  packedCopy: boolean;
  /**
   * Bytes the weight store (src/backend/weight-store.ts) holds apart from `ceilingBytes`, for packed weights;
   * undefined when they share the backend's ceiling.
   */
  storeBytes?: number;
}

export interface PlanRequest {
  weights: WeightEntry[];
  shape: ModelShape;
  /** Tokens the KV cache must hold (prompt + new tokens). */
  contextLength: number;
  /** Longest prompt prefilled in one forward. */
  promptLength: number;
  /** When false, a context that does not fit shrinks (by halves, to at least 256) instead of failing. */
  contextExplicit?: boolean;
}

export interface MemoryPlan {
  backend: string;
  storage: PlannedStorage;
  /** Weights that bf16 storage rounds (stored as something other than BF16); 0 when exact. */
  roundedWeights: number;
  /** Why this storage was chosen. */
  reason: string;
  contextLength: number;
  promptLength: number;
  weightBytes: number;
  /** Of weightBytes, those in the weight store (packed bf16 / 8-bit). */
  storedWeightBytes: number;
  backendCopyBytes: number;
  kvCacheBytes: number;
  activationBytes: number;
  reserveBytes: number;
  totalBytes: number;
  ceilingBytes: number;
  /** The weight store's room when it is apart from the backend's ceiling (see BackendLimits). */
  storeBytes?: number;
}

/** tfjs-backend-wasm's heap maximum (emscripten's getHeapMax: 4 GiB less one 64 KiB page). */
export const WASM_HEAP_BYTES = 4 * 2 ** 30 - 2 ** 16;
/** tfjs's own runtime, the heap's static data and allocator slack. */
export const RESERVE_BYTES = 96 * 2 ** 20;
/** Prefills shorter than this are planned as this long (a chat prompt with a template is rarely shorter). */
const MIN_PROMPT = 64;
/** A context that is not explicit shrinks down to this before the plan gives up. */
const MIN_CONTEXT = 256;

/**
 * What the active backend can hold: wasm's heap, and the weight store beside it (its arenas, within the machine's
 * memory); cpu / tensorflow are bounded by the machine's memory.
 */
export function backendLimits(backend: string, bf16: boolean): BackendLimits {
  if (backend === "wasm") {
    const storeBytes = Math.min(MAX_ARENAS * ARENA_WEIGHT_BYTES, os.totalmem());
    return { backend, ceilingBytes: WASM_HEAP_BYTES, bf16, packedCopy: true, storeBytes };
  }
  return {
    backend,
    ceilingBytes: backend === "cpu" || backend === "tensorflow" ? os.totalmem() : Infinity,
    bf16,
    packedCopy: false,
  };
}

/** Rows the KV cache allocates for `context` tokens: the prompt's length (at least 64), doubled until enough. */
export function kvCapacity(promptLength: number, contextLength: number): number {
  let cap = Math.max(promptLength, 64);
  while (cap < contextLength) cap *= 2;
  return cap;
}

/**
 * Bytes of one prefill of `p` tokens: the decoder runs one tidy per layer, so one layer's intermediates
 * (projections, rope, the per-group attention scores kept until the layer ends, the MLP) plus the mask,
 * the hidden states between layers and one row of logits.
 */
export function activationBytes(s: ModelShape, p: number): number {
  const projections = 8 * s.hidden + 5 * s.intermediate + 6 * s.heads * s.headDim + 8 * s.kvHeads * s.headDim;
  const attentionScores = 4 * s.heads * p * p; // scores, scaled, masked, softmax per query head
  return 4 * (p * projections + attentionScores + p * p + 2 * s.vocab);
}

/** Weights, those of them in the weight store, and the backend's copy, in one storage (bf16 / int8 pack the packable weights). */
function weightBytes(weights: WeightEntry[], storage: PlannedStorage, limits: BackendLimits): [number, number, number] {
  let bytes = 0;
  let stored = 0;
  let copy = 0;
  for (const w of weights) {
    // fp8: the weights FP8 storage keeps, and the others packed bf16 where that is exact (BF16), else float32
    const packed =
      storage === "fp8"
        ? w.packable && (w.fp8Bytes !== undefined || w.storedDtype === "BF16")
        : storage !== "f32" && w.packable;
    const b = !packed
      ? w.numel * 4
      : storage === "int8"
        ? (w.int8Bytes ?? (w.numel * 9) / 8)
        : storage === "fp8"
          ? (w.fp8Bytes ?? w.numel * 2)
          : w.numel * 2;
    bytes += b;
    if (packed) stored += b;
    if (!packed && w.matmul && limits.packedCopy) copy += w.numel * 4;
  }
  return [bytes, stored, copy];
}

function planFor(
  req: PlanRequest,
  storage: PlannedStorage,
  limits: BackendLimits,
  reason: string,
  context = req.contextLength,
): MemoryPlan {
  const { shape: s } = req;
  const prompt = Math.min(Math.max(req.promptLength, MIN_PROMPT), context);
  const [weights, stored, copy] = weightBytes(req.weights, storage, limits);
  const kv = 2 * s.numLayers * s.kvHeads * kvCapacity(prompt, context) * s.headDim * 4;
  const act = activationBytes(s, prompt);
  const rounded = storage === "bf16" ? req.weights.filter((w) => w.packable && w.storedDtype !== "BF16").length : 0;
  return {
    backend: limits.backend,
    storage,
    roundedWeights: rounded,
    reason,
    contextLength: context,
    promptLength: prompt,
    weightBytes: weights,
    storedWeightBytes: stored,
    backendCopyBytes: copy,
    kvCacheBytes: kv,
    activationBytes: act,
    reserveBytes: RESERVE_BYTES,
    totalBytes: weights + copy + kv + act + RESERVE_BYTES,
    ceilingBytes: limits.ceilingBytes,
    storeBytes: limits.storeBytes,
  };
}

/** What the backend's own memory holds: everything, or everything but the stored weights when the store is apart. */
const heapBytes = (p: MemoryPlan) => p.totalBytes - (p.storeBytes === undefined ? 0 : p.storedWeightBytes);

const fits = (p: MemoryPlan) =>
  heapBytes(p) <= p.ceilingBytes && (p.storeBytes === undefined || p.storedWeightBytes <= p.storeBytes);

/** The storage "auto" picks, before the context is considered. */
function autoStorage(req: PlanRequest, limits: BackendLimits): [storage: "f32" | "bf16" | "fp8", reason: string] {
  const packable = req.weights.filter((w) => w.packable);
  if (!limits.bf16) return ["f32", `the ${limits.backend} backend has no bf16 kernels`];
  if (packable.some((w) => w.fp8Bytes !== undefined))
    return ["fp8", "the checkpoint is FP8: its codes and block scales are kept as stored"];
  if (packable.length && packable.every((w) => w.storedDtype === "BF16"))
    return ["bf16", "the checkpoint is BF16: packed bf16 is exact"];
  if (fits(planFor(req, "f32", limits, ""))) return ["f32", "float32 fits"];
  return ["bf16", `float32 would not fit the ${limits.backend} backend's memory: weights rounded to bf16`];
}

/**
 * Plans a load in `requested` storage (resolving "auto"). A context that was not asked for explicitly
 * shrinks by halves until the plan fits; otherwise a plan that does not fit is a MemoryPlanError naming
 * the numbers and what would fit.
 */
export function planMemory(req: PlanRequest, requested: WeightStorageChoice, limits: BackendLimits): MemoryPlan {
  if (!WEIGHT_STORAGE_CHOICES.includes(requested)) {
    throw new WeightStorageError(
      `unknown weightStorage "${String(requested)}" (use ${WEIGHT_STORAGE_CHOICES.map((c) => `"${c}"`).join(", ")})`,
    );
  }
  if (requested === "fp8" && !req.weights.some((w) => w.packable && w.fp8Bytes !== undefined))
    throw new WeightStorageError(
      `fp8 weight storage keeps an FP8 checkpoint's weights as stored; this checkpoint has none the FP8 kernels take`,
    );
  if ((requested === "bf16" || requested === "int8" || requested === "fp8") && !limits.bf16) {
    throw new WeightStorageError(
      `${requested} weight storage has kernels for the wasm and cpu backends only, not "${limits.backend}"`,
    );
  }
  const [storage, reason] = requested === "auto" ? autoStorage(req, limits) : [requested, "asked for"];
  let plan = planFor(req, storage, limits, reason);
  while (!fits(plan) && !req.contextExplicit && plan.contextLength / 2 >= MIN_CONTEXT) {
    plan = planFor(req, storage, limits, reason, plan.contextLength / 2);
  }
  if (!fits(plan)) throw new MemoryPlanError(explainMisfit(req, planFor(req, storage, limits, reason), limits));
  return plan;
}

const gib = (n: number) => `${(n / 2 ** 30).toFixed(2)} GiB`;

/** The numbers of a plan, for messages and notes. */
export function describePlan(p: MemoryPlan): string {
  const copy = p.backendCopyBytes ? ` + backend copy ${gib(p.backendCopyBytes)}` : "";
  const apart = p.storeBytes !== undefined && p.storedWeightBytes > 0;
  const weights = apart
    ? `${p.storage} weights ${gib(p.storedWeightBytes)} in the weight store (room: ${gib(p.storeBytes!)}); in the ` +
      `heap: weights ${gib(p.weightBytes - p.storedWeightBytes)}`
    : `${p.storage} weights ${gib(p.weightBytes)}`;
  return (
    `${weights}${copy} + KV cache ${gib(p.kvCacheBytes)} (${p.contextLength} tokens) + ` +
    `activations ${gib(p.activationBytes)} (${p.promptLength}-token prefill) + reserve ${gib(p.reserveBytes)} = ` +
    `${gib(heapBytes(p))} of ${Number.isFinite(p.ceilingBytes) ? gib(p.ceilingBytes) : "unbounded"} (${p.backend})`
  );
}

/** Longest context (a power of two ≥ 256, or none) that fits in `storage`. */
function longestContext(req: PlanRequest, storage: PlannedStorage, limits: BackendLimits): number | undefined {
  for (let c = 2 ** Math.floor(Math.log2(Math.max(req.contextLength, MIN_CONTEXT))); c >= MIN_CONTEXT; c /= 2) {
    if (fits(planFor(req, storage, limits, "", c))) return c;
  }
  return undefined;
}

function explainMisfit(req: PlanRequest, plan: MemoryPlan, limits: BackendLimits): string {
  const options: string[] = [];
  if (plan.storage === "f32" && limits.bf16) {
    const bf16 = planFor(req, "bf16", limits, "");
    if (fits(bf16)) options.push(`weightStorage "bf16" (${gib(bf16.totalBytes)})`);
  }
  if (plan.storage !== "int8" && limits.bf16) {
    const int8 = planFor(req, "int8", limits, "");
    if (fits(int8)) options.push(`weightStorage "int8" (${gib(int8.totalBytes)}, lossy)`);
  }
  for (const storage of plan.storage === "f32" && limits.bf16
    ? (["f32", "bf16"] as const)
    : ([plan.storage] as const)) {
    const c = longestContext(req, storage, limits);
    if (c && c < req.contextLength) options.push(`a context of ${c} tokens in ${storage}`);
  }
  if (limits.backend === "wasm") options.push(`the tensorflow backend (@tensorflow/tfjs-node; no 4 GiB heap)`);
  return `the model does not fit: ${describePlan(plan)}. What would fit: ${options.join("; ") || "nothing on this machine"}`;
}

// ── The plan's inputs, gathered from a built model and its checkpoint ──────────────────────────────────────

const DEFAULT_CONTEXT = 4096;
const DEFAULT_PROMPT = 512;

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
export function weightInventory(
  model: Module,
  reader: CheckpointReader,
  conversions: ConversionRule[],
  fp8?: Fp8QuantizationConfig,
): WeightEntry[] {
  const plan = planConversions(reader.keys(), conversions);
  const sourceOf = new Map<string, string>(plan.direct.map((d) => [d.target, d.source]));
  for (const g of plan.groups) for (const t of g.targets) sourceOf.set(t, g.sources[0][0]);
  const dtypes = new Map<Parameter, StorageDtype>();
  // FP8 storage keeps a weight the checkpoint stores as FP8 and fills as it is, or a row concatenation of such
  const fp8Bytes = new Map<Parameter, number>();
  const keeps = (k: string) => fp8 && keepsFp8(reader.infos.get(k)!, fp8, reader.infos.has(scaleKeyFor(k)));
  const direct = new Set(plan.direct.map((d) => d.target));
  const groupBytes = new Map<string, number>(); // a kept group's target → its sources' FP8 bytes
  for (const g of fp8 ? plan.groups : []) {
    const infoOf = (k: string) => reader.infos.get(k);
    if (fp8ConcatGroup(g, infoOf, (k) => reader.infos.has(scaleKeyFor(k)), fp8!))
      groupBytes.set(
        g.targets[0],
        g.sources.reduce((n, [k]) => n + fp8StorageBytes(infoOf(k)!.shape, fp8!.weight_block_size), 0),
      );
  }
  for (const [name, p] of parameterAliases(model)) {
    const source = sourceOf.get(name);
    if (source && !dtypes.has(p)) dtypes.set(p, reader.infos.get(source)!.dtype);
    if (source && direct.has(name) && keeps(source))
      fp8Bytes.set(p, fp8StorageBytes(p.stateShape, fp8!.weight_block_size));
    if (groupBytes.has(name)) fp8Bytes.set(p, groupBytes.get(name)!);
  }
  const packable = new Set(packableWeights(model).map(([, p]) => p));
  const matmul = new Set(model.namedModules().flatMap(([, m]) => (m instanceof Linear ? [m.weight] : [])));
  return model.namedParameters().map(([name, p]) => ({
    name,
    numel: p.numel,
    storedDtype: plannedDtype(dtypes.get(p)),
    packable: packable.has(p) && dtypes.has(p),
    int8Bytes: p.int8Shape ? p.int8Shape[0] * p.int8Shape[1] * 4 : undefined,
    fp8Bytes: fp8Bytes.get(p),
    matmul: matmul.has(p),
  }));
}

/** FP8 weights load dequantized into bf16 (see fp8.ts): for the plan they are BF16 weights. */
const plannedDtype = (stored: StorageDtype | undefined): StorageDtype =>
  stored?.startsWith("F8_") ? "BF16" : (stored ?? "F32");

/** Plans the load's memory on the active backend (see memory-plan.ts); warns when bf16 storage will round weights. */
export function planMemoryForLoad(
  model: Module,
  reader: CheckpointReader,
  raw: Record<string, unknown>,
  conversions: ConversionRule[],
  options: { contextLength?: number; promptLength?: number; weightStorage?: WeightStorageChoice },
): MemoryPlan {
  const maxPositions = typeof raw.max_position_embeddings === "number" ? raw.max_position_embeddings : DEFAULT_CONTEXT;
  const contextLength = options.contextLength ?? Math.min(maxPositions, DEFAULT_CONTEXT);
  const request = {
    weights: weightInventory(model, reader, conversions, fp8ConfigOf(raw, reader.dir)),
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

/** JS heap one decoder layer's module objects take (measured ~11 KiB for a Qwen3 layer; with a margin). */
const LAYER_OBJECT_BYTES = 16 * 2 ** 10;

/** Parameters a decoder-only config declares (attention, MLP, norms per layer; embeddings and lm_head). */
function declaredParameters(s: ModelShape, tied: boolean): number {
  const attention = s.hidden * s.headDim * (2 * s.heads + 2 * s.kvHeads);
  const layer = attention + 3 * s.hidden * s.intermediate + 2 * s.hidden + 2 * s.headDim;
  return s.numLayers * layer + s.vocab * s.hidden * (tied ? 1 : 2) + s.hidden;
}

/**
 * The plan of a model built from a config alone (`fromConfig`), before anything is built: its float32
 * weights must fit the backend (cpu / tensorflow: the machine's memory) and its layers' module objects the JS
 * heap. A config of `hidden_size: 1e9` or a million layers is a MemoryPlanError, not a RangeError or an
 * hours-long build that ends in an out-of-memory abort.
 */
export function planConfigMemory(raw: Record<string, unknown>, backend: string): void {
  const shape = modelShape(raw);
  const params = declaredParameters(shape, raw.tie_word_embeddings === true);
  const limits = backendLimits(backend, false);
  const ceiling = Number.isFinite(limits.ceilingBytes) ? limits.ceilingBytes : os.totalmem();
  if (params * 4 + RESERVE_BYTES > ceiling) {
    throw new MemoryPlanError(
      `the config declares ${params.toExponential(3)} parameters: ${gib(params * 4)} of float32 weights, ` +
        `more than the ${backend} backend can hold (${gib(ceiling)})`,
    );
  }
  const heap = v8.getHeapStatistics();
  const objects = shape.numLayers * LAYER_OBJECT_BYTES;
  if (objects > heap.heap_size_limit - heap.used_heap_size) {
    throw new MemoryPlanError(
      `the config declares ${shape.numLayers} layers: their modules alone need ~${gib(objects)} of JavaScript heap, ` +
        `more than is free (${gib(heap.heap_size_limit - heap.used_heap_size)})`,
    );
  }
}
