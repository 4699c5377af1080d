// The memory planner: a pure function of the model's weights and shape, the requested
// storage and the backend's limits — its decisions, its numbers and its error, on a small config; and
// fromPretrained's default ("auto") picking bf16 for a BF16 checkpoint and f32 for an F32 one.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  AutoModelForCausalLM,
  MemoryPlanError,
  Qwen3Config,
  WeightStorageError,
  activationBytes,
  kvCapacity,
  planMemory,
  setBackend,
  type BackendLimits,
  type ModelShape,
  type PlanRequest,
  type WeightEntry,
} from "fusekit/internals";
import { rmSync } from "node:fs";
import { tmpDir } from "./helpers/models.js";

const shape: ModelShape = { numLayers: 2, hidden: 16, intermediate: 32, heads: 4, kvHeads: 2, headDim: 8, vocab: 64 };

/** The parameters of a tied Qwen3 of `shape`, written out by hand. */
function weights(dtype: "BF16" | "F32" | "F16"): WeightEntry[] {
  const linear = (name: string, out: number, inp: number): WeightEntry => ({
    name,
    numel: out * inp,
    storedDtype: dtype,
    packable: true,
    matmul: true,
  });
  const norm = (name: string, n: number): WeightEntry => ({
    name,
    numel: n,
    storedDtype: dtype,
    packable: false,
    matmul: false,
  });
  const out: WeightEntry[] = [linear("model.embed_tokens.weight", 64, 16)]; // tied: lm_head reads it in a matmul
  for (let l = 0; l < 2; l++) {
    const p = `model.layers.${l}.`;
    out.push(
      linear(`${p}self_attn.q_proj.weight`, 32, 16),
      linear(`${p}self_attn.k_proj.weight`, 16, 16),
      linear(`${p}self_attn.v_proj.weight`, 16, 16),
    );
    out.push(
      linear(`${p}self_attn.o_proj.weight`, 16, 32),
      norm(`${p}self_attn.q_norm.weight`, 8),
      norm(`${p}self_attn.k_norm.weight`, 8),
    );
    out.push(
      linear(`${p}mlp.gate_proj.weight`, 32, 16),
      linear(`${p}mlp.up_proj.weight`, 32, 16),
      linear(`${p}mlp.down_proj.weight`, 16, 32),
    );
    out.push(norm(`${p}input_layernorm.weight`, 16), norm(`${p}post_attention_layernorm.weight`, 16));
  }
  out.push(norm("model.norm.weight", 16));
  return out;
}
// By hand: embed 1024 + 2 × (512 + 256 + 256 + 512 + 3 × 512) linear elements; 2 × (8 + 8 + 16 + 16) + 16 norm elements.
const LINEAR = 1024 + 2 * (512 + 256 + 256 + 512 + 3 * 512);
const NORMS = 2 * (8 + 8 + 16 + 16) + 16;

const request = (dtype: "BF16" | "F32" | "F16", extra: Partial<PlanRequest> = {}): PlanRequest => ({
  weights: weights(dtype),
  shape,
  contextLength: 100,
  promptLength: 10,
  ...extra,
});
const wasm = (ceilingBytes: number): BackendLimits => ({ backend: "wasm", ceilingBytes, bf16: true, packedCopy: true });
const roomy = wasm(2 ** 40);

