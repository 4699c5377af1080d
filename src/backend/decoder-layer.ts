// A whole decoder layer at decode (one new token of one sequence) as one pool job on every core:
//   input norm → q/k/v (+bias) → per head: q/k norm → RoPE → KV append → attention over the cache → o_proj
//   (+bias) + residual → post norm → gate/up → SiLU·mul → down (+bias) + residual.
// The job runs in five phases split among the threads (the matvecs by output columns, attention by KV head),
// the workers staying in the job between them; the few hundred serial floats between phases (norms, biases,
// residuals, SiLU·mul) run on this thread meanwhile. Weights are the pool's packed bf16 copies; the layer's
// keys and values live in the pool's heap (src/backend/pool-kv.ts). Every value is rounded as the per-op path
// rounds it — the same matvec kernel per output, the unfused ops' norm, RoPE and softmax, the backend's own
// Sigmoid — so the layer's output equals the unfused modules' bit for bit. Anything else (prefill, a batch,
// a padding mask, float32 weights, no pool) returns undefined: the caller runs the layer's own forward.
import { tf } from "../tensor/tf.js";
import { rmsNormRows } from "../tensor/host.js";
import type { WasmBackend } from "./heap.js";
import { kernelPool, type KernelPool } from "./pool.js";
import type { PoolKV } from "./pool-kv.js";
import { HEADS_DESC, MATVEC_LIST, OPS, attendKvHeads, matvecSpan } from "./worker.js";

/** A Linear as the kernel reads it: its packed bf16 weight `[out, in/2]` and optional bias. */
interface LinearParts {
  weight: { packed: boolean; packedTensor: tf.Tensor; tensor: tf.Tensor };
  bias?: { tensor: tf.Tensor };
  inFeatures: number;
  outFeatures: number;
}
interface NormParts {
  weight: { tensor: tf.Tensor };
  eps: number;
}

/** What the kernel needs of the KV cache (src/cache/dynamic-cache.ts): a layer's length and its rows in the pool. */
export interface PoolCache {
  getSeqLength(layerIdx: number): number;
  poolLayer(layerIdx: number, pool: KernelPool, kvHeads: number, d: number, rows: number): PoolKV | undefined;
}

/** The decoder layer's structure the kernel reads (transformers' names; merged qkv / gate_up layouts too). */
export interface DecoderLayerLike {
  input_layernorm: unknown;
  post_attention_layernorm: unknown;
  self_attn: {
    layerIdx: number;
    numHeads: number;
    numKeyValueHeads: number;
    headDim: number;
    scaling: number;
    q_proj?: unknown;
    k_proj?: unknown;
    v_proj?: unknown;
    qkv_proj?: unknown;
    o_proj: unknown;
    q_norm?: unknown;
    k_norm?: unknown;
  };
  mlp: { gate_proj?: unknown; up_proj?: unknown; gate_up_proj?: unknown; down_proj: unknown };
}

interface Plan {
  h: number;
  heads: number;
  kvHeads: number;
  d: number;
  inter: number;
  qkv: LinearParts[];
  o: LinearParts;
  gateUp: LinearParts[];
  down: LinearParts;
  norms: { input: NormParts; post: NormParts; q?: NormParts; k?: NormParts };
}

const isLinear = (m: unknown): m is LinearParts =>
  typeof m === "object" && m !== null && typeof (m as LinearParts).weight?.packed === "boolean";
const isNorm = (m: unknown): m is NormParts =>
  typeof m === "object" && m !== null && typeof (m as NormParts).eps === "number" && "weight" in m;

/** The layer's parts, when it has the standard structure with packed bf16 weights of kernel-friendly sizes. */
function planOf(layer: DecoderLayerLike): Plan | undefined {
  const a = layer.self_attn;
  const mlp = layer.mlp;
  if (!a || !mlp) return undefined;
  const qkv = isLinear(a.qkv_proj) ? [a.qkv_proj] : [a.q_proj, a.k_proj, a.v_proj];
  const gateUp = isLinear(mlp.gate_up_proj) ? [mlp.gate_up_proj] : [mlp.gate_proj, mlp.up_proj];
  const linears = [...qkv, a.o_proj, ...gateUp, mlp.down_proj];
  if (!linears.every(isLinear) || !linears.every((l) => l.weight.packed)) return undefined;
  const [input, post] = [layer.input_layernorm, layer.post_attention_layernorm];
  if (!isNorm(input) || !isNorm(post) || (a.q_norm && !isNorm(a.q_norm)) || (a.k_norm && !isNorm(a.k_norm)))
    return undefined;
  const { numHeads: heads, numKeyValueHeads: kvHeads, headDim: d } = a;
  const h = (a.o_proj as LinearParts).outFeatures;
  const down = mlp.down_proj as LinearParts;
  const inter = down.inFeatures;
  const sizes = [h, inter, ...linears.map((l) => l.outFeatures)];
  if (sizes.some((n) => n % 8) || d % 4 || heads % kvHeads) return undefined; // the matvec's and dots' blocks
  return {
    h,
    heads,
    kvHeads,
    d,
    inter,
    qkv: qkv as LinearParts[],
    o: a.o_proj as LinearParts,
    gateUp: gateUp as LinearParts[],
    down,
    norms: { input, post, q: a.q_norm as NormParts | undefined, k: a.k_norm as NormParts | undefined },
  };
}

