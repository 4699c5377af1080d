import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import {
  AutoModelForCausalLM,
  CheckpointReader,
  ConversionRuleError,
  getCheckpointConversionMapping,
  Qwen3Config,
  withPatches,
  registerCheckpointConversionMapping,
  Qwen3Attention,
  Qwen3DecoderLayer,
  Qwen3ForCausalLM,
  Qwen3MLP,
  clearCheckpointConversionMapping,
  clearPatchMapping,
  defaultModelDir,
  getKernelLayerName,
  setBackend,
  tf,
  unregisterPatchMapping,
  type PreTrainedModel,
} from "fusekit";
import {
  FusedNormMLP,
  FusedQwen3DecoderLayer,
  normMLPPatches,
  qwen3NormMLPPatches,
  registerQwen3NormMLPPatches,
} from "fusekit/patches/norm-mlp";
import {
  normMLPConversions,
  qwen3NormMLPConversions,
  registerNormMLPConversions,
  registerQwen3NormMLPConversions,
} from "fusekit/conversions/norm-mlp";
import {
  FusedGateUpMLP,
  FusedQKVAttention,
  gateUpQKVPatches,
  qwen3GateUpQKVPatches,
} from "fusekit/patches/gate-up-qkv";
import {
  gateUpQKVConversions,
  qwen3GateUpQKVConversions,
  registerGateUpQKVConversions,
} from "fusekit/conversions/gate-up-qkv";
import { flatLogitsOf, maxAbsDiff } from "./helpers/models.js";

const INPUT = [[151643, 872, 3838, 374, 220, 17, 10, 17, 30]];

const layers = (m: PreTrainedModel) => [...(m as Qwen3ForCausalLM).model.layers];

/** Every tensor of `saved` has exactly the bytes, dtype and shape of `original`'s tensor of the same name. */
async function expectSameTensors(original: string, saved: string): Promise<void> {
  const a = await CheckpointReader.open(original);
  const b = await CheckpointReader.open(saved);
  try {
    expect(b.keys().sort()).toEqual(a.keys().sort());
    for (const key of a.keys()) {
      const [ia, ib] = [a.infos.get(key)!, b.infos.get(key)!];
      expect([ib.dtype, ib.shape], key).toEqual([ia.dtype, ia.shape]);
      expect(Buffer.from(await b.readBytes(key)).equals(Buffer.from(await a.readBytes(key))), key).toBe(true);
    }
  } finally {
    await a.close();
    await b.close();
  }
}

afterEach(() => {
  clearPatchMapping();
  clearCheckpointConversionMapping();
});

