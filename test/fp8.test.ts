// FP8 block-quantized checkpoints: the layout transformers' FP8Linear and Qwen3-*-FP8 use —
// F8_E4M3 weight [out, in] + float32 weight_scale_inv [ceil(out/B0), ceil(in/B1)], w = fp8 · scale_inv[block].
// The checkpoint is built by hand (fixtures' writer, random codes and scales); the expected weights come from
// an E4M3 decoder written from the bit layout and a bf16 rounding written here, not from fusekit.
import path from "node:path";
import { promises as fsp } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  AutoModelForCausalLM,
  CheckpointReader,
  Qwen3Config,
  QuantizationError,
  SafetensorsFile,
  quantizeToFp8,
  setBackend,
} from "fusekit";
import { referenceFp8, validFile, type Entry } from "./fixtures/fuzz-helpers.js";
import { logitsOf, maxAbsDiff, tmpDir } from "./helpers/models.js";

const dirs: string[] = [];
const scratch = () => {
  const d = tmpDir("fusekit-fp8-");
  dirs.push(d);
  return d;
};
afterAll(async () => Promise.all(dirs.map((d) => fsp.rm(d, { recursive: true, force: true }))));

// Dimensions that are not multiples of the block: 136 = 128 + 8, 200 = 128 + 72, 68 < 128 — edge blocks everywhere.
const CONFIG = {
  vocab_size: 64,
  hidden_size: 136,
  intermediate_size: 200,
  num_hidden_layers: 1,
  num_attention_heads: 2,
  num_key_value_heads: 1,
  head_dim: 68,
  rope_theta: 10000,
  rms_norm_eps: 1e-6,
  tie_word_embeddings: false,
};

/** Deterministic pseudo-random stream (xorshift32). */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

const f32 = (x: number) => Math.fround(x);
function bitsOf(x: number): number {
  return new Uint32Array(new Float32Array([x]).buffer)[0];
}
function fromBits(u: number): number {
  return new Float32Array(new Uint32Array([u]).buffer)[0];
}
/** Nearest bf16 to a float32 (ties to even), by comparing the two candidates' distances in float64. */
function bf16Nearest(x: number): number {
  const down = bitsOf(x) & 0xffff0000;
  const [lo, hi] = [fromBits(down), fromBits(down + 0x10000)]; // hi is one bf16 step further from zero
  const [dLo, dHi] = [Math.abs(x - lo), Math.abs(hi - x)];
  if (dLo !== dHi) return dLo < dHi ? lo : hi;
  return (down >>> 16) & 1 ? hi : lo;
}

interface Built {
  dir: string;
  entries: Map<string, Entry>;
  /** Expected dequantized weights, by key. */
  expected: Map<string, Float32Array>;
}

/** Writes an FP8 checkpoint by hand: every Linear but lm_head quantized with random codes and scales. */
async function buildFp8Checkpoint(block: [number, number], seed: number): Promise<Built> {
  const next = rng(seed);
  const shapes = AutoModelForCausalLM.fromConfig(new Qwen3Config(CONFIG), { seed: 0 });
  const params: [string, number[]][] = shapes.namedParameters().map(([k, p]) => [k, [...p.stateShape]]);
  shapes.dispose();
  const entries = new Map<string, Entry>();
  const expected = new Map<string, Float32Array>();
  for (const [key, shape] of params) {
    const n = shape.reduce((a, b) => a * b, 1);
    if (shape.length === 2 && key.endsWith("proj.weight")) {
      // E4M3 codes except the two NaNs (0x7f, 0xff); scales around 2^-8, not powers of two (so products round).
      const codes = Uint8Array.from({ length: n }, () => {
        const c = Math.floor(next() * 254);
        return c >= 0x7f ? c + 1 : c;
      });
      const [sr, sc] = [Math.ceil(shape[0] / block[0]), Math.ceil(shape[1] / block[1])];
      const scales = Float32Array.from({ length: sr * sc }, () => f32(2 ** -8 * (1 + next())));
      entries.set(key, { name: key, dtype: "F8_E4M3", shape, bytes: codes });
      entries.set(`${key}_scale_inv`, {
        name: `${key}_scale_inv`,
        dtype: "F32",
        shape: [sr, sc],
        bytes: new Uint8Array(scales.buffer),
      });
      const want = new Float32Array(n);
      for (let r = 0; r < shape[0]; r++) {
        for (let c = 0; c < shape[1]; c++) {
          const s = scales[Math.floor(r / block[0]) * sc + Math.floor(c / block[1])];
          want[r * shape[1] + c] = bf16Nearest(f32(referenceFp8(codes[r * shape[1] + c], 4, 3, 7, "fn") * s));
        }
      }
      expected.set(key, want);
    } else {
      // Other weights BF16: bit patterns of values in ±[2^-4, 2) — norms near 1 keep the forward finite.
      const bits = Uint16Array.from(
        { length: n },
        () => (next() < 0.5 ? 0x8000 : 0) | ((123 + Math.floor(next() * 5)) << 7) | Math.floor(next() * 128),
      );
      entries.set(key, { name: key, dtype: "BF16", shape, bytes: new Uint8Array(bits.buffer) });
    }
  }
  const dir = scratch();
  const config = {
    ...new Qwen3Config(CONFIG).toDict(),
    torch_dtype: "bfloat16",
    quantization_config: { activation_scheme: "dynamic", fmt: "e4m3", quant_method: "fp8", weight_block_size: block },
  };
  await fsp.writeFile(path.join(dir, "config.json"), JSON.stringify(config));
  await fsp.writeFile(path.join(dir, "model.safetensors"), validFile([...entries.values()], { format: "pt" }).file);
  return { dir, entries, expected };
}