/** Float offsets of the step's buffers in the pool's scratch (each 64-byte aligned), and their total. */
function layout(p: Plan, threads: number, capacity: number) {
  const sizes = {
    x: p.h,
    xn: p.h,
    qkv: (p.heads + 2 * p.kvHeads) * p.d,
    attn: p.heads * p.d,
    h1: p.h,
    h1n: p.h,
    gu: 2 * p.inter,
    act: p.inter,
    out: p.h,
    cos: p.d,
    sin: p.d,
    qNorm: p.d,
    kNorm: p.d,
    lists: 4 * LIST_WORDS,
    heads: HEADS_DESC.WORDS,
    threads: threads * (2 * p.d + capacity + 1), // attendKvHeads' per-thread scratch
  };
  const at = {} as Record<keyof typeof sizes, number>;
  let floats = 0;
  for (const [k, n] of Object.entries(sizes)) {
    at[k as keyof typeof sizes] = floats;
    floats += Math.ceil(n / 16) * 16;
  }
  return { at, floats };
}

let steps = 0;
/** Decode steps the kernel has run on the pool so far (every layer counts; tests use it to see it ran). */
export const decoderLayerSteps = () => steps;

/** Words of one MATVECS list (up to three matrices). */
const LIST_WORDS = MATVEC_LIST.FIRST + 3 * MATVEC_LIST.STRIDE;

/**
 * The layer's output for one new token `x` [1, 1, h] at the cache's next position, computed on the kernel
 * pool; undefined when this step is not one the kernel takes (the caller then runs the layer's own forward).
 */