describe.each(["wasm", "cpu"] as const)("recipes on %s", (backend) => {
  let dir: string;
  let plain: PreTrainedModel;
  let reference: Float32Array;
  let tmp: string;

  beforeAll(async () => {
    await setBackend(backend);
    dir = await defaultModelDir();
    plain = await AutoModelForCausalLM.fromPretrained(dir);
    reference = flatLogitsOf(plain, INPUT);
    tmp = await mkdtemp(path.join(os.tmpdir(), "fusekit-recipes-"));
    return async () => {
      plain.dispose();
      await rm(tmp, { recursive: true, force: true });
    };
  });

  it("the maintainer's example: registered NormMLP patches + renaming give the same logits, and unregistering restores the plain model", async () => {
    expect(getKernelLayerName(FusedNormMLP)).toBe("NormMLP");
    registerQwen3NormMLPPatches();
    registerQwen3NormMLPConversions();
    const model = await AutoModelForCausalLM.fromPretrained(dir);
    try {
      for (const layer of layers(model)) {
        expect(layer).toBeInstanceOf(FusedQwen3DecoderLayer);
        expect(layer.mlp).toBeInstanceOf(FusedNormMLP);
        expect("post_attention_layernorm" in layer).toBe(false);
      }
      const report = model.loadReport!;
      expect(report.missingKeys).toEqual([]);
      expect(report.unexpectedKeys).toEqual([]);
      expect(report.mismatchedKeys).toEqual([]);
      expect(report.conversionErrors).toEqual([]);
      expect(report.unmatchedRules).toEqual([]);
      expect(report.convertedKeys).toHaveLength(4);
      expect(report.convertedKeys[0]).toEqual({
        rule: String(qwen3NormMLPConversions[0]),
        sources: ["model.layers.0.post_attention_layernorm.weight"],
        targets: ["model.layers.0.mlp.norm_weight"],
      });
      const delta = maxAbsDiff(flatLogitsOf(model, INPUT), reference);
      console.log(`[${backend}] NormMLP patched vs plain logits: max |Δ| = ${delta}`);
      expect(delta).toBe(0); // the same ops in the same order (measured 0 on wasm and cpu)

      // Saving writes the original layout: the same tensors, byte for byte.
      const out = path.join(tmp, `norm-mlp-${backend}`);
      await model.savePretrained(out);
      await expectSameTensors(dir, out);
      expect(
        Buffer.compare(
          await readFile(path.join(out, "model.safetensors")),
          await readFile(path.join(dir, "model.safetensors")),
        ),
      ).toBe(0);

      // saveOriginalFormat: false keeps the runtime layout.
      const runtime = path.join(tmp, `norm-mlp-runtime-${backend}`);
      await model.savePretrained(runtime, { saveOriginalFormat: false });
      const r = await CheckpointReader.open(runtime);
      expect(r.keys()).toContain("model.layers.3.mlp.norm_weight");
      expect(r.keys().some((k) => k.includes("post_attention_layernorm"))).toBe(false);
      await r.close();
    } finally {
      model.dispose();
    }

    // No "load again before patches affect it": the next load after unregistering is plain.
    unregisterPatchMapping(Object.keys(qwen3NormMLPPatches));
    clearCheckpointConversionMapping("qwen3");
    const again = await AutoModelForCausalLM.fromPretrained(dir);
    try {
      for (const layer of layers(again)) {
        expect(layer.constructor).toBe(Qwen3DecoderLayer);
        expect(layer.mlp.constructor).toBe(Qwen3MLP);
      }
      expect(again.loadReport!.convertedKeys).toEqual([]);
      expect(maxAbsDiff(flatLogitsOf(again, INPUT), reference)).toBe(0);
    } finally {
      again.dispose();
    }
  });

  it("scoped NormMLP load: patched inside the call, plain right after, and memory flat over forwards", async () => {
    const model = await AutoModelForCausalLM.fromPretrained(dir, {
      patches: qwen3NormMLPPatches,
      conversions: qwen3NormMLPConversions,
    });
    const after = await AutoModelForCausalLM.fromPretrained(dir);
    try {
      expect(layers(model).every((l) => l.mlp instanceof FusedNormMLP)).toBe(true);
      expect(layers(after).every((l) => l.mlp.constructor === Qwen3MLP && l.constructor === Qwen3DecoderLayer)).toBe(
        true,
      );
      expect(model.loadReport!.missingKeys).toEqual([]);
      expect(model.loadReport!.unexpectedKeys).toEqual([]);
      expect(maxAbsDiff(flatLogitsOf(model, INPUT), reference)).toBe(0); // same ops, same order (measured 0)
      const before = tf.memory().numTensors;
      for (let i = 0; i < 3; i++) {
        flatLogitsOf(model, INPUT);
        expect(tf.memory().numTensors).toBe(before);
      }
    } finally {
      model.dispose();
      after.dispose();
    }
  });

  it("fused gate_up + qkv: one matmul each, logits match, and saving restores the original checkpoint byte for byte", async () => {
    const model = await AutoModelForCausalLM.fromPretrained(dir, {
      patches: qwen3GateUpQKVPatches,
      conversions: qwen3GateUpQKVConversions,
    });
    try {
      const cfg = (model as Qwen3ForCausalLM).config;
      for (const layer of layers(model)) {
        expect(layer.mlp).toBeInstanceOf(FusedGateUpMLP);
        expect(layer.self_attn).toBeInstanceOf(FusedQKVAttention);
        expect("gate_proj" in layer.mlp || "q_proj" in layer.self_attn).toBe(false);
      }
      const names = model.namedParameters().map(([n]) => n);
      expect(names).toContain("model.layers.0.mlp.gate_up_proj.weight");
      expect(names).toContain("model.layers.0.self_attn.qkv_proj.weight");
      const qkv = (layers(model)[0].self_attn as FusedQKVAttention).qkv_proj.weight;
      expect(qkv.stateShape).toEqual([
        (cfg.num_attention_heads + 2 * cfg.num_key_value_heads) * cfg.head_dim,
        cfg.hidden_size,
      ]);
      // The fused weight's rows are q, then k, then v — compare against the plain model's weights.
      const plainAttn = layers(plain)[0].self_attn as Qwen3Attention;
      const fused = qwen3Rows(qkv.stateData() as Float32Array, cfg.hidden_size);
      const expected = [plainAttn.q_proj, plainAttn.k_proj, plainAttn.v_proj].flatMap((l) =>
        qwen3Rows(l.weight.stateData() as Float32Array, cfg.hidden_size),
      );
      expect(fused).toEqual(expected);

      const report = model.loadReport!;
      expect([
        report.missingKeys,
        report.unexpectedKeys,
        report.mismatchedKeys,
        report.conversionErrors,
        report.unmatchedRules,
      ]).toEqual([[], [], [], [], []]);
      expect(report.convertedKeys).toHaveLength(2 * cfg.num_hidden_layers);
      const delta = maxAbsDiff(flatLogitsOf(model, INPUT), reference);
      console.log(`[${backend}] gate_up+qkv patched vs plain logits: max |Δ| = ${delta}`);
      // measured 0 on wasm and cpu (each output column is the same dot product); 1e-7 leaves room for a
      // matmul that blocks the wider fused weight differently
      expect(delta).toBeLessThanOrEqual(1e-7);

      const out = path.join(tmp, `gate-up-qkv-${backend}`);
      await model.savePretrained(out);
      await expectSameTensors(dir, out);
      expect(
        Buffer.compare(
          await readFile(path.join(out, "model.safetensors")),
          await readFile(path.join(dir, "model.safetensors")),
        ),
      ).toBe(0);

      // And the saved checkpoint loads plain with the same logits.
      const reloaded = await AutoModelForCausalLM.fromPretrained(out);
      expect(maxAbsDiff(flatLogitsOf(reloaded, INPUT), reference)).toBe(0);
      reloaded.dispose();
    } finally {
      model.dispose();
    }
  });

  it("fused qkv with attention biases: \\1 carries weight/bias into separate groups, unequal GQA chunks round-trip", async () => {
    const config = new Qwen3Config({
      vocab_size: 64,
      hidden_size: 32,
      intermediate_size: 48,
      num_hidden_layers: 2,
      num_attention_heads: 4,
      num_key_value_heads: 1,
      head_dim: 8,
      attention_bias: true,
    });
    const src = path.join(tmp, `bias-${backend}`);
    const original = AutoModelForCausalLM.fromConfig(config, { seed: 3 });
    const biases = original.namedParameters().filter(([name]) => name.endsWith("_proj.bias"));
    expect(biases).toHaveLength(2 * 4); // q, k, v, o per layer
    for (const [name, p] of biases)
      p.setStateData(Float32Array.from({ length: p.numel }, (_, i) => Math.sin(i + name.length) * 0.5)); // non-zero
    await original.savePretrained(src);
    const ids = [[5, 9, 2, 40, 7]];
    const want = original.forward({ inputIds: ids }).logits;
    const model = await AutoModelForCausalLM.fromPretrained(src, {
      patches: qwen3GateUpQKVPatches,
      conversions: qwen3GateUpQKVConversions,
    });
    try {
      expect(model.loadReport!.convertedKeys.map((c) => c.targets[0]).filter((t) => t.includes("qkv"))).toEqual([
        "model.layers.0.self_attn.qkv_proj.bias",
        "model.layers.0.self_attn.qkv_proj.weight",
        "model.layers.1.self_attn.qkv_proj.bias",
        "model.layers.1.self_attn.qkv_proj.weight",
      ]);
      expect([model.loadReport!.missingKeys, model.loadReport!.unexpectedKeys]).toEqual([[], []]);
      const got = model.forward({ inputIds: ids }).logits;
      const delta = maxAbsDiff(got.dataSync() as Float32Array, want.dataSync() as Float32Array);
      expect(delta).toBeLessThanOrEqual(1e-7); // measured 0 (see above)
      tf.dispose([got, want]);
      const out = path.join(tmp, `bias-saved-${backend}`);
      await model.savePretrained(out);
      await expectSameTensors(src, out);
    } finally {
      model.dispose();
      original.dispose();
    }
  });

  it("a patched model that was never loaded (fromConfig) also saves the original layout, and reloads to the same logits", async () => {
    const config = new Qwen3Config({
      vocab_size: 64,
      hidden_size: 32,
      intermediate_size: 48,
      num_hidden_layers: 2,
      num_attention_heads: 4,
      num_key_value_heads: 2,
      head_dim: 8,
    });
    registerQwen3NormMLPConversions();
    const patched = withPatches(qwen3NormMLPPatches, () => AutoModelForCausalLM.fromConfig(config, { seed: 5 }));
    // Non-trivial norm weights, so a lost or misplaced norm would change the logits.
    for (const l of layers(patched))
      (l.mlp as FusedNormMLP).norm_weight.setStateData(
        Float32Array.from({ length: 32 }, (_, i) => 1 + Math.sin(i + l.layerIdx)),
      );
    const out = path.join(tmp, `from-config-${backend}`);
    await patched.savePretrained(out);
    const r = await CheckpointReader.open(out);
    expect(r.keys()).toContain("model.layers.1.post_attention_layernorm.weight");
    expect(r.keys().some((k) => k.includes("norm_weight"))).toBe(false);
    await r.close();
    clearCheckpointConversionMapping();
    const plainLoad = await AutoModelForCausalLM.fromPretrained(out);
    expect([plainLoad.loadReport!.missingKeys, plainLoad.loadReport!.unexpectedKeys]).toEqual([[], []]);
    const ids = [[3, 1, 4, 1, 5]];
    const [a, b] = [patched, plainLoad].map((m) => m.forward({ inputIds: ids }).logits);
    expect(maxAbsDiff(a.dataSync() as Float32Array, b.dataSync() as Float32Array)).toBe(0); // same ops (measured 0)
    tf.dispose([a, b]);
    patched.dispose();
    plainLoad.dispose();

    // The same for converters: gate_up / qkv are chunked back with the plain model's (GQA) sizes.
    registerCheckpointConversionMapping("qwen3", qwen3GateUpQKVConversions);
    const fused = withPatches(qwen3GateUpQKVPatches, () => AutoModelForCausalLM.fromConfig(config, { seed: 6 }));
    const out2 = path.join(tmp, `from-config-fused-${backend}`);
    await fused.savePretrained(out2);
    clearCheckpointConversionMapping();
    const plain2 = await AutoModelForCausalLM.fromPretrained(out2);
    expect([
      plain2.loadReport!.missingKeys,
      plain2.loadReport!.unexpectedKeys,
      plain2.loadReport!.mismatchedKeys,
    ]).toEqual([[], [], []]);
    const [c, d] = [fused, plain2].map((m) => m.forward({ inputIds: ids }).logits);
    expect(maxAbsDiff(c.dataSync() as Float32Array, d.dataSync() as Float32Array)).toBeLessThanOrEqual(1e-7); // measured 0
    tf.dispose([c, d]);
    fused.dispose();
    plain2.dispose();
  });
});

