// A Llama, Qwen2 or Qwen3 model as llama.cpp's own converter (convert_hf_to_gguf.py + gguf-py) writes it:
// the same metadata keys, tokenizer arrays, tensor names and types (norms and 1-D tensors in F32), and the
// same q/k row permutation for Llama. The weights come from the model's state in its original checkpoint
// layout (stateEntries undoes the conversions it was loaded with), so a patched or converted model exports
// what a plain Hugging Face checkpoint of it would.
import { promises as fsp } from "node:fs";
import path from "node:path";
import { createHash } from "node:crypto";
import { stateEntries } from "../loading/save.js";
import type { CheckpointModel } from "../loading/types.js";
import { AutoTokenizer, TOKENIZER_CONFIG_NAME, TOKENIZER_NAME } from "../tokenizer/tokenizer.js";
import { readJsonObject } from "../io/json.js";
import { checkWriteTarget } from "../io/atomic.js";
import { GgufExportError } from "../errors.js";
import {
  GGML_QUANT_VERSION,
  Q8_0_BLOCK,
  ggufTarget,
  writeGgufFile,
  type GgmlType,
  type GgufMetadata,
  type GgufTensor,
} from "./gguf.js";

/** The GGUF types `exportGguf` writes, as llama.cpp's converter names them (`--outtype`). */
export const GGUF_EXPORT_TYPES = ["bf16", "f16", "q8_0"] as const;
export type GgufExportType = (typeof GGUF_EXPORT_TYPES)[number];

const TENSOR_TYPE: Record<GgufExportType, GgmlType> = { bf16: "BF16", f16: "F16", q8_0: "Q8_0" };
/** general.file_type (llama.cpp's LlamaFileType). */
const FILE_TYPE: Record<GgufExportType, number> = { bf16: 32, f16: 1, q8_0: 7 };
/** model_type → llama.cpp architecture. */
const ARCHITECTURE: Record<string, string> = { llama: "llama", qwen2: "qwen2", qwen3: "qwen3" };

export interface ExportGgufOptions {
  /** Weight type of the 2-D weights (default "bf16"); norms and biases are always F32. */
  type?: GgufExportType;
  /** Folder with tokenizer.json (+ tokenizer_config.json); default: the folder the model was loaded from. */
  tokenizerDir?: string;
  /** general.name (default: the tokenizer folder's name, as the converter falls back to the model folder's). */
  name?: string;
  /** Replace a GGUF file already at the path (never anything else). */
  overwrite?: boolean;
}

/**
 * Writes `model` as a GGUF file llama.cpp (and Ollama, LM Studio) can load. Atomic: the file appears complete
 * or not at all, and nothing but a GGUF file is ever replaced (only with `overwrite`).
 */
export async function exportGguf(
  model: CheckpointModel & { sourceDir?: string },
  file: string,
  options: ExportGgufOptions = {},
): Promise<{ tensors: number; type: GgufExportType }> {
  const type = options.type ?? "bf16";
  if (!GGUF_EXPORT_TYPES.includes(type))
    throw new GgufExportError(`unknown GGUF type "${String(type)}" (use one of ${GGUF_EXPORT_TYPES.join(", ")})`);
  const raw = model.config.toDict();
  const arch = ARCHITECTURE[String(raw.model_type)];
  if (!arch)
    throw new GgufExportError(
      `model_type "${String(raw.model_type)}" has no GGUF export (supported: ${Object.keys(ARCHITECTURE).join(", ")})`,
    );
  const tokenizerDir = options.tokenizerDir ?? model.sourceDir;
  if (!tokenizerDir)
    throw new GgufExportError(
      "the model was not loaded from a folder: pass tokenizerDir (the folder with tokenizer.json)",
    );
  await checkWriteTarget(file, ggufTarget(options.overwrite)); // before any long work
  const tensors = ggufTensors(model, arch, type, raw);
  const metadata: GgufMetadata = [
    ["general.architecture", { type: "str", value: arch }],
    ["general.type", { type: "str", value: "model" }],
    ["general.name", { type: "str", value: options.name ?? path.basename(path.resolve(tokenizerDir)) }],
    ...architectureMetadata(arch, raw),
    ["general.file_type", { type: "u32", value: FILE_TYPE[type] }],
    ["general.quantization_version", { type: "u32", value: GGML_QUANT_VERSION }],
    ...(await tokenizerMetadata(tokenizerDir, raw, arch)),
  ];
  await writeGgufFile(file, metadata, tensors, { overwrite: options.overwrite });
  return { tensors: tensors.length, type };
}

