// fusionConfig (transformers' fusion_config): families generated from recipes, scoped to their load,
// persisted in config.json, re-fused on reload, saved in the original layout byte for byte.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { promises as fsp } from "node:fs";
import path from "node:path";
import {
  AutoModelForCausalLM,
  FusedChainModule,
  FusionConfigError,
  Linear,
  ModuleSpec,
  Rng,
  defineFusionRecipe,
  registerFusionSpec,
  setBackend,
  unregisterFusionSpec,
  type FusionConfig,
  type FusionSpec,
  type PreTrainedModel,
} from "fusekit/internals";
import { qwen3NormMLPPatches } from "fusekit/patches/norm-mlp";
import { qwen3NormMLPConversions } from "fusekit/conversions/norm-mlp";
import { sameCheckpointTensors } from "../src/compare/properties.js";
import { logitsOf, maxAbsDiff, smallConfig, tmpDir } from "./helpers/models.js";

const IDS = [[3, 17, 5, 42, 9, 1, 60, 22]];
const dirs: string[] = [];
const newDir = () => {
  const d = tmpDir("fusekit-fusion-config-");
  dirs.push(d);
  return d;
};
const classes = (m: PreTrainedModel) =>
  new Set(m.namedModules().map(([, x]) => Object.getPrototypeOf(x).constructor.name));
const flat = (m: PreTrainedModel) => logitsOf(m, IDS).flat(2);

/** A checkpoint whose norm weights are random too, so a norm weight in the wrong place changes the logits. */
async function checkpoint(over: Parameters<typeof smallConfig>[0] = {}): Promise<string> {
  const model = AutoModelForCausalLM.fromConfig(smallConfig(over), { seed: 7 });
  const rng = new Rng(11);
  for (const [key, p] of model.namedParameters()) {
    if (key.endsWith("norm.weight"))
      p.setStateData(
        Float32Array.from({ length: p.numel }, () => 0.5 + rng.next()),
        "F32",
      );
  }
  const dir = newDir();
  await model.savePretrained(dir);
  model.dispose();
  return dir;
}

let plainDir: string;
let biasDir: string;
let plainLogits: number[];
let biasLogits: number[];

beforeAll(async () => {
  await setBackend("cpu");
  plainDir = await checkpoint();
  biasDir = await checkpoint({ attention_bias: true });
  for (const [dir, set] of [
    [plainDir, (l: number[]) => (plainLogits = l)],
    [biasDir, (l: number[]) => (biasLogits = l)],
  ] as const) {
    const m = await AutoModelForCausalLM.fromPretrained(dir);
    set(flat(m));
    m.dispose();
  }
});
afterAll(async () => {
  for (const d of dirs) await fsp.rm(d, { recursive: true, force: true });
});

