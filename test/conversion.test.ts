import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import {
  AutoModelForCausalLM,
  CheckpointReader,
  Chunk,
  Concatenate,
  ConversionError,
  ConversionRuleError,
  MergeModulelist,
  NoWeightsLoadedError,
  Parameter,
  PreTrainedModel,
  SplitModulelist,
  StateDictError,
  Transpose,
  WeightConverter,
  WeightRenaming,
  clearCheckpointConversionMapping,
  getCheckpointConversionMapping,
  planConversions,
  registerCheckpointConversionMapping,
  registerModelFamily,
  setBackend,
  tf,
  writeSafetensors,
  encode,
  decode,
  withPatches,
  type HostTensor,
  type ModelConfig,
} from "fusekit/internals";
import { qwen3GateUpQKVConversions } from "fusekit/conversions/gate-up-qkv";

const host = (shape: number[], seed = 1): HostTensor => {
  const n = shape.reduce((a, b) => a * b, 1);
  return { data: Float32Array.from({ length: n }, (_, i) => Math.sin(seed * 100 + i)), shape, dtype: "F32" };
};
const asTf = (t: HostTensor) => tf.tensor(t.data, t.shape);
/** Compares a host tensor with a tfjs tensor (an independent implementation of the same op). */
const expectEqualTf = (got: HostTensor, want: tf.Tensor) => {
  expect(got.shape).toEqual(want.shape);
  expect([...got.data]).toEqual([...(want.dataSync() as Float32Array)]);
  want.dispose();
};

beforeAll(() => setBackend("cpu"));
afterEach(() => clearCheckpointConversionMapping());

describe("operations (host typed arrays) agree with tfjs ops and reverse exactly", () => {
  it("Concatenate / Chunk with explicit and equal sizes", () => {
    const [a, b, c] = [host([2, 3, 4], 1), host([2, 1, 4], 2), host([2, 2, 4], 3)];
    const [cat] = new Concatenate(1).apply([a, b, c]) as HostTensor[];
    expectEqualTf(cat, tf.concat([a, b, c].map(asTf), 1));
    const back = new Concatenate(1).reverseFor([a, b, c]);
    expect(String(back)).toBe("Chunk(1, [3,1,2])");
    expect(back.apply([cat], 3)).toEqual([a, b, c]);
    const [x, y] = new Chunk(-1).apply([a], 2) as HostTensor[];
    const [tx, ty] = tf.split(asTf(a), 2, -1);
    expectEqualTf(x, tx);
    expectEqualTf(y, ty);
    expect(String(new Chunk(0).reverse())).toBe("Concatenate(0)");
  });

  it("Transpose on a 3-D tensor is its own reverse", () => {
    const t = host([2, 3, 4]);
    const [tr] = new Transpose(0, 2).apply([t]) as HostTensor[];
    expectEqualTf(tr, tf.transpose(asTf(t), [2, 1, 0]));
    expect(new Transpose(0, 2).reverse().apply([tr], 1)).toEqual([t]);
  });

  it("MergeModulelist / SplitModulelist stack and unstack a module list", () => {
    const experts = [host([3, 2], 1), host([3, 2], 2), host([3, 2], 3)];
    const [merged] = new MergeModulelist(1).apply([experts]) as HostTensor[];
    expectEqualTf(merged, tf.stack(experts.map(asTf), 1));
    expect(new MergeModulelist(1).reverse().apply([merged], 1)).toEqual([experts]);
    expect(String(new SplitModulelist(0).reverse())).toBe("MergeModulelist(0)");
  });

  it("reports ill-fitting inputs with named errors", () => {
    const err = (fn: () => unknown) => {
      try {
        fn();
      } catch (e) {
        return e as Error;
      }
      throw new Error("expected a throw");
    };
    let e = err(() => new Concatenate(0).apply([host([2, 3]), host([2, 4])]));
    expect(e).toBeInstanceOf(ConversionError);
    expect(e.message).toBe("Concatenate(dim 0): shapes [2,3], [2,4] differ outside dim 0");
    e = err(() => new Chunk(0).apply([host([5, 2])], 2));
    expect(e.message).toBe("Chunk(dim 0): 5 does not split into 2 equal parts (shape [5,2]); give explicit sizes");
    e = err(() => new Chunk(0, [2, 2]).apply([host([5, 2])], 2));
    expect(e.message).toBe("Chunk(dim 0): sizes [2,2] do not add up to 5 (shape [5,2])");
    e = err(() => new Concatenate(2).apply([host([2, 3]), host([2, 3])]));
    expect(e.message).toBe("Concatenate: dim 2 is out of range for a rank-2 tensor");
    e = err(() => new Concatenate(0).apply([[host([2]), host([2])]]));
    expect(e.message).toBe("Concatenate: got a module list of 2 tensors; merge it first (MergeModulelist)");
    e = err(() => new Chunk(0, [2, 0]));
    expect(e).toBeInstanceOf(ConversionRuleError);
    expect(e.message).toBe("Chunk: sizes must be a non-empty list of positive integers, got [2,0]");
    expect(err(() => new Transpose(0.5, 1)).message).toBe("Transpose: dim must be an integer, got 0.5");
  });
});

