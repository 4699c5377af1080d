// An independent float64 forward for the decoder-only families (Llama, Qwen2, Qwen3) in plain JS: no
// tfjs, no fusekit code, weights read straight from the safetensors bytes. It follows transformers'
// modeling_llama.py / modeling_qwen2.py / modeling_qwen3.py and modeling_rope_utils.py line by line
// and is the golden reference for the runtime's logits.
import { readFileSync } from "node:fs";
import path from "node:path";

type Mat = Float64Array<ArrayBufferLike>; // row-major

interface RefConfig {
  model_type: "llama" | "qwen2" | "qwen3";
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads?: number;
  head_dim?: number;
  rms_norm_eps: number;
  rope_theta: number;
  rope_scaling?: Record<string, number | string> | null;
  vocab_size: number;
  tie_word_embeddings: boolean;
  attention_bias?: boolean;
  mlp_bias?: boolean;
}

/** Reads every tensor of a single-file safetensors checkpoint as float64 (F32 / BF16 / F16). */
export function readWeights(file: string): Map<string, { shape: number[]; data: Float64Array }> {
  const buf = readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString("utf8"));
  const out = new Map<string, { shape: number[]; data: Float64Array }>();
  const f32 = new Float32Array(1);
  const u32 = new Uint32Array(f32.buffer);
  for (const [name, e] of Object.entries<any>(header)) {
    if (name === "__metadata__") continue;
    const [b] = e.data_offsets;
    const count = e.shape.reduce((a: number, c: number) => a * c, 1);
    const data = new Float64Array(count);
    const base = 8 + n + b;
    for (let i = 0; i < count; i++) {
      if (e.dtype === "F32") data[i] = buf.readFloatLE(base + 4 * i);
      else if (e.dtype === "BF16") {
        u32[0] = buf.readUInt16LE(base + 2 * i) << 16;
        data[i] = f32[0];
      } else if (e.dtype === "F16") {
        const h = buf.readUInt16LE(base + 2 * i);
        const s = h & 0x8000 ? -1 : 1,
          ex = (h >> 10) & 31,
          fr = h & 1023;
        data[i] =
          ex === 0 ? s * fr * 2 ** -24 : ex === 31 ? (fr ? NaN : s * Infinity) : s * (1 + fr / 1024) * 2 ** (ex - 15);
      } else throw new Error(`reference reader: unsupported dtype ${e.dtype}`);
    }
    out.set(name, { shape: e.shape, data });
  }
  return out;
}

/** x [n, in] times W^T where W is [out, in] (HF layout), plus an optional bias → [n, out]. */
function linear(x: Mat, n: number, w: Mat, inF: number, outF: number, bias?: Mat): Mat {
  const y = new Float64Array(n * outF);
  for (let r = 0; r < n; r++)
    for (let o = 0; o < outF; o++) {
      let s = bias ? bias[o] : 0;
      for (let i = 0; i < inF; i++) s += x[r * inF + i] * w[o * inF + i];
      y[r * outF + o] = s;
    }
  return y;
}

function rmsNorm(x: Mat, rows: number, dim: number, w: Mat, eps: number): Mat {
  const y = new Float64Array(rows * dim);
  for (let r = 0; r < rows; r++) {
    let ss = 0;
    for (let i = 0; i < dim; i++) ss += x[r * dim + i] ** 2;
    const inv = 1 / Math.sqrt(ss / dim + eps);
    for (let i = 0; i < dim; i++) y[r * dim + i] = w[i] * x[r * dim + i] * inv;
  }
  return y;
}

/** modeling_rope_utils: default inv_freq, then "linear" (÷ factor) or "llama3" (by wavelength band). */
export function referenceInvFreq(cfg: Pick<RefConfig, "rope_theta" | "rope_scaling">, d: number): number[] {
  const base = Array.from({ length: d / 2 }, (_, i) => 1 / cfg.rope_theta ** ((2 * i) / d));
  const sc = cfg.rope_scaling;
  const type = sc ? (sc.rope_type ?? sc.type) : "default";
  if (!sc || type === "default") return base;
  const factor = Number(sc.factor);
  if (type === "linear") return base.map((f) => f / factor);
  if (type !== "llama3") throw new Error(`reference: rope type ${type}`);
  const lo = Number(sc.low_freq_factor),
    hi = Number(sc.high_freq_factor),
    old = Number(sc.original_max_position_embeddings);
  return base.map((f) => {
    const wavelen = (2 * Math.PI) / f;
    const scaled = wavelen > old / lo ? f / factor : f; // torch.where(wavelen > low_freq_wavelen, ...)
    const smooth = (old / wavelen - lo) / (hi - lo);
    const medium = !(wavelen < old / hi) && !(wavelen > old / lo);
    return medium ? ((1 - smooth) * scaled) / factor + smooth * scaled : scaled;
  });
}

export interface ReferenceOptions {
  /** Position of each token (default 0..seq-1). */
  positions?: number[];
}

