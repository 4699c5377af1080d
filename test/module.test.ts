import { beforeAll, describe, expect, it } from "vitest";
import {
  AutoModelForCausalLM,
  BackendError,
  ConfigError,
  Linear,
  Module,
  ModulePathError,
  Qwen3Config,
  Qwen3MLP,
  Qwen3RMSNorm,
  StateDictError,
  setBackend,
  tf,
} from "fusekit";
import { smallConfig } from "./helpers/models.js";

beforeAll(() => setBackend("cpu"));

describe("Module", () => {
  it("lists children, modules and parameters in assignment order with HF keys", () => {
    const model = AutoModelForCausalLM.fromConfig(smallConfig(), { seed: 1 });
    expect(model.namedChildren().map(([n]) => n)).toEqual(["model", "lm_head"]);
    const keys = model.namedParameters().map(([k]) => k);
    expect(keys.slice(0, 12)).toEqual([
      "model.embed_tokens.weight",
      "model.layers.0.self_attn.q_proj.weight",
      "model.layers.0.self_attn.k_proj.weight",
      "model.layers.0.self_attn.v_proj.weight",
      "model.layers.0.self_attn.o_proj.weight",
      "model.layers.0.self_attn.q_norm.weight",
      "model.layers.0.self_attn.k_norm.weight",
      "model.layers.0.mlp.gate_proj.weight",
      "model.layers.0.mlp.up_proj.weight",
      "model.layers.0.mlp.down_proj.weight",
      "model.layers.0.input_layernorm.weight",
      "model.layers.0.post_attention_layernorm.weight",
    ]);
    expect(keys.at(-1)).toBe("lm_head.weight");
    expect(model.namedModules().map(([p]) => p)).toContain("model.layers.1.mlp.down_proj");
    // 2 layers × (4·32·8… ) — count by formula: embed + lm_head + per layer (q,k,v,o + norms + mlp) + final norm
    const c = smallConfig();
    const perLayer = 32 * 32 + 2 * (32 * 16) + 32 * 32 + 8 + 8 + 3 * 32 * 48 + 2 * 32;
    expect(model.numParameters()).toBe(2 * 64 * 32 + c.num_hidden_layers * perLayer + 32);
    model.dispose();
  });

  it("getSubmodule / setSubmodule swap a child that forward then uses", () => {
    const model = AutoModelForCausalLM.fromConfig(smallConfig(), { seed: 1 });
    const mlp = model.getSubmodule("model.layers.1.mlp");
    expect(mlp).toBeInstanceOf(Qwen3MLP);
    class Zero extends Module<[tf.Tensor], tf.Tensor> {
      forward(x: tf.Tensor) {
        return tf.zerosLike(x);
      }
    }
    const before = model.forward({ inputIds: [[1, 2, 3]] }).logits;
    model.setSubmodule("model.layers.1.mlp", new Zero());
    expect(model.getSubmodule("model.layers.1.mlp")).toBeInstanceOf(Zero);
    const after = model.forward({ inputIds: [[1, 2, 3]] }).logits;
    expect(tf.max(tf.abs(tf.sub(before, after))).dataSync()[0]).toBeGreaterThan(0);
    model.setSubmodule("model.layers.1.mlp", mlp);
    const restored = model.forward({ inputIds: [[1, 2, 3]] }).logits;
    expect(tf.max(tf.abs(tf.sub(before, restored))).dataSync()[0]).toBe(0);
    expect(() => model.getSubmodule("model.layers.7.mlp")).toThrow(ModulePathError);
    expect(() => model.getSubmodule("model.layerz")).toThrow(
      /"layerz" is not a child of Qwen3Model \(children: embed_tokens, layers, norm\)/,
    );
    expect(() => model.setSubmodule("model.layers.0.nope", new Zero())).toThrow(/has no child "nope"/);
    tf.dispose([before, after, restored]);
    model.dispose();
  });

  it("forward pre-hooks and hooks see and may replace args / output; remove() detaches", () => {
    const norm = new Qwen3RMSNorm(2, 1e-6);
    const seen: number[][] = [];
    const h1 = norm.registerForwardPreHook((_m, args) => [tf.mul(args[0] as tf.Tensor, 2)]);
    const h2 = norm.registerForwardHook((_m, _a, out) => {
      seen.push(Array.from((out as tf.Tensor).dataSync()));
      return tf.add(out as tf.Tensor, 1);
    });
    const y = norm.call(tf.tensor2d([[3, 4]]));
    const r = 1 / Math.sqrt((36 + 64) / 2 + 1e-6);
    expect(Array.from(y.dataSync()).map((v) => +v.toFixed(5))).toEqual(
      [6 * r + 1, 8 * r + 1].map((v) => +v.toFixed(5)),
    );
    expect(seen).toHaveLength(1);
    h1.remove();
    h2.remove();
    norm.call(tf.tensor2d([[3, 4]]));
    expect(seen).toHaveLength(1);
  });

  it("loadStateDict round-trips stateDict and strict mode lists every problem", () => {
    const a = AutoModelForCausalLM.fromConfig(smallConfig(), { seed: 1 });
    const b = AutoModelForCausalLM.fromConfig(smallConfig(), { seed: 2 });
    const sd = a.stateDict();
    expect(b.loadStateDict(sd)).toEqual({ missingKeys: [], unexpectedKeys: [], mismatchedKeys: [] });
    const la = a.forward({ inputIds: [[1, 2]] }).logits,
      lb = b.forward({ inputIds: [[1, 2]] }).logits;
    expect(Array.from(lb.dataSync())).toEqual(Array.from(la.dataSync()));
    const bad = { ...sd, extra: tf.zeros([1]), "lm_head.weight": tf.zeros([2, 2]) } as Record<string, tf.Tensor>;
    delete bad["model.norm.weight"];
    expect(() => b.loadStateDict(bad)).toThrow(StateDictError);
    expect(() => b.loadStateDict(bad)).toThrow(
      /missing keys: model.norm.weight; unexpected keys: extra; mismatched shapes: lm_head.weight expected \[64,32\] got \[2,2\]/,
    );
    const loose = b.loadStateDict(bad, { strict: false });
    expect(loose.missingKeys).toEqual(["model.norm.weight"]);
    tf.dispose(Object.values(bad));
    a.dispose();
    b.dispose();
  });

  it("tied embeddings share one parameter", () => {
    const m = AutoModelForCausalLM.fromConfig(smallConfig({ tie_word_embeddings: true }), { seed: 1 });
    const lm = m.getSubmodule("lm_head") as Linear;
    expect(lm.weight).toBe(m.getSubmodule("model.embed_tokens").ownParameters()[0][1]);
    expect(m.namedParameters().map(([k]) => k)).not.toContain("lm_head.weight");
    m.dispose();
  });

  it("fromConfig is deterministic in the seed", () => {
    const [a, b, c] = [1, 1, 2].map((seed) => AutoModelForCausalLM.fromConfig(smallConfig(), { seed }));
    const w = (m: typeof a) => Array.from(m.parameters()[3].stateData());
    expect(w(a)).toEqual(w(b));
    expect(w(a)).not.toEqual(w(c));
    [a, b, c].forEach((m) => m.dispose());
  });
});

