// inRowBlocks: the MLPs run a long prompt in blocks of rows (so a prefill's intermediates stay 512 rows tall), and
// every row is computed as in one call — logits of every family, weight storage and the gate_up patch are the
// same bits with blocks of a few rows as in one block, and no tensor is left behind.
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { AutoModelForCausalLM, inRowBlocks, setBackend, tf } from "fusekit";
import { setRowBlock } from "../src/nn/layers.js";
import { qwen3GateUpQKVPatches } from "../patches/gate-up-qkv.js";
import { qwen3GateUpQKVConversions } from "../conversions/gate-up-qkv.js";
import { flatLogitsOf, savedFamilyModel } from "./helpers/models.js";

const FAMILY: Record<string, Record<string, unknown>> = {
  llama: { model_type: "llama", attention_bias: false, mlp_bias: true },
  qwen2: { model_type: "qwen2" },
  qwen3: { model_type: "qwen3" },
};
const SHAPE = {
  vocab_size: 96,
  hidden_size: 64,
  intermediate_size: 96,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  head_dim: 16,
  tie_word_embeddings: true,
};
const IDS = [Array.from({ length: 37 }, (_, i) => (i * 29 + 5) % 96)];

afterEach(() => void setRowBlock(512));

describe("inRowBlocks", () => {
  beforeAll(() => setBackend("wasm"));

  it("gives one call's result for every block size, whole blocks or a short last one, any leading dims", () => {
    const x = tf.randomNormal([2, 9, 8], 0, 1, "float32", 3);
    const w = tf.randomNormal([8, 5], 0, 1, "float32", 4);
    const f = (rows: tf.Tensor) =>
      tf.tidy(() => tf.reshape(tf.matMul(tf.reshape(rows, [-1, 8]), w), [...rows.shape.slice(0, -1), 5]));
    const whole = tf.tidy(() => f(x).dataSync());
    const heights: number[] = [];
    const g = (rows: tf.Tensor) => (heights.push(rows.shape[0]), f(rows));
    const before = tf.memory().numTensors;
    const expected: Record<number, number[]> = {
      1: Array(18).fill(1),
      4: [4, 4, 4, 3, 3], // 18 rows in ⌈18 / 4⌉ = 5 blocks of equal height, never a short last one
      6: [6, 6, 6],
      17: [9, 9],
      18: [2], // one call, on x as it is
      100: [2],
    };
    for (const [rows, want] of Object.entries(expected)) {
      setRowBlock(Number(rows));
      heights.length = 0;
      const y = inRowBlocks(x, g);
      expect(heights).toEqual(want);
      expect(y.shape).toEqual([2, 9, 5]);
      expect(y.dataSync()).toEqual(whole);
      y.dispose();
    }
    expect(tf.memory().numTensors).toBe(before); // blocks, slices and the concatenation are all freed
    tf.dispose([x, w]);
  });

  it("refuses a block that is not a positive whole number of rows", () => {
    for (const bad of [0, -1, 2.5, NaN]) expect(() => setRowBlock(bad)).toThrow(/row block must be a positive integer/);
  });

  describe.each(Object.keys(FAMILY))("%s", (family) => {
    it.each(["f32", "bf16", "int8"] as const)(
      "%s weights: the MLPs' blocks give the same logits bits",
      async (storage) => {
        const dir = await savedFamilyModel({ ...SHAPE, ...FAMILY[family] }, { seed: 7, dtype: "BF16" });
        for (const options of [{}, { patches: qwen3GateUpQKVPatches, conversions: qwen3GateUpQKVConversions }]) {
          const model = await AutoModelForCausalLM.fromPretrained(dir, { weightStorage: storage, ...options });
          const whole = flatLogitsOf(model, IDS);
          const rows: number[] = []; // what each layer's down_proj sees
          const down = model.getSubmodule("model.layers.0.mlp.down_proj");
          const hook = down.registerForwardPreHook((_m, args) => {
            const x = args[0] as tf.Tensor;
            rows.push(x.size / x.shape[x.rank - 1]);
          });
          setRowBlock(16); // 37 rows: blocks of 13, 12 and 12
          const before = tf.memory().numTensors;
          expect(flatLogitsOf(model, IDS)).toEqual(whole);
          expect(tf.memory().numTensors).toBe(before);
          expect(rows).toEqual([13, 12, 12]);
          hook.remove();
          setRowBlock(512);
          model.dispose();
        }
      },
    );
  });
});
