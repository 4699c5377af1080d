import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import {
  AutoModelForCausalLM,
  AutoTokenizer,
  GenerationConfigError,
  Qwen3Config,
  Rng,
  ShapeError,
  TextStreamer,
  applyRepetitionPenalty,
  applyTemperature,
  defaultModelDir,
  generate,
  kthLargest,
  loadGenerationConfig,
  sampleFrom,
  setBackend,
  streamGenerate,
  tf,
  topKFilter,
  topPFilter,
  type PreTrainedModel,
  type PreTrainedTokenizer,
} from "fusekit/internals";

const f32 = (xs: number[]) => Float32Array.from(xs);

describe("sampling helpers (hand-computed)", () => {
  it("repetition penalty divides positive and multiplies negative logits of seen tokens, once each", () => {
    const l = f32([2, -2, 1, 0.5]);
    applyRepetitionPenalty(l, [0, 1, 1, 0], 2);
    expect([...l]).toEqual([1, -4, 1, 0.5]);
  });

  it("temperature divides", () => {
    const l = f32([2, -1, 0.5]);
    applyTemperature(l, 0.5);
    expect([...l]).toEqual([4, -2, 1]);
  });

  it("top-k keeps the k largest and ties with the k-th", () => {
    const a = f32([1, 5, 3, 5, 2]);
    topKFilter(a, 2);
    expect([...a]).toEqual([-Infinity, 5, -Infinity, 5, -Infinity]);
    const b = f32([1, 5, 3, 3, 2]);
    topKFilter(b, 2);
    expect([...b]).toEqual([-Infinity, 5, 3, 3, -Infinity]);
  });

  it("kthLargest agrees with a full sort", () => {
    const rng = new Rng(7);
    for (let trial = 0; trial < 50; trial++) {
      const n = 1 + Math.floor(rng.next() * 300);
      const xs = Float32Array.from({ length: n }, () => Math.round(rng.normal() * 4) + 0); // many ties (+0 turns -0 into 0)
      const sorted = [...xs].sort((x, y) => y - x);
      const k = 1 + Math.floor(rng.next() * n);
      expect(kthLargest(xs, k)).toBe(sorted[k - 1]);
    }
  });

  it("top-p drops the low tail whose cumulative mass is <= 1 - p", () => {
    // probabilities 0.5, 0.3, 0.15, 0.05: ascending cumulative 0.05, 0.20, 0.50, 1.0
    const logits = () => f32([0.5, 0.3, 0.15, 0.05].map(Math.log));
    const a = logits();
    topPFilter(a, 0.8); // 1 - p = 0.2: drops 0.05 and 0.15 (cum 0.05, 0.20 <= 0.2)
    expect([...a].map((x) => x > -Infinity)).toEqual([true, true, false, false]);
    const b = logits();
    topPFilter(b, 0.85); // 1 - p = 0.15: drops only 0.05
    expect([...b].map((x) => x > -Infinity)).toEqual([true, true, true, false]);
    const c = logits();
    topPFilter(c, 0.01); // keeps at least the top token
    expect([...c].map((x) => x > -Infinity)).toEqual([true, false, false, false]);
  });

  it("multinomial draws follow the probabilities", () => {
    const probs = Float64Array.from([0.1, 0, 0.6, 0.3]);
    const rng = new Rng(123);
    const counts = [0, 0, 0, 0];
    const n = 20000;
    for (let i = 0; i < n; i++) counts[sampleFrom(probs, rng)]++;
    expect(counts[1]).toBe(0);
    counts.forEach((c, i) => expect(Math.abs(c / n - probs[i])).toBeLessThan(0.015));
  });
});

const tinyConfig = new Qwen3Config({
  vocab_size: 97,
  hidden_size: 32,
  intermediate_size: 48,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  head_dim: 8,
  rope_theta: 10000,
  eos_token_id: 96,
});

/** Independent greedy reference: full forward over the whole sequence each step, argmax in tfjs. */
function greedyReference(model: PreTrainedModel, prompt: number[], n: number): number[] {
  const seq = [...prompt];
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const { logits } = model.forward({ inputIds: [seq] });
    const next = tf.tidy(
      () => tf.argMax(tf.reshape(tf.slice(logits, [0, seq.length - 1, 0], [1, 1, -1]), [-1])).dataSync()[0],
    );
    logits.dispose();
    seq.push(next);
    out.push(next);
  }
  return out;
}

