// Runtime fusion on the default tiny checkpoint, on wasm and cpu: fused = original exactly (same op
// order), unfuse restores the very same objects, KV-cache decoding, state dict and save layout, memory.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import os from "node:os";
import path from "node:path";
import { promises as fsp } from "node:fs";
import {
  AutoModelForCausalLM,
  DynamicCache,
  FusedModule,
  ModuleSpec,
  RegistryCollector,
  SafetensorsFile,
  defaultModelDir,
  fuseModules,
  getFusedChains,
  setBackend,
  tf,
  unfuseModules,
  type Module,
  type PreTrainedModel,
} from "fusekit";
import { flatLogitsOf, maxAbsDiff } from "./helpers/models.js";
import { scaled } from "./helpers/scale.js";

const PATTERNS = ["model.layers.*.post_attention_layernorm", "model.layers.*.mlp"];
const specs = () => [
  new ModuleSpec({ inputs: ["hidden_states"], outputs: ["hidden_states"] }),
  new ModuleSpec({ inputs: ["hidden_states"], outputs: ["hidden_states"] }),
];
const PROMPT = [[151643, 9707, 11, 1879, 0, 220, 3555, 374]];

/** Greedy decoding with a KV cache: prefill the prompt, then one token per step. Returns tokens and each step's logits. */
function greedy(
  model: PreTrainedModel,
  prompt: number[][],
  steps: number,
): { tokens: number[]; stepLogits: Float32Array[] } {
  const cache = new DynamicCache();
  const tokens: number[] = [];
  const stepLogits: Float32Array[] = [];
  let ids = prompt;
  try {
    for (let s = 0; s < steps; s++) {
      const { logits } = model.forward({ inputIds: ids, pastKeyValues: cache, useCache: true, logitsToKeep: 1 });
      const row = Float32Array.from(logits.dataSync() as Float32Array);
      logits.dispose();
      let best = 0;
      for (let i = 1; i < row.length; i++) if (row[i] > row[best]) best = i;
      tokens.push(best);
      stepLogits.push(row);
      ids = [[best]];
    }
  } finally {
    cache.dispose();
  }
  return { tokens, stepLogits };
}

