import { readFileSync, writeFileSync } from "node:fs";
import { storeWords } from "../src/backend/weight-store.js";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  AutoModelForCausalLM,
  DynamicCache,
  Linear,
  PackedParameterError,
  Rng,
  WeightStorageError,
  bf16MatMul,
  defaultModelDir,
  packBf16,
  setBackend,
  setBf16Options,
  storeWeightsAs,
  tf,
  unpackBf16,
  type PreTrainedModel,
} from "fusekit/internals";
import { logitsOf, maxAbsDiff, smallConfig, tmpDir } from "./helpers/models.js";

const PROMPT = [9707, 11, 1246, 525, 498, 30, 13, 576]; // 8 tokens

/** Weight-sized values (std 0.1) truncated to bf16 (what a bf16 weight holds). */
function bf16Values(n: number, rng: Rng): Float32Array {
  const v = Float32Array.from({ length: n }, () => 0.1 * rng.normal());
  const bits = new Uint32Array(v.buffer);
  for (let i = 0; i < n; i++) bits[i] &= 0xffff0000;
  return v;
}

/** y = x · Wᵀ in float64, from W [m, n] row-major. */
function reference(x: Float32Array, w: Float32Array, rows: number, n: number, m: number): Float64Array {
  const y = new Float64Array(rows * m);
  for (let r = 0; r < rows; r++)
    for (let o = 0; o < m; o++) {
      let s = 0;
      for (let i = 0; i < n; i++) s += x[r * n + i] * w[o * n + i];
      y[r * m + o] = s;
    }
  return y;
}

/** Greedy prefill + decode with a cache; returns the logits row of every step. */
function decodeLogits(model: PreTrainedModel, prompt: number[], steps: number): Float32Array[] {
  const cache = new DynamicCache();
  const rows: Float32Array[] = [];
  let ids = [prompt];
  for (let s = 0; s <= steps; s++) {
    const { logits } = model.forward({ inputIds: ids, pastKeyValues: cache, useCache: true, logitsToKeep: 1 });
    const row = logits.dataSync() as Float32Array;
    logits.dispose();
    rows.push(row);
    let best = 0;
    for (let i = 1; i < row.length; i++) if (row[i] > row[best]) best = i;
    ids = [[best]];
  }
  cache.dispose();
  return rows;
}

/** Saves a seeded small model as BF16 (so bf16 storage is exact) and returns the dir. */
async function savedBf16Model(over = {}, seed = 3): Promise<string> {
  const m = AutoModelForCausalLM.fromConfig(smallConfig(over), { seed });
  const dir = tmpDir("fusekit-bf16-");
  await m.savePretrained(dir, { dtype: "BF16" });
  m.dispose();
  return dir;
}

describe("bf16 packing on the host", () => {
  it("packs two bf16 per int32 in safetensors byte order and unpacks exactly", () => {
    const v = bf16Values(10, new Rng(1));
    const { packed, inexact } = packBf16(v);
    expect(inexact).toBe(0);
    // element 2k is the low half of int32 k: the little-endian bytes are the BF16 bytes in order
    const bytes = new Uint8Array(packed.buffer);
    const f32 = new Uint8Array(v.buffer);
    for (let i = 0; i < 10; i++) expect([bytes[2 * i], bytes[2 * i + 1]]).toEqual([f32[4 * i + 2], f32[4 * i + 3]]);
    expect(unpackBf16(packed)).toEqual(v);
    expect(packBf16(Float32Array.of(1.0000001, 2)).inexact).toBe(1);
  });
});

