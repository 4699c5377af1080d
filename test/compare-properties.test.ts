// "applies to a loaded model" is measured by trying: the attempt runs with a control that
// proves the patch scope is live, so a "no" means the patches do not reach a loaded model, not that
// nothing was tried.
import { afterAll, beforeAll, expect, it } from "vitest";
import { promises as fsp } from "node:fs";
import { AutoModelForCausalLM, setBackend, type PreTrainedModel } from "fusekit";
import { qwen3NormMLPPatches } from "fusekit/patches/norm-mlp";
import { patchesReachLoaded } from "../src/compare/approaches.js";
import { savedSmallModel } from "./helpers/models.js";

let dir: string;
let model: PreTrainedModel;
beforeAll(async () => {
  await setBackend("cpu");
  dir = await savedSmallModel({}, { seed: 4 });
  model = await AutoModelForCausalLM.fromPretrained(dir);
});
afterAll(async () => {
  model.dispose();
  await fsp.rm(dir, { recursive: true, force: true });
});

it("a patch scope that patches nothing cannot be measured: the attempt throws instead of answering no", async () => {
  await expect(patchesReachLoaded(model, {})).rejects.toThrow(/changed nothing even in a model built inside it/);
});

it("live patches (the control model is patched) still leave a loaded model as it was: a measured no", async () => {
  const before = model.namedModules().map(([p, m]) => `${p}:${Object.getPrototypeOf(m).constructor.name}`);
  expect(await patchesReachLoaded(model, qwen3NormMLPPatches)).toBe(false);
  expect(model.namedModules().map(([p, m]) => `${p}:${Object.getPrototypeOf(m).constructor.name}`)).toEqual(before);
});