/** Logits [seq, vocab] for one sequence of token ids (causal; positions 0..seq-1 unless given). */
export function referenceLogits(dir: string, ids: number[], { positions }: ReferenceOptions = {}): Float64Array[] {
  const cfg = JSON.parse(readFileSync(path.join(dir, "config.json"), "utf8")) as RefConfig;
  const W = readWeights(path.join(dir, "model.safetensors"));
  const get = (k: string) => {
    const t = W.get(k);
    if (!t) throw new Error(`reference: missing ${k}`);
    return t.data;
  };
  const family = cfg.model_type;
  const H = cfg.hidden_size,
    I = cfg.intermediate_size,
    nh = cfg.num_attention_heads;
  const nkv = cfg.num_key_value_heads ?? nh,
    d = cfg.head_dim ?? Math.floor(H / nh);
  // Which projections carry biases, per family (transformers hard-codes Qwen2's q/k/v bias).
  const qkvBias = family === "qwen2" ? true : !!cfg.attention_bias;
  const oBias = family === "qwen2" ? false : !!cfg.attention_bias;
  const mlpBias = family === "llama" && !!cfg.mlp_bias;
  const S = ids.length,
    eps = cfg.rms_norm_eps;
  const pos = positions ?? ids.map((_, t) => t);
  const emb = get("model.embed_tokens.weight");
  let h: Mat = new Float64Array(S * H);
  ids.forEach((id, t) => h.set(emb.subarray(id * H, (id + 1) * H), t * H));

  // RoPE tables: emb = cat(freqs, freqs), freqs = position · inv_freq
  const invFreq = referenceInvFreq(cfg, d);
  const cos = new Float64Array(S * d),
    sin = new Float64Array(S * d);
  for (let t = 0; t < S; t++)
    for (let i = 0; i < d / 2; i++) {
      const a = pos[t] * invFreq[i];
      cos[t * d + i] = cos[t * d + i + d / 2] = Math.cos(a);
      sin[t * d + i] = sin[t * d + i + d / 2] = Math.sin(a);
    }
  const rope = (v: Mat, t: number, off: number) => {
    const out = new Float64Array(d);
    for (let i = 0; i < d; i++) {
      const rot = i < d / 2 ? -v[off + i + d / 2] : v[off + i - d / 2];
      out[i] = v[off + i] * cos[t * d + i] + rot * sin[t * d + i];
    }
    return out;
  };

  for (let l = 0; l < cfg.num_hidden_layers; l++) {
    const p = `model.layers.${l}.`;
    const bias = (k: string, on: boolean) => (on ? get(p + k + ".bias") : undefined);
    const proj = (k: string, x: Mat, inF: number, outF: number, on: boolean) =>
      linear(x, S, get(p + k + ".weight"), inF, outF, bias(k, on));
    const x = rmsNorm(h, S, H, get(p + "input_layernorm.weight"), eps);
    let q = proj("self_attn.q_proj", x, H, nh * d, qkvBias);
    let k = proj("self_attn.k_proj", x, H, nkv * d, qkvBias);
    const v = proj("self_attn.v_proj", x, H, nkv * d, qkvBias);
    if (family === "qwen3") {
      q = rmsNorm(q, S * nh, d, get(p + "self_attn.q_norm.weight"), eps);
      k = rmsNorm(k, S * nkv, d, get(p + "self_attn.k_norm.weight"), eps);
    }
    const attn = new Float64Array(S * nh * d);
    for (let head = 0; head < nh; head++) {
      const kvh = Math.floor(head / (nh / nkv)); // repeat_kv
      const qs = Array.from({ length: S }, (_, t) => rope(q, t, (t * nh + head) * d));
      const ks = Array.from({ length: S }, (_, t) => rope(k, t, (t * nkv + kvh) * d));
      for (let t = 0; t < S; t++) {
        const scores = new Float64Array(t + 1);
        let max = -Infinity;
        for (let j = 0; j <= t; j++) {
          let s = 0;
          for (let i = 0; i < d; i++) s += qs[t][i] * ks[j][i];
          scores[j] = s / Math.sqrt(d);
          max = Math.max(max, scores[j]);
        }
        let z = 0;
        for (let j = 0; j <= t; j++) z += scores[j] = Math.exp(scores[j] - max);
        for (let j = 0; j <= t; j++)
          for (let i = 0; i < d; i++) attn[(t * nh + head) * d + i] += (scores[j] / z) * v[(j * nkv + kvh) * d + i];
      }
    }
    const o = proj("self_attn.o_proj", attn, nh * d, H, oBias);
    for (let i = 0; i < h.length; i++) h[i] += o[i];
    const x2 = rmsNorm(h, S, H, get(p + "post_attention_layernorm.weight"), eps);
    const g = proj("mlp.gate_proj", x2, H, I, mlpBias);
    const u = proj("mlp.up_proj", x2, H, I, mlpBias);
    for (let i = 0; i < g.length; i++) g[i] = (g[i] / (1 + Math.exp(-g[i]))) * u[i];
    const m = proj("mlp.down_proj", g, I, H, mlpBias);
    for (let i = 0; i < h.length; i++) h[i] += m[i];
  }
  h = rmsNorm(h, S, H, get("model.norm.weight"), eps);
  const head = cfg.tie_word_embeddings ? emb : get("lm_head.weight");
  const logits = linear(h, S, head, H, cfg.vocab_size);
  return Array.from({ length: S }, (_, t) => logits.subarray(t * cfg.vocab_size, (t + 1) * cfg.vocab_size));
}
