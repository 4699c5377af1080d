import path from "node:path";
import { promises as fsp } from "node:fs";
import { beforeAll, describe, expect, it } from "vitest";
import {
  AutoModelForCausalLM,
  CheckpointReader,
  SafetensorsFile,
  WEIGHTS_INDEX_NAME,
  decode,
  defaultModelDir,
  encode,
  floatToHalf,
  setBackend,
  writeSafetensors,
} from "fusekit/internals";
import { savedSmallModel, smallConfig, tmpDir } from "./helpers/models.js";

async function allBytes(dir: string): Promise<Map<string, { dtype: string; shape: number[]; bytes: Buffer }>> {
  const reader = await CheckpointReader.open(dir);
  const out = new Map<string, { dtype: string; shape: number[]; bytes: Buffer }>();
  for (const k of reader.keys()) {
    const info = reader.infos.get(k)!;
    out.set(k, { dtype: info.dtype, shape: info.shape, bytes: Buffer.from(await reader.readBytes(k)) });
  }
  await reader.close();
  return out;
}

describe("dtypes", () => {
  it("BF16 decodes as the top half of a float32 and encodes back exactly", () => {
    const bits = new Uint16Array([0x3f80, 0xc000, 0x0000, 0x7f80, 0x3e20]); // 1, -2, 0, +inf, 0.15625
    const f = decode(new Uint8Array(bits.buffer), "BF16") as Float32Array;
    expect(Array.from(f)).toEqual([1, -2, 0, Infinity, 0.15625]);
    expect(Array.from(new Uint16Array(encode(f, "BF16").buffer))).toEqual(Array.from(bits));
  });

  it("BF16 encoding rounds to nearest even", () => {
    // 1 + 2^-8 is exactly halfway between bf16 1.0 and 1.0078125 → even (1.0); 1 + 3·2^-9 rounds up
    const enc = new Uint16Array(encode(new Float32Array([1 + 2 ** -8, 1 + 3 * 2 ** -9]), "BF16").buffer);
    expect(Array.from(enc)).toEqual([0x3f80, 0x3f81]);
  });

  it("F16 covers normals, subnormals, infinities and rounds to nearest even", () => {
    const vals = [1, -2, 0.5, 65504, 2 ** -24, 2 ** -14, Infinity, -Infinity];
    const halves = vals.map(floatToHalf);
    expect(halves).toEqual([0x3c00, 0xc000, 0x3800, 0x7bff, 0x0001, 0x0400, 0x7c00, 0xfc00]);
    const back = decode(new Uint8Array(new Uint16Array(halves).buffer), "F16");
    expect(Array.from(back)).toEqual(vals);
    expect(floatToHalf(1 + 2 ** -11)).toBe(0x3c00); // halfway → even
    expect(floatToHalf(70000)).toBe(0x7c00); // overflow → inf
  });

  it("I64 decodes to int32 and refuses values that do not fit", () => {
    const b = new BigInt64Array([5n, -7n]);
    expect(Array.from(decode(new Uint8Array(b.buffer), "I64"))).toEqual([5, -7]);
    expect(() => decode(new Uint8Array(new BigInt64Array([2n ** 40n]).buffer), "I64")).toThrow(/does not fit in int32/);
  });
});