describe("rules", () => {
  const ruleError = (fn: () => unknown) => {
    try {
      fn();
    } catch (e) {
      expect(e).toBeInstanceOf(ConversionRuleError);
      return (e as Error).message;
    }
    throw new Error("expected a throw");
  };

  it("renames with a capture group and \\1, searching anywhere in the key", () => {
    const r = new WeightRenaming({
      sourcePatterns: "layers\\.(\\d+)\\.post_attention_layernorm",
      targetPatterns: "blocks.\\1.norm2",
    });
    expect(r.rename("model.layers.12.post_attention_layernorm.weight")).toBe("model.blocks.12.norm2.weight");
    expect(r.rename("model.layers.12.input_layernorm.weight")).toBeUndefined();
    expect(new WeightRenaming({ sourcePatterns: "a\\.b", targetPatterns: "c\\.d" }).rename("x.a.b.y")).toBe("x.c.d.y");
  });

  it("rejects malformed rules with messages", () => {
    expect(ruleError(() => new WeightRenaming({ sourcePatterns: "a(", targetPatterns: "b" }))).toMatch(
      /^WeightRenaming\(a\( → b\): source pattern "a\(" is not a valid regex \(/,
    );
    expect(ruleError(() => new WeightRenaming({ sourcePatterns: "(a)(b)", targetPatterns: "c" }))).toBe(
      'WeightRenaming((a)(b) → c): source pattern "(a)(b)" has 2 capture groups; at most one is allowed (use (?:…) for the others)',
    );
    expect(ruleError(() => new WeightRenaming({ sourcePatterns: "(a)", targetPatterns: "\\2" }))).toBe(
      'WeightRenaming((a) → \\2): target pattern "\\2" may only refer to \\1',
    );
    expect(ruleError(() => new WeightRenaming({ sourcePatterns: "a", targetPatterns: "b\\1" }))).toBe(
      'WeightRenaming(a → b\\1): target pattern "b\\1" uses \\1 but a source pattern has no capture group',
    );
    expect(ruleError(() => new WeightRenaming({ sourcePatterns: ["a", "b", "c"], targetPatterns: ["x", "y"] }))).toBe(
      "WeightRenaming(a, b, c → x, y): needs one target pattern or one per source pattern (3), got 2",
    );
    expect(ruleError(() => new WeightRenaming({ sourcePatterns: [], targetPatterns: "x" }))).toBe(
      "WeightRenaming: sourcePatterns must be a non-empty string or a non-empty list of them, got []",
    );
    expect(
      ruleError(
        () =>
          new WeightConverter({
            sourcePatterns: ["a", "b"],
            targetPatterns: ["c", "d"],
            operations: [new Concatenate(0)],
          }),
      ),
    ).toBe("WeightConverter(a, b → c, d): many-to-many is not supported; use one source or one target pattern");
    expect(ruleError(() => new WeightConverter({ sourcePatterns: "a", targetPatterns: "b", operations: [] }))).toBe(
      "WeightConverter(a → b): operations must be a non-empty list of conversion operations (Concatenate, Chunk, Transpose, …)",
    );
  });

  it("plans renamings in order, then converters; reports unmatched rules and incomplete groups", () => {
    const first = new WeightRenaming({ sourcePatterns: "old\\.", targetPatterns: "mid." });
    const second = new WeightRenaming({ sourcePatterns: "mid\\.", targetPatterns: "new." });
    const unused = new WeightRenaming({ sourcePatterns: "nothing", targetPatterns: "x" });
    const plan = planConversions(
      [
        "m.old.w",
        "model.layers.0.mlp.gate_proj.weight",
        "model.layers.0.mlp.up_proj.weight",
        "model.layers.1.mlp.gate_proj.weight",
      ],
      [first, second, unused, ...qwen3GateUpQKVConversions],
    );
    expect(plan.direct).toEqual([{ source: "m.old.w", target: "m.new.w", rules: [first, second] }]);
    expect(plan.groups.map((g) => [g.sources, g.targets])).toEqual([
      [
        [["model.layers.0.mlp.gate_proj.weight"], ["model.layers.0.mlp.up_proj.weight"]],
        ["model.layers.0.mlp.gate_up_proj.weight"],
      ],
    ]);
    expect(plan.errors).toEqual([
      {
        rule: String(qwen3GateUpQKVConversions[0]),
        keys: ["model.layers.1.mlp.gate_proj.weight"],
        message: `${qwen3GateUpQKVConversions[0]}: target "model.layers.1.mlp.gate_up_proj.weight" needs a key matching "mlp\\.up_proj\\.(weight|bias)", but the checkpoint has none (found: model.layers.1.mlp.gate_proj.weight)`,
      },
    ]);
    expect(plan.unmatchedRules).toEqual([String(unused), String(qwen3GateUpQKVConversions[1])]);
  });

  it("two keys landing on one target without a converter is a ConversionError", () => {
    const r = new WeightRenaming({ sourcePatterns: ["q_proj", "k_proj"], targetPatterns: "qk_proj" });
    expect(() => planConversions(["a.q_proj.weight", "a.k_proj.weight"], [r])).toThrow(
      new ConversionError(
        'checkpoint tensors "a.q_proj.weight" and "a.k_proj.weight" both land on "a.qk_proj.weight"; only a WeightConverter (e.g. with Concatenate) can combine tensors',
      ),
    );
    expect(() =>
      planConversions(
        ["x.norm", "x.mlp.norm"],
        [new WeightRenaming({ sourcePatterns: "^x\\.norm", targetPatterns: "x.mlp.norm" })],
      ),
    ).toThrow(ConversionError);
  });
});

describe("registry", () => {
  it("registers, copies, needs overwrite, validates and clears", () => {
    const rules = [new WeightRenaming({ sourcePatterns: "a", targetPatterns: "b" })];
    registerCheckpointConversionMapping("toy", rules);
    const got = getCheckpointConversionMapping("toy")!;
    got.pop();
    expect(getCheckpointConversionMapping("toy")).toEqual(rules);
    expect(() => registerCheckpointConversionMapping("toy", [])).toThrow(
      new ConversionRuleError(
        'registerCheckpointConversionMapping: "toy" already has conversion rules; pass { overwrite: true } to replace them',
      ),
    );
    registerCheckpointConversionMapping("toy", [], { overwrite: true });
    expect(getCheckpointConversionMapping()).toEqual({ toy: [] });
    expect(() => registerCheckpointConversionMapping("x", [{} as never])).toThrow(
      new ConversionRuleError(
        'registerCheckpointConversionMapping("x"): rule 0 is not a WeightRenaming or WeightConverter (got Object)',
      ),
    );
    clearCheckpointConversionMapping();
    expect(getCheckpointConversionMapping()).toEqual({});
  });
});

// A toy model whose parameters need every kind of conversion, loaded from hand-written safetensors.
class ToyConfig implements ModelConfig {
  model_type = "toy";
  architectures = ["Toy"];
  tie_word_embeddings = false;
  torch_dtype = "float32";
  toDict() {
    return { model_type: this.model_type, architectures: this.architectures, torch_dtype: this.torch_dtype };
  }
}
class Toy extends PreTrainedModel {
  experts = new Parameter([3, 4, 2], { kind: "zeros" });
  t = new Parameter([2, 3], { kind: "zeros" });
  a = new Parameter([2, 4], { kind: "zeros" });
  b = new Parameter([2, 4], { kind: "zeros" });
  c = new Parameter([5], { kind: "zeros" });
  forward() {
    return undefined;
  }
}
class ToyPatched extends Toy {}
registerModelFamily({ modelType: "toy", configFromDict: () => new ToyConfig(), architectures: { Toy }, causalLM: Toy });

const TOY_RULES = [
  new WeightRenaming({ sourcePatterns: "^old\\.", targetPatterns: "mid." }),
  new WeightRenaming({ sourcePatterns: "^mid\\.", targetPatterns: "" }),
  new WeightConverter({
    sourcePatterns: "^experts\\.\\d+\\.w$",
    targetPatterns: "experts",
    operations: [new MergeModulelist(0)],
  }),
  new WeightConverter({ sourcePatterns: "^t_src$", targetPatterns: "t", operations: [new Transpose(0, 1)] }),
  new WeightConverter({ sourcePatterns: "^ab$", targetPatterns: ["a", "b"], operations: [new Chunk(0)] }),
];

describe("load and save through conversions", () => {
  let dir: string;
  const tensors: Record<string, HostTensor> = {
    "experts.0.w": host([4, 2], 1),
    "experts.1.w": host([4, 2], 2),
    "experts.2.w": { ...host([4, 2], 3), dtype: "BF16" },
    t_src: host([3, 2], 4),
    ab: host([4, 4], 5),
    "old.c": host([5], 6),
  };
  // BF16 values must be representable to round-trip: take them through BF16 once.
  tensors["experts.2.w"].data = decode(encode(tensors["experts.2.w"].data, "BF16"), "BF16");

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "fusekit-conversion-"));
    await writeSafetensors(
      path.join(dir, "model.safetensors"),
      Object.entries(tensors)
        .sort()
        .map(([name, t]) => ({ name, dtype: t.dtype, shape: t.shape, bytes: () => encode(t.data, t.dtype) })),
      { format: "pt" },
    );
    await writeFile(path.join(dir, "config.json"), JSON.stringify(new ToyConfig().toDict()));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it("converts every key, reports which rule moved what, and saves the original tensors byte for byte", async () => {
    const model = (await AutoModelForCausalLM.fromPretrained(dir, { conversions: TOY_RULES })) as Toy;
    const r = model.loadReport!;
    expect([r.missingKeys, r.unexpectedKeys, r.mismatchedKeys, r.conversionErrors, r.unmatchedRules]).toEqual([
      [],
      [],
      [],
      [],
      [],
    ]);
    expect(r.convertedKeys).toEqual([
      { rule: `${TOY_RULES[0]} then ${TOY_RULES[1]}`, sources: ["old.c"], targets: ["c"] },
      // groups in checkpoint key order
      { rule: String(TOY_RULES[4]), sources: ["ab"], targets: ["a", "b"] },
      { rule: String(TOY_RULES[2]), sources: ["experts.0.w", "experts.1.w", "experts.2.w"], targets: ["experts"] },
      { rule: String(TOY_RULES[3]), sources: ["t_src"], targets: ["t"] },
    ]);
    // Values against tfjs's own stack / transpose / split of the checkpoint tensors.
    const want = {
      experts: tf.stack(["experts.0.w", "experts.1.w", "experts.2.w"].map((k) => asTf(tensors[k]))),
      t: tf.transpose(asTf(tensors.t_src)),
      a: tf.slice(asTf(tensors.ab), [0, 0], [2, 4]),
      b: tf.slice(asTf(tensors.ab), [2, 0], [2, 4]),
      c: asTf(tensors["old.c"]),
    };
    for (const [k, w] of Object.entries(want))
      expectEqualTf({ data: model[k as keyof typeof want].stateData(), shape: [...w.shape], dtype: "F32" }, w);
    expect(model.experts.storedDtype).toBe("F32");

    const out = path.join(dir, "saved");
    await model.savePretrained(out);
    const [orig, saved] = await Promise.all([CheckpointReader.open(dir), CheckpointReader.open(out)]);
    expect(saved.keys().sort()).toEqual(orig.keys().sort());
    for (const k of orig.keys()) {
      expect(saved.infos.get(k)!.dtype, k).toBe(orig.infos.get(k)!.dtype);
      expect(Buffer.from(await saved.readBytes(k)).equals(Buffer.from(await orig.readBytes(k))), k).toBe(true);
    }
    await Promise.all([orig.close(), saved.close()]);
    model.dispose();
  });

  it("saving refuses to write two tensors under one name", async () => {
    const model = (await AutoModelForCausalLM.fromPretrained(dir, { conversions: TOY_RULES })) as Toy;
    model.checkpointConversion!.renamed.set("c", "ab"); // as if a module added after the load claimed the name of a converted source
    await expect(model.savePretrained(path.join(dir, "dup"))).rejects.toThrow(
      new ConversionError(
        'cannot save in the original format: two tensors would be written as "ab" (check the conversion rules)',
      ),
    );
    await model.savePretrained(path.join(dir, "runtime"), { saveOriginalFormat: false });
    const r = await CheckpointReader.open(path.join(dir, "runtime"));
    expect(r.keys().sort()).toEqual(["a", "b", "c", "experts", "t"]);
    await r.close();
    model.dispose();
  });

  it("a class-name entry wins over the model_type entry, the patched class name first", async () => {
    registerCheckpointConversionMapping("toy", [new WeightRenaming({ sourcePatterns: "^old\\.", targetPatterns: "" })]);
    let m = await AutoModelForCausalLM.fromPretrained(dir);
    expect(m.loadReport!.unmatchedRules).toEqual([]);
    expect(m.loadReport!.convertedKeys.map((c) => c.targets)).toEqual([["c"]]);
    registerCheckpointConversionMapping("Toy", TOY_RULES);
    m = await AutoModelForCausalLM.fromPretrained(dir);
    expect(m.loadReport!.convertedKeys).toHaveLength(4);
    registerCheckpointConversionMapping("ToyPatched", [TOY_RULES[3]]);
    m = await AutoModelForCausalLM.fromPretrained(dir, { patches: { Toy: ToyPatched } });
    expect(m).toBeInstanceOf(ToyPatched);
    expect(m.loadReport!.convertedKeys.map((c) => c.targets)).toEqual([["t"]]);
    // Explicit per-call conversions replace the registered ones: with none, no key of this checkpoint fits.
    await expect(AutoModelForCausalLM.fromPretrained(dir, { conversions: [] })).rejects.toThrow(NoWeightsLoadedError);
  });

  it("conversion failures are reported per group, and strict loads throw them", async () => {
    const bad = [
      ...TOY_RULES.slice(0, 4),
      new WeightConverter({ sourcePatterns: "^ab$", targetPatterns: ["a", "b"], operations: [new Chunk(0, [1, 3])] }),
    ];
    // As transformers: mis-shaped results fail the load unless ignoreMismatchedSizes keeps them random.
    await expect(AutoModelForCausalLM.fromPretrained(dir, { conversions: bad })).rejects.toThrow(StateDictError);
    const m = await AutoModelForCausalLM.fromPretrained(dir, { conversions: bad, ignoreMismatchedSizes: true });
    expect(m.loadReport!.mismatchedKeys).toEqual([
      { key: "a", expected: [2, 4], got: [1, 4] },
      { key: "b", expected: [2, 4], got: [3, 4] },
    ]);
    const failing = [
      ...TOY_RULES.slice(0, 4),
      new WeightConverter({ sourcePatterns: "^ab$", targetPatterns: ["a", "b", "c2"], operations: [new Chunk(0)] }),
    ];
    const m2 = await AutoModelForCausalLM.fromPretrained(dir, { conversions: failing });
    expect(m2.loadReport!.conversionErrors).toEqual([
      {
        rule: String(failing[4]),
        keys: ["ab"],
        message: "Chunk(dim 0): 4 does not split into 3 equal parts (shape [4,4]); give explicit sizes",
      },
    ]);
    expect(m2.loadReport!.missingKeys).toEqual(["a", "b"]);
    await expect(AutoModelForCausalLM.fromPretrained(dir, { conversions: failing, strict: true })).rejects.toThrow(
      StateDictError,
    );
    // Only the failing group: nothing at all is loaded, which is an error even when not strict.
    await expect(AutoModelForCausalLM.fromPretrained(dir, { conversions: [failing[4]] })).rejects.toThrow(
      NoWeightsLoadedError,
    );
    await expect(AutoModelForCausalLM.fromPretrained(dir, { conversions: failing, strict: true })).rejects.toThrow(
      /conversion errors: Chunk\(dim 0\): 4 does not split into 3 equal parts/,
    );
  });

  it("a collision rejects the load before any tensor is read; bad per-call rules are rejected", async () => {
    const collide = [new WeightRenaming({ sourcePatterns: ["^t_src$", "^ab$"], targetPatterns: "t" })];
    await expect(AutoModelForCausalLM.fromPretrained(dir, { conversions: collide })).rejects.toThrow(
      new ConversionError(
        'checkpoint tensors "ab" and "t_src" both land on "t"; only a WeightConverter (e.g. with Concatenate) can combine tensors',
      ),
    );
    await expect(AutoModelForCausalLM.fromPretrained(dir, { conversions: "nope" as never })).rejects.toThrow(
      new ConversionRuleError(
        "fromPretrained: conversions: rules must be a list of WeightRenaming / WeightConverter, got string",
      ),
    );
  });
});