export function decoderLayerStep(
  layer: DecoderLayerLike,
  x: tf.Tensor,
  [cos, sin]: readonly [tf.Tensor, tf.Tensor],
  attentionMask: tf.Tensor | undefined,
  cache: PoolCache | undefined,
): tf.Tensor | undefined {
  if (attentionMask || !cache || tf.getBackend() !== "wasm" || x.shape.length !== 3) return undefined;
  if (x.shape[0] !== 1 || x.shape[1] !== 1) return undefined;
  const plan = planOf(layer);
  const pool = kernelPool();
  if (!plan || x.shape[2] !== plan.h || !pool?.workersStarted()) return undefined;
  const b = tf.backend() as unknown as WasmBackend;
  const linears = [...plan.qkv, plan.o, ...plan.gateUp, plan.down];
  const weights = linears.map((l) => pool.weightAt(b, l.weight.packedTensor, l.outFeatures, l.inFeatures));
  const layerIdx = layer.self_attn.layerIdx;
  const T = cache.getSeqLength(layerIdx);
  const kv = weights.includes(undefined) ? undefined : cache.poolLayer(layerIdx, pool, plan.kvHeads, plan.d, T + 1);
  if (!kv) return undefined;
  const { at, floats } = layout(plan, pool.threads, kv.capacity);
  const base = pool.scratchAt(4 * floats);
  if (base === undefined) return undefined;
  const memory = pool.heap.memory;
  const view = () => new Float32Array(memory.buffer, base, floats); // fresh: the heap may grow
  const ptr = (k: keyof typeof at) => base + 4 * at[k];
  const tfData = (t: tf.Tensor) => b.typedArrayFromHeap(t as unknown as tf.TensorInfo);
  const { h, d, inter } = plan;

  const matvecs = (slot: number, x: number, n: number, ls: LinearParts[], first: number, y: number) => {
    const desc = ptr("lists") + 4 * LIST_WORDS * slot;
    const w = new Int32Array(memory.buffer, desc, LIST_WORDS);
    [w[MATVEC_LIST.COUNT], w[MATVEC_LIST.X], w[MATVEC_LIST.N]] = [ls.length, x, n];
    ls.forEach((l, i) => {
      const e = MATVEC_LIST.FIRST + MATVEC_LIST.STRIDE * i;
      w[e + MATVEC_LIST.W] = weights[first + i]!;
      w[e + MATVEC_LIST.Y] = y;
      w[e + MATVEC_LIST.M] = l.outFeatures;
      w[e + MATVEC_LIST.IL] = 1; // every size is a multiple of 8: the pool stored them interleaved
      y += 4 * l.outFeatures;
    });
    const m = ls.reduce((s, l) => s + l.outFeatures, 0);
    pool.dispatch(OPS.MATVECS, desc, m, 8, (o0, o1) => matvecSpan(pool.main, memory, desc, o0, o1));
  };

  // the inputs and the input norm
  let f = view();
  f.set(tfData(x), at.x);
  f.set(tfData(cos), at.cos);
  f.set(tfData(sin), at.sin);
  if (plan.norms.q) f.set(tfData(plan.norms.q.weight.tensor), at.qNorm);
  if (plan.norms.k) f.set(tfData(plan.norms.k.weight.tensor), at.kNorm);
  norm(f, at.x, plan.norms.input, at.xn, h, tfData);

  // 1. q, k, v (+ biases)
  matvecs(0, ptr("xn"), h, plan.qkv, 0, ptr("qkv"));
  addBiases(view(), at.qkv, plan.qkv, tfData);

  // 2. attention by KV head; this token's keys / values go to row T of the pool's cache
  const desc = ptr("heads");
  const hw = new Int32Array(memory.buffer, desc, HEADS_DESC.WORDS);
  const hf = new Float32Array(memory.buffer, desc, HEADS_DESC.WORDS);
  hw[HEADS_DESC.QKV] = ptr("qkv");
  hw[HEADS_DESC.HEADS] = plan.heads;
  hw[HEADS_DESC.KV_HEADS] = plan.kvHeads;
  hw[HEADS_DESC.D] = d;
  hw[HEADS_DESC.T] = T;
  hw[HEADS_DESC.K] = kv.keys;
  hw[HEADS_DESC.V] = kv.values;
  hw[HEADS_DESC.CAP] = kv.capacity;
  hw[HEADS_DESC.Q_NORM] = plan.norms.q ? ptr("qNorm") : 0;
  hw[HEADS_DESC.K_NORM] = plan.norms.k ? ptr("kNorm") : 0;
  hf[HEADS_DESC.EPS] = plan.norms.q?.eps ?? plan.norms.k?.eps ?? 0;
  hw[HEADS_DESC.COS] = ptr("cos");
  hw[HEADS_DESC.SIN] = ptr("sin");
  hw[HEADS_DESC.OUT] = ptr("attn");
  hw[HEADS_DESC.SCRATCH] = ptr("threads");
  hf[HEADS_DESC.SCALE] = layer.self_attn.scaling;
  pool.dispatch(OPS.HEADS, desc, plan.kvHeads, 1, (j0, j1) => attendKvHeads(pool.main, memory, desc, j0, j1, 0));
  kv.length = T + 1;

  // 3. o_proj (+ bias) + residual, then the post norm
  matvecs(1, ptr("attn"), plan.heads * d, [plan.o], plan.qkv.length, ptr("out"));
  f = view();
  addBiases(f, at.out, [plan.o], tfData);
  for (let i = 0; i < h; i++) f[at.h1 + i] = f[at.x + i] + f[at.out + i];
  norm(f, at.h1, plan.norms.post, at.h1n, h, tfData);

  // 4. gate / up (+ biases), then SiLU(gate)·up with the backend's own Sigmoid
  matvecs(2, ptr("h1n"), h, plan.gateUp, plan.qkv.length + 1, ptr("gu"));
  addBiases(view(), at.gu, plan.gateUp, tfData);
  const sigmoid = backendSigmoid(b, view().subarray(at.gu, at.gu + inter));
  f = view();
  for (let i = 0; i < inter; i++) f[at.act + i] = Math.fround(f[at.gu + i] * sigmoid[i]) * f[at.gu + inter + i];

  // 5. down (+ bias) + residual
  matvecs(3, ptr("act"), inter, [plan.down], linears.length - 1, ptr("out"));
  f = view();
  addBiases(f, at.out, [plan.down], tfData);
  const out = new Float32Array(h);
  for (let i = 0; i < h; i++) out[i] = f[at.h1 + i] + f[at.out + i];
  steps++;
  return tf.tensor3d(out, [1, 1, h]);
}

/** The norm of the h floats at `from` into `to`, rounded as the wasm backend's ops round it. */
function norm(f: Float32Array, from: number, n: NormParts, to: number, h: number, tfData: (t: tf.Tensor) => Float32Array) {
  rmsNormRows(f.subarray(from, from + h), tfData(n.weight.tensor), f.subarray(to, to + h), 1, h, n.eps, "wasm");
}

/** y += bias for each Linear's part of the concatenated outputs at `from` (float32 adds, as tf.add). */
function addBiases(f: Float32Array, from: number, ls: LinearParts[], tfData: (t: tf.Tensor) => Float32Array) {
  for (const l of ls) {
    if (l.bias) {
      const bias = tfData(l.bias.tensor);
      for (let i = 0; i < l.outFeatures; i++) f[from + i] += bias[i];
    }
    from += l.outFeatures;
  }
}

/** sigmoid(g) by the wasm backend's own Sigmoid kernel (its approximation is what the unfused SiLU uses). */
function backendSigmoid(b: WasmBackend, g: Float32Array): Float32Array {
  const input = b.makeOutput([g.length], "float32");
  b.typedArrayFromHeap(input).set(g);
  const kernel = tf.getKernel("Sigmoid", "wasm")!.kernelFunc;
  const out = kernel({ inputs: { x: input }, backend: b as never, attrs: {} }) as tf.TensorInfo;
  const values = b.typedArrayFromHeap(out).slice();
  b.disposeData(input.dataId);
  b.disposeData(out.dataId);
  return values;
}