const num = (raw: Record<string, unknown>, key: string) => raw[key] as number;

/** TextModel.set_gguf_parameters (+ LlamaModel's vocab size and rope dimension count). */
export function architectureMetadata(arch: string, raw: Record<string, unknown>): GgufMetadata {
  const u32 = (key: string, value: number): GgufMetadata[number] => [`${arch}.${key}`, { type: "u32", value }];
  const f32 = (key: string, value: number): GgufMetadata[number] => [`${arch}.${key}`, { type: "f32", value }];
  const headDim = (raw.head_dim as number | undefined) ?? num(raw, "hidden_size") / num(raw, "num_attention_heads");
  const out: GgufMetadata = [
    u32("block_count", num(raw, "num_hidden_layers")),
    u32("context_length", num(raw, "max_position_embeddings")),
    u32("embedding_length", num(raw, "hidden_size")),
    u32("feed_forward_length", num(raw, "intermediate_size")),
    u32("attention.head_count", num(raw, "num_attention_heads")),
    u32("attention.head_count_kv", (raw.num_key_value_heads as number | undefined) ?? num(raw, "num_attention_heads")),
  ];
  const rope = raw.rope_scaling as { rope_type?: string; type?: string; factor?: number } | null | undefined;
  const ropeType = rope?.rope_type ?? rope?.type;
  if (ropeType === "linear" && rope?.factor !== undefined)
    out.push([`${arch}.rope.scaling.type`, { type: "str", value: "linear" }], f32("rope.scaling.factor", rope.factor));
  // "llama3" scaling travels as the rope_freqs tensor instead (see ropeFreqs).
  out.push(
    f32("rope.freq_base", num(raw, "rope_theta")),
    f32("attention.layer_norm_rms_epsilon", num(raw, "rms_norm_eps")),
  );
  if (raw.head_dim !== undefined)
    out.push(u32("attention.key_length", headDim), u32("attention.value_length", headDim));
  if (arch === "llama") out.push(u32("vocab_size", num(raw, "vocab_size")), u32("rope.dimension_count", headDim));
  return out;
}

// ── Tensors ────────────────────────────────────────────────────────────────────────────────────────────

/** Hugging Face parameter names → GGUF names (gguf-py's tensor_mapping for these architectures). */
const LAYER_TENSORS: Record<string, string> = {
  "input_layernorm.weight": "attn_norm.weight",
  "self_attn.q_proj.weight": "attn_q.weight",
  "self_attn.q_proj.bias": "attn_q.bias",
  "self_attn.k_proj.weight": "attn_k.weight",
  "self_attn.k_proj.bias": "attn_k.bias",
  "self_attn.v_proj.weight": "attn_v.weight",
  "self_attn.v_proj.bias": "attn_v.bias",
  "self_attn.o_proj.weight": "attn_output.weight",
  "self_attn.o_proj.bias": "attn_output.bias",
  "self_attn.q_norm.weight": "attn_q_norm.weight",
  "self_attn.k_norm.weight": "attn_k_norm.weight",
  "post_attention_layernorm.weight": "ffn_norm.weight",
  "mlp.gate_proj.weight": "ffn_gate.weight",
  "mlp.gate_proj.bias": "ffn_gate.bias",
  "mlp.up_proj.weight": "ffn_up.weight",
  "mlp.up_proj.bias": "ffn_up.bias",
  "mlp.down_proj.weight": "ffn_down.weight",
  "mlp.down_proj.bias": "ffn_down.bias",
};
const LAYER_ORDER = Object.values(LAYER_TENSORS);
const GLOBAL_TENSORS: Record<string, string> = {
  "model.embed_tokens.weight": "token_embd.weight",
  "model.norm.weight": "output_norm.weight",
  "lm_head.weight": "output.weight",
};

