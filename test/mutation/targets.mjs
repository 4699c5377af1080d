// The files mutation testing covers (where a silent bug costs most), each with the test files
// that own it: a mutant runs only those (and, with per-test coverage, only the tests that reach it).
export const TARGETS = {
  modeling: {
    mutate: ["src/models/qwen3/modeling.ts", "src/models/llama/modeling.ts"],
    testFiles: ["test/model.test.ts", "test/layers.test.ts", "test/module.test.ts", "test/decoder-wiring.test.ts"],
  },
  conversion: {
    mutate: ["src/conversion/apply.ts", "src/conversion/ops.ts"],
    testFiles: ["test/conversion-ops.test.ts", "test/conversion.test.ts", "test/recipes.test.ts"],
  },
  fusion: {
    mutate: ["src/fusion/fuse.ts", "src/fusion/modules.ts"],
    testFiles: ["test/fusion.test.ts", "test/fusion-wiring.test.ts", "test/fusion-edges.test.ts"],
  },
  kernelize: {
    mutate: ["src/hub/kernelize.ts", "src/hub/fused.ts"],
    testFiles: ["test/kernel-layer-rules.test.ts", "test/kernelize.test.ts", "test/hub.test.ts"],
  },
  safetensors: {
    mutate: ["src/io/safetensors.ts"],
    testFiles: [
      "test/checkpoint-io.test.ts",
      "test/bad-input.test.ts",
      "test/safetensors-dtypes.test.ts",
      "test/safetensors-reader.test.ts",
      "test/fuzz-checkpoint.test.ts",
    ],
  },
  sampling: { mutate: ["src/generation/sampling.ts"], testFiles: ["test/sampling.test.ts", "test/generation.test.ts"] },
};