describe.each(["wasm", "cpu"])("generate on %s (tiny random model)", (backend) => {
  let model: PreTrainedModel;
  const prompt = [5, 17, 42, 8, 3];

  beforeAll(async () => {
    await setBackend(backend);
    model = AutoModelForCausalLM.fromConfig(tinyConfig, { seed: 3 });
  });
  afterAll(() => model.dispose());

  it("greedy is deterministic and equals an argmax-over-full-forward reference", async () => {
    const a = await generate(model, [prompt], { maxNewTokens: 12, eosTokenId: null });
    const b = await generate(model, [prompt], { maxNewTokens: 12, eosTokenId: null });
    expect(a.newTokens[0]).toHaveLength(12);
    expect(a.newTokens).toEqual(b.newTokens);
    expect(a.newTokens[0]).toEqual(greedyReference(model, prompt, 12));
    expect(a.sequences[0]).toEqual([...prompt, ...a.newTokens[0]]);
    expect(a.finishReasons).toEqual(["length"]);
  });

  it("KV-cache and full-recompute generation produce the same tokens (greedy and seeded sampling)", async () => {
    const opts = { maxNewTokens: 16, eosTokenId: null, repetitionPenalty: 1.2 };
    const cached = await generate(model, [prompt], opts);
    const full = await generate(model, [prompt], { ...opts, useCache: false });
    expect(cached.newTokens).toEqual(full.newTokens);
    const s = { ...opts, doSample: true, temperature: 1.5, topK: 40, topP: 0.95, seed: 11 };
    expect((await generate(model, [prompt], s)).newTokens).toEqual(
      (await generate(model, [prompt], { ...s, useCache: false })).newTokens,
    );
  });

  it("seeded sampling is reproducible and different seeds differ", async () => {
    const s = { maxNewTokens: 20, eosTokenId: null, doSample: true, temperature: 2, topK: 0 };
    const a = await generate(model, [prompt], { ...s, seed: 1 });
    const b = await generate(model, [prompt], { ...s, seed: 1 });
    const c = await generate(model, [prompt], { ...s, seed: 2 });
    expect(a.newTokens).toEqual(b.newTokens);
    expect(c.newTokens).not.toEqual(a.newTokens);
    // Sampling at temperature 2 over 97 tokens should not just reproduce greedy.
    expect(a.newTokens).not.toEqual(
      (await generate(model, [prompt], { maxNewTokens: 20, eosTokenId: null })).newTokens,
    );
  });

  it("eos stops a row at its first eos token (from options, generation config or model config)", async () => {
    const free = (await generate(model, [prompt], { maxNewTokens: 12, eosTokenId: null })).newTokens[0];
    const eos = free[4];
    const cut = free.slice(0, free.indexOf(eos) + 1);
    const viaOption = await generate(model, [prompt], { maxNewTokens: 12, eosTokenId: eos });
    expect(viaOption.newTokens[0]).toEqual(cut);
    expect(viaOption.finishReasons).toEqual(["eos"]);
    const viaGenConfig = await generate(model, [prompt], {
      maxNewTokens: 12,
      generationConfig: { eos_token_id: [1000, eos] },
    });
    expect(viaGenConfig.newTokens[0]).toEqual(cut);
    // The model config says eos 96; give the model a config whose eos is our token instead.
    const m2 = { config: { eos_token_id: eos }, call: model.call.bind(model) };
    expect((await generate(m2, [prompt], { maxNewTokens: 12 })).newTokens[0]).toEqual(cut);
  });

  it("a left-padded batch gives each row the tokens it gets alone (greedy, with repetition penalty)", async () => {
    const rows = [
      [5, 17, 42, 8, 3],
      [9, 2],
      [60, 61, 62],
    ];
    const opts = { maxNewTokens: 8, eosTokenId: null, repetitionPenalty: 1.3 };
    const alone = [];
    for (const r of rows) alone.push((await generate(model, [r], opts)).newTokens[0]);
    const len = Math.max(...rows.map((r) => r.length));
    // Pad with the token the padded row picks first: if padding leaked into the repetition penalty
    // (or attention), that row's first choice would change.
    const pad = alone[1][0];
    const inputIds = rows.map((r) => [...Array(len - r.length).fill(pad), ...r]);
    const attentionMask = rows.map((r) => [...Array(len - r.length).fill(0), ...Array(r.length).fill(1)]);
    const batch = await generate(model, inputIds, { ...opts, attentionMask, padTokenId: pad });
    expect(batch.newTokens).toEqual(alone);
    // ...and the same without the cache.
    expect(
      (await generate(model, inputIds, { ...opts, attentionMask, padTokenId: pad, useCache: false })).newTokens,
    ).toEqual(alone);
  });

  it("rows that finish early are padded on the right while the others go on", async () => {
    const rows = [
      [5, 17, 42],
      [9, 2, 7],
    ];
    const free = (await generate(model, rows, { maxNewTokens: 10, eosTokenId: null })).newTokens;
    const eos = free[0][2];
    const out = await generate(model, rows, { maxNewTokens: 10, eosTokenId: eos, padTokenId: 77 });
    const expected = free.map((r) => (r.includes(eos) ? r.slice(0, r.indexOf(eos) + 1) : r));
    expect(out.newTokens).toEqual(expected);
    const longest = Math.max(...expected.map((r) => r.length));
    out.sequences.forEach((seq, i) =>
      expect(seq).toEqual([...rows[i], ...expected[i], ...Array(longest - expected[i].length).fill(77)]),
    );
    expect(out.finishReasons[0]).toBe("eos");
  });

  it("streams the same tokens it returns, and frees everything even when the consumer stops early", async () => {
    const before = tf.memory().numTensors;
    const seen: number[] = [];
    const out = await generate(model, [prompt], {
      maxNewTokens: 6,
      eosTokenId: null,
      onStep: (s) => seen.push(s.tokens[0]),
    });
    expect(seen).toEqual(out.newTokens[0]);
    const streamed: number[] = [];
    for await (const step of streamGenerate(model, [prompt], { maxNewTokens: 6, eosTokenId: null })) {
      streamed.push(step.tokens[0]);
      if (streamed.length === 3) break;
    }
    expect(streamed).toEqual(out.newTokens[0].slice(0, 3));
    expect(tf.memory().numTensors).toBe(before);
  });

  it("no tensors leak across generations (cached, uncached, batched, sampled)", async () => {
    await generate(model, [prompt], { maxNewTokens: 2 }); // warm-up
    const before = tf.memory().numTensors;
    for (let i = 0; i < 5; i++) {
      await generate(model, [prompt], { maxNewTokens: 10, eosTokenId: null });
      await generate(model, [prompt], { maxNewTokens: 4, eosTokenId: null, useCache: false });
      await generate(
        model,
        [
          [0, 1, 2],
          [3, 4, 5],
        ],
        {
          maxNewTokens: 4,
          attentionMask: [
            [0, 1, 1],
            [1, 1, 1],
          ],
          doSample: true,
          seed: i,
        },
      );
      expect(tf.memory().numTensors).toBe(before);
    }
  });

  it("accepts an int32 tensor prompt and leaves it alive", async () => {
    const t = tf.tensor2d([prompt], [1, prompt.length], "int32");
    const out = await generate(model, t, { maxNewTokens: 3, eosTokenId: null });
    expect(out.newTokens[0]).toEqual(
      (await generate(model, [prompt], { maxNewTokens: 3, eosTokenId: null })).newTokens[0],
    );
    expect(t.isDisposed).toBe(false);
    t.dispose();
  });
});

