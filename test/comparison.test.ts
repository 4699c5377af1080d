// The comparison suite: every approach against the original, on the default model and on a random
// untied F32 checkpoint, through `runComparison` — the same code `fusekit compare` runs.
import { rmSync } from "node:fs";
import { beforeAll, describe, expect, it } from "vitest";
import { AutoModelForCausalLM, defaultModelDir, setBackend, tf } from "fusekit";
import { runComparison } from "../src/compare/run.js";
import { defaultApproaches, EXACT, selectApproaches } from "../src/compare/approaches.js";
import type { Approach, ComparisonResult } from "../src/compare/types.js";
import { savedFamilyModel, savedSmallModel } from "./helpers/models.js";

function expectProperties(result: ComparisonResult) {
  const row = (id: string) => result.rows.find((r) => r.id === id)!;
  for (const r of result.rows) {
    expect(r.error, r.label).toBeUndefined();
    expect(r.maxAbsDiff, r.label).toBeLessThanOrEqual(r.tolerance);
    expect(r.tokensIdentical, r.label).toBe(r.tokensTotal);
    expect(r.savesOriginalLayout, r.label).toBe(true);
    expect(r.pass, r.label).toBe(true);
  }
  const runtime = {
    appliesToLoadedModel: true,
    classesPerFusion: 0,
    needsWeightConversion: false,
    reversibleInPlace: true,
    stateDictLayoutUnchanged: true,
  };
  for (const id of ["fused", "fused-unfused", "fused-kernel", "recipe-runtime", "layer-runtime"])
    expect(row(id).properties, id).toMatchObject(runtime);
  // a plain reload of a runtime-fused model is plain; "fused, then unfused" has nothing left to survive
  for (const id of ["fused", "fused-kernel", "recipe-runtime", "layer-runtime"])
    expect(row(id).properties!.survivesSaveReload, id).toBe(false);
  expect(row("fused-unfused").properties!.survivesSaveReload).toBeNull();
  // same op order, and kernels that round as the unfused ops do: every row equals the original exactly
  for (const r of result.rows) expect([r.maxAbsDiff, r.tolerance], r.label).toEqual([0, 1e-6]);
  const beforeLoad = {
    appliesToLoadedModel: false,
    needsWeightConversion: true,
    reversibleInPlace: false,
    stateDictLayoutUnchanged: false,
  };
  for (const id of ["patched", "patched-kernel", "gate-up-qkv", "gate-up-qkv-kernel"]) {
    expect(row(id).properties, id).toMatchObject({ ...beforeLoad, classesPerFusion: 2, survivesSaveReload: false });
  }
  // generated classes: one Fused{Parent} (the chain module is the library's); KernelConfig adds the hub's Layout
  expect(row("recipe-patches").properties).toMatchObject({
    ...beforeLoad,
    classesPerFusion: 1,
    survivesSaveReload: false,
  });
  expect(row("fusion-config").properties).toMatchObject({
    ...beforeLoad,
    classesPerFusion: 1,
    survivesSaveReload: true,
  });
  expect(row("kernel-config").properties).toMatchObject({
    ...beforeLoad,
    classesPerFusion: 2,
    survivesSaveReload: false,
  });
  expect(row("layer-patched").properties).toMatchObject({
    ...beforeLoad,
    classesPerFusion: 3,
    survivesSaveReload: false,
  });
  // the decoder_layer recipe's generated class is the layer's own, tagged: no weight moves, one class
  const tagged = { ...beforeLoad, needsWeightConversion: false, stateDictLayoutUnchanged: true, classesPerFusion: 1 };
  expect(row("layer-fusion-config").properties).toMatchObject({ ...tagged, survivesSaveReload: true });
  expect(row("layer-kernel-config").properties).toMatchObject({ ...tagged, survivesSaveReload: false });
  for (const id of ["patched", "recipe-patches", "fusion-config"]) expect(row(id).maxAbsDiff, id).toBe(0);
  const perFusion = (id: string) => row(id).properties!.linesPerFusion;
  expect(perFusion("fusion-config")).toBe(1);
  expect(perFusion("gate-up-qkv")).toBe(Math.ceil(row("gate-up-qkv").userCodeLines / 2));
  expect(perFusion("fused")).toBe(row("fused").userCodeLines);
  for (const r of result.rows) expect(r.decoderStackMs.median, r.label).toBeGreaterThan(0); // measured (NaN fails)
  expect(row("original").properties).toBeUndefined();
  // one round is too few for an interval: the speed verdict says so rather than guessing
  expect(row("original").speedVerdict).toBe("reference");
  for (const r of result.rows.slice(1))
    expect([r.speedVerdict, r.timings.decoderStackMs.length], r.label).toEqual(["too few rounds", result.rounds]);
  expect(result.timingGroups).toEqual([result.rows.map((r) => r.id)]); // a small model: all timed together
  expect(result.pass).toBe(true);
}

