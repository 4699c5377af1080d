import { rmSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  AutoModelForCausalLM,
  DynamicCache,
  LOOP_THRESHOLD,
  defaultModelDir,
  setBackend,
  tf,
  type PreTrainedModel,
} from "fusekit/internals";
import { referenceLogits } from "./helpers/reference.js";
import { scaled } from "./helpers/scale.js";
import { logitsOf, maxAbsDiff, savedFamilyModel } from "./helpers/models.js";

const PROMPT = [9707, 11, 1246, 525, 498, 30]; // "Hello, how are you?"
// Float32 runtime vs float64 reference, bounded at 2–3× the largest error measured here on wasm and cpu
// (default model 8.2e-7; family checkpoints 3.2e-7), so a 0.1% slip in any weight or norm fails.
const REF_TOL = 2e-6;
const FAMILY_REF_TOL = 1e-6;
/**
 * Cache decode and padded batches vs the plain forward: the same float32 math in other shapes and summation orders
 * (a prompt runs the tiled GEMM and blocked attention, a decode step the matvec and the cache's attention;
 * measured ≤ 6e-7): the project's 1e-6 between paths of the same model.
 */
const SAME_MATH_TOL = 1e-6;

describe.each(["wasm", "cpu"])("Qwen3 on %s", (backend) => {
  let dir: string;
  let model: PreTrainedModel;
  beforeAll(async () => {
    await setBackend(backend);
    dir = await defaultModelDir();
    model = await AutoModelForCausalLM.fromPretrained(dir);
  });

  it("loads the default checkpoint with a clean report", () => {
    expect(model.loadReport).toEqual({
      missingKeys: [],
      unexpectedKeys: [],
      mismatchedKeys: [],
      conversionErrors: [],
      unmatchedRules: [],
      convertedKeys: [],
    });
    expect(model.constructor.name).toBe("Qwen3ForCausalLM");
    // tied: the lm_head shares the embedding parameter, so the state dict has no lm_head.weight
    expect(model.namedParameters().map(([k]) => k)).not.toContain("lm_head.weight");
  });

  it("matches an independent float64 implementation (tied, BF16 default model)", () => {
    const ref = referenceLogits(dir, PROMPT);
    const got = logitsOf(model, [PROMPT])[0];
    const diff = Math.max(...got.map((row, t) => maxAbsDiff(row, ref[t])));
    expect(diff).toBeLessThan(REF_TOL);
  });

  it("KV-cache decoding equals the full forward at every position", () => {
    const full = logitsOf(model, [PROMPT])[0];
    const cache = new DynamicCache();
    for (let t = 0; t < PROMPT.length; t++) {
      const { logits } = model.forward({ inputIds: [[PROMPT[t]]], pastKeyValues: cache });
      const step = (logits.arraySync() as number[][][])[0][0];
      logits.dispose();
      expect(maxAbsDiff(step, full[t])).toBeLessThan(1e-5);
    }
    expect(cache.getSeqLength()).toBe(PROMPT.length);
    cache.dispose();
  });

  it("a prefill + cached decode equals the full forward", () => {
    const full = logitsOf(model, [PROMPT])[0];
    const { logits, pastKeyValues } = model.forward({ inputIds: [PROMPT.slice(0, 4)], useCache: true });
    logits.dispose();
    for (let t = 4; t < PROMPT.length; t++) {
      const out = model.forward({ inputIds: [[PROMPT[t]]], pastKeyValues });
      expect(maxAbsDiff((out.logits.arraySync() as number[][][])[0][0], full[t])).toBeLessThan(1e-5);
      out.logits.dispose();
    }
    pastKeyValues!.dispose();
  });

  it("a left-padded batch gives each row what it gives alone", () => {
    const short = [9707, 11, 1246];
    const pad = 151643;
    const batch = logitsOf(
      model,
      [PROMPT, [pad, pad, pad, ...short]],
      [
        [1, 1, 1, 1, 1, 1],
        [0, 0, 0, 1, 1, 1],
      ],
    );
    const alone = logitsOf(model, [short])[0];
    expect(maxAbsDiff(batch[0].flat(), logitsOf(model, [PROMPT])[0].flat())).toBeLessThan(1e-5);
    for (let t = 0; t < short.length; t++) expect(maxAbsDiff(batch[1][3 + t], alone[t])).toBeLessThan(1e-5);
  });

  it("a left-padded batch decodes with the cache like each row alone", () => {
    const short = [9707, 11];
    const pad = 151643;
    const mask = [
      [1, 1, 1, 1],
      [0, 0, 1, 1],
    ];
    const first = model.forward({
      inputIds: [PROMPT.slice(0, 4), [pad, pad, ...short]],
      attentionMask: mask,
      useCache: true,
      logitsToKeep: 1,
    });
    first.logits.dispose();
    const next = model.forward({
      inputIds: [[PROMPT[4]], [1246]],
      attentionMask: mask.map((r) => [...r, 1]),
      pastKeyValues: first.pastKeyValues,
    });
    const got = next.logits.arraySync() as number[][][];
    next.logits.dispose();
    first.pastKeyValues!.dispose();
    expect(maxAbsDiff(got[0][0], logitsOf(model, [PROMPT.slice(0, 5)])[0][4])).toBeLessThan(1e-5);
    expect(maxAbsDiff(got[1][0], logitsOf(model, [[...short, 1246]])[0][2])).toBeLessThan(1e-5);
  });

  it("logitsToKeep returns only the last positions, equal to the full forward's", () => {
    const full = logitsOf(model, [PROMPT])[0];
    const { logits } = model.forward({ inputIds: [PROMPT], logitsToKeep: 2 });
    expect(logits.shape).toEqual([1, 2, 151936]);
    const last = (logits.arraySync() as number[][][])[0];
    logits.dispose();
    expect(maxAbsDiff(last[1], full[5])).toBe(0);
  });

  it("accepts an int32 tensor and rejects a float one with a ShapeError", () => {
    const ids = tf.tensor2d([PROMPT], [1, 6], "int32");
    const { logits } = model.forward({ inputIds: ids });
    expect(logits.shape).toEqual([1, 6, 151936]);
    logits.dispose();
    ids.dispose();
    const bad = tf.tensor2d([[1.5]]);
    expect(() => model.forward({ inputIds: bad })).toThrow(/inputIds: expected an int32 tensor, got float32/);
    bad.dispose();
    expect(() => model.forward({ inputIds: [[1, 2], [3]] })).toThrow(/rectangular/);
    expect(() => model.forward({ inputIds: [[1, 2]], attentionMask: [[1]] })).toThrow(
      /attentionMask: expected shape \[1, 2\]/,
    );
  });

  const rounds = scaled(200, 12); // a tenth under mutation testing (test/helpers/scale.ts)
  it(`keeps tf.memory().numTensors flat over ${rounds} forwards (with and without cache)`, () => {
    const before = tf.memory().numTensors;
    const bytesBefore = tf.memory().numBytes;
    for (let i = 0; i < rounds; i++) {
      const useCache = i % 2 === 0;
      const out = model.forward({ inputIds: [PROMPT.slice(0, 1 + (i % 6))], useCache, logitsToKeep: 1 });
      out.logits.dispose();
      out.pastKeyValues?.dispose();
    }
    expect(tf.memory().numTensors).toBe(before);
    expect(tf.memory().numBytes).toBe(bytesBefore);
  });
});