// transformers' from_pretrained raises when the conversion mapping leaves the model with no loaded weights, and
// otherwise warns "Some weights of X were not initialized from the model checkpoint at P and are newly
// initialized: [...]" — also for a non-strict load.
describe("weights left at their initial values", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "fusekit-conversion-fresh-"));
    const tensors: Record<string, HostTensor> = {
      "experts.0.w": host([4, 2], 1),
      "experts.1.w": host([4, 2], 2),
      "experts.2.w": host([4, 2], 3),
      t_src: host([3, 2], 4),
      ab: host([4, 4], 5),
      "old.c": host([5], 6),
    };
    await writeSafetensors(
      path.join(dir, "model.safetensors"),
      Object.entries(tensors)
        .sort()
        .map(([name, t]) => ({ name, dtype: t.dtype, shape: t.shape, bytes: () => encode(t.data, t.dtype) })),
      { format: "pt" },
    );
    await writeFile(path.join(dir, "config.json"), JSON.stringify(new ToyConfig().toDict()));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));
  afterEach(() => vi.restoreAllMocks());
  const warnings = (spy: { mock: { calls: unknown[][] } }) =>
    spy.mock.calls
      .filter(([, o]) => (o as { code?: string })?.code === "FUSEKIT_NEWLY_INITIALIZED")
      .map(([m]) => String(m));

  it("a mapping that matches nothing raises NoWeightsLoadedError (a StateDictError), strict or not", async () => {
    const nothing = [new WeightRenaming({ sourcePatterns: "^nope\\.", targetPatterns: "" })];
    for (const strict of [false, true]) {
      const err = await AutoModelForCausalLM.fromPretrained(dir, { conversions: nothing, strict }).catch((e) => e);
      expect(err, `strict ${strict}`).toBeInstanceOf(NoWeightsLoadedError);
      expect(err).toBeInstanceOf(StateDictError);
      expect(err.message).toBe(
        `${dir}: no weight of Toy was loaded from the checkpoint (all 5 parameters would stay randomly initialised); ` +
          "unexpected checkpoint keys: ab, experts.0.w, experts.1.w, experts.2.w, old.c, … — check the conversion rules and patches in effect",
      );
    }
  });

  it("a partial load warns once, naming every newly initialised key and how many, also when not strict", async () => {
    const warn = vi.spyOn(process, "emitWarning").mockImplementation(() => {});
    const withoutTranspose = TOY_RULES.filter((_, i) => i !== 3);
    const m = await AutoModelForCausalLM.fromPretrained(dir, { conversions: withoutTranspose });
    expect(m.loadReport!.missingKeys).toEqual(["t"]);
    expect(warnings(warn)).toEqual([
      `Some weights of Toy were not initialized from the model checkpoint at ${dir} and are newly initialized: ` +
        "1 of 5 parameters: t (full list: model.loadReport.missingKeys)",
    ]);
    warn.mockClear();
    await AutoModelForCausalLM.fromPretrained(dir, { conversions: TOY_RULES }); // everything loads: no warning
    expect(warnings(warn)).toEqual([]);
  });
});

