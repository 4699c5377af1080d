// The approaches the comparison runs, each built from a fresh load of the same checkpoint. Each one is
// written the way a user would write it, from the recipe files it names (their lines are counted).
import { rmSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { AutoModelForCausalLM } from "../models/auto.js";
import type { PreTrainedModel } from "../loading/pretrained.js";
import { withPatches } from "../patching/registry.js";
import { getFusedChains } from "../fusion/fuse.js";
import type { ConversionRule } from "../conversion/rules.js";
import type { PatchMapping } from "../patching/registry.js";
import { fuseNormMLP, unfuseNormMLP } from "../../fusions/norm-mlp.js";
import { qwen3NormMLPPatches } from "../../patches/norm-mlp.js";
import { qwen3NormMLPConversions } from "../../conversions/norm-mlp.js";
import { qwen3GateUpQKVPatches } from "../../patches/gate-up-qkv.js";
import { qwen3GateUpQKVConversions } from "../../conversions/gate-up-qkv.js";
import { decoderLayerPatches } from "../../patches/decoder-layer.js";
import { decoderLayerConversions } from "../../conversions/decoder-layer.js";
import { kernelize, unkernelize } from "../hub/kernelize.js";
import { Mode } from "../hub/mode.js";
import { buildModel } from "../loading/registry.js";
import { DECODER_LAYER, NORM_MLP } from "../fusion/recipes.js";
import { planFusionConfig, type FusionConfig } from "../fusion/config.js";
import { planKernelConfig, type KernelConfigEntry } from "../fusion/kernel-config.js";
import { ArgumentError } from "../errors.js";
import type { Approach } from "./types.js";

/**
 * Every approach must match the original to 1e-6. The bundled kernels round as the unfused ops on the same
 * backend do (fusekit/rmsnorm, norm-mlp and activation), so each row measures Δ = 0 today.
 */
export const EXACT = 1e-6;

async function timed<T>(steps: Record<string, number>, name: string, fn: () => T | Promise<T>): Promise<T> {
  const t0 = performance.now();
  const out = await fn();
  steps[name] = performance.now() - t0;
  return out;
}

const NORM_MLP_FUSION = ["fusions/norm-mlp.ts"];
const NORM_MLP_PATCH = ["patches/norm-mlp.ts", "conversions/norm-mlp.ts"];
const GATE_UP_QKV_PATCH = ["patches/gate-up-qkv.ts", "conversions/gate-up-qkv.ts"];
const DECODER_LAYER_PATCH = ["patches/decoder-layer.ts", "conversions/decoder-layer.ts"];

export const original: Approach = {
  id: "original",
  label: "original",
  tolerance: EXACT,
  recipeFiles: [],
  async setup(dir, load) {
    const steps: Record<string, number> = {};
    const model = await timed(steps, "load", () => AutoModelForCausalLM.fromPretrained(dir, load));
    return { model, steps };
  },
  applyToLoaded: async () => false,
  reverse: () => false,
};

/** Runtime fusion of post_attention_layernorm + mlp: left fused, fused then unfused, or given the NormMLP kernel. */
function runtimeFusion(id: string, label: string, { unfuse = false, kernel = false } = {}): Approach {
  return {
    id,
    label,
    tolerance: EXACT,
    recipeFiles: NORM_MLP_FUSION,
    async setup(dir, load) {
      const steps: Record<string, number> = {};
      const model = await timed(steps, "load", () => AutoModelForCausalLM.fromPretrained(dir, load));
      await timed(steps, "fuse", () => fuseNormMLP(model, { kernel }));
      if (unfuse) await timed(steps, "unfuse", () => unfuseNormMLP(model));
      if (kernel) await timed(steps, "kernelize", () => kernelize(model, { mode: Mode.INFERENCE }));
      return { model, steps };
    },
    async applyToLoaded(model) {
      fuseNormMLP(model, { kernel });
      if (kernel) await kernelize(model, { mode: Mode.INFERENCE });
      return getFusedChains(model).length > 0;
    },
    reverse(model) {
      unkernelize(model);
      if (getFusedChains(model).length) unfuseNormMLP(model);
      return true;
    },
  };
}

/** Patch mapping + checkpoint conversion, both scoped to the load; optionally kernelized after. */
function patchMapping(
  id: string,
  label: string,
  patches: PatchMapping,
  conversions: ConversionRule[],
  recipeFiles: string[],
  { kernel = false, fusions = 1 } = {},
): Approach {
  return {
    id,
    label,
    tolerance: EXACT,
    recipeFiles,
    fusions,
    async setup(dir, load) {
      const steps: Record<string, number> = {};
      const model = await timed(steps, "load", () =>
        AutoModelForCausalLM.fromPretrained(dir, { ...load, patches, conversions }),
      );
      if (kernel) await timed(steps, "kernelize", () => kernelize(model, { mode: Mode.INFERENCE }));
      return { model, steps };
    },
    applyToLoaded: (model) => patchesReachLoaded(model, patches),
    // The only undo is leaving the patch scope (or unregistering), which has already happened; the
    // comparison then checks whether the model went back.
    reverse: () => true,
  };
}

const classesOf = (m: PreTrainedModel) => m.namedModules().map(([, x]) => Object.getPrototypeOf(x).constructor);

/**
 * Tries a patch mapping on a loaded model: inside the patch scope a forward runs on it and its classes are
 * compared with before. A control model built in the same scope must come out patched — else the scope
 * did nothing and the attempt would prove nothing, so the measurement throws instead of answering "no".
 */
export async function patchesReachLoaded(model: PreTrainedModel, patches: PatchMapping): Promise<boolean> {
  const before = classesOf(model);
  return withPatches(patches, async () => {
    const control = buildModel(model.config);
    const patched = classesOf(control).some((c, i) => c !== classesOf(model)[i]);
    control.dispose();
    if (!patched)
      throw new Error(
        "the patch scope changed nothing even in a model built inside it: cannot tell whether it reaches a loaded one",
      );
    model.forward({ inputIds: [[1, 2]] }).logits.dispose();
    const after = classesOf(model);
    return after.length !== before.length || after.some((c, i) => c !== before[i]);
  });
}

/** The same attempt with the patches a load option would install (found on a skeleton of the model). */
async function loadOptionReachesLoaded(
  model: PreTrainedModel,
  plan: (skeleton: () => PreTrainedModel) => Promise<PatchMapping>,
): Promise<boolean> {
  return patchesReachLoaded(model, await plan(() => buildModel(model.config)));
}

// ── derived from one recipe (src/fusion/recipes.ts: NORM_MLP) ──

/** Runtime fusion straight from the recipe: recipe.fuse(model), then the NormMLP kernel. */
function recipeRuntime(): Approach {
  return {
    id: "recipe-runtime",
    label: "recipe → runtime fusion + kernel",
    tolerance: EXACT,
    recipeFiles: [],
    userCode: "NORM_MLP.fuse(model);\nawait kernelize(model, { mode: Mode.INFERENCE });",
    async setup(dir, load) {
      const steps: Record<string, number> = {};
      const model = await timed(steps, "load", () => AutoModelForCausalLM.fromPretrained(dir, load));
      await timed(steps, "fuse", () => NORM_MLP.fuse(model));
      await timed(steps, "kernelize", () => kernelize(model, { mode: Mode.INFERENCE }));
      return { model, steps };
    },
    async applyToLoaded(model) {
      NORM_MLP.fuse(model);
      return getFusedChains(model).length > 0;
    },
    reverse(model) {
      unkernelize(model);
      if (getFusedChains(model).length) NORM_MLP.unfuse(model);
      return true;
    },
  };
}

/** fusionConfig from the recipe's family: load fused, save, then a plain reload of the saved copy (which re-fuses). */
function recipeFusionConfig(): Approach {
  const fusionConfig: FusionConfig = { [NORM_MLP.name]: true };
  let saved: string | undefined;
  return {
    id: "fusion-config",
    label: "fusionConfig norm_mlp, saved + plain reload",
    tolerance: EXACT,
    recipeFiles: [],
    userCode: `AutoModelForCausalLM.fromPretrained(dir, { fusionConfig: { norm_mlp: true } });`,
    async setup(dir, load) {
      const steps: Record<string, number> = {};
      const first = await timed(steps, "load", () =>
        AutoModelForCausalLM.fromPretrained(dir, { ...load, fusionConfig }),
      );
      saved = await mkdtemp(path.join(os.tmpdir(), "fusekit-compare-fusion-"));
      await timed(steps, "save", () => first.savePretrained(saved!));
      first.dispose();
      const model = await timed(steps, "reload", () => AutoModelForCausalLM.fromPretrained(saved!, load));
      return { model, steps };
    },
    applyToLoaded: (model) =>
      loadOptionReachesLoaded(
        model,
        async (skeleton) =>
          planFusionConfig(fusionConfig, Object.getPrototypeOf(model).constructor, model.config, skeleton).patches,
      ),
    reverse: () => true,
    teardown() {
      if (saved) rmSync(saved, { recursive: true, force: true });
      saved = undefined;
    },
  };
}

/** KernelConfig n-to-1 entry from the recipe: the hub's NormMLPLayout in the norm's slot, kernelized at load. */
function recipeKernelConfig(): Approach {
  const entry = NORM_MLP.kernelConfigEntry("fusekit/norm-mlp:NormMLP") as KernelConfigEntry;
  return {
    id: "kernel-config",
    label: "KernelConfig n-to-1 (NormMLPLayout)",
    tolerance: EXACT,
    recipeFiles: [],
    userCode: `AutoModelForCausalLM.fromPretrained(dir, { useKernels: true, kernelConfig: [NORM_MLP.kernelConfigEntry("fusekit/norm-mlp:NormMLP")] });`,
    async setup(dir, load) {
      const steps: Record<string, number> = {};
      const model = await timed(steps, "load+kernelize", () =>
        AutoModelForCausalLM.fromPretrained(dir, { ...load, useKernels: true, kernelConfig: [entry] }),
      );
      return { model, steps };
    },
    applyToLoaded: (model) =>
      loadOptionReachesLoaded(model, async (skeleton) => (await planKernelConfig([entry], skeleton)).patches),
    reverse: () => true,
  };
}

/** The maintainer's approach with classes and rules generated from the recipe instead of written by hand. */
function recipePatches(): Approach {
  let patches: PatchMapping = {};
  return {
    id: "recipe-patches",
    label: "recipe → patch classes + conversion",
    tolerance: EXACT,
    recipeFiles: [],
    userCode:
      "const patches = NORM_MLP.patchesFor(buildModel(config));\nfromPretrained(dir, { patches, conversions: NORM_MLP.makeTransforms() });",
    async setup(dir, load) {
      const steps: Record<string, number> = {};
      const model = await timed(steps, "load", async () => {
        const probe = await AutoModelForCausalLM.fromPretrained(dir, load);
        patches = NORM_MLP.patchesFor(buildModel(probe.config));
        probe.dispose();
        return AutoModelForCausalLM.fromPretrained(dir, { ...load, patches, conversions: NORM_MLP.makeTransforms() });
      });
      return { model, steps };
    },
    applyToLoaded: (model) => patchesReachLoaded(model, NORM_MLP.patchesFor(buildModel(model.config))),
    reverse: () => true,
  };
}

// ── the DecoderLayer kernel (src/fusion/recipes.ts: DECODER_LAYER), the four ways ──

/** Runtime fusion from the recipe: each decoder layer becomes a FusedModule, then the DecoderLayer kernel. */
function layerRuntime(): Approach {
  return {
    id: "layer-runtime",
    label: "runtime fusion (decoder layer) + kernel",
    tolerance: EXACT,
    recipeFiles: [],
    userCode: "DECODER_LAYER.fuse(model);\nawait kernelize(model, { mode: Mode.INFERENCE });",
    async setup(dir, load) {
      const steps: Record<string, number> = {};
      const model = await timed(steps, "load", () => AutoModelForCausalLM.fromPretrained(dir, load));
      await timed(steps, "fuse", () => DECODER_LAYER.fuse(model));
      await timed(steps, "kernelize", () => kernelize(model, { mode: Mode.INFERENCE }));
      return { model, steps };
    },
    async applyToLoaded(model) {
      DECODER_LAYER.fuse(model);
      return getFusedChains(model).length > 0;
    },
    reverse(model) {
      unkernelize(model);
      if (getFusedChains(model).length) DECODER_LAYER.unfuse(model);
      return true;
    },
  };
}

/** A load option that tags the decoder layers (fusionConfig or KernelConfig), with the bundled kernels. */
function layerLoadOption(id: string, label: string, option: "fusionConfig" | "kernelConfig"): Approach {
  const fusionConfig: FusionConfig = { [DECODER_LAYER.name]: true };
  const entry = DECODER_LAYER.kernelConfigEntry("fusekit/decoder-layer:DecoderLayer") as KernelConfigEntry;
  const extra = option === "fusionConfig" ? { fusionConfig } : { kernelConfig: [entry] };
  return {
    id,
    label,
    tolerance: EXACT,
    recipeFiles: [],
    userCode:
      option === "fusionConfig"
        ? "fromPretrained(dir, { fusionConfig: { decoder_layer: true }, useKernels: true });"
        : 'fromPretrained(dir, { useKernels: true, kernelConfig: [DECODER_LAYER.kernelConfigEntry("fusekit/decoder-layer:DecoderLayer")] });',
    async setup(dir, load) {
      const steps: Record<string, number> = {};
      const model = await timed(steps, "load+kernelize", () =>
        AutoModelForCausalLM.fromPretrained(dir, { ...load, ...extra, useKernels: true }),
      );
      return { model, steps };
    },
    applyToLoaded: (model) =>
      loadOptionReachesLoaded(model, async (skeleton) =>
        option === "fusionConfig"
          ? planFusionConfig(fusionConfig, Object.getPrototypeOf(model).constructor, model.config, skeleton).patches
          : (await planKernelConfig([entry], skeleton)).patches,
      ),
    reverse: () => true,
  };
}

export function defaultApproaches(): Approach[] {
  return [
    original,
    runtimeFusion("fused", "runtime fusion (norm+mlp)"),
    runtimeFusion("fused-unfused", "runtime fusion, then unfused", { unfuse: true }),
    runtimeFusion("fused-kernel", "runtime fusion + NormMLP kernel", { kernel: true }),
    patchMapping(
      "patched",
      "patch mapping + conversion (NormMLP)",
      qwen3NormMLPPatches,
      qwen3NormMLPConversions,
      NORM_MLP_PATCH,
    ),
    patchMapping(
      "patched-kernel",
      "patch mapping + kernelize (NormMLP)",
      qwen3NormMLPPatches,
      qwen3NormMLPConversions,
      NORM_MLP_PATCH,
      { kernel: true },
    ),
    patchMapping(
      "gate-up-qkv",
      "patch mapping + converter (gate_up, qkv)",
      qwen3GateUpQKVPatches,
      qwen3GateUpQKVConversions,
      GATE_UP_QKV_PATCH,
      { fusions: 2 },
    ),
    // no fused gate_up/qkv kernel exists; kernelize gives this model the RMSNorm kernels
    patchMapping(
      "gate-up-qkv-kernel",
      "gate_up/qkv + kernelize (RMSNorm)",
      qwen3GateUpQKVPatches,
      qwen3GateUpQKVConversions,
      GATE_UP_QKV_PATCH,
      { kernel: true, fusions: 2 },
    ),
    recipeRuntime(),
    recipePatches(),
    recipeFusionConfig(),
    recipeKernelConfig(),
    layerRuntime(),
    patchMapping(
      "layer-patched",
      "patch mapping + conversion + kernelize (DecoderLayer)",
      decoderLayerPatches,
      decoderLayerConversions,
      DECODER_LAYER_PATCH,
      { kernel: true },
    ),
    layerLoadOption("layer-fusion-config", "fusionConfig decoder_layer + kernels", "fusionConfig"),
    layerLoadOption("layer-kernel-config", "KernelConfig n-to-1 (DecoderLayer)", "kernelConfig"),
  ];
}

/**
 * The bundled approaches with the given ids, in the bundled order, the original always first (it is every
 * row's reference); no ids: all of them. An unknown id is an ArgumentError listing the valid ones.
 */
export function selectApproaches(ids?: readonly string[]): Approach[] {
  const all = defaultApproaches();
  if (ids === undefined) return all;
  const known = new Set(all.map((a) => a.id));
  const unknown = ids.filter((id) => !known.has(id));
  if (unknown.length)
    throw new ArgumentError(
      `unknown approach id${unknown.length > 1 ? "s" : ""} ${unknown.map((id) => JSON.stringify(id)).join(", ")}; ` +
        `valid ids: ${[...known].join(", ")}`,
    );
  return all.filter((a) => a.id === original.id || ids.includes(a.id));
}