describe("fusionConfig", () => {
  it("norm_mlp: generated classes, same logits, fusion_config in config.json, original bytes, plain reload re-fuses", async () => {
    const model = await AutoModelForCausalLM.fromPretrained(plainDir, { fusionConfig: { norm_mlp: true } });
    expect(classes(model)).toContain("FusedQwen3DecoderLayer");
    expect(model.getSubmodule("model.layers.1.mlp")).toBeInstanceOf(FusedChainModule);
    expect(model.getSubmodule("model.layers.1.post_attention_layernorm").constructor.name).toBe("Identity");
    const keys = model.namedParameters().map(([k]) => k);
    expect(keys).toContain("model.layers.0.mlp.post_attention_layernorm.weight");
    expect(keys).not.toContain("model.layers.0.post_attention_layernorm.weight");
    expect(flat(model)).toEqual(plainLogits); // same ops in the same order: exact
    const out = newDir();
    await model.savePretrained(out);
    model.dispose();
    const saved = JSON.parse(await fsp.readFile(path.join(out, "config.json"), "utf8"));
    expect(saved.fusion_config).toEqual({ norm_mlp: true });
    expect(await sameCheckpointTensors(plainDir, out)).toBe(true);

    const again = await AutoModelForCausalLM.fromPretrained(out); // no option: the stored choice fuses
    expect(again.getSubmodule("model.layers.0.mlp")).toBeInstanceOf(FusedChainModule);
    expect(flat(again)).toEqual(plainLogits);
    again.dispose();

    const off = await AutoModelForCausalLM.fromPretrained(out, { fusionConfig: {} });
    expect(classes(off)).not.toContain("FusedQwen3DecoderLayer");
    expect(flat(off)).toEqual(plainLogits);
    const out2 = newDir();
    await off.savePretrained(out2);
    off.dispose();
    expect(JSON.parse(await fsp.readFile(path.join(out2, "config.json"), "utf8")).fusion_config).toBeUndefined();
  });

  it("gate_up + qkv (with attention biases): one merged Linear each, same logits, original bytes back", async () => {
    const model = await AutoModelForCausalLM.fromPretrained(biasDir, { fusionConfig: { gate_up: true, qkv: {} } });
    const keys = new Map(model.namedParameters().map(([k, p]) => [k, p.stateShape]));
    expect(keys.get("model.layers.0.mlp.gate_up_proj.weight")).toEqual([96, 32]);
    expect(keys.get("model.layers.0.self_attn.qkv_proj.weight")).toEqual([32 + 16 + 16, 32]);
    expect(keys.get("model.layers.0.self_attn.qkv_proj.bias")).toEqual([64]);
    expect([...keys.keys()].some((k) => /\.(q|k|v|gate|up)_proj\./.test(k))).toBe(false);
    expect(model.getSubmodule("model.layers.0.mlp.gate_up_proj")).toBeInstanceOf(Linear);
    expect(maxAbsDiff(flat(model), biasLogits)).toBeLessThanOrEqual(1e-6);
    const out = newDir();
    await model.savePretrained(out);
    model.dispose();
    expect(await sameCheckpointTensors(biasDir, out)).toBe(true);
  });

  it("norm_qkv + qkv compose on the same decoder layer", async () => {
    const model = await AutoModelForCausalLM.fromPretrained(plainDir, {
      fusionConfig: { norm_qkv: true, norm_mlp: true, qkv: true },
    });
    const keys = model.namedParameters().map(([k]) => k);
    expect(keys).toContain("model.layers.0.self_attn.input_layernorm.weight");
    expect(keys).toContain("model.layers.0.mlp.post_attention_layernorm.weight");
    expect(keys).toContain("model.layers.0.self_attn.qkv_proj.weight");
    expect(maxAbsDiff(flat(model), plainLogits)).toBeLessThanOrEqual(1e-6);
    const out = newDir();
    await model.savePretrained(out);
    model.dispose();
    expect(await sameCheckpointTensors(plainDir, out)).toBe(true);
  });

  it("an unknown family is a FusionConfigError listing the known ones; bad values too", async () => {
    const err = await AutoModelForCausalLM.fromPretrained(plainDir, { fusionConfig: { norm_mpl: true } }).catch(
      (e) => e,
    );
    expect(err).toBeInstanceOf(FusionConfigError);
    expect(err.message).toMatch(/unknown fusion "norm_mpl" \(known: .*norm_mlp.*gate_up.*qkv/);
    await expect(
      AutoModelForCausalLM.fromPretrained(plainDir, { fusionConfig: { qkv: "yes" } as never }),
    ).rejects.toThrow(/must be true, false or an options object/);
    const stored = newDir();
    await fsp.cp(plainDir, stored, { recursive: true });
    const cfg = JSON.parse(await fsp.readFile(path.join(stored, "config.json"), "utf8"));
    await fsp.writeFile(path.join(stored, "config.json"), JSON.stringify({ ...cfg, fusion_config: { nope: true } }));
    await expect(AutoModelForCausalLM.fromPretrained(stored)).rejects.toThrow(
      /config\.json: "fusion_config": unknown fusion "nope"/,
    );
  });

  it("scoped to its load: the next load and concurrent loads are plain unless they ask", async () => {
    const fused = await AutoModelForCausalLM.fromPretrained(plainDir, {
      fusionConfig: { norm_mlp: true, gate_up: true },
    });
    const plain = await AutoModelForCausalLM.fromPretrained(plainDir);
    expect(classes(plain)).not.toContain("FusedQwen3DecoderLayer");
    expect(classes(plain)).not.toContain("FusedQwen3MLP");
    fused.dispose();
    plain.dispose();
    const configs: (FusionConfig | undefined)[] = [
      { norm_mlp: true },
      undefined,
      { gate_up: true },
      {},
      { qkv: true, norm_qkv: true },
      undefined,
    ];
    const models = await Promise.all(
      configs.map((fusionConfig) => AutoModelForCausalLM.fromPretrained(plainDir, { fusionConfig })),
    );
    const seen = models.map((m) =>
      [...classes(m)]
        .filter((c) => c.startsWith("Fused"))
        .sort()
        .join(","),
    );
    expect(seen).toEqual([
      "FusedChainModule,FusedQwen3DecoderLayer",
      "",
      "FusedQwen3MLP",
      "",
      "FusedChainModule,FusedQwen3DecoderLayer",
      "",
    ]);
    const merged = models.map((m) => m.namedParameters().some(([k]) => k.includes("qkv_proj")));
    expect(merged).toEqual([false, false, false, false, true, false]);
    for (const m of models) {
      expect(maxAbsDiff(flat(m), plainLogits)).toBeLessThanOrEqual(1e-6);
      m.dispose();
    }
  });

  it("finds its targets on a skeleton built once per spec and model class; a registered spec of one's own works", async () => {
    let checks = 0;
    const recipe = defineFusionRecipe({
      name: "up_gate",
      modules: ["model.layers.*.mlp.up_proj", "model.layers.*.mlp.gate_proj"],
      specs: ["up", "gate"].map((o) => new ModuleSpec({ inputs: ["x"], outputs: [o] })),
      merged: "up_gate_proj",
    });
    const counting: FusionSpec = {
      targetModulesPatterns: recipe.targetModulesPatterns,
      isFusable: (m) => (checks++, recipe.isFusable(m)),
      makeFusedClass: (c) => recipe.makeFusedClass(c),
      makeTransforms: (c) => recipe.makeTransforms(c),
    };
    expect(() => registerFusionSpec("bad", {} as never)).toThrow(
      /missing: isFusable, makeFusedClass, makeTransforms, targetModulesPatterns/,
    );
    expect(() => unregisterFusionSpec("bad")).toThrow(
      /"bad" is not registered \(known: norm_mlp, gate_up, qkv, norm_qkv, decoder_layer\)/,
    );
    registerFusionSpec("up_gate", counting);
    try {
      expect(() => registerFusionSpec("up_gate", counting)).toThrow(FusionConfigError);
      const a = await AutoModelForCausalLM.fromPretrained(plainDir, { fusionConfig: { up_gate: true } });
      const first = checks;
      expect(first).toBe(2); // the two layers' mlp modules, on the skeleton
      const b = await AutoModelForCausalLM.fromPretrained(plainDir, { fusionConfig: { up_gate: true } });
      expect(checks).toBe(first); // cached: no second skeleton
      expect(a.namedParameters().map(([k]) => k)).toContain("model.layers.1.mlp.up_gate_proj.weight");
      expect(maxAbsDiff(flat(b), plainLogits)).toBeLessThanOrEqual(1e-6);
      a.dispose();
      b.dispose();
    } finally {
      unregisterFusionSpec("up_gate");
    }
  });

  it("generated (norm_mlp family) and hand-written (patches/ + conversions/) give the same logits and saved bytes", async () => {
    const generated = await AutoModelForCausalLM.fromPretrained(plainDir, { fusionConfig: { norm_mlp: true } });
    const hand = await AutoModelForCausalLM.fromPretrained(plainDir, {
      patches: qwen3NormMLPPatches,
      conversions: qwen3NormMLPConversions,
    });
    expect(flat(generated)).toEqual(flat(hand));
    const [a, b] = [newDir(), newDir()];
    await generated.savePretrained(a);
    await hand.savePretrained(b);
    generated.dispose();
    hand.dispose();
    expect(await sameCheckpointTensors(a, b)).toBe(true);
    expect(await sameCheckpointTensors(plainDir, a)).toBe(true);
  });
});