describe.each(["wasm", "cpu"] as const)("fuseModules on the default tiny checkpoint (%s)", (backend) => {
  let dir: string;
  let model: PreTrainedModel;
  let reference: Float32Array;
  let baseline: number;

  beforeAll(async () => {
    await setBackend(backend);
    dir = await defaultModelDir();
    model = await AutoModelForCausalLM.fromPretrained(dir);
    reference = flatLogitsOf(model, PROMPT);
    baseline = tf.memory().numTensors;
  });

  afterAll(() => {
    unfuseModules(model);
    model.dispose();
  });

  it("fused logits equal the original exactly; unfuse puts back the very same modules", () => {
    const before = model.namedModules();
    const chains = fuseModules(model, PATTERNS, specs());
    expect(chains.map((c) => c.paths)).toEqual(
      [0, 1, 2, 3].map((i) => [`model.layers.${i}.post_attention_layernorm`, `model.layers.${i}.mlp`]),
    );
    for (const i of [0, 1, 2, 3]) {
      expect(model.getSubmodule(`model.layers.${i}.post_attention_layernorm`)).toBeInstanceOf(RegistryCollector);
      expect(model.getSubmodule(`model.layers.${i}.mlp`)).toBeInstanceOf(FusedModule);
    }
    const fused = flatLogitsOf(model, PROMPT);
    expect(maxAbsDiff(fused, reference)).toBe(0);
    expect(chains.every((c) => c.fused.registry.size === 0)).toBe(true);

    unfuseModules(model);
    const after = model.namedModules();
    expect(after.map(([p]) => p)).toEqual(before.map(([p]) => p));
    const same = after.filter(([, m], i) => m === before[i][1]).length;
    expect(same).toBe(before.length);
    expect(maxAbsDiff(flatLogitsOf(model, PROMPT), reference)).toBe(0);
    expect(tf.memory().numTensors).toBe(baseline);
  });

  it("KV-cache greedy decoding gives the same tokens (and step logits) fused as unfused", () => {
    const original = greedy(model, PROMPT, 8);
    fuseModules(model, PATTERNS, specs());
    try {
      const fused = greedy(model, PROMPT, 8);
      expect(fused.tokens).toEqual(original.tokens);
      fused.stepLogits.forEach((row, s) => expect(maxAbsDiff(row, original.stepLogits[s])).toBe(0));
      // The cached steps are real decoding: a full recompute of prompt + 7 tokens predicts the 8th token too.
      const full = flatLogitsOf(model, [[...PROMPT[0], ...original.tokens.slice(0, 7)]]);
      const vocab = original.stepLogits[0].length;
      const last = full.subarray(full.length - vocab);
      expect(maxAbsDiff(last, original.stepLogits[7])).toBeLessThan(2e-6); // measured 4.8e-7 (wasm and cpu)
    } finally {
      unfuseModules(model);
    }
    expect(tf.memory().numTensors).toBe(baseline);
  });

  it("stateDict keys and tensors are those of the unfused model", () => {
    const plain = model.stateDict();
    fuseModules(model, PATTERNS, specs());
    try {
      const fused = model.stateDict();
      expect(Object.keys(fused)).toEqual(Object.keys(plain));
      expect(Object.keys(fused)).toContain("model.layers.2.post_attention_layernorm.weight");
      expect(Object.keys(fused)).toContain("model.layers.2.mlp.gate_proj.weight");
      for (const [k, t] of Object.entries(fused)) {
        expect(t.shape).toEqual(plain[k].shape);
        expect(maxAbsDiff(t.dataSync() as Float32Array, plain[k].dataSync() as Float32Array)).toBe(0);
      }
      expect(model.namedParameters().map(([k]) => k)).toEqual(Object.keys(plain));
      [...Object.values(fused), ...Object.values(plain)].forEach((t) => t.dispose());
    } finally {
      unfuseModules(model);
    }
    expect(tf.memory().numTensors).toBe(baseline);
  });

  it("savePretrained while fused writes the source checkpoint's tensors byte for byte", async () => {
    const out = await fsp.mkdtemp(path.join(os.tmpdir(), `fusekit-fusion-${backend}-`));
    fuseModules(model, PATTERNS, specs());
    try {
      await model.savePretrained(out);
      const src = await SafetensorsFile.open(path.join(dir, "model.safetensors"));
      const dst = await SafetensorsFile.open(path.join(out, "model.safetensors"));
      try {
        expect(dst.keys().sort()).toEqual(src.keys().sort());
        for (const key of src.keys()) {
          expect(dst.info(key).dtype).toBe(src.info(key).dtype);
          expect(dst.info(key).shape).toEqual(src.info(key).shape);
          expect(Buffer.compare(Buffer.from(await dst.readBytes(key)), Buffer.from(await src.readBytes(key)))).toBe(0);
        }
      } finally {
        await src.close();
        await dst.close();
      }
      // Even the whole file: same header, same order, same bytes.
      const [a, b] = await Promise.all([
        fsp.readFile(path.join(dir, "model.safetensors")),
        fsp.readFile(path.join(out, "model.safetensors")),
      ]);
      expect(a.equals(b)).toBe(true);
    } finally {
      unfuseModules(model);
      await fsp.rm(out, { recursive: true, force: true });
    }
  });

  it("registries are empty after a forward that throws inside the chain", () => {
    const chains = fuseModules(model, PATTERNS, specs());
    const mlp2: Module = chains[2].fused.chain[1];
    const handle = mlp2.registerForwardPreHook(() => {
      throw new Error("mlp of layer 2 refused");
    });
    const inputIds = tf.tensor2d(PROMPT, [1, PROMPT[0].length], "int32");
    try {
      expect(() => model.forward({ inputIds })).toThrow("mlp of layer 2 refused");
      expect(chains.map((c) => c.fused.registry.size)).toEqual([0, 0, 0, 0]);
    } finally {
      handle.remove();
      inputIds.dispose();
      unfuseModules(model);
    }
    expect(tf.memory().numTensors).toBe(baseline);
  });

  const quarter = scaled(50, 5); // 200 forwards (a tenth under mutation testing: test/helpers/scale.ts)
  it(`tf.memory().numTensors stays flat over ${4 * quarter} fused forwards`, () => {
    fuseModules(model, PATTERNS, specs());
    try {
      const counts: number[] = [];
      for (let i = 0; i < 4 * quarter; i++) {
        const { logits } = model.forward({ inputIds: [[1 + (i % 50), 2, 3]], logitsToKeep: 1 });
        logits.dispose();
        if (i % quarter === quarter - 1) counts.push(tf.memory().numTensors);
      }
      expect(counts).toEqual([baseline, baseline, baseline, baseline]);
      expect(getFusedChains(model).every((c) => c.fused.registry.size === 0)).toBe(true);
    } finally {
      unfuseModules(model);
    }
  });
});