describe.each(["wasm", "cpu"])("comparison on %s", (backend) => {
  beforeAll(() => setBackend(backend));

  it("every approach matches the original on a random untied F32 checkpoint, with KV-cache generation", async () => {
    const dir = await savedSmallModel({ num_hidden_layers: 3 }, { seed: 11 });
    const result = await runComparison({
      modelDir: dir,
      promptIds: [5, 17, 3, 42, 8, 60],
      newTokens: 8,
      rounds: 1,
      approaches: defaultApproaches(),
    });
    expect(result.rows.map((r) => r.id)).toEqual(defaultApproaches().map((a) => a.id));
    expectProperties(result);
  });
});

// The same recipes, unchanged, on the other families (random norms and biases, so a recipe that drops a
// norm or a bias fails): every row passes, exact where the op order is unchanged, and saves the original.
const SMALL = {
  vocab_size: 64,
  hidden_size: 32,
  intermediate_size: 48,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  head_dim: 8,
};
const FAMILIES = [
  {
    family: "llama (attention_bias, mlp_bias, llama3 RoPE, untied F32)",
    dtype: "F32",
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
        original_max_position_embeddings: 4,
      },
    },
  },
  { family: "llama (tied BF16)", dtype: "BF16", config: { model_type: "llama", ...SMALL, tie_word_embeddings: true } },
  {
    family: "qwen2 (q/k/v bias, tied BF16)",
    dtype: "BF16",
    config: { model_type: "qwen2", ...SMALL, tie_word_embeddings: true },
  },
] as const;

describe.each(FAMILIES)("comparison on $family (cpu)", ({ config, dtype }) => {
  beforeAll(() => setBackend("cpu"));

  it("every approach matches the original, saves the original layout, and the properties are as observed", async () => {
    const dir = await savedFamilyModel(config, { seed: 13, dtype });
    const result = await runComparison({
      modelDir: dir,
      promptIds: [5, 17, 3, 42, 8, 60, 2, 9],
      newTokens: 6,
      rounds: 1,
      approaches: defaultApproaches(),
    });
    rmSync(dir, { recursive: true, force: true });
    expect(result.rows.map((r) => r.id)).toEqual(defaultApproaches().map((a) => a.id));
    expectProperties(result);
    for (const id of ["gate-up-qkv"]) expect(result.rows.find((r) => r.id === id)!.maxAbsDiff, id).toBe(0);
  });
});