describe("generate: bad options are named errors", () => {
  let model: PreTrainedModel;
  beforeAll(async () => {
    await setBackend("cpu");
    model = AutoModelForCausalLM.fromConfig(tinyConfig, { seed: 3 });
  });
  afterAll(() => model.dispose());

  it.each([
    [
      { doSample: true, temperature: 0 },
      "temperature must be > 0 when sampling, got 0 (use doSample: false for greedy)",
    ],
    [{ topP: 0 }, "topP must be in (0, 1], got 0"],
    [{ topK: 1.5 }, "topK must be a non-negative integer, got 1.5"],
    [{ maxNewTokens: -1 }, "maxNewTokens must be a non-negative integer, got -1"],
    [{ repetitionPenalty: 0 }, "repetitionPenalty must be > 0, got 0"],
    [
      { stopStrings: ["x"] },
      "stopStrings need a tokenizer (pass options.tokenizer; the model has no tokenizer files of its own)",
    ],
  ])("%o", async (opts, message) => {
    const err = await generate(model, [[1, 2, 3]], opts).catch((e) => e);
    expect(err).toBeInstanceOf(GenerationConfigError);
    expect(err.message).toBe(message);
  });

  it.each([
    [[[1, 2, 3]], { attentionMask: [[1, 1]] }, "attentionMask: expected shape [1, 3] like inputIds, got [1, 2]"],
    [[[1, 2, 3]], { attentionMask: [[0, 0, 0]] }, "attentionMask: a row has no attended token"],
    [[[1, 2], [3]], {}, "inputIds: expected a non-empty rectangular [batch, seq] array or 2-D tensor"],
  ])("bad shapes are ShapeErrors: %j %j", async (inputIds, opts, message) => {
    const err = await generate(model, inputIds, opts).catch((e) => e);
    expect(err).toBeInstanceOf(ShapeError);
    expect(err.message).toBe(message);
  });
});

