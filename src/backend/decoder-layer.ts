// A whole decoder layer at decode (one new token of one sequence) as one pool job on every core:
//   input norm → q/k/v (+bias) → per head: q/k norm → RoPE → KV append → attention over the cache → o_proj
//   (+bias) + residual → post norm → gate/up → SiLU·mul → down (+bias) + residual.
// The job runs in five phases split among the threads (the matvecs by output columns, attention by KV head),
// the workers staying in the job between them; the few hundred serial floats between phases (norms, biases,
// residuals, SiLU·mul) run on this thread meanwhile. Weights are read in place in the weight store (packed bf16,
// 8-bit or FP8 blocks, all in one arena); the layer's keys and values live in that arena (src/backend/pool-kv.ts). Every value is rounded
// as the per-op path rounds it — the same matvec kernel per output (an 8-bit one's input quantized as it does), the unfused ops' norm, RoPE and softmax, the backend's own
// Sigmoid — so the layer's output equals the unfused modules' bit for bit. Anything else (prefill, a batch,
// a padding mask, float32 weights, no pool) returns undefined: the caller runs the layer's own forward.
import { tf } from "../tensor/tf.js";
import { rmsNormRows } from "../tensor/host.js";
import type { WasmBackend } from "./heap.js";
import { kernelPool, type KernelPool } from "./pool.js";
import type { PoolKV } from "./pool-kv.js";
import type { Arena, StoredWeight } from "./weight-store.js";
import { HEADS_DESC, MATVEC_LIST, OPS, attendKvHeads, matvecSpan } from "./worker.js";

/** A Linear as the kernel reads it: its packed bf16 weight `[out, in/2]`, 8-bit blocks or FP8 blocks, and optional bias. */
interface LinearParts {
  weight: {
    packed: boolean;
    packedWeight: StoredWeight;
    quantized?: boolean;
    int8Weight?: StoredWeight;
    fp8?: boolean;
    fp8Weight?: StoredWeight;
  };
  bias?: { tensor: tf.Tensor };
  inFeatures: number;
  outFeatures: number;
}
interface NormParts {
  weight: { tensor: tf.Tensor };
  eps: number;
}

