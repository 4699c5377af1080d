// KernelConfig: single-layer replacement and n-to-1 kernel fusion with the repo's Layout (transformers PR #46339).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { promises as fsp } from "node:fs";
import {
  AutoModelForCausalLM,
  Identity,
  KernelConfig,
  KernelConfigError,
  Qwen3RMSNorm,
  activeKernel,
  getCheckpointConversionMapping,
  getKernelLayerName,
  setBackend,
  tf,
  unkernelize,
  useKernelForwardFromHub,
  type KernelConfigEntry,
  type PreTrainedModel,
} from "fusekit";
import { sameCheckpointTensors } from "../src/compare/properties.js";
import { EXACT } from "../src/compare/approaches.js";
import { logitsOf, maxAbsDiff, randomizeNormsAndBiases, smallConfig, tmpDir } from "./helpers/models.js";

const IDS = [[3, 17, 5, 42, 9, 1, 60, 22]];
/** How many times one forward runs the tfjs kernel `name`. */
async function kernelCalls(model: PreTrainedModel, name: string): Promise<number> {
  const info = await tf.profile(() => model.forward({ inputIds: IDS }).logits);
  return info.kernels.filter((k) => k.name === name).length;
}
const NORM_MLP: KernelConfigEntry = [
  [
    ["RMSNorm", "model.layers.*.post_attention_layernorm"],
    ["MLP", "model.layers.*.mlp"],
  ],
  "fusekit/norm-mlp:NormMLP",
];
const dirs: string[] = [];
const flat = (m: PreTrainedModel) => logitsOf(m, IDS).flat(2);
let dir: string;
let plain: number[];

beforeAll(async () => {
  await setBackend("cpu");
  const model = AutoModelForCausalLM.fromConfig(smallConfig(), { seed: 3 });
  randomizeNormsAndBiases(model, 5);
  dir = tmpDir("fusekit-kernel-config-");
  dirs.push(dir);
  await model.savePretrained(dir);
  plain = flat(model);
  model.dispose();
});
afterAll(async () => {
  for (const d of dirs) await fsp.rm(d, { recursive: true, force: true });
});