// Every family against the float64 reference, with random RMSNorm weights and biases (a norm in the wrong
// place or a bias never added shows), tied and untied, F32 and BF16, both RoPE scalings, and prompts long
// enough for the per-group attention path (100 tokens).
const SMALL = {
  vocab_size: 64,
  hidden_size: 48,
  intermediate_size: 64,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  head_dim: 16,
  rms_norm_eps: 1e-6,
  rope_theta: 10000,
};
const LLAMA3_ROPE = {
  rope_type: "llama3",
  factor: 8,
  low_freq_factor: 1,
  high_freq_factor: 4,
  original_max_position_embeddings: 64,
};
const FAMILY_CASES = [
  {
    name: "llama, untied F32, attention_bias + mlp_bias, llama3 RoPE",
    dtype: "F32",
    config: {
      model_type: "llama",
      ...SMALL,
      tie_word_embeddings: false,
      attention_bias: true,
      mlp_bias: true,
      rope_scaling: LLAMA3_ROPE,
      max_position_embeddings: 512,
    },
  },
  {
    name: "llama, tied BF16, linear RoPE, head_dim from hidden/heads, no GQA",
    dtype: "BF16",
    config: {
      model_type: "llama",
      ...SMALL,
      hidden_size: 128,
      head_dim: undefined,
      num_key_value_heads: 4,
      tie_word_embeddings: true,
      rope_scaling: { type: "linear", factor: 4 },
    },
  },
  {
    name: "qwen2, tied BF16 (q/k/v bias)",
    dtype: "BF16",
    config: { model_type: "qwen2", ...SMALL, tie_word_embeddings: true },
  },
  {
    name: "qwen2, untied F32 (q/k/v bias)",
    dtype: "F32",
    config: { model_type: "qwen2", ...SMALL, tie_word_embeddings: false },
  },
  {
    name: "qwen3, untied F32, attention_bias",
    dtype: "F32",
    config: { model_type: "qwen3", ...SMALL, tie_word_embeddings: false, attention_bias: true },
  },
  { name: "qwen3, tied BF16", dtype: "BF16", config: { model_type: "qwen3", ...SMALL, tie_word_embeddings: true } },
] as const;
const LONG = Array.from({ length: 100 }, (_, i) => (i * 37 + 11) % 64);
const SHORT = LONG.slice(0, 8);
const worst = (got: number[][], ref: ArrayLike<number>[]) => Math.max(...got.map((row, t) => maxAbsDiff(row, ref[t])));