describe("planMemory", () => {
  it("counts weights, XNNPACK's copy, the KV cache and activations as computed by hand", () => {
    const f32 = planMemory(request("F32"), "f32", roomy);
    expect(f32.weightBytes).toBe(4 * (LINEAR + NORMS));
    expect(f32.backendCopyBytes).toBe(4 * LINEAR); // every Linear incl. the tied embedding is a matmul operand
    // prompt 10 is planned as 64 rows; 64 → 128 ≥ 100 tokens; keys + values, 2 layers, 2 kv heads, head_dim 8, float32
    expect(kvCapacity(64, 100)).toBe(128);
    expect(f32.kvCacheBytes).toBe(2 * 2 * 2 * 128 * 8 * 4);
    // one layer at a 64-token prefill: 64 × (8·16 + 5·32 + 6·4·8 + 8·2·8) + 4·4·64² scores + 64² mask + 2·64 logits, × 4 bytes
    expect(activationBytes(shape, 64)).toBe(4 * (64 * 608 + 4 * 4 * 64 * 64 + 64 * 64 + 2 * 64));
    expect(f32.totalBytes).toBe(
      f32.weightBytes + f32.backendCopyBytes + f32.kvCacheBytes + f32.activationBytes + f32.reserveBytes,
    );
    const bf16 = planMemory(request("BF16"), "bf16", roomy);
    expect(bf16.weightBytes).toBe(2 * LINEAR + 4 * NORMS);
    expect(bf16.backendCopyBytes).toBe(0);
    expect(planMemory(request("F32"), "f32", { ...roomy, backend: "cpu", packedCopy: false }).backendCopyBytes).toBe(0);
  });

  it('"auto": bf16 for a BF16 checkpoint, f32 for F32 when it fits, rounded bf16 when it does not', () => {
    const exact = planMemory(request("BF16"), "auto", roomy);
    expect([exact.storage, exact.roundedWeights]).toEqual(["bf16", 0]);
    expect(planMemory(request("F32"), "auto", roomy).storage).toBe("f32");
    const f32Total = planMemory(request("F32"), "f32", roomy).totalBytes;
    const bf16Total = planMemory(request("F16"), "bf16", roomy).totalBytes;
    const between = wasm((f32Total + bf16Total) / 2);
    const rounded = planMemory(request("F16"), "auto", between);
    expect(rounded.storage).toBe("bf16");
    expect(rounded.roundedWeights).toBe(1 + 2 * 7); // every packable weight (embedding + 7 Linears per layer)
    expect(rounded.reason).toMatch(/float32 would not fit/);
    // a backend without bf16 kernels keeps float32 even for a BF16 checkpoint
    expect(planMemory(request("BF16"), "auto", { ...roomy, backend: "tensorflow", bf16: false }).storage).toBe("f32");
  });

  it("shrinks a default context by halves until it fits; an explicit one fails instead", () => {
    const big = request("BF16", { contextLength: 8192, promptLength: 64 });
    const full = planMemory(big, "bf16", roomy);
    const at1024 = planMemory({ ...big, contextLength: 1024 }, "bf16", roomy);
    const limits = wasm(at1024.totalBytes); // room for exactly a 1024-token cache
    expect(full.totalBytes).toBeGreaterThan(limits.ceilingBytes);
    expect(planMemory(big, "bf16", limits).contextLength).toBe(1024);
    expect(() => planMemory({ ...big, contextExplicit: true }, "bf16", limits)).toThrow(MemoryPlanError);
  });

  it("a model that cannot fit is a MemoryPlanError with the numbers and what would fit", () => {
    const req = request("F32", { contextLength: 4096, promptLength: 64, contextExplicit: true });
    const bf16 = planMemory(req, "bf16", roomy);
    const f32 = planMemory(req, "f32", roomy);
    const limits = wasm(bf16.totalBytes + 1);
    expect(f32.totalBytes).toBeGreaterThan(limits.ceilingBytes);
    let err: unknown;
    try {
      planMemory(req, "f32", limits);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(MemoryPlanError);
    const msg = (err as Error).message;
    const gib = (n: number) => `${(n / 2 ** 30).toFixed(2)} GiB`;
    expect(msg).toContain(`f32 weights ${gib(f32.weightBytes)} + backend copy ${gib(f32.backendCopyBytes)}`);
    expect(msg).toContain(`KV cache ${gib(f32.kvCacheBytes)} (4096 tokens)`);
    expect(msg).toContain(`= ${gib(f32.totalBytes)} of ${gib(limits.ceilingBytes)} (wasm)`);
    expect(msg).toContain(`weightStorage "bf16" (${gib(bf16.totalBytes)})`);
    expect(msg).toMatch(/a context of \d+ tokens in f32/);
    expect(msg).toContain("the tensorflow backend");
    // nothing fits at all: says so
    expect(() => planMemory(req, "bf16", wasm(1024))).toThrow(/What would fit: the tensorflow backend/);
    expect(() => planMemory(req, "bf16", { ...wasm(1024), backend: "cpu" })).toThrow(
      /What would fit: nothing on this machine/,
    );
  });

  it("refuses unknown storage names and bf16 on a backend without its kernels", () => {
    expect(() => planMemory(request("F32"), "f16" as never, roomy)).toThrow(WeightStorageError);
    expect(() => planMemory(request("BF16"), "bf16", { ...roomy, backend: "tensorflow", bf16: false })).toThrow(
      WeightStorageError,
    );
  });
});

describe.each(["wasm", "cpu"])("fromPretrained's default weight storage on %s", (backend) => {
  const config = new Qwen3Config({
    vocab_size: 64,
    hidden_size: 16,
    intermediate_size: 32,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    head_dim: 8,
    tie_word_embeddings: true,
  });
  const dirs: Record<string, string> = {};
  beforeAll(async () => {
    await setBackend(backend);
    for (const dtype of ["BF16", "F32"] as const) {
      const model = AutoModelForCausalLM.fromConfig(config, { seed: 3 });
      dirs[dtype] = tmpDir();
      await model.savePretrained(dirs[dtype], { dtype });
      model.dispose();
    }
  });
  afterAll(() => {
    for (const d of Object.values(dirs)) rmSync(d, { recursive: true, force: true });
  });

  it("picks bf16 for a BF16 checkpoint (weights packed) and f32 for an F32 one", async () => {
    const bf16 = await AutoModelForCausalLM.fromPretrained(dirs.BF16);
    const f32 = await AutoModelForCausalLM.fromPretrained(dirs.F32);
    try {
      expect(bf16.memoryPlan!.storage).toBe("bf16");
      expect(bf16.memoryPlan!.weightBytes).toBe(2 * LINEAR + 4 * NORMS);
      expect(bf16.parameters().filter((p) => p.packed).length).toBe(1 + 2 * 7);
      expect(f32.memoryPlan!.storage).toBe("f32");
      expect(f32.memoryPlan!.weightBytes).toBe(4 * (LINEAR + NORMS));
      expect(f32.parameters().some((p) => p.packed)).toBe(false);
    } finally {
      bf16.dispose();
      f32.dispose();
    }
  });
});
