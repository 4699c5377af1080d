// The memory plan of a load, made before a weight byte is read: weights in the chosen storage, the
// backend's own copy of them, the KV cache for the requested context, a prefill's activations and a
// runtime reserve, against the backend's ceiling. It also decides what weightStorage "auto" means.
// A pure function of its inputs (tested directly); `backendLimits` / `weightInventory` gather them.
import os from "node:os";
import { MemoryPlanError, WeightStorageError } from "../errors.js";
import type { StorageDtype } from "../tensor/dtypes.js";

/** "auto": packed bf16 when exact (BF16 checkpoint) or when float32 would not fit; else float32. */
export type WeightStorageChoice = "auto" | "f32" | "bf16";

export const WEIGHT_STORAGE_CHOICES: readonly WeightStorageChoice[] = ["auto", "f32", "bf16"];

/** One parameter as the planner sees it. */
export interface WeightEntry {
  name: string;
  numel: number;
  /** The dtype the checkpoint stores it in. */
  storedDtype: StorageDtype;
  /** A Linear / Embedding weight that bf16 storage packs. */
  packable: boolean;
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
  /** Whether the backend has the packed-bf16 kernels. */
  bf16: boolean;
  /** Whether a float32 matmul weight gets a second, packed copy (XNNPACK on wasm). */
  packedCopy: boolean;
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
  storage: "f32" | "bf16";
  /** Weights that bf16 storage rounds (stored as something other than BF16); 0 when exact. */
  roundedWeights: number;
  /** Why this storage was chosen. */
  reason: string;
  contextLength: number;
  promptLength: number;
  weightBytes: number;
  backendCopyBytes: number;
  kvCacheBytes: number;
  activationBytes: number;
  reserveBytes: number;
  totalBytes: number;
  ceilingBytes: number;
}

/** tfjs-backend-wasm's heap maximum (emscripten's getHeapMax: 4 GiB less one 64 KiB page). */
export const WASM_HEAP_BYTES = 4 * 2 ** 30 - 2 ** 16;
/** tfjs's own runtime, the heap's static data and allocator slack. */
export const RESERVE_BYTES = 96 * 2 ** 20;
/** Prefills shorter than this are planned as this long (a chat prompt with a template is rarely shorter). */
const MIN_PROMPT = 64;
/** A context that is not explicit shrinks down to this before the plan gives up. */
const MIN_CONTEXT = 256;

/** What the active backend can hold: wasm's heap; cpu / tensorflow are bounded by the machine's memory. */
export function backendLimits(backend: string, bf16: boolean): BackendLimits {
  if (backend === "wasm") return { backend, ceilingBytes: WASM_HEAP_BYTES, bf16, packedCopy: true };
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

/** Weights, the backend's copy and the total in one storage (bf16 packs the packable weights). */
function weightBytes(weights: WeightEntry[], storage: "f32" | "bf16", limits: BackendLimits): [number, number] {
  let bytes = 0;
  let copy = 0;
  for (const w of weights) {
    const packed = storage === "bf16" && w.packable;
    bytes += w.numel * (packed ? 2 : 4);
    if (!packed && w.matmul && limits.packedCopy) copy += w.numel * 4;
  }
  return [bytes, copy];
}

function planFor(
  req: PlanRequest,
  storage: "f32" | "bf16",
  limits: BackendLimits,
  reason: string,
  context = req.contextLength,
): MemoryPlan {
  const { shape: s } = req;
  const prompt = Math.min(Math.max(req.promptLength, MIN_PROMPT), context);
  const [weights, copy] = weightBytes(req.weights, storage, limits);
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
    backendCopyBytes: copy,
    kvCacheBytes: kv,
    activationBytes: act,
    reserveBytes: RESERVE_BYTES,
    totalBytes: weights + copy + kv + act + RESERVE_BYTES,
    ceilingBytes: limits.ceilingBytes,
  };
}

const fits = (p: MemoryPlan) => p.totalBytes <= p.ceilingBytes;

/** The storage "auto" picks, before the context is considered. */
function autoStorage(req: PlanRequest, limits: BackendLimits): [storage: "f32" | "bf16", reason: string] {
  const packable = req.weights.filter((w) => w.packable);
  if (!limits.bf16) return ["f32", `the ${limits.backend} backend has no bf16 kernels`];
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
  if (requested === "bf16" && !limits.bf16) {
    throw new WeightStorageError(
      `bf16 weight storage has kernels for the wasm and cpu backends only, not "${limits.backend}"`,
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
  return (
    `${p.storage} weights ${gib(p.weightBytes)}${copy} + KV cache ${gib(p.kvCacheBytes)} (${p.contextLength} tokens) + ` +
    `activations ${gib(p.activationBytes)} (${p.promptLength}-token prefill) + reserve ${gib(p.reserveBytes)} = ` +
    `${gib(p.totalBytes)} of ${Number.isFinite(p.ceilingBytes) ? gib(p.ceilingBytes) : "unbounded"} (${p.backend})`
  );
}

/** Longest context (a power of two ≥ 256, or none) that fits in `storage`. */
function longestContext(req: PlanRequest, storage: "f32" | "bf16", limits: BackendLimits): number | undefined {
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
  for (const storage of plan.storage === "f32" && limits.bf16
    ? (["f32", "bf16"] as const)
    : ([plan.storage] as const)) {
    const c = longestContext(req, storage, limits);
    if (c && c < req.contextLength) options.push(`a context of ${c} tokens in ${storage}`);
  }
  if (limits.backend === "wasm") options.push(`the tensorflow backend (@tensorflow/tfjs-node; no 4 GiB heap)`);
  return `the model does not fit: ${describePlan(plan)}. What would fit: ${options.join("; ") || "nothing on this machine"}`;
}
