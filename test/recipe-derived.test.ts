// One recipe, every approach: the runtime fusion, the patch classes + conversion rules and the KernelConfig
// n-to-1 entry derived from one declaration agree with the original model (the fusionConfig family is
// covered in fusion-config.test.ts, with the hand-written comparison).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { promises as fsp } from "node:fs";
import {
  AutoModelForCausalLM,
  FusedModule,
  FusionRecipeError,
  GATE_UP,
  ModuleSpec,
  NORM_MLP,
  NORM_QKV,
  QKV,
  Qwen3MLP,
  buildModel,
  defineFusionRecipe,
  getFusedChains,
  setBackend,
  type PreTrainedModel,
} from "fusekit/internals";
import { sameCheckpointTensors } from "../src/compare/properties.js";
import { EXACT } from "../src/compare/approaches.js";
import { logitsOf, maxAbsDiff, randomizeNormsAndBiases, smallConfig, tmpDir } from "./helpers/models.js";

const IDS = [[3, 17, 5, 42, 9, 1, 60, 22]];
const flat = (m: PreTrainedModel) => logitsOf(m, IDS).flat(2);
const dirs: string[] = [];
let dir: string;
let plain: number[];

beforeAll(async () => {
  await setBackend("cpu");
  const model = AutoModelForCausalLM.fromConfig(smallConfig({ attention_bias: true }), { seed: 9 });
  randomizeNormsAndBiases(model, 2);
  dir = tmpDir("fusekit-recipe-");
  dirs.push(dir);
  await model.savePretrained(dir);
  plain = flat(model);
  model.dispose();
});
afterAll(async () => {
  for (const d of dirs) await fsp.rm(d, { recursive: true, force: true });
});

describe("recipes", () => {
  it("runtime fusion from a recipe: norm_mlp and norm_qkv fuse a loaded model exactly and unfuse in place", async () => {
    const model = await AutoModelForCausalLM.fromPretrained(dir);
    const mlp = model.getSubmodule("model.layers.0.mlp");
    expect(NORM_MLP.fuse(model)).toHaveLength(2);
    expect(NORM_QKV.fuse(model)).toHaveLength(2);
    expect(model.getSubmodule("model.layers.0.self_attn")).toBeInstanceOf(FusedModule);
    expect(flat(model)).toEqual(plain);
    NORM_MLP.unfuse(model);
    NORM_QKV.unfuse(model);
    expect(getFusedChains(model)).toHaveLength(0);
    expect(model.getSubmodule("model.layers.0.mlp")).toBe(mlp);
    model.dispose();
  });

  it("a recipe with a new weight layout cannot be had at runtime: a named error says to load with fusionConfig", async () => {
    const model = await AutoModelForCausalLM.fromPretrained(dir);
    expect(() => GATE_UP.fuse(model)).toThrow(FusionRecipeError);
    expect(() => QKV.fuse(model)).toThrow(/merges weights into "qkv_proj".*fusionConfig/);
    model.dispose();
  });

  it("patch classes + conversion rules from recipes, used as the maintainer's approach, give the original logits and bytes", async () => {
    const probe = await AutoModelForCausalLM.fromPretrained(dir);
    const skeleton = buildModel(probe.config);
    probe.dispose();
    const recipes = [NORM_MLP, GATE_UP, QKV];
    const patches = Object.assign({}, ...recipes.map((r) => r.patchesFor(skeleton)));
    expect(Object.keys(patches).sort()).toEqual(["^Qwen3Attention$", "^Qwen3DecoderLayer$", "^Qwen3MLP$"]);
    const conversions = recipes.flatMap((r) => r.makeTransforms());
    const model = await AutoModelForCausalLM.fromPretrained(dir, { patches, conversions });
    expect(model.loadReport!.missingKeys).toEqual([]);
    expect(model.loadReport!.unexpectedKeys).toEqual([]);
    expect(maxAbsDiff(flat(model), plain)).toBeLessThanOrEqual(1e-6);
    const out = tmpDir("fusekit-recipe-save-");
    dirs.push(out);
    await model.savePretrained(out);
    model.dispose();
    expect(await sameCheckpointTensors(dir, out)).toBe(true);
  });

  it("a KernelConfig n-to-1 entry from the recipe loads the hub's NormMLPLayout", async () => {
    const probe = await AutoModelForCausalLM.fromPretrained(dir);
    const entry = NORM_MLP.kernelConfigEntry("fusekit/norm-mlp:NormMLP", probe);
    probe.dispose();
    expect(entry).toEqual([
      [
        ["^Qwen3RMSNorm$", "model.layers.*.post_attention_layernorm"],
        ["^Qwen3MLP$", "model.layers.*.mlp"],
      ],
      "fusekit/norm-mlp:NormMLP",
    ]);
    const model = await AutoModelForCausalLM.fromPretrained(dir, { useKernels: true, kernelConfig: [entry] });
    expect(model.getSubmodule("model.layers.1.post_attention_layernorm").constructor.name).toBe("NormMLPLayout");
    expect(maxAbsDiff(flat(model), plain)).toBeLessThanOrEqual(EXACT);
    model.dispose();
  });

  it("malformed recipes are named errors", () => {
    const hs = () => new ModuleSpec({ inputs: ["h"], outputs: ["h"] });
    const bad = [
      { name: "x", modules: ["a.b", "c.d"], specs: [hs(), hs()] },
      { name: "x", modules: ["a.b", "a.c"], specs: [hs()] },
      { name: "x y", modules: ["a.b", "a.c"], specs: [hs(), hs()] },
      { name: "x", modules: ["a.b", "a.c"], specs: [new ModuleSpec({ inputs: ["h"], outputs: ["g"] }), hs()] },
      {
        name: "x",
        modules: ["a.b", "a.c"],
        specs: [hs(), new ModuleSpec({ inputs: ["k"], outputs: ["h"] })],
        merged: "bc",
      },
    ];
    for (const init of bad)
      expect(() => defineFusionRecipe(init), JSON.stringify(init.modules)).toThrow(FusionRecipeError);
    expect(NORM_MLP.isFusable(new Qwen3MLP(smallConfig()))).toBe(false);
  });
});
