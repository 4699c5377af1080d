// The perf work's fast paths stay exact: the NormMLP kernel on bf16-packed weights (patched and runtime-fused
// models vs the unkernelized bf16 model), and the preallocated KV cache (cached decode = full forward).
import { beforeAll, describe, expect, it } from "vitest";
import {
  AutoModelForCausalLM,
  DynamicCache,
  Mode,
  Qwen3Config,
  activeKernel,
  defaultModelDir,
  kernelize,
  setBackend,
  storeWeightsAs,
  tf,
  unkernelize,
  withPatches,
  type PreTrainedModel,
} from "fusekit";
import { fuseNormMLP } from "../fusions/qwen3-norm-mlp.js";
import { FusedNormMLP, qwen3NormMLPPatches } from "../patches/qwen3-norm-mlp.js";
import { qwen3NormMLPConversions } from "../conversions/qwen3-norm-mlp.js";

const IDS = [
  [9707, 11, 1246, 525, 498, 30],
  [3, 17, 9, 42, 5, 151643],
];

function logitsOf(model: PreTrainedModel, ids: number[][] = IDS): Float32Array {
  const { logits } = model.forward({ inputIds: ids });
  const v = logits.dataSync() as Float32Array;
  logits.dispose();
  return v;
}

function maxDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

const layersOf = (model: PreTrainedModel) => [...(model as any).model.layers];

describe.each(["wasm", "cpu"] as const)("NormMLP kernel on bf16-packed weights (%s)", (backend) => {
  let dir: string;
  let reference: Float32Array;
  beforeAll(async () => {
    await setBackend(backend);
    dir = await defaultModelDir();
    const original = await AutoModelForCausalLM.fromPretrained(dir, { weightStorage: "bf16" });
    reference = logitsOf(original);
    original.dispose();
  });

  it("runtime-fused chain + kernelize: logits within 1e-5 of the unkernelized bf16 model, memory flat", async () => {
    const model = await AutoModelForCausalLM.fromPretrained(dir, { weightStorage: "bf16" });
    fuseNormMLP(model, { kernel: true });
    await kernelize(model, { mode: Mode.INFERENCE });
    expect((layersOf(model)[0].mlp.chain[1].gate_proj.weight as { packed: boolean }).packed).toBe(true);
    expect(activeKernel(layersOf(model)[0].mlp)).toMatch(/^NormMLP/);
    const got = logitsOf(model);
    expect(maxDiff(got, reference)).toBeLessThan(1e-5);
    expect(maxDiff(got, reference)).toBeGreaterThan(0); // the kernel ran, not the composed ops
    const before = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) logitsOf(model, [[1, 2, 3]]);
    expect(tf.memory().numTensors).toBe(before);
    model.dispose();
  });

  it("patched FusedNormMLP + kernelize: logits within 1e-5 of the unkernelized bf16 model", async () => {
    const model = await AutoModelForCausalLM.fromPretrained(dir, { patches: qwen3NormMLPPatches, conversions: qwen3NormMLPConversions, weightStorage: "bf16" });
    expect(maxDiff(logitsOf(model), reference)).toBe(0); // the patch alone is exact
    await kernelize(model, { mode: Mode.INFERENCE });
    expect(activeKernel(layersOf(model)[0].mlp)).toMatch(/^NormMLP/);
    const got = logitsOf(model);
    expect(maxDiff(got, reference)).toBeLessThan(1e-5);
    expect(maxDiff(got, reference)).toBeGreaterThan(0);
    model.dispose();
  });

  it("widths the wasm bf16 matmul cannot take (not multiples of 8) fall back to the composed ops, exactly", async () => {
    const cfg = new Qwen3Config({ vocab_size: 16, hidden_size: 36, intermediate_size: 44, num_hidden_layers: 1, num_attention_heads: 4, num_key_value_heads: 2, head_dim: 8 });
    const mlp = withPatches(qwen3NormMLPPatches, () => new FusedNormMLP(cfg));
    mlp.initializeWeights(3);
    storeWeightsAs(mlp, "bf16", { lossy: true });
    const x = tf.randomNormal([2, 3, 36], 0, 1, "float32", 4);
    const expected = mlp.call(x).dataSync() as Float32Array;
    await kernelize(mlp, { mode: Mode.INFERENCE });
    const y = mlp.call(x);
    const d = maxDiff(y.dataSync() as Float32Array, expected);
    // wasm: the composed ops again (bit-identical); cpu: the kernel (its own op order)
    if (backend === "wasm") expect(d).toBe(0);
    else expect(d).toBeLessThan(1e-5);
    unkernelize(mlp);
    tf.dispose([x, y]);
    mlp.dispose();
  });
});