describe("config and backend errors", () => {
  it("Qwen3Config validates fields with ConfigError", () => {
    expect(() => Qwen3Config.fromDict({ model_type: "qwen3", hidden_size: 8 }, "x/config.json")).toThrow(
      /x\/config.json: required field "intermediate_size" is missing/,
    );
    expect(() => Qwen3Config.fromDict({ ...smallConfig().toDict(), hidden_size: "big" }, "c.json")).toThrow(
      /c.json: field "hidden_size" must be a number, got "big"/,
    );
    expect(() => new Qwen3Config({ ...smallConfig(), num_key_value_heads: 3 })).toThrow(ConfigError);
    expect(() =>
      Qwen3Config.fromDict({ ...smallConfig().toDict(), rope_scaling: { rope_type: "yarn", factor: 4 } }),
    ).toThrow(/rope_scaling type "yarn" is not supported/);
    const round = Qwen3Config.fromDict({ ...smallConfig().toDict(), some_future_field: 42 });
    expect(round.toDict().some_future_field).toBe(42);
    expect(
      Qwen3Config.fromDict({
        ...smallConfig().toDict(),
        rope_theta: undefined,
        rope_parameters: { rope_theta: 5e5, rope_type: "default" },
      }).rope_theta,
    ).toBe(5e5);
  });

  it("an unknown backend name lists the valid ones", async () => {
    await expect(setBackend("gpu")).rejects.toThrow(BackendError);
    await expect(setBackend("gpu")).rejects.toThrow('unknown backend "gpu"; valid backends: tensorflow, wasm, cpu');
  });

  it("FUSEKIT_BACKEND picks the backend", async () => {
    process.env.FUSEKIT_BACKEND = "wasm";
    try {
      expect(await setBackend()).toBe("wasm");
      expect(tf.getBackend()).toBe("wasm");
    } finally {
      delete process.env.FUSEKIT_BACKEND;
      await setBackend("cpu");
    }
  });
});
