// Each building block against values computed by hand or by a direct formula in plain JS.
import { beforeAll, describe, expect, it } from "vitest";
import {
  AutoModelForCausalLM,
  ConfigError,
  DynamicCache,
  Linear,
  LlamaAttention,
  LlamaConfig,
  LlamaMLP,
  Qwen2Attention,
  Qwen2Config,
  Qwen3Attention,
  Qwen3Config,
  Qwen3MLP,
  Qwen3RotaryEmbedding,
  RMSNorm,
  UnsupportedConfigError,
  applyRotaryPosEmb,
  ropeInvFreq,
  rotateHalf,
  scaledDotProductAttention,
  setBackend,
  silu,
  tf,
} from "fusekit/internals";
import { maxAbsDiff } from "./helpers/models.js";

const arr = (t: tf.Tensor) => Array.from(t.dataSync());

describe.each(["wasm", "cpu"])("layers on %s", (backend) => {
  beforeAll(() => setBackend(backend));

  it("RMSNorm: x=[1,2,3,4], w=[1,1,2,0.5] by hand", () => {
    const norm = new RMSNorm(4, 0);
    norm.weight.setStateData(new Float32Array([1, 1, 2, 0.5]));
    // mean(x²) = 30/4 = 7.5 → x / sqrt(7.5)
    const r = 1 / Math.sqrt(7.5);
    const y = arr(norm.call(tf.tensor2d([[1, 2, 3, 4]])));
    expect(maxAbsDiff(y, [1 * r, 2 * r, 6 * r, 2 * r])).toBeLessThan(1e-6);
    norm.dispose();
  });

  it("RMSNorm adds eps inside the root", () => {
    const norm = new RMSNorm(2, 0.5);
    const y = arr(norm.call(tf.tensor2d([[1, 1]]))); // 1/sqrt(1 + 0.5)
    expect(maxAbsDiff(y, [1 / Math.sqrt(1.5), 1 / Math.sqrt(1.5)])).toBeLessThan(1e-6);
    norm.dispose();
  });

  it("SiLU is x·sigmoid(x)", () => {
    const xs = [-3, -0.5, 0, 0.5, 3];
    expect(
      maxAbsDiff(
        arr(silu(tf.tensor1d(xs))),
        xs.map((x) => x / (1 + Math.exp(-x))),
      ),
    ).toBeLessThan(1e-6);
  });

  it("Linear keeps HF's [out, in] in the state dict and computes x Wᵀ + b", () => {
    const lin = new Linear(3, 2, { bias: true });
    lin.weight.setStateData(new Float32Array([1, 2, 3, 4, 5, 6])); // rows = outputs
    lin.bias!.setStateData(new Float32Array([0.5, -1]));
    expect(lin.weight.tensor.shape).toEqual([3, 2]); // compute layout [in, out]
    const y = arr(lin.call(tf.tensor3d([[[1, 0, -1]]])));
    expect(y).toEqual([1 - 3 + 0.5, 4 - 6 - 1]);
    expect(Array.from(lin.weight.stateData())).toEqual([1, 2, 3, 4, 5, 6]);
    const sd = lin.stateDict();
    expect(sd.weight.shape).toEqual([2, 3]);
    Object.values(sd).forEach((t) => t.dispose());
    lin.dispose();
  });

  it("RoPE tables follow inv_freq = θ^(-2i/d) and rotate_half", () => {
    const config = new Qwen3Config({
      hidden_size: 8,
      num_attention_heads: 2,
      head_dim: 4,
      rope_theta: 100,
      vocab_size: 8,
      intermediate_size: 8,
      num_hidden_layers: 1,
    });
    const rope = new Qwen3RotaryEmbedding(config);
    const [cos, sin] = rope.forward([[0, 3]]);
    // d = 4: inv_freq = [1, 100^(-1/2) = 0.1]; position 3 → angles [3, 0.3]
    expect(maxAbsDiff(arr(cos), [1, 1, 1, 1, Math.cos(3), Math.cos(0.3), Math.cos(3), Math.cos(0.3)])).toBeLessThan(
      1e-6,
    );
    expect(maxAbsDiff(arr(sin), [0, 0, 0, 0, Math.sin(3), Math.sin(0.3), Math.sin(3), Math.sin(0.3)])).toBeLessThan(
      1e-6,
    );
    expect(arr(rotateHalf(tf.tensor1d([1, 2, 3, 4])))).toEqual([-3, -4, 1, 2]);
    // q = [1, 2, 3, 4] at position 3: q·cos + rotate_half(q)·sin
    const q = tf.tensor4d([1, 2, 3, 4], [1, 1, 1, 4]);
    const [c3, s3] = rope.forward([[3]]);
    const got = arr(applyRotaryPosEmb(q, c3, s3));
    const c = [Math.cos(3), Math.cos(0.3)],
      s = [Math.sin(3), Math.sin(0.3)];
    expect(
      maxAbsDiff(got, [1 * c[0] - 3 * s[0], 2 * c[1] - 4 * s[1], 3 * c[0] + 1 * s[0], 4 * c[1] + 2 * s[1]]),
    ).toBeLessThan(1e-6);
  });

  it("attention with GQA and an additive mask equals the per-head formula", () => {
    // b=1, 4 query heads sharing 2 kv heads, s=3, d=2; mask hides key 0 from query 2
    const rnd = (n: number, k: number) => Array.from({ length: n }, (_, i) => Math.sin(i * 1.7 + k));
    const [h, kv, s, d] = [4, 2, 3, 2];
    const q = rnd(h * s * d, 1),
      k = rnd(kv * s * d, 2),
      v = rnd(kv * s * d, 3);
    const mask = new Array(s * s).fill(0);
    for (let i = 0; i < s; i++) for (let j = i + 1; j < s; j++) mask[i * s + j] = -1e30;
    mask[2 * s + 0] = -1e30;
    const out = arr(
      scaledDotProductAttention(
        tf.tensor4d(q, [1, h, s, d]),
        tf.tensor4d(k, [1, kv, s, d]),
        tf.tensor4d(v, [1, kv, s, d]),
        0.7,
        tf.tensor4d(mask, [1, 1, s, s]),
      ),
    );
    const expected: number[] = [];
    for (let hh = 0; hh < h; hh++) {
      const g = Math.floor(hh / (h / kv));
      for (let i = 0; i < s; i++) {
        const sc = Array.from({ length: s }, (_, j) => {
          let dot = 0;
          for (let x = 0; x < d; x++) dot += q[(hh * s + i) * d + x] * k[(g * s + j) * d + x];
          return dot * 0.7 + mask[i * s + j];
        });
        const m = Math.max(...sc);
        const e = sc.map((x) => Math.exp(x - m));
        const z = e.reduce((a, b) => a + b);
        for (let x = 0; x < d; x++) expected.push(e.reduce((acc, w, j) => acc + (w / z) * v[(g * s + j) * d + x], 0));
      }
    }
    expect(maxAbsDiff(out, expected)).toBeLessThan(1e-6);
  });

  it("Qwen3MLP is down(silu(gate x) · up x)", () => {
    const config = new Qwen3Config({
      hidden_size: 2,
      intermediate_size: 3,
      num_attention_heads: 1,
      head_dim: 2,
      vocab_size: 4,
      num_hidden_layers: 1,
    });
    const mlp = new Qwen3MLP(config);
    const G = [1, 0, 0, 1, 1, 1],
      U = [2, 0, 0, 2, 1, -1],
      D = [1, 1, 1, 0, -1, 2]; // [out, in] each
    mlp.gate_proj.weight.setStateData(new Float32Array(G));
    mlp.up_proj.weight.setStateData(new Float32Array(U));
    mlp.down_proj.weight.setStateData(new Float32Array(D));
    const x = [0.5, -1];
    const mv = (W: number[], v: number[], out: number) =>
      Array.from({ length: out }, (_, o) => v.reduce((a, vi, i) => a + W[o * v.length + i] * vi, 0));
    const g = mv(G, x, 3),
      u = mv(U, x, 3);
    const a = g.map((gi, i) => (gi / (1 + Math.exp(-gi))) * u[i]);
    const expected = mv(D, a, 2);
    expect(maxAbsDiff(arr(mlp.call(tf.tensor3d([[x]]))), expected)).toBeLessThan(1e-6);
    mlp.dispose();
  });

  it("Qwen3Attention applies q/k norms per head before RoPE (checked against a JS formula)", () => {
    const config = new Qwen3Config({
      hidden_size: 4,
      num_attention_heads: 2,
      num_key_value_heads: 1,
      head_dim: 2,
      vocab_size: 4,
      intermediate_size: 4,
      num_hidden_layers: 1,
      rope_theta: 10,
    });
    const attn = new Qwen3Attention(config, 0);
    attn.q_proj.weight.setStateData(new Float32Array([1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1])); // identity
    attn.k_proj.weight.setStateData(new Float32Array([1, 1, 0, 0, 0, 0, 1, -1]));
    attn.v_proj.weight.setStateData(new Float32Array([1, 0, 0, 0, 0, 0, 0, 1]));
    attn.o_proj.weight.setStateData(new Float32Array([1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1]));
    attn.q_norm.weight.setStateData(new Float32Array([1, 2]));
    attn.k_norm.weight.setStateData(new Float32Array([0.5, 1]));
    const x = [
      [1, 2, 3, 4],
      [-1, 0.5, 2, 0],
    ];
    const rope = new Qwen3RotaryEmbedding(config);
    const pos = rope.forward([[0, 1]]);
    const cache = new DynamicCache();
    const got = arr(attn.call(tf.tensor3d([x]), pos, tf.tensor4d([0, -1e30, 0, 0], [1, 1, 2, 2]), cache));
    expect(cache.getSeqLength()).toBe(2);
    cache.dispose();
    // formula
    const eps = 1e-6;
    const norm = (v: number[], w: number[]) => {
      const r = 1 / Math.sqrt((v[0] ** 2 + v[1] ** 2) / 2 + eps);
      return [v[0] * r * w[0], v[1] * r * w[1]];
    };
    const rot = (v: number[], p: number) => {
      const c = Math.cos(p),
        s = Math.sin(p);
      return [v[0] * c - v[1] * s, v[1] * c + v[0] * s];
    };
    const expected: number[][] = [[], []];
    for (let t = 0; t < 2; t++) {
      for (let head = 0; head < 2; head++) {
        const q = rot(norm(x[t].slice(head * 2, head * 2 + 2), [1, 2]), t);
        const sc = [0, 1].map((j) =>
          j > t
            ? -Infinity
            : (() => {
                const k = rot(norm([x[j][0] + x[j][1], x[j][2] - x[j][3]], [0.5, 1]), j);
                return (q[0] * k[0] + q[1] * k[1]) / Math.sqrt(2);
              })(),
        );
        const m = Math.max(...sc);
        const e = sc.map((s) => Math.exp(s - m));
        const z = e[0] + e[1];
        const vals = [0, 1].map((j) => [x[j][0], x[j][3]]);
        expected[t].push((e[0] * vals[0][0] + e[1] * vals[1][0]) / z, (e[0] * vals[0][1] + e[1] * vals[1][1]) / z);
      }
    }
    expect(maxAbsDiff(got, expected.flat())).toBeLessThan(1e-5);
    attn.dispose();
  });

  it("RoPE scaling: linear divides inv_freq by factor; llama3 keeps, interpolates or divides by wavelength band", () => {
    // d = 8, θ = 10⁴: inv_freq = [1, 0.1, 0.01, 0.001], wavelengths 2π/f = [6.3, 62.8, 628, 6283]
    const base = { head_dim: 8, rope_theta: 10000 };
    expect(maxAbsDiff(ropeInvFreq({ ...base, rope_scaling: null }), [1, 0.1, 0.01, 0.001])).toBeLessThan(1e-15);
    expect(
      maxAbsDiff(ropeInvFreq({ ...base, rope_scaling: { type: "linear", factor: 4 } }), [0.25, 0.025, 0.0025, 0.00025]),
    ).toBeLessThan(1e-15);
    // original context 64, low 1, high 4 → bands at wavelength 64 / 4 = 16 and 64 / 1 = 64; factor 8
    const llama3 = {
      rope_type: "llama3",
      factor: 8,
      low_freq_factor: 1,
      high_freq_factor: 4,
      original_max_position_embeddings: 64,
    };
    const smooth = (64 / ((2 * Math.PI) / 0.1) - 1) / (4 - 1); // 62.8 lies between 16 and 64
    const expected = [1, (1 - smooth) * (0.1 / 8) + smooth * 0.1, 0.01 / 8, 0.001 / 8];
    expect(maxAbsDiff(ropeInvFreq({ ...base, rope_scaling: llama3 }), expected)).toBeLessThan(1e-15);
  });

  it("LlamaMLP and LlamaAttention carry mlp_bias / attention_bias; Qwen2 biases q/k/v only; Qwen3 adds q/k norms", () => {
    const sizes = {
      hidden_size: 8,
      intermediate_size: 16,
      num_hidden_layers: 1,
      num_attention_heads: 2,
      num_key_value_heads: 1,
      vocab_size: 8,
    };
    const biased = (m: { namedParameters(): [string, unknown][] }) =>
      m
        .namedParameters()
        .map(([k]) => k)
        .filter((k) => k.endsWith("bias"))
        .sort();
    const llama = new LlamaConfig({ ...sizes, attention_bias: true, mlp_bias: true });
    expect(biased(new LlamaAttention(llama, 0))).toEqual(["k_proj.bias", "o_proj.bias", "q_proj.bias", "v_proj.bias"]);
    expect(biased(new LlamaMLP(llama))).toEqual(["down_proj.bias", "gate_proj.bias", "up_proj.bias"]);
    expect(biased(new LlamaAttention(new LlamaConfig(sizes), 0))).toEqual([]);
    expect(biased(new Qwen2Attention(new Qwen2Config(sizes), 0))).toEqual([
      "k_proj.bias",
      "q_proj.bias",
      "v_proj.bias",
    ]);
    const qwen3 = new Qwen3Attention(new Qwen3Config(sizes), 0);
    expect(biased(qwen3)).toEqual([]);
    expect(qwen3.namedParameters().map(([k]) => k)).toEqual([
      "q_proj.weight",
      "k_proj.weight",
      "v_proj.weight",
      "o_proj.weight",
      "q_norm.weight",
      "k_norm.weight",
    ]);
    expect(new LlamaConfig(sizes).head_dim).toBe(4); // hidden / heads when absent
  });

  it("configs refuse what the runtime cannot honour, with named errors", () => {
    const sizes = {
      hidden_size: 8,
      intermediate_size: 16,
      num_hidden_layers: 1,
      num_attention_heads: 2,
      vocab_size: 8,
    };
    expect(() => AutoModelForCausalLM.fromConfig({ model_type: "qwen2", ...sizes, use_sliding_window: true })).toThrow(
      UnsupportedConfigError,
    );
    expect(() => AutoModelForCausalLM.fromConfig({ model_type: "qwen2", ...sizes, use_sliding_window: true })).toThrow(
      /use_sliding_window=true is not supported/,
    );
    expect(() =>
      AutoModelForCausalLM.fromConfig({
        model_type: "llama",
        ...sizes,
        rope_scaling: { rope_type: "yarn", factor: 2 },
      }),
    ).toThrow(UnsupportedConfigError);
    const partial = { rope_type: "llama3", factor: 8, low_freq_factor: 1, high_freq_factor: 4 };
    expect(() => AutoModelForCausalLM.fromConfig({ model_type: "llama", ...sizes, rope_scaling: partial })).toThrow(
      ConfigError,
    );
    expect(() => AutoModelForCausalLM.fromConfig({ model_type: "llama", ...sizes, rope_scaling: partial })).toThrow(
      /needs "original_max_position_embeddings"/,
    );
    const qwen2 = AutoModelForCausalLM.fromConfig({ model_type: "qwen2", ...sizes, use_sliding_window: false });
    expect(qwen2.constructor.name).toBe("Qwen2ForCausalLM");
    qwen2.dispose();
  });
});
