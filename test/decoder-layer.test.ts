// The DecoderLayer kernel: a decode step of a whole layer as one job on the kernel pool. It rounds every
// value as the per-op layers do, so a kernelized model's logits must equal the original's bit for bit, on
// every family, GQA ratio and cache length (the pool's cache grows past its first capacity here), and
// every step it does not take must fall back to the layer's own forward.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  AutoModelForCausalLM,
  DECODER_LAYER,
  DynamicCache,
  KernelConfigError,
  Mode,
  activeKernel,
  getFusedChains,
  kernelize,
  setBackend,
  setKernelThreads,
  tf,
  type PreTrainedModel,
} from "fusekit/internals";
import { planKernelConfig } from "../src/fusion/kernel-config.js";
import { buildModel } from "../src/loading/registry.js";
import { decoderLayerSteps } from "../src/backend/decoder-layer.js";
import { kernelPool } from "../src/backend/pool.js";
import { savedFamilyModel } from "./helpers/models.js";

const SMALL = {
  vocab_size: 96,
  hidden_size: 64,
  intermediate_size: 96,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  head_dim: 16,
};
const FAMILIES = [
  { family: "qwen3 (q/k norm)", config: { model_type: "qwen3", ...SMALL } },
  { family: "qwen2 (q/k/v biases)", config: { model_type: "qwen2", ...SMALL, tie_word_embeddings: true } },
  {
    family: "llama (attention and MLP biases, llama3 RoPE)",
    config: {
      model_type: "llama",
      ...SMALL,
      attention_bias: true,
      mlp_bias: true,
      rope_scaling: {
        rope_type: "llama3",
        factor: 8,
        low_freq_factor: 1,
        high_freq_factor: 4,
        original_max_position_embeddings: 16,
      },
    },
  },
];

const promptOf = (n: number) => Array.from({ length: n }, (_, i) => (i * 37 + 5) % SMALL.vocab_size);

/**
 * Float32 bits of the last position's logits for each step: `prompt` (one forward), then `steps` greedy
 * tokens one at a time, then (when given) `more` tokens in one forward on the same cache.
 */
function decodeBits(model: PreTrainedModel, prompt: number[], steps: number, more: number[] = []): Uint32Array[] {
  const cache = new DynamicCache();
  const out: Uint32Array[] = [];
  const step = (ids: number[]) => {
    const { logits } = model.forward({ inputIds: [ids], pastKeyValues: cache, useCache: true, logitsToKeep: 1 });
    const v = (logits.dataSync() as Float32Array).slice();
    logits.dispose();
    out.push(new Uint32Array(v.buffer));
    return v.indexOf(Math.max(...v));
  };
  let next = step(prompt);
  for (let s = 0; s < steps; s++) next = step([next]);
  if (more.length) step(more);
  cache.dispose();
  return out;
}

async function loadPair(
  dir: string,
  weightStorage: "bf16" | "int8" = "bf16",
): Promise<[PreTrainedModel, PreTrainedModel]> {
  const original = await AutoModelForCausalLM.fromPretrained(dir, { weightStorage });
  const kernelized = await AutoModelForCausalLM.fromPretrained(dir, { weightStorage });
  DECODER_LAYER.fuse(kernelized);
  await kernelize(kernelized, { mode: Mode.INFERENCE });
  return [original, kernelized];
}

