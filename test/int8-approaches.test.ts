// weightStorage "int8" through every approach the comparison runs: each loads (or converts) its weights through
// the same Linear / Embedding machinery, so each runs on 8-bit weights and matches the int8 original exactly
// (the bundled NormMLP and DecoderLayer kernels hand 8-bit layers to the modules' own forwards).
import { beforeAll, describe, expect, it } from "vitest";
import { setBackend } from "fusekit";
import { runComparison } from "../src/compare/run.js";
import { defaultApproaches } from "../src/compare/approaches.js";
import { savedFamilyModel } from "./helpers/models.js";

const CONFIG = {
  model_type: "qwen3",
  vocab_size: 96,
  hidden_size: 64,
  intermediate_size: 96,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  head_dim: 16,
  tie_word_embeddings: true,
};

describe.each(["wasm", "cpu"])("comparison with int8 weights on %s", (backend) => {
  beforeAll(() => setBackend(backend));

  it("every approach runs on 8-bit weights and matches the int8 original", async () => {
    const dir = await savedFamilyModel(CONFIG, { seed: 21, dtype: "BF16" });
    const result = await runComparison({
      modelDir: dir,
      promptIds: [5, 17, 3, 42, 8, 60],
      newTokens: 6,
      rounds: 1,
      approaches: defaultApproaches(),
      weightStorage: "int8",
    });
    expect(result.weightStorage).toBe("int8");
    expect(result.rows.map((r) => r.id)).toEqual(defaultApproaches().map((a) => a.id));
    for (const r of result.rows) {
      expect(r.error, r.label).toBeUndefined();
      expect(r.maxAbsDiff, r.label).toBe(0); // the same int8 kernels in the same order
      expect(r.tokensIdentical, r.label).toBe(r.tokensTotal);
    }
  });
});