/** What the kernel needs of the KV cache (src/cache/dynamic-cache.ts): a layer's length and its rows in an arena. */
export interface PoolCache {
  getSeqLength(layerIdx: number): number;
  poolLayer(layerIdx: number, arena: Arena, kvHeads: number, d: number, rows: number): PoolKV | undefined;
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
  if (!linears.every(isLinear) || !linears.every((l) => l.weight.packed || l.weight.quantized || l.weight.fp8))
    return undefined;
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
function layout(p: Plan, threads: number, capacity: number, qxBytes: number) {
  const sizes = {
    qx: Math.ceil(qxBytes / 4), // a phase's input quantized per block, for 8-bit matrices
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
    fp8: 4 * 7, // an FP8 matrix's descriptor (codes, scales, br, bc) per Linear
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
  positionEmbeddings: readonly [tf.Tensor, tf.Tensor],
  attentionMask: tf.Tensor | undefined,
  cache: PoolCache | undefined,
): tf.Tensor | undefined {
  if (attentionMask || !cache || tf.getBackend() !== "wasm" || x.shape.length !== 3) return undefined;
  if (x.shape[0] !== 1 || x.shape[1] !== 1) return undefined;
  const plan = planOf(layer);
  const pool = kernelPool();
  if (!plan || x.shape[2] !== plan.h || pool.threads < 2 || !pool.workersStarted()) return undefined;
  const b = tf.backend() as unknown as WasmBackend;
  const linears = [...plan.qkv, plan.o, ...plan.gateUp, plan.down];
  const stored = linears.map((l) =>
    l.weight.packed ? l.weight.packedWeight : l.weight.quantized ? l.weight.int8Weight! : l.weight.fp8Weight!,
  );
  const arena = stored[0].arena;
  if (stored.some((w) => w.arena !== arena)) return undefined; // a layer split between arenas: per-op
  const layerIdx = layer.self_attn.layerIdx;
  const position = cache.getSeqLength(layerIdx);
  const kv = cache.poolLayer(layerIdx, arena, plan.kvHeads, plan.d, position + 1);
  const qxBytes = arena.main.i8QxBytes(1, Math.max(plan.h, plan.inter, plan.heads * plan.d));
  const { at, floats } = layout(plan, pool.threads, kv?.capacity ?? 0, qxBytes);
  const base = kv && arena.scratchAt(4 * floats);
  if (!kv || base === undefined) return undefined;
  // a MATVECS entry names an FP8 matrix by its descriptor (worker.ts MATVEC_LIST, KIND 3)
  const weights = stored.map((w, i) => {
    if (w.kind !== "fp8") return w.at;
    const desc = base + 4 * (at.fp8 + 4 * i);
    new Int32Array(arena.memory.buffer, desc, 4).set([w.at, w.scales!.at, w.scales!.block[0], w.scales!.block[1]]);
    return desc;
  });
  const job = new LayerJob(pool, arena, b, plan, weights, at, base, floats);
  const out = job.run(x, positionEmbeddings, kv, position, layer.self_attn.scaling);
  steps++;
  return out;
}

/** One step's job: its buffers in the arena's scratch, and the phases that fill them. */
class LayerJob {
  private readonly memory: { readonly buffer: ArrayBufferLike };

  constructor(
    private readonly pool: KernelPool,
    private readonly arena: Arena,
    private readonly b: WasmBackend,
    private readonly plan: Plan,
    private readonly weights: number[],
    private readonly at: ReturnType<typeof layout>["at"],
    private readonly base: number,
    private readonly floats: number,
  ) {
    this.memory = arena.memory;
  }

  run(x: tf.Tensor, [cos, sin]: readonly [tf.Tensor, tf.Tensor], kv: PoolKV, position: number, scale: number) {
    const { plan, at } = this;
    const { h, inter } = plan;
    const nQkv = plan.qkv.length;
    let f = this.view();
    f.set(this.tfData(x), at.x);
    f.set(this.tfData(cos), at.cos);
    f.set(this.tfData(sin), at.sin);
    if (plan.norms.q) f.set(this.tfData(plan.norms.q.weight.tensor), at.qNorm);
    if (plan.norms.k) f.set(this.tfData(plan.norms.k.weight.tensor), at.kNorm);
    this.norm(f, at.x, plan.norms.input, at.xn);
    // 1. q, k, v (+ biases)
    this.matvecs(0, "xn", h, plan.qkv, 0, "qkv");
    this.addBiases(at.qkv, plan.qkv);
    // 2. attention by KV head; this token's keys / values go to row `position` of the pool's cache
    this.attend(kv, position, scale);
    kv.length = position + 1;
    // 3. o_proj (+ bias) + residual, then the post norm
    this.matvecs(1, "attn", plan.heads * plan.d, [plan.o], nQkv, "out");
    f = this.addBiases(at.out, [plan.o]);
    for (let i = 0; i < h; i++) f[at.h1 + i] = f[at.x + i] + f[at.out + i];
    this.norm(f, at.h1, plan.norms.post, at.h1n);
    // 4. gate / up (+ biases), then SiLU(gate)·up with the backend's own Sigmoid
    this.matvecs(2, "h1n", h, plan.gateUp, nQkv + 1, "gu");
    const gate = this.addBiases(at.gu, plan.gateUp).subarray(at.gu, at.gu + inter);
    const sigmoid = backendSigmoid(this.b, gate);
    f = this.view();
    for (let i = 0; i < inter; i++) f[at.act + i] = Math.fround(f[at.gu + i] * sigmoid[i]) * f[at.gu + inter + i];
    // 5. down (+ bias) + residual
    this.matvecs(3, "act", inter, [plan.down], this.weights.length - 1, "out");
    f = this.addBiases(at.out, [plan.down]);
    const out = new Float32Array(h);
    for (let i = 0; i < h; i++) out[i] = f[at.h1 + i] + f[at.out + i];
    return tf.tensor3d(out, [1, 1, h]);
  }

  /** y = x · Wᵀ for the listed Linears (outputs concatenated at `y`), split by output columns. */
  private matvecs(slot: number, x: Slot, n: number, ls: LinearParts[], first: number, y: Slot): void {
    const desc = this.ptr("lists") + 4 * LIST_WORDS * slot;
    const w = new Int32Array(this.memory.buffer, desc, LIST_WORDS);
    [w[MATVEC_LIST.COUNT], w[MATVEC_LIST.X], w[MATVEC_LIST.N]] = [ls.length, this.ptr(x), n];
    w[MATVEC_LIST.QX] = this.ptr("qx");
    // 8-bit matrices read the input quantized per block, once for the phase (as the per-op int8 matmul does)
    if (ls.some((l) => l.weight.quantized)) this.arena.main.i8Quant(this.ptr(x), this.ptr("qx"), 1, n);
    let out = this.ptr(y);
    ls.forEach((l, i) => {
      const e = MATVEC_LIST.FIRST + MATVEC_LIST.STRIDE * i;
      w[e + MATVEC_LIST.W] = this.weights[first + i];
      w[e + MATVEC_LIST.Y] = out;
      w[e + MATVEC_LIST.M] = l.outFeatures;
      // bf16: every size is a multiple of 8, so the store keeps them interleaved (src/tensor/bf16.ts)
      w[e + MATVEC_LIST.KIND] = l.weight.packed ? 1 : l.weight.fp8 ? 3 : 2;
      out += 4 * l.outFeatures;
    });
    const m = ls.reduce((s, l) => s + l.outFeatures, 0);
    const { pool, arena, memory } = this;
    pool.dispatch(OPS.MATVECS, arena, desc, m, 8, Infinity, (o0, o1) => matvecSpan(arena.main, memory, desc, o0, o1));
  }

  /** The attention phase (attendKvHeads), split by KV head. */
  private attend(kv: PoolKV, position: number, scale: number): void {
    const { plan, pool, arena, memory } = this;
    const desc = this.ptr("heads");
    const w = new Int32Array(memory.buffer, desc, HEADS_DESC.WORDS);
    const f = new Float32Array(memory.buffer, desc, HEADS_DESC.WORDS);
    const D = HEADS_DESC;
    [w[D.QKV], w[D.HEADS], w[D.KV_HEADS], w[D.D]] = [this.ptr("qkv"), plan.heads, plan.kvHeads, plan.d];
    [w[D.T], w[D.K], w[D.V], w[D.CAP]] = [position, kv.keys, kv.values, kv.capacity];
    w[D.Q_NORM] = plan.norms.q ? this.ptr("qNorm") : 0;
    w[D.K_NORM] = plan.norms.k ? this.ptr("kNorm") : 0;
    f[D.EPS] = plan.norms.q?.eps ?? plan.norms.k?.eps ?? 0;
    [w[D.COS], w[D.SIN], w[D.OUT], w[D.SCRATCH]] = [
      this.ptr("cos"),
      this.ptr("sin"),
      this.ptr("attn"),
      this.ptr("threads"),
    ];
    f[D.SCALE] = scale;
    pool.dispatch(OPS.HEADS, arena, desc, plan.kvHeads, 1, Infinity, (j0, j1) =>
      attendKvHeads(arena.main, memory, desc, j0, j1, 0),
    );
  }

  /** The norm of the h floats at `from` into `to`, rounded as the wasm backend's ops round it. */
  private norm(f: Float32Array, from: number, n: NormParts, to: number): void {
    const h = this.plan.h;
    rmsNormRows(f.subarray(from, from + h), this.tfData(n.weight.tensor), f.subarray(to, to + h), 1, h, n.eps, "wasm");
  }

  /** y += bias for each Linear's part of the concatenated outputs at `from` (float32 adds, as tf.add). */
  private addBiases(from: number, ls: LinearParts[]): Float32Array {
    const f = this.view();
    for (const l of ls) {
      if (l.bias) {
        const bias = this.tfData(l.bias.tensor);
        for (let i = 0; i < l.outFeatures; i++) f[from + i] += bias[i];
      }
      from += l.outFeatures;
    }
    return f;
  }

  /** The scratch as floats: a fresh view each time (the heap may have grown). */
  private view(): Float32Array {
    return new Float32Array(this.memory.buffer, this.base, this.floats);
  }

  private ptr(k: Slot): number {
    return this.base + 4 * this.at[k];
  }

  private tfData(t: tf.Tensor): Float32Array {
    return this.b.typedArrayFromHeap(t as unknown as tf.TensorInfo);
  }
}

type Slot = keyof ReturnType<typeof layout>["at"];

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