/** The GGUF name of a checkpoint tensor, with its layer (undefined outside the blocks). */
export function ggufTensorName(hfName: string): { name: string; layer?: number } {
  if (GLOBAL_TENSORS[hfName]) return { name: GLOBAL_TENSORS[hfName] };
  const m = /^model\.layers\.(\d+)\.(.+)$/.exec(hfName);
  const local = m && LAYER_TENSORS[m[2]];
  if (!m || !local)
    throw new GgufExportError(`tensor "${hfName}" has no GGUF name (llama.cpp's converter cannot map it)`);
  return { name: `blk.${m[1]}.${local}`, layer: Number(m[1]) };
}

/**
 * LlamaModel.permute: llama.cpp rotates (x[2i], x[2i+1]) pairs, Hugging Face's Llama rotates (x[i], x[i+d/2]),
 * so within each head the rows are reordered from halves to interleaved pairs. `rows` × `cols` row-major.
 */
export function llamaPermute(values: Float32Array, rows: number, nHead: number): Float32Array {
  const cols = values.length / rows;
  const headRows = rows / nHead;
  const half = headRows / 2;
  if (!Number.isInteger(half)) throw new GgufExportError(`cannot permute ${rows} rows into ${nHead} heads of pairs`);
  const out = new Float32Array(values.length);
  for (let h = 0; h < nHead; h++)
    for (let i = 0; i < half; i++)
      for (let j = 0; j < 2; j++) {
        const to = (h * headRows + i * 2 + j) * cols;
        const from = (h * headRows + j * half + i) * cols;
        out.set(values.subarray(from, from + cols), to);
      }
  return out;
}

/** The type llama.cpp's converter gives a tensor: F32 for 1-D tensors and norms; q8_0 falls back to F16 on rows that are not whole blocks. */
function tensorType(name: string, shape: readonly number[], type: GgufExportType): GgmlType {
  if (shape.length <= 1 || name.endsWith("_norm.weight")) return "F32";
  if (type === "q8_0" && shape[shape.length - 1] % Q8_0_BLOCK) return "F16";
  return TENSOR_TYPE[type];
}

const asFloat32 = (b: Uint8Array) =>
  b.byteOffset % 4 ? new Float32Array(b.slice().buffer) : new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);

/** The model's tensors under their GGUF names and types, in llama.cpp's order (rope_freqs, token_embd, blocks, output). */
export function ggufTensors(
  model: CheckpointModel,
  arch: string,
  type: GgufExportType,
  raw: Record<string, unknown>,
): GgufTensor[] {
  const nHead = num(raw, "num_attention_heads");
  const nKv = (raw.num_key_value_heads as number | undefined) ?? nHead;
  const tied = raw.tie_word_embeddings === true;
  const rank = (t: { name: string; layer?: number }) =>
    t.layer !== undefined
      ? 1 + t.layer * LAYER_ORDER.length + LAYER_ORDER.indexOf(t.name.slice(t.name.indexOf(".", 4) + 1))
      : t.name === "token_embd.weight"
        ? 0
        : Number.MAX_SAFE_INTEGER - (t.name === "output_norm.weight" ? 1 : 0);
  const out = originalEntries(model)
    .filter((e) => !(tied && e.name === "lm_head.weight")) // a tied output is token_embd (the checkpoint has none)
    .map((e) => {
      const { name, layer } = ggufTensorName(e.name);
      // Llama's q and k rows (and biases) are permuted for llama.cpp's rotation; Qwen's use NeoX rotation as they are.
      const heads =
        arch !== "llama"
          ? 0
          : /attn_q\.(weight|bias)$/.test(name)
            ? nHead
            : /attn_k\.(weight|bias)$/.test(name)
              ? nKv
              : 0;
      const data = () => {
        const v = asFloat32(e.bytes());
        return heads ? llamaPermute(v, e.shape[0], heads) : v;
      };
      return { name, layer, type: tensorType(name, e.shape, type), shape: e.shape, data };
    })
    .sort((a, b) => rank(a) - rank(b));
  const freqs = ropeFreqs(raw);
  return [
    ...(freqs ? [{ name: "rope_freqs.weight", type: "F32" as const, shape: [freqs.length], data: () => freqs }] : []),
    ...out.map(({ name, type: t, shape, data }) => ({ name, type: t, shape, data })),
  ];
}