describe("generate with the default model and its tokenizer", () => {
  let model: PreTrainedModel;
  let tok: PreTrainedTokenizer;
  let dir: string;
  const tmp = mkdtempSync(path.join(os.tmpdir(), "fusekit-gen-"));

  beforeAll(async () => {
    await setBackend("wasm");
    dir = await defaultModelDir();
    model = await AutoModelForCausalLM.fromPretrained(dir);
    tok = await AutoTokenizer.fromPretrained(dir);
  });
  afterAll(() => {
    model.dispose();
    rmSync(tmp, { recursive: true, force: true });
  });

  it("reads generation_config.json (eos ids, pad) and rejects a broken one", async () => {
    const g = await loadGenerationConfig(dir);
    expect(g?.eos_token_id).toEqual([151645, 151643]);
    expect(g?.pad_token_id).toBe(151643);
    expect(await loadGenerationConfig(tmp)).toBeUndefined();
    writeFileSync(path.join(tmp, "generation_config.json"), "{ nope");
    await expect(loadGenerationConfig(tmp)).rejects.toThrow(GenerationConfigError);
    await expect(loadGenerationConfig(tmp)).rejects.toThrow(
      `${path.join(tmp, "generation_config.json")}: not valid JSON`,
    );
  });

  it("a stop string stops generation at the token that completes it", async () => {
    const ids = tok.encode(
      tok.applyChatTemplate([{ role: "user", content: "Hello, how are you?" }], { addGenerationPrompt: true }),
    );
    // The random model's greedy output repeats one token; seeded sampling gives varied text, reproducibly.
    const opts = { maxNewTokens: 16, eosTokenId: null, doSample: true, seed: 1 };
    const free = (await generate(model, [ids], opts)).newTokens[0];
    // Pick the first token (after the third) whose own text is new to the text before it.
    let k = 3;
    let stop = "";
    for (; k < free.length; k++) {
      stop = tok.decode([free[k]]);
      if (
        stop.trim() &&
        !stop.includes("\uFFFD") &&
        !tok.decode(free.slice(0, k)).includes(stop) &&
        tok.decode(free.slice(0, k + 1)).endsWith(stop)
      )
        break;
    }
    expect(k).toBeLessThan(free.length);
    const out = await generate(model, [ids], { ...opts, stopStrings: ["never-appears-xyz", stop], tokenizer: tok });
    expect(out.newTokens[0]).toEqual(free.slice(0, k + 1));
    expect(out.finishReasons).toEqual(["stop"]);
  });

  it("TextStreamer pieces concatenate to the decoded generation", async () => {
    const ids = tok.encode("Hello, how are you?");
    let text = "";
    const streamer = new TextStreamer(tok, (t) => (text += t));
    const out = await generate(model, [ids], {
      maxNewTokens: 24,
      eosTokenId: null,
      doSample: true,
      seed: 5,
      onStep: (s) => streamer.put(s.tokens[0]),
    });
    streamer.end();
    expect(text).toBe(tok.decode(out.newTokens[0]));
  });
});