async function bytesOf(dir: string): Promise<Map<string, { dtype: string; shape: number[]; bytes: Buffer }>> {
  const reader = await CheckpointReader.open(dir);
  const out = new Map<string, { dtype: string; shape: number[]; bytes: Buffer }>();
  for (const k of reader.keys())
    out.set(k, {
      dtype: reader.infos.get(k)!.dtype,
      shape: reader.infos.get(k)!.shape,
      bytes: Buffer.from(await reader.readBytes(k)),
    });
  await reader.close();
  return out;
}

describe.each(["wasm", "cpu"])("FP8 block-quantized checkpoints on %s", (backend) => {
  beforeAll(() => setBackend(backend));

  // 50 wide: blocks that do not start on a multiple of 4 columns take the one-code-at-a-time path
  it.each([[[128, 128]], [[32, 48]], [[32, 50]]] as [[number, number]][])(
    "weight_block_size %j: load dequantizes w = fp8 · scale_inv[block] into packed bf16, edge blocks included",
    async (block) => {
      const { dir, expected } = await buildFp8Checkpoint(block, 7 + block[1]);
      const model = await AutoModelForCausalLM.fromPretrained(dir, { strict: true });
      try {
        const params = new Map(model.namedParameters());
        expect(expected.size).toBe(7); // q, k, v, o, gate, up, down
        for (const [key, want] of expected) {
          const p = params.get(key)!;
          expect(p.packed, key).toBe(true);
          expect(p.storedDtype).toBe("BF16");
          const got = p.stateData() as Float32Array;
          expect(Buffer.from(got.buffer).equals(Buffer.from(want.buffer)), key).toBe(true);
        }
        expect(model.loadReport!.unexpectedKeys).toEqual([]); // the scales are consumed, not left over
        const logits = logitsOf(model, [[1, 2, 3]]).flat(2);
        expect(logits.every(Number.isFinite)).toBe(true);
      } finally {
        model.dispose();
      }
    },
  );

  it("savePretrained writes the original FP8 layout back, byte-identical, with quantization_config", async () => {
    const { dir, entries } = await buildFp8Checkpoint([128, 128], 3);
    const model = await AutoModelForCausalLM.fromPretrained(dir);
    const out = scratch();
    await model.savePretrained(out);
    model.dispose();
    const saved = await bytesOf(out);
    expect([...saved.keys()].sort()).toEqual([...entries.keys()].sort());
    for (const [k, e] of entries) {
      expect(saved.get(k)!.dtype, k).toBe(e.dtype);
      expect(saved.get(k)!.bytes.equals(Buffer.from(e.bytes)), k).toBe(true);
    }
    const config = JSON.parse(await fsp.readFile(path.join(out, "config.json"), "utf8"));
    expect(config.quantization_config).toEqual({
      activation_scheme: "dynamic",
      fmt: "e4m3",
      quant_method: "fp8",
      weight_block_size: [128, 128],
    });
  });

  it("a weight changed after loading is re-quantized with fresh scales (448 / max|w| per block); dtype: BF16 saves dequantized", async () => {
    const { dir } = await buildFp8Checkpoint([128, 128], 5);
    const model = await AutoModelForCausalLM.fromPretrained(dir);
    const key = "model.layers.0.mlp.down_proj.weight"; // [136, 200]: blocks of 128×128, 128×72, 8×128, 8×72
    const p = model.namedParameters().find(([k]) => k === key)![1];
    const values = Float32Array.from({ length: p.numel }, (_, i) => ((i % 29) - 14) / 8); // bf16-exact, max |w| 14/8
    p.setStateData(values.slice(), "BF16");
    const out = scratch();
    await model.savePretrained(out);
    const file = await SafetensorsFile.open(path.join(out, "model.safetensors"));
    const scales = new Float32Array((await file.readBytes(`${key}_scale_inv`)).slice().buffer);
    await file.close();
    // every block holds both ±14/8, so each inverse scale is 1 / (448 / 1.75) in float32
    expect(Array.from(scales)).toEqual(Array(4).fill(f32(1 / f32(448 / 1.75))));
    const reloaded = await AutoModelForCausalLM.fromPretrained(out);
    const back = reloaded
      .namedParameters()
      .find(([k]) => k === key)![1]
      .stateData();
    for (let i = 0; i < values.length; i += 97)
      expect(Math.abs(back[i] - values[i]), `element ${i}`).toBeLessThanOrEqual(Math.abs(values[i]) / 16 + 1e-6);
    reloaded.dispose();

    const plain = scratch();
    await model.savePretrained(plain, { dtype: "BF16" });
    model.dispose();
    const config = JSON.parse(await fsp.readFile(path.join(plain, "config.json"), "utf8"));
    expect(config.quantization_config).toBeUndefined();
    const dtypes = new Set([...(await bytesOf(plain)).values()].map((t) => t.dtype));
    expect(dtypes).toEqual(new Set(["BF16"]));
  });

  it("quantizeToFp8 makes such a checkpoint from any model: save → load gives the quantized model back exactly", async () => {
    const model = AutoModelForCausalLM.fromConfig(new Qwen3Config(CONFIG), { seed: 4 });
    const names = quantizeToFp8(model, { weightBlockSize: [64, 64] });
    expect(names.length).toBe(7);
    expect(names).not.toContain("lm_head.weight");
    const dir = scratch();
    await model.savePretrained(dir);
    const loaded = await AutoModelForCausalLM.fromPretrained(dir, { strict: true });
    const want = new Map(model.namedParameters());
    for (const [k, p] of loaded.namedParameters()) {
      expect(Buffer.from(p.stateData().buffer).equals(Buffer.from(want.get(k)!.stateData().buffer)), k).toBe(true);
    }
    // same weights; the loaded model multiplies them through the packed-bf16 kernels, the other in float32
    expect(maxAbsDiff(logitsOf(loaded, [[5, 6, 7]]).flat(2), logitsOf(model, [[5, 6, 7]]).flat(2))).toBeLessThan(1e-5);
    const again = scratch();
    await loaded.savePretrained(again);
    expect(
      (await fsp.readFile(path.join(again, "model.safetensors"))).equals(
        await fsp.readFile(path.join(dir, "model.safetensors")),
      ),
    ).toBe(true);
    const configs = await Promise.all(
      [again, dir].map(async (d) => JSON.parse(await fsp.readFile(path.join(d, "config.json"), "utf8"))),
    );
    expect(configs[0]).toEqual(configs[1]);
    expect(configs[0].quantization_config).toEqual({
      quant_method: "fp8",
      weight_block_size: [64, 64],
      activation_scheme: "dynamic",
      fmt: "e4m3",
    });
    model.dispose();
    loaded.dispose();
  });
});