describe("KernelConfig n-to-1", () => {
  it("puts NormMLPLayout in the norm's slot, an Identity in the mlp's, kernelizes it, saves the original bytes", async () => {
    const before = getCheckpointConversionMapping();
    const model = await AutoModelForCausalLM.fromPretrained(dir, { useKernels: true, kernelConfig: [NORM_MLP] });
    const layout = model.getSubmodule("model.layers.1.post_attention_layernorm");
    expect(layout.constructor.name).toBe("NormMLPLayout");
    expect(model.getSubmodule("model.layers.1.mlp")).toBeInstanceOf(Identity);
    expect(Object.getPrototypeOf(model.getSubmodule("model.layers.1")).constructor.name).toBe("FusedQwen3DecoderLayer");
    expect(getKernelLayerName(layout)).toBe("NormMLP");
    expect(activeKernel(layout)).toBe('NormMLP from repo "fusekit/norm-mlp"');
    const keys = model.namedParameters().map(([k]) => k);
    expect(keys).toContain("model.layers.0.post_attention_layernorm.norm_weight");
    expect(keys).toContain("model.layers.0.post_attention_layernorm.down_proj.weight");
    expect(keys.some((k) => k.includes(".mlp."))).toBe(false);
    // the kernel ran (one FusekitNormMLP call per layer) and rounds as the unfused modules do: the same logits
    expect(await kernelCalls(model, "FusekitNormMLP")).toBe(2);
    expect(maxAbsDiff(flat(model), plain)).toBe(0);
    unkernelize(model);
    expect(flat(model)).toEqual(plain); // the Layout's own forward is the original ops
    const out = tmpDir("fusekit-kernel-config-save-");
    dirs.push(out);
    await model.savePretrained(out);
    model.dispose();
    expect(await sameCheckpointTensors(dir, out)).toBe(true);
    // scoped: the registries are as they were and the next load is plain
    expect(getCheckpointConversionMapping()).toEqual(before);
    const next = await AutoModelForCausalLM.fromPretrained(dir, { useKernels: true });
    expect(next.getSubmodule("model.layers.0.mlp").constructor.name).toBe("Qwen3MLP");
    next.dispose();
  });

  it("norm + q/k/v: NormQKVLayout in the attention's slot with one merged qkv_proj; original bytes on save", async () => {
    const entry: KernelConfigEntry = [
      [
        ["Attention", "model.layers.*.self_attn"],
        ["RMSNorm", "model.layers.*.input_layernorm"],
      ],
      "fusekit/norm-qkv:NormQKV",
    ];
    const model = await AutoModelForCausalLM.fromPretrained(dir, { useKernels: true, kernelConfig: [entry, NORM_MLP] });
    const layout = model.getSubmodule("model.layers.0.self_attn");
    expect(layout.constructor.name).toBe("NormQKVLayout");
    expect(model.getSubmodule("model.layers.0.input_layernorm")).toBeInstanceOf(Identity);
    expect(activeKernel(layout)).toBe('NormQKV from repo "fusekit/norm-qkv"');
    const shapes = new Map(model.namedParameters().map(([k, p]) => [k, p.stateShape]));
    expect(shapes.get("model.layers.0.self_attn.qkv_proj.weight")).toEqual([32 + 16 + 16, 32]);
    expect(shapes.has("model.layers.0.self_attn.norm_weight")).toBe(true);
    expect(shapes.has("model.layers.0.self_attn.o_proj.weight")).toBe(true);
    expect([...shapes.keys()].some((k) => /input_layernorm|\.(q|k|v)_proj\./.test(k))).toBe(false);
    expect(maxAbsDiff(flat(model), plain)).toBeLessThanOrEqual(EXACT);
    unkernelize(model);
    expect(maxAbsDiff(flat(model), plain)).toBeLessThanOrEqual(1e-6);
    const out = tmpDir("fusekit-kernel-config-save-");
    dirs.push(out);
    await model.savePretrained(out);
    model.dispose();
    expect(await sameCheckpointTensors(dir, out)).toBe(true);
  });

  it("a single-layer entry maps a layer name to a repo's layer for this load", async () => {
    @useKernelForwardFromHub("MyNorm")
    class MyNorm extends Qwen3RMSNorm {}
    const load = (kernelConfig?: KernelConfigEntry[]) =>
      AutoModelForCausalLM.fromPretrained(dir, { useKernels: true, patches: { Qwen3RMSNorm: MyNorm }, kernelConfig });
    const without = await load();
    expect(activeKernel(without.getSubmodule("model.norm"))).toBeUndefined(); // nothing serves "MyNorm"
    without.dispose();
    const model = await load([["MyNorm", "fusekit/rmsnorm:RMSNorm"]]);
    expect(activeKernel(model.getSubmodule("model.norm"))).toBe('RMSNorm from repo "fusekit/rmsnorm"');
    expect(maxAbsDiff(flat(model), plain)).toBeLessThanOrEqual(EXACT);
    model.dispose();
  });

  it("errors: no Layout, nothing matched, missing children, paths without one parent, malformed, no useKernels", async () => {
    const load = (entry: unknown, useKernels = true) =>
      AutoModelForCausalLM.fromPretrained(dir, { useKernels, kernelConfig: [entry as KernelConfigEntry] }).catch(
        (e) => e,
      );
    const cases: [unknown, RegExp][] = [
      [
        [NORM_MLP[0], "fusekit/rmsnorm:RMSNorm"],
        /"fusekit\/rmsnorm:RMSNorm": the repository has no RMSNormLayout, so its layer replaces the forward of "model\.layers\.0" \(Qwen3DecoderLayer\) and the key must name every child of it; missing: self_attn, input_layernorm/,
      ],
      [
        [
          [
            ["RMSNorm", "model.blocks.*.norm"],
            ["MLP", "model.blocks.*.mlp"],
          ],
          NORM_MLP[1],
        ],
        /no module matches the parent path "model\.blocks\.\*"/,
      ],
      [
        [
          [
            ["RMSNorm", "model.layers.*.post_attention_layernorm"],
            ["MLP", "model.layers.*.ffn"],
          ],
          NORM_MLP[1],
        ],
        /module "model\.layers\.0" \(Qwen3DecoderLayer\) lacks the children MLP at model\.layers\.\*\.ffn/,
      ],
      [
        [
          [
            ["RMSNorm", "model.layers.*.post_attention_layernorm"],
            ["Linear", "model.layers.*.mlp.up_proj"],
          ],
          NORM_MLP[1],
        ],
        /do not share one parent module/,
      ],
      [
        [
          [
            ["Attention", "model.layers.*.post_attention_layernorm"],
            ["MLP", "model.layers.*.mlp"],
          ],
          NORM_MLP[1],
        ],
        /lacks the children Attention at/,
      ],
      [["RMSNorm", "no-colon"], /is not "org\/repo:Layer"/],
    ];
    for (const [entry, message] of cases) {
      const err = await load(entry);
      expect(err, String(message)).toBeInstanceOf(KernelConfigError);
      expect(err.message).toMatch(message);
    }
    expect(await load(NORM_MLP, false)).toBeInstanceOf(KernelConfigError);
    expect(() => new KernelConfig([NORM_MLP, ["", "a/b:C"]])).toThrow(/entry 1/);
  });
});
