// The approaches the comparison runs, each built from a fresh load of the same checkpoint. Each one is
// written the way a user would write it, from the recipe files it names (their lines are counted).
import { AutoModelForCausalLM } from "../models/auto.js";
import type { PreTrainedModel } from "../loading/pretrained.js";
import { withPatches } from "../patching/registry.js";
import { getFusedChains } from "../fusion/fuse.js";
import type { ConversionRule } from "../conversion/rules.js";
import type { PatchMapping } from "../patching/registry.js";
import { fuseNormMLP, unfuseNormMLP } from "../../fusions/qwen3-norm-mlp.js";
import { qwen3NormMLPPatches } from "../../patches/qwen3-norm-mlp.js";
import { qwen3NormMLPConversions } from "../../conversions/qwen3-norm-mlp.js";
import { qwen3GateUpQKVPatches } from "../../patches/qwen3-gate-up-qkv.js";
import { qwen3GateUpQKVConversions } from "../../conversions/qwen3-gate-up-qkv.js";
import { kernelize, unkernelize } from "../hub/kernelize.js";
import { Mode } from "../hub/mode.js";
import type { Approach } from "./types.js";

/** Exact-order paths must match the original to 1e-6; kernels (other op order) to 1e-5. */
export const EXACT = 1e-6;
export const KERNEL = 1e-5;

async function timed<T>(steps: Record<string, number>, name: string, fn: () => T | Promise<T>): Promise<T> {
  const t0 = performance.now();
  const out = await fn();
  steps[name] = performance.now() - t0;
  return out;
}

const NORM_MLP_FUSION = ["fusions/qwen3-norm-mlp.ts"];
const NORM_MLP_PATCH = ["patches/qwen3-norm-mlp.ts", "conversions/qwen3-norm-mlp.ts"];
const GATE_UP_QKV_PATCH = ["patches/qwen3-gate-up-qkv.ts", "conversions/qwen3-gate-up-qkv.ts"];

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
    tolerance: kernel ? KERNEL : EXACT,
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
function patchMapping(id: string, label: string, patches: PatchMapping, conversions: ConversionRule[], recipeFiles: string[], { kernel = false } = {}): Approach {
  return {
    id,
    label,
    tolerance: kernel ? KERNEL : EXACT,
    recipeFiles,
    async setup(dir, load) {
      const steps: Record<string, number> = {};
      const model = await timed(steps, "load", () => AutoModelForCausalLM.fromPretrained(dir, { ...load, patches, conversions }));
      if (kernel) await timed(steps, "kernelize", () => kernelize(model, { mode: Mode.INFERENCE }));
      return { model, steps };
    },
    // Patches act when classes are constructed: inside the scope, does the loaded model change?
    async applyToLoaded(model) {
      const before = model.namedModules().map(([, m]) => m.constructor);
      return withPatches(patches, async () => model.namedModules().some(([, m], i) => m.constructor !== before[i]));
    },
    // The only undo is leaving the patch scope (or unregistering), which has already happened; the
    // comparison then checks whether the model went back.
    reverse: () => true,
  };
}

export function defaultApproaches(): Approach[] {
  return [
    original,
    runtimeFusion("fused", "runtime fusion (norm+mlp)"),
    runtimeFusion("fused-unfused", "runtime fusion, then unfused", { unfuse: true }),
    runtimeFusion("fused-kernel", "runtime fusion + NormMLP kernel", { kernel: true }),
    patchMapping("patched", "patch mapping + conversion (NormMLP)", qwen3NormMLPPatches, qwen3NormMLPConversions, NORM_MLP_PATCH),
    patchMapping("patched-kernel", "patch mapping + kernelize (NormMLP)", qwen3NormMLPPatches, qwen3NormMLPConversions, NORM_MLP_PATCH, { kernel: true }),
    patchMapping("gate-up-qkv", "patch mapping + converter (gate_up, qkv)", qwen3GateUpQKVPatches, qwen3GateUpQKVConversions, GATE_UP_QKV_PATCH),
    // no fused gate_up/qkv kernel exists; kernelize gives this model the RMSNorm kernels
    patchMapping("gate-up-qkv-kernel", "gate_up/qkv + kernelize (RMSNorm)", qwen3GateUpQKVPatches, qwen3GateUpQKVConversions, GATE_UP_QKV_PATCH, { kernel: true }),
  ];
}