describe("comparison on the default model (wasm)", () => {
  beforeAll(() => setBackend("wasm"));

  it("every approach matches the original, saves the original layout, and the properties are as observed", async () => {
    const result = await runComparison({
      modelDir: await defaultModelDir(),
      newTokens: 8,
      rounds: 1,
      approaches: defaultApproaches(),
    });
    expectProperties(result);
    const lines = Object.fromEntries(result.rows.map((r) => [r.id, r.userCodeLines]));
    expect(lines.original).toBe(0);
    expect(lines.fused).toBeGreaterThan(0);
    expect(lines.patched).toBeGreaterThan(lines.fused);
  });

  it("with packed bf16 weights every approach still matches the bf16 original", async () => {
    const result = await runComparison({
      modelDir: await defaultModelDir(),
      newTokens: 8,
      rounds: 1,
      approaches: defaultApproaches(),
      weightStorage: "bf16",
    });
    expect(result.weightStorage).toBe("bf16");
    expectProperties(result);
  });

  it("a broken approach fails its verdict and the whole comparison", async () => {
    const base = defaultApproaches()[0];
    const broken: Approach = {
      ...base,
      id: "broken",
      label: "perturbed norm",
      async setup(dir) {
        const { model, steps } = await base.setup(dir);
        const p = model.namedParameters().find(([k]) => k === "model.norm.weight")![1];
        p.setStateData(Float32Array.from(p.stateData(), (v) => v * 1.001));
        return { model, steps };
      },
    };
    const dir = await savedSmallModel({}, { seed: 2 });
    const result = await runComparison({
      modelDir: dir,
      prompt: "as the CLI passes it", // with its ids, from the tokenizer it already loaded
      promptIds: [1, 2, 3],
      newTokens: 4,
      rounds: 1,
      approaches: [base, broken],
    });
    expect([result.prompt, result.promptTokens]).toEqual(["as the CLI passes it", 3]);
    const row = result.rows[1];
    expect(row.pass).toBe(false);
    expect(row.maxAbsDiff).toBeGreaterThan(EXACT);
    expect(row.verdict).toMatch(/^FAIL \(Δ .* vs 1e-6/);
    expect(result.pass).toBe(false);
  });

  it("an approach that throws becomes a failed row with the error, and nothing leaks", async () => {
    const dir = await savedSmallModel({}, { seed: 2 });
    const before = tf.memory().numTensors;
    const throwing: Approach = {
      ...defaultApproaches()[0],
      id: "throws",
      async setup(d) {
        const model = await AutoModelForCausalLM.fromPretrained(d);
        model.dispose();
        throw new Error("recipe exploded");
      },
    };
    const result = await runComparison({
      modelDir: dir,
      promptIds: [1, 2],
      newTokens: 2,
      rounds: 1,
      approaches: [throwing],
    });
    expect([result.prompt, result.promptTokens]).toEqual(["2 token ids", 2]);
    expect(result.rows.map((r) => r.id)).toEqual(["original", "throws"]); // the original is always the reference
    expect(result.rows[1]).toMatchObject({
      pass: false,
      error: "Error: recipe exploded",
      verdict: "error: Error: recipe exploded",
      speedVerdict: "",
    });
    expect(result.rows[1].speed).toBeUndefined();
    expect(tf.memory().numTensors).toBe(before);
  });

  it("when memory holds two models, each approach is timed in its own group beside the original, paired by round", async () => {
    const dir = await savedSmallModel({}, { seed: 3 });
    const before = tf.memory().numTensors;
    let loaded = 0;
    let peak = 0;
    // counts the models built by setup that are alive at once (the original is one of them)
    const counted = (a: Approach): Approach => ({
      ...a,
      async setup(d, load) {
        const built = await a.setup(d, load);
        peak = Math.max(peak, ++loaded);
        const dispose = built.model.dispose.bind(built.model);
        built.model.dispose = () => {
          loaded--;
          dispose();
        };
        return built;
      },
    });
    const result = await runComparison({
      modelDir: dir,
      promptIds: [4, 8, 15, 16],
      newTokens: 3,
      rounds: 6,
      warmup: 0,
      maxLoadedModels: 2,
      approaches: selectApproaches(["fused-unfused", "fused-kernel"]).map(counted),
    });
    rmSync(dir, { recursive: true, force: true });
    expect(peak).toBe(2);
    expect(result.timingGroups).toEqual([
      ["original", "fused-unfused"],
      ["original", "fused-kernel"],
    ]);
    const [original, ...rows] = result.rows;
    expect(original.timings.decoderStackMs.length).toBe(12); // timed in both groups
    expect(original.decoderStackMs.samples).toBe(12);
    for (const r of rows) {
      expect(r.timings.prefillMs.length, r.id).toBe(6);
      expect(r.speed!.decoderStack.relativeTime.samples, r.id).toBe(6);
      // six rounds give an interval ([min, max] of the ratios, 96.9%), so the verdict is a real one
      expect(r.speed!.decoderStack.relativeTime.coverage, r.id).toBeCloseTo(1 - 2 / 64, 12);
      expect(["faster", "slower", "no measurable difference"], r.id).toContain(r.speed!.decoderStack.verdict);
      expect(r.speedVerdict).toBe(r.speed!.decoderStack.text);
    }
    expect(result.pass).toBe(true);
    expect(tf.memory().numTensors).toBe(before);
  });
});