describe.each(["wasm", "cpu"])("every family against the float64 reference on %s", (backend) => {
  beforeAll(() => setBackend(backend));

  describe.each(FAMILY_CASES)("$name", ({ config, dtype }) => {
    let dir: string;
    let model: PreTrainedModel;
    beforeAll(async () => {
      const clean = Object.fromEntries(Object.entries(config).filter(([, v]) => v !== undefined));
      dir = await savedFamilyModel(clean, { seed: 21, dtype });
      model = await AutoModelForCausalLM.fromPretrained(dir, { strict: true });
    });
    afterAll(() => {
      model.dispose();
      rmSync(dir, { recursive: true, force: true });
    });

    it("builds the family's classes and loads every tensor", () => {
      const prefix = { llama: "Llama", qwen2: "Qwen2", qwen3: "Qwen3" }[config.model_type];
      expect(model.constructor.name).toBe(`${prefix}ForCausalLM`);
      expect(model.namedModules().map(([, m]) => m.constructor.name)).toContain(`${prefix}DecoderLayer`);
      expect(model.namedParameters().some(([k]) => k === "lm_head.weight")).toBe(!config.tie_word_embeddings);
    });

    it("short and long (per-group attention) prompts match the reference", () => {
      const [h, kv, d] = [
        config.num_attention_heads,
        config.num_key_value_heads,
        (model.config as unknown as { head_dim: number }).head_dim,
      ];
      expect((h / kv) * LONG.length * LONG.length * d).toBeGreaterThanOrEqual(LOOP_THRESHOLD); // the long path runs
      if ("rope_scaling" in config && config.rope_scaling === LLAMA3_ROPE) expect(LONG.length).toBeGreaterThan(64); // past original_max
      const short = worst(logitsOf(model, [SHORT])[0], referenceLogits(dir, SHORT));
      const long = worst(logitsOf(model, [LONG])[0], referenceLogits(dir, LONG));
      expect(short).toBeLessThan(FAMILY_REF_TOL);
      expect(long).toBeLessThan(FAMILY_REF_TOL);
    });

    it("KV-cache decoding after a long prefill equals the full forward", () => {
      const full = logitsOf(model, [LONG])[0];
      const { logits, pastKeyValues } = model.forward({
        inputIds: [LONG.slice(0, 90)],
        useCache: true,
        logitsToKeep: 1,
      });
      logits.dispose();
      for (let t = 90; t < LONG.length; t++) {
        const out = model.forward({ inputIds: [[LONG[t]]], pastKeyValues });
        expect(maxAbsDiff((out.logits.arraySync() as number[][][])[0][0], full[t])).toBeLessThan(SAME_MATH_TOL);
        out.logits.dispose();
      }
      pastKeyValues!.dispose();
    });

    it("a left-padded long batch gives each row what it gives alone, and the reference's", () => {
      const short = LONG.slice(0, 70);
      const mask = [LONG.map(() => 1), [...Array(30).fill(0), ...short.map(() => 1)]];
      const batch = logitsOf(model, [LONG, [...Array(30).fill(0), ...short]], mask);
      expect(maxAbsDiff(batch[0].flat(), logitsOf(model, [LONG])[0].flat())).toBeLessThan(SAME_MATH_TOL);
      expect(maxAbsDiff(batch[1].slice(30).flat(), logitsOf(model, [short])[0].flat())).toBeLessThan(SAME_MATH_TOL);
      expect(worst(batch[1].slice(30), referenceLogits(dir, short))).toBeLessThan(FAMILY_REF_TOL);
    });
  });
});

describe("checkpoint dirs", () => {
  it("the default model lives in the cache folder with the real tokenizer files", async () => {
    const dir = await defaultModelDir();
    expect(path.basename(dir)).toBe("qwen3-tiny-4kv-heads-4layers-random");
  });
});
