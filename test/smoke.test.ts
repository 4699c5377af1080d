import { describe, expect, it } from "vitest";
import { AutoModelForCausalLM, Qwen3Config, setBackend, tf } from "fusekit";

describe("smoke", () => {
  it("builds a tiny model from config and runs a forward", async () => {
    await setBackend("cpu");
    const config = new Qwen3Config({ vocab_size: 32, hidden_size: 16, intermediate_size: 24, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1, head_dim: 8 });
    const model = AutoModelForCausalLM.fromConfig(config, { seed: 1 });
    const { logits } = model.forward({ inputIds: [[1, 2, 3]] });
    expect(logits.shape).toEqual([1, 3, 32]);
    logits.dispose();
    model.dispose();
    expect(tf.memory().numTensors).toBe(0);
  });
});