describe.each(["wasm", "cpu"])("bf16 weight storage on %s", (backend) => {
  beforeAll(async () => {
    await setBackend(backend);
  });
  afterAll(() => {
    setBf16Options({ gemmMaxRows: Number.MAX_SAFE_INTEGER });
  });

  it("bf16MatMul equals a float64 x·Wᵀ for every row/column tail and both many-row paths", () => {
    const rng = new Rng(5);
    // n = 12 is not a multiple of 8 (the wasm kernel's step): that case widens W for XNNPACK instead
    for (const [rows, n, m] of [
      [1, 8, 1],
      [1, 16, 7],
      [3, 24, 5],
      [4, 32, 3],
      [6, 64, 9],
      [9, 128, 33],
      [2, 12, 5],
    ]) {
      const x = Float32Array.from({ length: rows * n }, () => rng.normal());
      const w = bf16Values(m * n, rng);
      const want = reference(x, w, rows, n, m);
      const xt = tf.tensor2d(x, [rows, n]);
      const wt = storeWords(packBf16(w).packed, [m, n / 2], "bf16");
      for (const gemmMaxRows of [Number.MAX_SAFE_INTEGER, 0]) {
        setBf16Options({ gemmMaxRows, chunkElements: 2 * n }); // tiny chunks: the widened path concatenates
        const y = bf16MatMul(xt, wt);
        expect(y.shape).toEqual([rows, m]);
        expect(maxAbsDiff(y.dataSync(), want)).toBeLessThan(5e-6); // measured 1.75e-6
        y.dispose();
      }
      xt.dispose();
      wt.release();
    }
    setBf16Options({ gemmMaxRows: Number.MAX_SAFE_INTEGER, chunkElements: 1 << 24 });
  });

  describe("tiny default model", () => {
    let dir: string;
    let f32: PreTrainedModel;
    let bf16: PreTrainedModel;
    beforeAll(async () => {
      dir = await defaultModelDir();
      f32 = await AutoModelForCausalLM.fromPretrained(dir, { weightStorage: "f32" });
      bf16 = await AutoModelForCausalLM.fromPretrained(dir, { weightStorage: "f32" });
    });
    afterAll(() => {
      f32.dispose();
      bf16.dispose();
    });

    it("converts every Linear and the tied embedding, halving their bytes, into the weight store", () => {
      const tensors = tf.memory().numTensors;
      const report = storeWeightsAs(bf16, "bf16");
      // each converted weight's float32 tensor is freed, and nothing else is left behind in tfjs
      expect(tf.memory().numTensors).toBe(tensors - report.converted.length);
      expect(report.converted).toContain("model.embed_tokens.weight");
      expect(report.converted).toContain("model.layers.3.mlp.down_proj.weight");
      expect(report.converted).toHaveLength(1 + 4 * 7); // embedding (= lm_head) + 7 Linears per layer
      expect(report.skipped).toEqual([]);
      expect(report.rounded).toBe(0);
      expect(report.bytesAfter * 2).toBe(report.bytesBefore);
      const lmHead = (bf16 as unknown as { lm_head: Linear }).lm_head;
      expect(lmHead.weight.packed).toBe(true);
      expect(lmHead.weight.packedWeight.shape).toEqual([151936, 64]);
    });

    it("gives the float32 model's logits within 3e-6 (prefill of 8 tokens, all positions)", () => {
      const a = logitsOf(f32, [PROMPT])[0];
      const b = logitsOf(bf16, [PROMPT])[0];
      expect(Math.max(...a.map((row, t) => maxAbsDiff(row, b[t])))).toBeLessThan(3e-6); // measured 8.9e-7
    });

    it("gives the float32 model's logits within 3e-6 while decoding with a cache", () => {
      const a = decodeLogits(f32, PROMPT, 6);
      const b = decodeLogits(bf16, PROMPT, 6);
      for (let s = 0; s < a.length; s++) expect(maxAbsDiff(a[s], b[s])).toBeLessThan(3e-6); // measured 8.3e-7
    });

    it("saves byte-identically to the source checkpoint", async () => {
      const out = tmpDir("fusekit-bf16-save-");
      await bf16.savePretrained(out);
      const src = readFileSync(path.join(dir, "model.safetensors"));
      const got = readFileSync(path.join(out, "model.safetensors"));
      expect(got.equals(src)).toBe(true);
    });

    it('fromPretrained(dir, { weightStorage: "bf16" }) loads packed directly: same logits as converting after load, same bytes on save', async () => {
      const direct = await AutoModelForCausalLM.fromPretrained(dir, { weightStorage: "bf16", strict: true });
      expect(direct.parameters().filter((p) => p.packed)).toHaveLength(1 + 4 * 7);
      expect(
        direct
          .parameters()
          .filter((p) => !p.packed)
          .every((p) => p.stateShape.length === 1),
      ).toBe(true); // only norms
      const a = logitsOf(direct, [PROMPT])[0];
      const b = logitsOf(bf16, [PROMPT])[0];
      for (let t = 0; t < PROMPT.length; t++) expect(maxAbsDiff(a[t], b[t])).toBe(0);
      const out = tmpDir("fusekit-bf16-save-");
      await direct.savePretrained(out);
      expect(
        readFileSync(path.join(out, "model.safetensors")).equals(readFileSync(path.join(dir, "model.safetensors"))),
      ).toBe(true);
      expect(direct.parameters().some((p) => p.packOnLoad)).toBe(false);
      direct.dispose();
    });

    it("saves packed weights as the bytes it holds: a NaN payload and -0 come back unchanged", async () => {
      // a BF16 checkpoint whose down_proj starts with a signalling NaN (0x7f81), -0 (0x8000) and the smallest
      // subnormal (0x0001): a float32 round trip would quiet the NaN (0x7fc1); the packed bytes must not
      const src = tmpDir("fusekit-bf16-nan-");
      const plain = AutoModelForCausalLM.fromConfig(smallConfig(), { seed: 4 });
      await plain.savePretrained(src, { dtype: "BF16" });
      plain.dispose();
      const file = path.join(src, "model.safetensors");
      const bytes = readFileSync(file);
      const header = JSON.parse(bytes.subarray(8, 8 + Number(bytes.readBigUInt64LE(0))).toString());
      const at = 8 + Number(bytes.readBigUInt64LE(0)) + header["model.layers.0.mlp.down_proj.weight"].data_offsets[0];
      bytes.set([0x81, 0x7f, 0x00, 0x80, 0x01, 0x00], at);
      writeFileSync(file, bytes);
      const model = await AutoModelForCausalLM.fromPretrained(src, { weightStorage: "bf16" });
      const out = tmpDir("fusekit-bf16-nan-out-");
      await model.savePretrained(out);
      model.dispose();
      expect(readFileSync(path.join(out, "model.safetensors")).equals(bytes)).toBe(true);
    });

    it("refuses .tensor on a packed parameter with a named error", () => {
      const p = (bf16 as unknown as { lm_head: Linear }).lm_head.weight;
      expect(() => p.tensor).toThrow(PackedParameterError);
      expect(() => p.tensor).toThrow(/stored packed as bf16 .*storeWeightsAs\(model, "f32"\)/);
    });
  });

  describe("small random model", () => {
    let dir: string;
    beforeAll(async () => {
      // hidden 44: the wasm kernel needs in % 8 == 0, so q/k/v/gate/up (in = 44) take the widening path
      dir = await savedBf16Model({ hidden_size: 44, intermediate_size: 96, vocab_size: 80 });
    });

    it("matches float32 storage within 4e-7, round-trips to f32 exactly, numTensors flat over 200 forwards", async () => {
      const f32 = await AutoModelForCausalLM.fromPretrained(dir, { strict: true, weightStorage: "f32" });
      const m = await AutoModelForCausalLM.fromPretrained(dir, { strict: true, weightStorage: "f32" });
      const ids = [
        [3, 14, 15, 9, 26, 5, 35, 63],
        [1, 2, 3, 4, 5, 6, 7, 8],
      ];
      const want = logitsOf(f32, ids);
      const report = storeWeightsAs(m, "bf16");
      expect(report.converted).toHaveLength(2 * 7 + 2); // untied: embedding and lm_head separately
      const got = logitsOf(m, ids);
      // measured 9.1e-8 (prefill) and 8.9e-8 (decode)
      for (let b = 0; b < 2; b++)
        for (let t = 0; t < 8; t++) expect(maxAbsDiff(got[b][t], want[b][t])).toBeLessThan(4e-7);
      expect(
        maxAbsDiff(
          decodeLogits(m, ids[0], 4).flatMap((r) => [...r]),
          decodeLogits(f32, ids[0], 4).flatMap((r) => [...r]),
        ),
      ).toBeLessThan(4e-7);

      const before = tf.memory().numTensors;
      for (let i = 0; i < 200; i++) tf.dispose(m.forward({ inputIds: [[i % 80, (i * 7) % 80]] }).logits);
      expect(tf.memory().numTensors).toBe(before);

      storeWeightsAs(m, "f32");
      expect(m.parameters().some((p) => p.packed)).toBe(false);
      const back = logitsOf(m, ids);
      for (let b = 0; b < 2; b++) for (let t = 0; t < 8; t++) expect(maxAbsDiff(back[b][t], want[b][t])).toBe(0);
      f32.dispose();
      m.dispose();
    });

    it("refuses weights not stored as BF16 unless lossy, and then equals the rounded float32 model", () => {
      const config = smallConfig({ hidden_size: 40 });
      const m = AutoModelForCausalLM.fromConfig(config, { seed: 9 }); // F32 weights
      expect(() => storeWeightsAs(m, "bf16")).toThrow(WeightStorageError);
      expect(() => storeWeightsAs(m, "bf16")).toThrow(
        /not stored as BF16: model\.embed_tokens\.weight \(F32\).*lossy: true/,
      );
      expect(m.parameters().some((p) => p.packed)).toBe(false); // nothing converted

      // reference: the same model with every Linear/Embedding weight rounded to bf16 by hand
      const ref = AutoModelForCausalLM.fromConfig(config, { seed: 9 });
      for (const [name, p] of ref.namedParameters()) {
        if (!name.endsWith("norm.weight")) {
          const v = p.stateData() as Float32Array;
          const bits = new Uint32Array(v.buffer);
          for (let i = 0; i < bits.length; i++) bits[i] = ((bits[i] + 0x7fff + ((bits[i] >>> 16) & 1)) >>> 16) << 16;
          p.setStateData(v);
        }
      }
      const report = storeWeightsAs(m, "bf16", { lossy: true });
      expect(report.rounded).toBeGreaterThan(0);
      const ids = [[1, 5, 9, 13]];
      const want = logitsOf(ref, ids)[0];
      const got = logitsOf(m, ids)[0];
      for (let t = 0; t < 4; t++) expect(maxAbsDiff(got[t], want[t])).toBeLessThan(4e-7); // measured 8.9e-8
      m.dispose();
      ref.dispose();
    });

    it("keeps a packed parameter packed on setStateData and refuses values that are not bf16", async () => {
      const m = await AutoModelForCausalLM.fromPretrained(dir, { weightStorage: "f32" });
      storeWeightsAs(m, "bf16");
      const p = m.namedParameters().find(([k]) => k === "model.layers.0.mlp.up_proj.weight")![1];
      const v = p.stateData() as Float32Array;
      v.reverse();
      p.setStateData(v.slice());
      expect(p.packed).toBe(true);
      expect(p.stateData()).toEqual(v);
      v[0] = 1.0000001;
      expect(() => p.setStateData(v)).toThrow(PackedParameterError);
      expect(() => p.setStateData(v)).toThrow(/1 of 4224 values .* are not exactly bf16/);
      m.dispose();
    });
  });
});