/** Splits a row-major [rows, width] matrix into its rows (as plain arrays, for toEqual). */
function qwen3Rows(data: Float32Array, width: number): number[][] {
  const rows: number[][] = [];
  for (let i = 0; i < data.length; i += width) rows.push([...data.subarray(i, i + width)]);
  return rows;
}

describe("recipes reach every family", () => {
  it("registerNormMLPConversions / registerGateUpQKVConversions cover llama, qwen2, qwen3 — all or none", () => {
    for (const [register, rules] of [
      [registerNormMLPConversions, normMLPConversions],
      [registerGateUpQKVConversions, gateUpQKVConversions],
    ] as const) {
      register();
      for (const t of ["llama", "qwen2", "qwen3"]) expect(getCheckpointConversionMapping(t), t).toEqual(rules);
      clearCheckpointConversionMapping();
      registerCheckpointConversionMapping("qwen2", []);
      expect(() => register()).toThrow(ConversionRuleError);
      expect(getCheckpointConversionMapping("llama")).toBeUndefined(); // nothing half-registered
      register({ overwrite: true });
      expect(getCheckpointConversionMapping("qwen2")).toEqual(rules);
      clearCheckpointConversionMapping();
    }
  });

  it("patch keys are anchored: they match the three families' classes and nothing around them (full match or re.search)", () => {
    const keys = [...Object.keys(normMLPPatches), ...Object.keys(gateUpQKVPatches)];
    const matches = (name: string) => keys.filter((k) => new RegExp(k).test(name));
    for (const fam of ["Llama", "Qwen2", "Qwen3"]) {
      expect(matches(`${fam}MLP`)).toHaveLength(2);
      expect(matches(`${fam}DecoderLayer`)).toHaveLength(1);
      expect(matches(`${fam}Attention`)).toHaveLength(1);
    }
    for (const other of ["MyLlamaMLP", "LlamaMLPx", "Qwen2MoeMLP", "MistralMLP", "Qwen3MoeDecoderLayer"])
      expect(matches(other), other).toEqual([]);
  });
});
