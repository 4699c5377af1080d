// What the float64 reference comparison cannot see in the shared decoder blocks (src/models/llama/modeling.ts,
// which Qwen2 and Qwen3 build on): which parameters each family has (the reference reads whatever the model
// saved), the initialiser's scale, the caller's input tensor, logitsToKeep edges, the per-layer memory
// release, and which attention path a decode step takes (the gaps a mutation run found: docs/testing.md).
import { afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import {
  AutoModelForCausalLM,
  DynamicCache,
  LlamaAttention,
  LlamaConfig,
  Module,
  Qwen2Attention,
  Qwen2Config,
  Qwen3Attention,
  Qwen3Config,
  setBackend,
  tf,
} from "fusekit";
import { maxAbsDiff } from "./helpers/models.js";

const SIZES = {
  vocab_size: 32,
  hidden_size: 16,
  intermediate_size: 24,
  num_hidden_layers: 2,
  num_attention_heads: 2,
  num_key_value_heads: 1,
  head_dim: 8,
};
const names = (m: { namedParameters(): [string, unknown][] }) => m.namedParameters().map(([k]) => k);
const logits3 = (t: tf.Tensor) => t.arraySync() as number[][][];

afterEach(() => vi.restoreAllMocks());

describe("decoder blocks", () => {
  beforeAll(() => setBackend("cpu"));

  it("each family's attention has exactly its parameters: q/k norms only in Qwen3, biases as configured", () => {
    const weights = ["q_proj.weight", "k_proj.weight", "v_proj.weight", "o_proj.weight"];
    expect(names(new LlamaAttention(new LlamaConfig(SIZES), 0))).toEqual(weights);
    expect(names(new Qwen2Attention(new Qwen2Config(SIZES), 0))).toEqual([
      "q_proj.weight",
      "q_proj.bias",
      "k_proj.weight",
      "k_proj.bias",
      "v_proj.weight",
      "v_proj.bias",
      "o_proj.weight",
    ]);
    // transformers' Qwen3Attention: attention_bias biases all four projections.
    expect(names(new Qwen3Attention(new Qwen3Config({ ...SIZES, attention_bias: true }), 0))).toEqual([
      "q_proj.weight",
      "q_proj.bias",
      "k_proj.weight",
      "k_proj.bias",
      "v_proj.weight",
      "v_proj.bias",
      "o_proj.weight",
      "o_proj.bias",
      "q_norm.weight",
      "k_norm.weight",
    ]);
  });

  it("fromConfig draws embeddings and lm_head with the config's initializer_range as standard deviation", () => {
    const model = AutoModelForCausalLM.fromConfig(
      new LlamaConfig({ ...SIZES, vocab_size: 256, tie_word_embeddings: false, initializer_range: 0.5 }),
      { seed: 5 },
    );
    try {
      const std = (key: string) => {
        const v = Array.from(model.stateDict()[key].dataSync());
        const mean = v.reduce((a, b) => a + b, 0) / v.length;
        return Math.sqrt(v.reduce((a, b) => a + (b - mean) ** 2, 0) / v.length);
      };
      // 4096 normal samples: the sample deviation is within a few percent of 0.5 (the default would give 0.02).
      expect(std("model.embed_tokens.weight")).toBeGreaterThan(0.45);
      expect(std("model.embed_tokens.weight")).toBeLessThan(0.55);
      expect(std("lm_head.weight")).toBeGreaterThan(0.45);
      expect(std("lm_head.weight")).toBeLessThan(0.55);
    } finally {
      model.dispose();
    }
  });
});

describe.each(["wasm", "cpu"] as const)("the decoder forward on %s", (backend) => {
  const build = (extra: object = {}) =>
    AutoModelForCausalLM.fromConfig(new Qwen3Config({ ...SIZES, ...extra }), { seed: 9 });

  it("leaves the caller's input tensor alive", async () => {
    await setBackend(backend);
    const model = build();
    const ids = tf.tensor2d([[1, 2, 3]], [1, 3], "int32");
    const out = model.forward({ inputIds: ids, useCache: true });
    expect(ids.isDisposed).toBe(false);
    expect(ids.arraySync()).toEqual([[1, 2, 3]]);
    out.logits.dispose();
    out.pastKeyValues?.dispose();
    ids.dispose();
    model.dispose();
  });

  it("logitsToKeep: the last positions of every row; more than the sequence keeps it all", async () => {
    await setBackend(backend);
    const model = build();
    const ids = [
      [1, 2, 3, 4],
      [5, 6, 7, 8],
    ];
    const full = model.forward({ inputIds: ids }).logits;
    const last = model.forward({ inputIds: ids, logitsToKeep: 1 }).logits;
    const more = model.forward({ inputIds: ids, logitsToKeep: 9 }).logits;
    expect(last.shape).toEqual([2, 1, SIZES.vocab_size]);
    const f = logits3(full);
    logits3(last).forEach((row, b) => expect(maxAbsDiff(row[0], f[b][3])).toBe(0));
    expect(more.shape).toEqual([2, 4, SIZES.vocab_size]);
    expect(maxAbsDiff(logits3(more).flat(2), f.flat(2))).toBe(0);
    tf.dispose([full, last, more]);
    model.dispose();
  });

  it("frees each layer's input once its output exists; a layer that returns its input unchanged still works", async () => {
    await setBackend(backend);
    const model = build();
    const layers = [...(model as any).model.layers] as Module[];
    const atEntry: number[] = [];
    const handles = layers.map((l) => l.registerForwardPreHook(() => void atEntry.push(tf.memory().numTensors)));
    model.forward({ inputIds: [[1, 2, 3]] }).logits.dispose();
    expect(atEntry).toHaveLength(2);
    expect(atEntry[1]).toBe(atEntry[0]); // layer 0's input (the embeddings) is gone when layer 1 starts
    handles.forEach((h) => h.remove());

    // Both layers return their input: the logits are lm_head(norm(embeddings)), computed here in float64.
    class Skip extends Module {
      forward(h: tf.Tensor) {
        return h;
      }
    }
    layers.forEach((_, i) => model.setSubmodule(`model.layers.${i}`, new Skip()));
    const normInputDisposed: boolean[] = [];
    const hook = (model as any).model.norm.registerForwardPreHook((_m: Module, args: unknown[]) => {
      normInputDisposed.push((args[0] as tf.Tensor).isDisposed);
    });
    const ids = [3, 17, 30];
    const got = logits3(model.forward({ inputIds: [ids] }).logits)[0];
    hook.remove();
    expect(normInputDisposed).toEqual([false]); // not freed as "the previous layer's input"
    const sd = model.stateDict();
    const table = sd["model.embed_tokens.weight"].arraySync() as number[][];
    const normW = sd["model.norm.weight"].arraySync() as number[];
    const head = sd["lm_head.weight"].arraySync() as number[][]; // [vocab, hidden], as in the checkpoint
    const eps = (model.config as unknown as { rms_norm_eps: number }).rms_norm_eps;
    ids.forEach((id, t) => {
      const e = table[id];
      const rms = Math.sqrt(e.reduce((a, x) => a + x * x, 0) / e.length + eps);
      const h = e.map((x, j) => (x / rms) * normW[j]);
      const want = head.map((w) => w.reduce((a, wj, j) => a + wj * h[j], 0));
      expect(maxAbsDiff(got[t], want)).toBeLessThan(1e-5);
    });
    model.dispose();
  });

  it("a decode step reads the cache in place when it can, and takes the general path when it cannot", async () => {
    await setBackend(backend);
    const attend = vi.spyOn(DynamicCache.prototype, "attend");
    for (const headDim of [8, 6]) {
      const model = build({ head_dim: headDim });
      const prompt = [4, 9, 1, 22];
      const full = logits3(model.forward({ inputIds: [prompt] }).logits)[0];
      const { logits, pastKeyValues } = model.forward({ inputIds: [prompt.slice(0, 3)], useCache: true });
      logits.dispose();
      attend.mockClear();
      const step = model.forward({ inputIds: [[prompt[3]]], pastKeyValues });
      expect(maxAbsDiff(logits3(step.logits)[0][0], full[3])).toBeLessThan(1e-5);
      // wasm's in-place decode kernel needs head_dim % 4 === 0; otherwise attend declines (undefined).
      const inPlace = headDim % 4 === 0 || backend === "cpu";
      expect(attend).toHaveBeenCalledTimes(SIZES.num_hidden_layers);
      expect(attend.mock.results.every((r) => (r.value === undefined) === !inPlace)).toBe(true);
      step.logits.dispose();
      pastKeyValues!.dispose();
      model.dispose();
    }
  });
});