describe("the DecoderLayer kernel on the pool (wasm, bf16)", () => {
  beforeAll(async () => {
    await setBackend("wasm");
    setKernelThreads(2);
  });
  afterAll(() => setKernelThreads());

  it.each(FAMILIES)("$family: every decode step equals the per-op layers bit for bit", async ({ config }) => {
    const dir = await savedFamilyModel(config, { seed: 3, dtype: "BF16" });
    const [original, kernelized] = await loadPair(dir);
    expect(activeKernel(kernelized.namedModules().find(([p]) => p === "model.layers.0")![1])).toBe(
      'DecoderLayer from repo "fusekit/decoder-layer"',
    );
    const before = decoderLayerSteps();
    // a 60-token prompt, then 10 steps: the pool's cache grows past its first 64 rows on the way
    const got = decodeBits(kernelized, promptOf(60), 10);
    expect(decoderLayerSteps() - before).toBe(10 * SMALL.num_hidden_layers);
    expect(got).toEqual(decodeBits(original, promptOf(60), 10));
    original.dispose();
    kernelized.dispose();
  });

  it.each([1, 2, 4, 8])("GQA with %i query heads per KV head", async (group) => {
    const config = { model_type: "qwen3", ...SMALL, num_attention_heads: 8, num_key_value_heads: 8 / group };
    const dir = await savedFamilyModel(config, { seed: 5 + group, dtype: "BF16" });
    const [original, kernelized] = await loadPair(dir);
    const before = decoderLayerSteps();
    const got = decodeBits(kernelized, promptOf(5), 6);
    expect(decoderLayerSteps() - before).toBe(6 * SMALL.num_hidden_layers);
    expect(got).toEqual(decodeBits(original, promptOf(5), 6));
    original.dispose();
    kernelized.dispose();
  });

  it.each(FAMILIES)("$family with 8-bit weights: the same bits as the int8 per-op layers", async ({ config }) => {
    const dir = await savedFamilyModel(config, { seed: 8, dtype: "BF16" });
    const [original, kernelized] = await loadPair(dir, "int8");
    const before = decoderLayerSteps();
    const got = decodeBits(kernelized, promptOf(12), 6);
    expect(decoderLayerSteps() - before).toBe(6 * SMALL.num_hidden_layers);
    expect(got).toEqual(decodeBits(original, promptOf(12), 6));
    original.dispose();
    kernelized.dispose();
  });

  it("a per-op step after kernel steps reads the same cache (its rows move back), and nothing leaks", async () => {
    const dir = await savedFamilyModel(FAMILIES[0].config, { seed: 9, dtype: "BF16" });
    const [original, kernelized] = await loadPair(dir);
    const more = [7, 8, 9, 10];
    expect(decodeBits(kernelized, promptOf(6), 3, more)).toEqual(decodeBits(original, promptOf(6), 3, more));
    const store = kernelPool().store;
    const tensors = tf.memory().numTensors;
    const held = store.used;
    for (let i = 0; i < 5; i++) decodeBits(kernelized, promptOf(6), 8);
    expect(tf.memory().numTensors).toBe(tensors);
    expect(store.used).toBe(held); // the caches' arena rows were given back
    original.dispose();
    kernelized.dispose();
  });

  it("steps it does not take run the layer's own forward: a batch, float32 weights, one thread", async () => {
    const dir = await savedFamilyModel(FAMILIES[0].config, { seed: 4, dtype: "BF16" });
    const [original, kernelized] = await loadPair(dir);
    const batch = (m: PreTrainedModel) => {
      const cache = new DynamicCache();
      m.forward({ inputIds: [promptOf(4), promptOf(4)], pastKeyValues: cache, useCache: true }).logits.dispose();
      const { logits } = m.forward({ inputIds: [[1], [2]], pastKeyValues: cache, useCache: true });
      const bits = new Uint32Array((logits.dataSync() as Float32Array).slice().buffer);
      logits.dispose();
      cache.dispose();
      return bits;
    };
    let before = decoderLayerSteps();
    expect(batch(kernelized)).toEqual(batch(original));
    expect(decoderLayerSteps()).toBe(before);

    const f32 = await AutoModelForCausalLM.fromPretrained(dir, { weightStorage: "f32" });
    const f32Kernel = await AutoModelForCausalLM.fromPretrained(dir, { weightStorage: "f32" });
    DECODER_LAYER.fuse(f32Kernel);
    await kernelize(f32Kernel, { mode: Mode.INFERENCE });
    before = decoderLayerSteps();
    expect(decodeBits(f32Kernel, promptOf(4), 3)).toEqual(decodeBits(f32, promptOf(4), 3));
    expect(decoderLayerSteps()).toBe(before);

    setKernelThreads(1);
    try {
      expect(decodeBits(kernelized, promptOf(4), 3)).toEqual(decodeBits(original, promptOf(4), 3));
      expect(decoderLayerSteps()).toBe(before);
    } finally {
      setKernelThreads(2);
    }
    for (const m of [original, kernelized, f32, f32Kernel]) m.dispose();
  });
});

describe("the DecoderLayer kernel on cpu", () => {
  beforeAll(() => setBackend("cpu"));
  afterAll(() => setBackend("wasm"));

  it("runs the layer's own forward: the same logits, no pool step", async () => {
    const dir = await savedFamilyModel(FAMILIES[1].config, { seed: 6, dtype: "BF16" });
    const [original, kernelized] = await loadPair(dir);
    const before = decoderLayerSteps();
    expect(decodeBits(kernelized, promptOf(5), 4)).toEqual(decodeBits(original, promptOf(5), 4));
    expect(decoderLayerSteps()).toBe(before);
    original.dispose();
    kernelized.dispose();
  });
});

describe("the decoder_layer recipe", () => {
  beforeAll(() => setBackend("cpu"));

  it("runtime fusion makes each layer a FusedModule (same state dict), and unfusing restores the layers", async () => {
    const model = AutoModelForCausalLM.fromConfig({ model_type: "qwen3", ...SMALL }, { seed: 1 });
    const keys = model.namedParameters().map(([k]) => k);
    const chains = DECODER_LAYER.fuse(model);
    expect(chains.map((c) => c.paths)).toEqual([["model.layers.0"], ["model.layers.1"]]);
    expect(getFusedChains(model)).toHaveLength(2);
    expect(model.namedParameters().map(([k]) => k)).toEqual(keys);
    DECODER_LAYER.unfuse(model);
    expect(getFusedChains(model)).toHaveLength(0);
    expect(model.namedModules().find(([p]) => p === "model.layers.0")![1].constructor.name).toBe("Qwen3DecoderLayer");
    model.dispose();
  });

  it("generates the layer class tagged for the kernel, with no weight moves", () => {
    const model = AutoModelForCausalLM.fromConfig({ model_type: "llama", ...SMALL }, { seed: 1 });
    const patches = DECODER_LAYER.patchesFor(model);
    expect(Object.keys(patches)).toEqual(["^LlamaDecoderLayer$"]);
    expect(DECODER_LAYER.makeTransforms()).toEqual([]);
    model.dispose();
  });

  it("a KernelConfig key for a repo without a Layout must name every child of the parent", async () => {
    const skeleton = () => buildModel(AutoModelForCausalLM.fromConfig({ model_type: "qwen3", ...SMALL }).config);
    const [pairs, layer] = DECODER_LAYER.kernelConfigEntry("fusekit/decoder-layer:DecoderLayer");
    const plan = await planKernelConfig([[pairs, layer]], skeleton);
    expect(Object.keys(plan.patches)).toEqual(["^Qwen3DecoderLayer$"]);
    await expect(planKernelConfig([[pairs.slice(0, 3), layer]], skeleton)).rejects.toThrow(KernelConfigError);
    await expect(planKernelConfig([[pairs.slice(0, 3), layer]], skeleton)).rejects.toThrow(
      'the repository has no DecoderLayerLayout, so its layer replaces the forward of "model.layers.0" (Qwen3DecoderLayer) and the key must name every child of it; missing: mlp',
    );
  });
});