/**
 * The model's tensors in the original checkpoint layout (stateEntries, as savePretrained writes them). A model
 * loaded from a checkpoint stored in a converted layout carries a record of conversions that moved nothing;
 * then the registered rules are undone from the plain model's layout, as for a model built without loading.
 */
function originalEntries(model: CheckpointModel) {
  const record = model.checkpointConversion;
  if (!record || record.renamed.size || record.groups.length) return stateEntries(model, "F32");
  // stateEntries reads the record synchronously (the entries it returns do not keep it): set aside meanwhile.
  model.checkpointConversion = undefined;
  try {
    return stateEntries(model, "F32");
  } finally {
    model.checkpointConversion = record;
  }
}

/** LlamaModel.generate_extra_tensors: the per-frequency divisors of "llama3" RoPE scaling, in float32. */
export function ropeFreqs(raw: Record<string, unknown>): Float32Array | undefined {
  const rope = raw.rope_scaling as Record<string, number | string> | null | undefined;
  if (String(rope?.rope_type ?? rope?.type ?? "").toLowerCase() !== "llama3") return undefined;
  const f = Math.fround;
  const base = num(raw, "rope_theta") ?? 10000;
  const dim = (raw.head_dim as number | undefined) ?? num(raw, "hidden_size") / num(raw, "num_attention_heads");
  const factor = Number(rope?.factor ?? 8);
  const low = Number(rope?.low_freq_factor ?? 1);
  const high = Number(rope?.high_freq_factor ?? 4);
  const oldCtx = Number(rope?.original_max_position_embeddings ?? 8192);
  const lowWavelen = oldCtx / low;
  const highWavelen = oldCtx / high;
  const out = new Float32Array(dim / 2);
  for (let i = 0; i < dim / 2; i++) {
    const freq = f(1 / f(base ** f((2 * i) / dim)));
    const wavelen = f((2 * Math.PI) / freq);
    if (wavelen < highWavelen) out[i] = 1;
    else if (wavelen > lowWavelen) out[i] = factor;
    else {
      const smooth = f(f(f(oldCtx / wavelen) - low) / (high - low));
      out[i] = f(1 / f(f((1 - smooth) / factor) + smooth));
    }
  }
  return out;
}

// ── Tokenizer ──────────────────────────────────────────────────────────────────────────────────────────

/** TokenType of gguf-py. */
const TOKEN_TYPE = { NORMAL: 1, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5 } as const;

/**
 * The converter's pre-tokenizer detection (get_vocab_base_pre): the sha256 of its check text's token ids names
 * the pre-tokenizer llama.cpp must use. The hashes of the pre-tokenizers of these families, from its table.
 */
const PRE_TOKENIZERS: Record<string, string> = {
  "0ef9807a4087ebef797fc749390439009c3b9eda9ad1a097abbe738f486c01e5": "llama-bpe", // Meta-Llama-3-8B
  e636dc30a262dcc0d8c323492e32ae2b70728f4df7dfe9737d9f920a282b8aea: "qwen2", // Qwen1.5-7B
  d4540891389ea895b53b399da6ac824becc30f2fba0e9ddbb98f92e55ca0e97c: "qwen2", // Qwen3-Embedding-0.6B
  "855059429035d75a914d1eda9f10a876752e281a054a7a3d421ef0533e5b6249": "smollm", // SmolLM-135M
};
/** The converter's `chktxt`, verbatim. */
const PRE_CHECK_TEXT =
  "\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n🚀 (normal) 😶\u200d🌫️ (multiple emojis concatenated) ✅ 🦙🦙 3 33 333 3333 33333 333333 3333333 33333333 3.3 3..3 3...3 កាន់តែពិសេសអាច😁 ?我想在apple工作1314151天～ ------======= нещо на Български ''''''```````\"\"\"\"......!!!!!!?????? I've been 'told he's there, 'RE you sure? 'M not sure I'll make it, 'D you like some tea? We'Ve a'lL";

