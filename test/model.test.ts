import path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { AutoModelForCausalLM, DynamicCache, defaultModelDir, setBackend, tf, type PreTrainedModel } from "fusekit";
import { referenceLogits } from "./helpers/reference.js";
import { logitsOf, maxAbsDiff, savedSmallModel } from "./helpers/models.js";

const PROMPT = [9707, 11, 1246, 525, 498, 30]; // "Hello, how are you?"

describe.each(["wasm", "cpu"])("Qwen3 on %s", (backend) => {
  let dir: string;
  let model: PreTrainedModel;
  beforeAll(async () => {
    await setBackend(backend);
    dir = await defaultModelDir();
    model = await AutoModelForCausalLM.fromPretrained(dir);
  });

  it("loads the default checkpoint with a clean report", () => {
    expect(model.loadReport).toEqual({ missingKeys: [], unexpectedKeys: [], mismatchedKeys: [], conversionErrors: [], unmatchedRules: [], convertedKeys: [] });
    expect(model.constructor.name).toBe("Qwen3ForCausalLM");
    // tied: the lm_head shares the embedding parameter, so the state dict has no lm_head.weight
    expect(model.namedParameters().map(([k]) => k)).not.toContain("lm_head.weight");
  });

  it("matches an independent float64 implementation (tied, BF16 default model)", () => {
    const ref = referenceLogits(dir, PROMPT);
    const got = logitsOf(model, [PROMPT])[0];
    const diff = Math.max(...got.map((row, t) => maxAbsDiff(row, ref[t])));
    expect(diff).toBeLessThan(2e-5);
  });

  it("matches the float64 implementation on an untied F32 checkpoint", async () => {
    const small = await savedSmallModel({}, { seed: 7 });
    const m = await AutoModelForCausalLM.fromPretrained(small, { strict: true });
    const ids = [3, 14, 15, 9, 26, 5, 35, 63];
    const ref = referenceLogits(small, ids);
    const got = logitsOf(m, [ids])[0];
    expect(Math.max(...got.map((row, t) => maxAbsDiff(row, ref[t])))).toBeLessThan(2e-5);
    expect(m.namedParameters().map(([k]) => k)).toContain("lm_head.weight");
    m.dispose();
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
    const batch = logitsOf(model, [PROMPT, [pad, pad, pad, ...short]], [[1, 1, 1, 1, 1, 1], [0, 0, 0, 1, 1, 1]]);
    const alone = logitsOf(model, [short])[0];
    expect(maxAbsDiff(batch[0].flat(), logitsOf(model, [PROMPT])[0].flat())).toBeLessThan(1e-5);
    for (let t = 0; t < short.length; t++) expect(maxAbsDiff(batch[1][3 + t], alone[t])).toBeLessThan(1e-5);
  });

  it("a left-padded batch decodes with the cache like each row alone", () => {
    const short = [9707, 11];
    const pad = 151643;
    const mask = [[1, 1, 1, 1], [0, 0, 1, 1]];
    const first = model.forward({ inputIds: [PROMPT.slice(0, 4), [pad, pad, ...short]], attentionMask: mask, useCache: true, logitsToKeep: 1 });
    first.logits.dispose();
    const next = model.forward({ inputIds: [[PROMPT[4]], [1246]], attentionMask: mask.map((r) => [...r, 1]), pastKeyValues: first.pastKeyValues });
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
    expect(() => model.forward({ inputIds: [[1, 2]], attentionMask: [[1]] })).toThrow(/attentionMask: expected shape \[1, 2\]/);
  });

  it("keeps tf.memory().numTensors flat over 200 forwards (with and without cache)", () => {
    const before = tf.memory().numTensors;
    const bytesBefore = tf.memory().numBytes;
    for (let i = 0; i < 200; i++) {
      const useCache = i % 2 === 0;
      const out = model.forward({ inputIds: [PROMPT.slice(0, 1 + (i % 6))], useCache, logitsToKeep: 1 });
      out.logits.dispose();
      out.pastKeyValues?.dispose();
    }
    expect(tf.memory().numTensors).toBe(before);
    expect(tf.memory().numBytes).toBe(bytesBefore);
  });
});

describe("checkpoint dirs", () => {
  it("the default model lives in the cache folder with the real tokenizer files", async () => {
    const dir = await defaultModelDir();
    expect(path.basename(dir)).toBe("qwen3-tiny-4kv-heads-4layers-random");
  });
});