describe.each(["wasm", "cpu"])("checkpoint round trips on %s", (backend) => {
  beforeAll(() => setBackend(backend));

  it("load → save writes every tensor byte-identical (the BF16 default model)", async () => {
    const src = await defaultModelDir();
    const model = await AutoModelForCausalLM.fromPretrained(src);
    const out = tmpDir();
    await model.savePretrained(out);
    model.dispose();
    const [a, b] = [await allBytes(src), await allBytes(out)];
    expect([...b.keys()].sort()).toEqual([...a.keys()].sort());
    for (const [k, t] of a) {
      expect(b.get(k)!.dtype, k).toBe(t.dtype);
      expect(b.get(k)!.bytes.equals(t.bytes), k).toBe(true);
    }
    const config = JSON.parse(await fsp.readFile(path.join(out, "config.json"), "utf8"));
    expect(config).toMatchObject({
      model_type: "qwen3",
      tie_word_embeddings: true,
      torch_dtype: "bfloat16",
      hidden_size: 128,
    });
  });

  it("sharded save (maxShardSize) writes an index and loads back identically", async () => {
    const src = await savedSmallModel();
    const model = await AutoModelForCausalLM.fromPretrained(src);
    const out = tmpDir();
    await model.savePretrained(out, { maxShardSize: 20_000 });
    const index = JSON.parse(await fsp.readFile(path.join(out, WEIGHTS_INDEX_NAME), "utf8"));
    const shards = new Set(Object.values(index.weight_map));
    expect(shards.size).toBeGreaterThan(2);
    for (const s of shards) expect(s).toMatch(/^model-\d{5}-of-\d{5}\.safetensors$/);
    const reloaded = await AutoModelForCausalLM.fromPretrained(out, { strict: true });
    const [a, b] = [await allBytes(src), await allBytes(out)];
    for (const [k, t] of a) expect(b.get(k)!.bytes.equals(t.bytes), k).toBe(true);
    // saving unsharded again removes the old shards and index
    await reloaded.savePretrained(out);
    const names = await fsp.readdir(out);
    expect(names.sort()).toEqual(["config.json", "model.safetensors"]);
    model.dispose();
    reloaded.dispose();
  });

  it("one set of weights stored as BF16, F16 and F32 loads back as exactly the values written", async () => {
    // values exactly representable in all three (small dyadic rationals), different in every parameter so a
    // loader that swaps two same-shaped tensors cannot pass
    const config = smallConfig({ num_hidden_layers: 1 });
    const model = AutoModelForCausalLM.fromConfig(config, { seed: 3 });
    const written = new Map<string, number[]>();
    model.namedParameters().forEach(([k, p], j) => {
      const values = Array.from({ length: p.numel }, (_, i) => (((i * 7 + j * 5) % 17) - 8) / 16);
      p.setStateData(Float32Array.from(values));
      written.set(k, values);
    });
    for (const dtype of ["BF16", "F16", "F32"] as const) {
      const dir = tmpDir();
      await model.savePretrained(dir, { dtype });
      const file = await SafetensorsFile.open(path.join(dir, "model.safetensors"));
      expect(new Set([...file.tensors.values()].map((t) => t.dtype))).toEqual(new Set([dtype]));
      await file.close();
      const m = await AutoModelForCausalLM.fromPretrained(dir, { strict: true });
      expect(
        m
          .namedParameters()
          .map(([k]) => k)
          .sort(),
      ).toEqual([...written.keys()].sort());
      for (const [k, p] of m.namedParameters())
        expect(Array.from(p.stateData()), `${dtype} ${k}`).toEqual(written.get(k));
      m.dispose();
    }
    model.dispose();
  });

  it("writes safetensors the reference layout expects (8-byte aligned header, contiguous offsets)", async () => {
    const dir = tmpDir();
    const file = path.join(dir, "x.safetensors");
    await writeSafetensors(
      file,
      [
        { name: "a", dtype: "F32", shape: [2], bytes: () => new Uint8Array(new Float32Array([1, 2]).buffer) },
        { name: "b", dtype: "BF16", shape: [3], bytes: () => new Uint8Array(6) },
      ],
      { format: "pt" },
    );
    const raw = await fsp.readFile(file);
    const n = Number(raw.readBigUInt64LE(0));
    expect(n % 8).toBe(0);
    const header = JSON.parse(raw.subarray(8, 8 + n).toString());
    expect(header).toEqual({
      __metadata__: { format: "pt" },
      a: { dtype: "F32", shape: [2], data_offsets: [0, 8] },
      b: { dtype: "BF16", shape: [3], data_offsets: [8, 14] },
    });
    expect(raw.length).toBe(8 + n + 14);
  });
});