// transformers' Chunk without sizes takes the sizes from the target parameters' shapes, so one fused qkv
// checkpoint tensor splits into q, k, v of different sizes (GQA: 4 query rows, 2 key rows, 2 value rows).
describe("Chunk without sizes splits by the target parameters' shapes (GQA qkv)", () => {
  class GqaConfig implements ModelConfig {
    model_type = "gqa-toy";
    architectures = ["GqaToy"];
    tie_word_embeddings = false;
    torch_dtype = "float32";
    toDict() {
      return { model_type: this.model_type, architectures: this.architectures, torch_dtype: this.torch_dtype };
    }
  }
  class GqaToy extends PreTrainedModel {
    q = new Parameter([4, 3], { kind: "zeros" });
    k = new Parameter([2, 3], { kind: "zeros" });
    v = new Parameter([2, 3], { kind: "zeros" });
    forward() {
      return undefined;
    }
  }
  registerModelFamily({
    modelType: "gqa-toy",
    configFromDict: () => new GqaConfig(),
    architectures: { GqaToy },
    causalLM: GqaToy,
  });
  const qkv = host([8, 3], 7);
  const rule = new WeightConverter({
    sourcePatterns: "^qkv$",
    targetPatterns: ["q", "k", "v"],
    operations: [new Chunk(0)],
  });
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "fusekit-conversion-gqa-"));
    await writeSafetensors(
      path.join(dir, "model.safetensors"),
      [{ name: "qkv", dtype: "F32", shape: qkv.shape, bytes: () => encode(qkv.data, "F32") }],
      { format: "pt" },
    );
    await writeFile(path.join(dir, "config.json"), JSON.stringify(new GqaConfig().toDict()));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it("the operation: sizes from the target shapes, equal parts when they are unknown or do not add up", () => {
    const pieces = new Chunk(0).apply([qkv], 3, [
      [4, 3],
      [2, 3],
      [2, 3],
    ]) as HostTensor[];
    const want = tf.split(asTf(qkv), [4, 2, 2], 0);
    pieces.forEach((p, i) => expectEqualTf(p, want[i]));
    const halves = new Chunk(1).apply([host([2, 6])], 2, [[2, 4], undefined]) as HostTensor[];
    expect(halves.map((h) => h.shape)).toEqual([
      [2, 3],
      [2, 3],
    ]);
    expect(() =>
      new Chunk(0).apply([host([5, 3])], 2, [
        [2, 3],
        [2, 3],
      ]),
    ).toThrow(
      new ConversionError(
        "Chunk(dim 0): 5 does not split into 2 equal parts (shape [5,3]) (the targets' sizes [2,2] do not add up to it either); give explicit sizes",
      ),
    );
  });

  it("loads q/k/v of different sizes from one qkv tensor and saves the qkv tensor back byte for byte", async () => {
    const model = (await AutoModelForCausalLM.fromPretrained(dir, { conversions: [rule], strict: true })) as GqaToy;
    const want = tf.split(asTf(qkv), [4, 2, 2], 0);
    (["q", "k", "v"] as const).forEach((k, i) =>
      expectEqualTf({ data: model[k].stateData(), shape: [...model[k].stateShape], dtype: "F32" }, want[i]),
    );
    expect(model.loadReport!.conversionErrors).toEqual([]);
    const out = path.join(dir, "saved");
    await model.savePretrained(out);
    const [orig, saved] = await Promise.all([CheckpointReader.open(dir), CheckpointReader.open(out)]);
    expect(Buffer.from(await saved.readBytes("qkv")).equals(Buffer.from(await orig.readBytes("qkv")))).toBe(true);
    await Promise.all([orig.close(), saved.close()]);
    model.dispose();
  });

  it("a patched model never loaded (fromConfig) saves q/k/v back as one qkv tensor: the split sizes come from its shapes", async () => {
    class FusedConfig extends GqaConfig {
      override model_type = "gqa-fused";
      override architectures = ["GqaFused"];
    }
    class GqaFused extends PreTrainedModel {
      qkv = new Parameter([8, 3], { kind: "zeros" });
      forward() {
        return undefined;
      }
    }
    class GqaSplit extends GqaToy {}
    registerModelFamily({
      modelType: "gqa-fused",
      configFromDict: () => new FusedConfig(),
      architectures: { GqaFused },
      causalLM: GqaFused,
    });
    registerCheckpointConversionMapping("gqa-fused", [rule]);
    const model = withPatches({ GqaFused: GqaSplit }, () =>
      AutoModelForCausalLM.fromConfig(new FusedConfig(), { seed: 3 }),
    ) as GqaSplit;
    expect(model).toBeInstanceOf(GqaSplit);
    [model.q, model.k, model.v].forEach((p, i) => p.setStateData(host([...p.stateShape], 10 + i).data, "F32")); // distinct values
    const out = await mkdtemp(path.join(os.tmpdir(), "fusekit-conversion-gqa-save-"));
    try {
      await model.savePretrained(out);
      const r = await CheckpointReader.open(out);
      expect(r.keys()).toEqual(["qkv"]);
      const want = tf.concat(
        [model.q, model.k, model.v].map((p) => tf.tensor(p.stateData(), [...p.stateShape])),
        0,
      );
      expectEqualTf(await r.read("qkv"), want);
      await r.close();
    } finally {
      model.dispose();
      await rm(out, { recursive: true, force: true });
    }
  });
});