interface AddedToken {
  id: number;
  content: string;
  special?: boolean;
}

/** What does_token_look_special accepts. */
const looksSpecial = (t: string) =>
  ["<pad>", "<mask>", "<2mass>", "[@BOS@]"].includes(t) ||
  (t.startsWith("<|") && t.endsWith("|>")) ||
  (t.startsWith("<｜") && t.endsWith("｜>")) ||
  (t.startsWith("<unused") && t.endsWith(">"));

/** _set_vocab_gpt2 + SpecialVocab: tokenizer.ggml.* and tokenizer.chat_template from a tokenizer folder. */
export async function tokenizerMetadata(
  dir: string,
  raw: Record<string, unknown>,
  arch: string,
): Promise<GgufMetadata> {
  const where = path.join(dir, TOKENIZER_NAME);
  const error = (message: string) => new GgufExportError(`${where}: ${message}`);
  const tok = await readJsonObject(where, { error });
  const cfg = (await readJsonObject(path.join(dir, TOKENIZER_CONFIG_NAME), { error, optional: true })) ?? {};
  const bpe = tok.model as { type?: string; vocab?: Record<string, number>; merges?: unknown[] } | undefined;
  if (bpe?.type !== "BPE" || !bpe.vocab) throw error("not a BPE tokenizer (llama.cpp's gpt2 tokenizer needs one)");

  const tokenizer = await AutoTokenizer.fromPretrained(dir);
  const hash = createHash("sha256")
    .update(`[${tokenizer.encode(PRE_CHECK_TEXT).join(", ")}]`)
    .digest("hex");
  const pre = PRE_TOKENIZERS[hash];
  if (!pre)
    throw error(`pre-tokenizer not recognised (check hash ${hash}); llama.cpp would not know how to split text`);

  const added = (tok.added_tokens ?? []) as AddedToken[];
  const { tokens, types, vocabSize } = gpt2Vocab(bpe.vocab, added, raw.vocab_size as number | undefined, error);
  const merges = (bpe.merges ?? []).map((m) =>
    // Pairs (tokenizers ≥ 0.20) join with a space; a space inside a part is written as U+0120, as the converter does.
    Array.isArray(m) ? m.map((p: string) => p.replaceAll(" ", "\u0120")).join(" ") : String(m),
  );

  const out: GgufMetadata = [
    ["tokenizer.ggml.model", { type: "str", value: "gpt2" }],
    ["tokenizer.ggml.pre", { type: "str", value: pre }],
    ["tokenizer.ggml.tokens", { type: "str[]", value: tokens }],
    ["tokenizer.ggml.token_type", { type: "i32[]", value: types }],
  ];
  // LlamaModel.set_vocab passes tokenizer_config.json's add_prefix_space on.
  if (arch === "llama" && typeof cfg.add_prefix_space === "boolean")
    out.push(["tokenizer.ggml.add_space_prefix", { type: "bool", value: cfg.add_prefix_space }]);
  if (merges.length) out.push(["tokenizer.ggml.merges", { type: "str[]", value: merges }]);
  for (const [k, v] of specialTokens(tok, cfg, raw, added, vocabSize))
    out.push(
      k.startsWith("add_")
        ? [`tokenizer.ggml.${k}`, { type: "bool", value: v as boolean }]
        : [`tokenizer.ggml.${k}`, { type: "u32", value: v as number }],
    );
  const template =
    (cfg.chat_template as string | undefined) ??
    (await fsp.readFile(path.join(dir, "chat_template.jinja"), "utf8").catch(() => undefined));
  if (typeof template === "string") out.push(["tokenizer.chat_template", { type: "str", value: template }]);
  return out;
}

