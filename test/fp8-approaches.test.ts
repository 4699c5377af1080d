// An FP8 checkpoint through every approach the comparison runs, with default options: each keeps its FP8
// weights as stored (merged q/k/v and gate/up ones too: their row blocks concatenated) and reads them with the
// FP8 kernels, so each matches the FP8 original exactly; a merged model saves the checkpoint's bytes back.
import { promises as fsp } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  AutoModelForCausalLM,
  DECODER_LAYER,
  DynamicCache,
  Mode,
  activeKernel,
  kernelize,
  quantizeToFp8,
  setBackend,
  setKernelThreads,
  type PreTrainedModel,
} from "fusekit/internals";
import { decoderLayerSteps } from "../src/backend/decoder-layer.js";
import { runComparison } from "../src/compare/run.js";
import { defaultApproaches } from "../src/compare/approaches.js";
import { gateUpQKVConversions } from "../conversions/gate-up-qkv.js";
import { gateUpQKVPatches } from "../patches/gate-up-qkv.js";
import { flatLogitsOf, maxAbsDiff, tmpDir } from "./helpers/models.js";

const CONFIG = {
  model_type: "qwen3",
  vocab_size: 96,
  hidden_size: 128,
  intermediate_size: 192,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  head_dim: 32,
  tie_word_embeddings: true,
};

const dirs: string[] = [];
afterAll(async () => Promise.all(dirs.map((d) => fsp.rm(d, { recursive: true, force: true }))));
const scratch = () => {
  const d = tmpDir("fusekit-fp8-approaches-");
  dirs.push(d);
  return d;
};

/** An FP8 checkpoint as `quantize-fp8` writes it from a BF16 one (blocks of 64: k / v rows are one block). */
async function fp8Checkpoint(config: Record<string, unknown> = CONFIG): Promise<string> {
  const random = AutoModelForCausalLM.fromConfig(config, { seed: 2 });
  const bf16 = scratch();
  await random.savePretrained(bf16, { dtype: "BF16" });
  random.dispose();
  const model = await AutoModelForCausalLM.fromPretrained(bf16);
  quantizeToFp8(model, { weightBlockSize: [64, 64] });
  const dir = scratch();
  await model.savePretrained(dir);
  model.dispose();
  return dir;
}

describe.each(["wasm", "cpu"])("comparison on an FP8 checkpoint on %s", (backend) => {
  beforeAll(() => setBackend(backend));

  it("every approach runs on the kept FP8 weights and matches the FP8 original", async () => {
    const result = await runComparison({
      modelDir: await fp8Checkpoint(),
      promptIds: [5, 17, 3, 42, 8, 60],
      newTokens: 6,
      rounds: 1,
      approaches: defaultApproaches(),
    });
    expect(result.weightStorage).toBe("fp8");
    expect(result.rows.map((r) => r.id)).toEqual(defaultApproaches().map((a) => a.id));
    for (const r of result.rows) {
      expect(r.error, r.label).toBeUndefined();
      expect(r.maxAbsDiff, r.label).toBe(0); // the same FP8 kernels on the same codes, in the same order
      expect(r.tokensIdentical, r.label).toBe(r.tokensTotal);
    }
  });

  it("merged q/k/v and gate/up weights stay FP8 and save back as the checkpoint's bytes", async () => {
    const dir = await fp8Checkpoint();
    const options = { patches: gateUpQKVPatches, conversions: gateUpQKVConversions };
    const merged = await AutoModelForCausalLM.fromPretrained(dir, options);
    const original = await AutoModelForCausalLM.fromPretrained(dir);
    try {
      const params = new Map(merged.namedParameters());
      for (const key of ["model.layers.0.self_attn.qkv_proj.weight", "model.layers.1.mlp.gate_up_proj.weight"])
        expect(params.get(key)?.fp8, key).toBe(true);
      expect(merged.memoryPlan!.weightBytes).toBe(original.memoryPlan!.weightBytes);
      const ids = [[5, 17, 3, 42]];
      expect(maxAbsDiff(flatLogitsOf(merged, ids), flatLogitsOf(original, ids))).toBe(0);
      const out = scratch();
      await merged.savePretrained(out);
      const file = (d: string) => fsp.readFile(path.join(d, "model.safetensors"));
      expect((await file(out)).equals(await file(dir))).toBe(true);
    } finally {
      merged.dispose();
      original.dispose();
    }
  });
});

/** Greedy decode logits' bits, one token a step on one cache (the decoder-layer kernel's steps). */
function decodeBits(model: PreTrainedModel, prompt: number[], steps: number): Uint32Array[] {
  const cache = new DynamicCache();
  const out: Uint32Array[] = [];
  const step = (ids: number[]) => {
    const { logits } = model.forward({ inputIds: [ids], pastKeyValues: cache, useCache: true, logitsToKeep: 1 });
    const v = (logits.dataSync() as Float32Array).slice();
    logits.dispose();
    out.push(new Uint32Array(v.buffer));
    return v.indexOf(Math.max(...v));
  };
  let next = step(prompt);
  for (let s = 0; s < steps; s++) next = step([next]);
  cache.dispose();
  return out;
}

describe("the DecoderLayer kernel on FP8 weights (wasm, pool)", () => {
  beforeAll(async () => {
    await setBackend("wasm");
    setKernelThreads(2);
  });
  afterAll(() => setKernelThreads());

  it.each(["qwen3", "qwen2", "llama"])(
    "%s: every decode step equals the FP8 per-op layers bit for bit",
    async (family) => {
      const dir = await fp8Checkpoint({ ...CONFIG, model_type: family });
      const original = await AutoModelForCausalLM.fromPretrained(dir);
      const kernelized = await AutoModelForCausalLM.fromPretrained(dir);
      try {
        DECODER_LAYER.fuse(kernelized);
        await kernelize(kernelized, { mode: Mode.INFERENCE });
        const layer = kernelized.namedModules().find(([p]) => p === "model.layers.0")![1];
        expect(activeKernel(layer)).toBe('DecoderLayer from repo "fusekit/decoder-layer"');
        const before = decoderLayerSteps();
        const prompt = [5, 17, 3, 42, 8];
        const got = decodeBits(kernelized, prompt, 6);
        expect(decoderLayerSteps() - before).toBe(6 * CONFIG.num_hidden_layers); // the kernel ran every step
        expect(got).toEqual(decodeBits(original, prompt, 6));
      } finally {
        original.dispose();
        kernelized.dispose();
      }
    },
  );
});