describe("FP8 checkpoints that cannot be honoured are named errors", () => {
  beforeAll(() => setBackend("cpu"));

  async function mutated(
    edit: (config: Record<string, unknown>, entries: Map<string, Entry>) => void,
  ): Promise<string> {
    const { dir, entries } = await buildFp8Checkpoint([128, 128], 11);
    const config = JSON.parse(await fsp.readFile(path.join(dir, "config.json"), "utf8"));
    edit(config, entries);
    await fsp.writeFile(path.join(dir, "config.json"), JSON.stringify(config));
    await fsp.writeFile(path.join(dir, "model.safetensors"), validFile([...entries.values()]).file);
    return dir;
  }
  const q = "model.layers.0.self_attn.q_proj.weight";

  it.each([
    [
      "a missing weight_scale_inv",
      (_: Record<string, unknown>, e: Map<string, Entry>) => void e.delete(`${q}_scale_inv`),
      /q_proj.weight" is F8_E4M3 but the checkpoint has no ".*q_proj.weight_scale_inv"/,
    ],
    [
      "a scale of the wrong shape",
      (_: Record<string, unknown>, e: Map<string, Entry>) =>
        void e.set(`${q}_scale_inv`, { name: `${q}_scale_inv`, dtype: "F32", shape: [1, 1], bytes: new Uint8Array(4) }),
      /must be a float tensor of shape \[2,2\] .* got F32 \[1,1\]/,
    ],
    [
      "another quant_method",
      (c: Record<string, unknown>) => void (c.quantization_config = { quant_method: "gptq", bits: 4 }),
      /quant_method "gptq" is not supported/,
    ],
    [
      "static activation scales",
      (c: Record<string, unknown>) =>
        void ((c.quantization_config as Record<string, unknown>).activation_scheme = "static"),
      /activation_scheme "static" is not supported/,
    ],
    [
      "a bad block size",
      (c: Record<string, unknown>) =>
        void ((c.quantization_config as Record<string, unknown>).weight_block_size = [128]),
      /weight_block_size must be two positive integers/,
    ],
  ])("%s", async (_, edit, message) => {
    const dir = await mutated(edit);
    const err = await AutoModelForCausalLM.fromPretrained(dir).catch((e) => e);
    expect(err).toBeInstanceOf(QuantizationError);
    expect(err.message).toMatch(message);
  });
});