/** get_vocab_base: the token of every id below the vocabulary size, and its type. */
function gpt2Vocab(
  vocab: Record<string, number>,
  added: AddedToken[],
  declared: number | undefined,
  error: (message: string) => Error,
): { tokens: string[]; types: number[]; vocabSize: number } {
  const addedById = new Map(added.map((a) => [a.id, a]));
  const byId = new Map(Object.entries(vocab).map(([t, id]) => [id, t]));
  for (const a of added) byId.set(a.id, a.content);
  let maxId = -1;
  for (const id of byId.keys()) maxId = Math.max(maxId, id);
  const vocabSize = declared ?? maxId + 1;
  if (maxId >= vocabSize) throw error(`token id ${maxId} is beyond the model's vocab_size ${vocabSize}`);
  const tokens: string[] = [];
  const types: number[] = [];
  for (let i = 0; i < vocabSize; i++) {
    const t = byId.get(i);
    const a = addedById.get(i);
    const [token, type] =
      t === undefined
        ? [`[PAD${i}]`, TOKEN_TYPE.UNUSED]
        : !a
          ? [t, TOKEN_TYPE.NORMAL]
          : a.special || looksSpecial(t)
            ? [t, TOKEN_TYPE.CONTROL]
            : [t.replaceAll("\u2581", " "), TOKEN_TYPE.USER_DEFINED];
    tokens.push(token);
    types.push(type);
  }
  return { tokens, types, vocabSize };
}

const SPECIAL_KEYS: Record<string, string> = {
  bos: "bos_token_id",
  eos: "eos_token_id",
  unk: "unknown_token_id",
  sep: "seperator_token_id", // sic: llama.cpp's key
  pad: "padding_token_id",
  mask: "mask_token_id",
};

/**
 * SpecialVocab's special token ids and add_*_token flags: ids from tokenizer_config.json's `*_token` (looked
 * up among the added tokens), else config.json's `*_token_id`; flags from a TemplateProcessing post-processor,
 * overridden by tokenizer_config.json's `add_*_token`.
 */
function specialTokens(
  tok: Record<string, unknown>,
  cfg: Record<string, unknown>,
  raw: Record<string, unknown>,
  added: AddedToken[],
  vocabSize: number,
): [string, number | boolean][] {
  const content = (typ: string) => {
    const e = cfg[`${typ}_token`];
    return typeof e === "string" ? e : (e as { content?: unknown } | null)?.content;
  };
  const addFlags = new Map<string, boolean>();
  const post = tok.post_processor as { type?: string; processors?: unknown[] } | null | undefined;
  for (const p of (post?.processors ?? (post ? [post] : [])) as {
    type?: string;
    single?: unknown[];
    pair?: unknown[];
  }[]) {
    if (p.type !== "TemplateProcessing") continue;
    const sp = (x: unknown) => (x as { SpecialToken?: { id?: string } })?.SpecialToken?.id;
    const single = p.single ?? [];
    if (single.length > 1) {
      const first = sp(single[0]);
      if (first) addFlags.set("bos", first === content("bos"));
      const last = sp(single[single.length - 1]);
      if (last) addFlags.set("eos", last === content("eos"));
      // A [SEP] B: add_sep when the middle special token is sep or eos (the converter's crude reading).
      const pair = (p.pair ?? []).slice(first ? 1 : 0, last ? -1 : undefined);
      if (pair.length > 2) {
        const mid = pair.slice(1, -1).map(sp);
        addFlags.set(
          "sep",
          mid.some((m) => m !== undefined && (m === content("sep") || m === content("eos"))) && !last,
        );
      }
    }
  }
  const out: [string, number | boolean][] = [];
  for (const typ of Object.keys(SPECIAL_KEYS)) {
    const c = content(typ);
    let id = typeof c === "string" ? added.find((a) => a.content === c)?.id : undefined;
    if (id === undefined && Number.isInteger(raw[`${typ}_token_id`])) id = raw[`${typ}_token_id`] as number;
    if (id !== undefined && id >= 0 && id < vocabSize) out.push([SPECIAL_KEYS[typ], id]);
  }
  for (const typ of ["bos", "eos", "sep"]) {
    const flag =
      typeof cfg[`add_${typ}_token`] === "boolean" ? (cfg[`add_${typ}_token`] as boolean) : addFlags.get(typ);
    if (flag !== undefined) out.push([`add_${typ}_token`, flag]);
  }
  return out;
}
