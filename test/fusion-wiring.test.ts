// Unit tests of runtime fusion on toy modules and tiny Qwen3 configs (cpu): wiring, registries, globs,
// delegation, errors. Model-level fidelity on the default checkpoint is in fusion.test.ts.
import { beforeAll, describe, expect, it } from "vitest";
import {
  AlreadyFusedError,
  AutoModelForCausalLM,
  FusedModule,
  FusionPatternError,
  FusionSpecError,
  FusionWiringError,
  Module,
  ModuleSpec,
  Qwen3Config,
  Qwen3MLP,
  Qwen3RMSNorm,
  RegistryCollector,
  closestPaths,
  forwardParameters,
  fuseModules,
  getFusedChains,
  matchModulePaths,
  rmsNorm,
  setBackend,
  silu,
  tf,
  unfuseModules,
  type PreTrainedModel,
} from "fusekit/internals";
import { flatLogitsOf, maxAbsDiff } from "./helpers/models.js";

const spec = (inputs: string[], outputs: string[]) => new ModuleSpec({ inputs, outputs });
const HS = () => spec(["hidden_states"], ["hidden_states"]);
const NORM_MLP = ["model.layers.*.post_attention_layernorm", "model.layers.*.mlp"];

// --- toy modules with hand-computable results -------------------------------------------------------
class Scale extends Module<[tf.Tensor], tf.Tensor> {
  constructor(readonly k: number) {
    super();
  }
  forward(x: tf.Tensor): tf.Tensor {
    return tf.mul(x, this.k);
  }
}
/** Two outputs: [2x, x − 1]. */
class Split extends Module<[tf.Tensor], tf.Tensor[]> {
  forward(x: tf.Tensor): tf.Tensor[] {
    return [tf.mul(x, 2), tf.sub(x, 1)];
  }
}
/** An optional trailing parameter with a default. */
class Shift extends Module<[tf.Tensor, number?], tf.Tensor> {
  forward(h: tf.Tensor, shift = 0): tf.Tensor {
    return tf.add(h, shift);
  }
}
/** Calls a (for its side outputs only), then b with an extra input from outside, then c. */
class Parent extends Module<[tf.Tensor, number], tf.Tensor> {
  a: Module = new Split();
  b: Module = new Shift();
  c: Module = new Scale(10);
  forward(x: tf.Tensor, s: number): tf.Tensor {
    this.a.call(x);
    return this.c.call(this.b.call(x, s));
  }
}
/** A plain 3-chain a → b(·, s) → c whose fused form must equal the unfused one. */
class Straight extends Module<[tf.Tensor, number], tf.Tensor> {
  a: Module = new Scale(2);
  b: Module = new Shift();
  c: Module = new Scale(10);
  forward(x: tf.Tensor, s: number): tf.Tensor {
    return this.c.call(this.b.call(this.a.call(x), s));
  }
}
/** Its last module returns two outputs, which the parent destructures. */
class TwoOut extends Module<[tf.Tensor], tf.Tensor> {
  a: Module = new Scale(3);
  b: Module = new Split();
  forward(x: tf.Tensor): tf.Tensor {
    const [y, z] = this.b.call(this.a.call(x)) as tf.Tensor[];
    return tf.add(y, z);
  }
}
class Boom extends Module<[tf.Tensor], tf.Tensor> {
  forward(x: tf.Tensor): tf.Tensor {
    throw new Error(`boom on a tensor of shape [${x.shape}]`);
  }
}

const values = (t: tf.Tensor) => {
  const v = Array.from(t.dataSync());
  t.dispose();
  return v;
};

function tinyQwen(layers: number, seed = 3): PreTrainedModel {
  const config = new Qwen3Config({
    vocab_size: 40,
    hidden_size: 16,
    intermediate_size: 24,
    num_hidden_layers: layers,
    num_attention_heads: 2,
    num_key_value_heads: 1,
    head_dim: 8,
  });
  return AutoModelForCausalLM.fromConfig(config, { seed });
}

beforeAll(async () => {
  await setBackend("cpu");
});

describe("ModuleSpec and forward parameters", () => {
  it("reads positional parameter names, counting defaults, skipping comments and ending at a rest parameter", () => {
    class M {
      forward(
        a: number,
        b = Math.max(1, 2),
        c = "x,y)",
        /* d, */ e = [1, [2, 3]],
        f = { g: (h: number, i: number) => h + i },
      ) {
        return [a, b, c, e, f];
      }
      rest(a: number, ...more: number[]) {
        return [a, more];
      }
    }
    expect(forwardParameters(M.prototype.forward)).toEqual({ names: ["a", "b", "c", "e", "f"], rest: false });
    expect(forwardParameters(M.prototype.rest)).toEqual({ names: ["a"], rest: true });
    expect(forwardParameters((x: number) => x)).toEqual({ names: ["x"], rest: false });
    expect(
      forwardParameters(function named(p: number, q?: number) {
        return [p, q];
      }),
    ).toEqual({ names: ["p", "q"], rest: false });
    expect(forwardParameters(Math.max).rest).toBe(false);
    expect(forwardParameters(((a: number, b: number) => a + b).bind(null)).names).toHaveLength(2); // native code: falls back to length
    expect(forwardParameters(Qwen3MLP.prototype.forward).names).toEqual(["x"]);
  });

  it("rejects malformed specs with a FusionSpecError", () => {
    expect(() => spec(["x", ""], ["y"])).toThrow(FusionSpecError);
    expect(() => spec(["_"], ["y"])).toThrow(/inputs cannot use "_"/);
    expect(() => spec(["x", "x"], ["y"])).toThrow(/"x" appears twice/);
    expect(() => new ModuleSpec({ inputs: "x" as unknown as string[], outputs: [] })).toThrow(
      /array of non-empty strings/,
    );
    expect(spec(["x"], ["_", "_"]).outputs).toEqual(["_", "_"]); // several dropped outputs are fine
  });
});

describe("glob patterns on module paths", () => {
  it("matches * as one segment, ** at any depth, {a,b} (also spanning segments) and {0..1} ranges", () => {
    const model = tinyQwen(4);
    expect(matchModulePaths(model, "model.layers.*.mlp")).toEqual([0, 1, 2, 3].map((i) => `model.layers.${i}.mlp`));
    expect(matchModulePaths(model, "model.*.mlp")).toEqual([]);
    expect(matchModulePaths(model, "**.mlp")).toHaveLength(4);
    expect(matchModulePaths(model, "model.**.down_proj")).toEqual(
      [0, 1, 2, 3].map((i) => `model.layers.${i}.mlp.down_proj`),
    );
    expect(matchModulePaths(model, "model.layers.{0,2}.mlp")).toEqual(["model.layers.0.mlp", "model.layers.2.mlp"]);
    expect(matchModulePaths(model, "model.layers.{0..1}.mlp")).toEqual(["model.layers.0.mlp", "model.layers.1.mlp"]);
    expect(matchModulePaths(model, "model.layers.3.{mlp,self_attn.o_proj}")).toEqual([
      "model.layers.3.self_attn.o_proj",
      "model.layers.3.mlp",
    ]);
    model.dispose();
  });

  it("suggests the closest real paths, one per family of numbered paths", () => {
    const paths = [
      "model.norm",
      ...[0, 1, 2].flatMap((i) => [`model.layers.${i}.mlp`, `model.layers.${i}.post_attention_layernorm`]),
    ];
    expect(closestPaths(paths, "model.layers.*.post_attn_layernorm", 2)).toEqual([
      "model.layers.0.post_attention_layernorm",
      "model.layers.0.mlp",
    ]);
  });
});

describe("chains of three toy modules", () => {
  const x = () => tf.tensor1d([1, 2, 3]);

  it("feeds an optional input from outside the chain and equals the unfused forward", () => {
    const p = new Straight();
    const expected = [1, 2, 3].map((v) => 10 * (2 * v + 5));
    expect(values(p.call(x(), 5))).toEqual(expected);
    const [chain] = fuseModules(
      p,
      ["a", "b", "c"],
      [spec(["x"], ["h"]), spec(["h", "shift"], ["h"]), spec(["h"], ["y"])],
    );
    expect(chain.paths).toEqual(["a", "b", "c"]);
    let seen: string[] = [];
    const orig = chain.fused.chain;
    orig[2].registerForwardPreHook(() => void (seen = [...chain.fused.registry.keys()].sort()));
    expect(values(p.call(x(), 5))).toEqual(expected);
    expect(seen).toEqual(["in_0_x", "in_1_h", "in_1_shift", "in_2_h", "out_0_h", "out_1_h"]);
    expect(chain.fused.registry.size).toBe(0);
    // Left out of the spec, the optional parameter takes its default (0), whatever the parent passed.
    unfuseModules(p);
    fuseModules(p, ["a", "b", "c"], [spec(["x"], ["h"]), spec(["h"], ["h"]), spec(["h"], ["y"])]);
    expect(values(p.call(x(), 5))).toEqual([1, 2, 3].map((v) => 10 * 2 * v));
    unfuseModules(p);
    expect(p.a === orig[0] && p.b === orig[1] && p.c === orig[2]).toBe(true);
  });

  it("maps several outputs by position and drops those named _", () => {
    const p = new Parent();
    expect(values(p.call(x(), 5))).toEqual([60, 70, 80]); // unfused: a's outputs are unused, 10·(x + 5)
    // a's second output (x − 1) is wired to b as "h"; the first is dropped.
    fuseModules(p, ["a", "b", "c"], [spec(["x"], ["_", "h"]), spec(["h", "shift"], ["h"]), spec(["h"], ["y"])]);
    const fused = p.c as FusedModule;
    let seen: string[] = [];
    fused.chain[1].registerForwardPreHook(() => void (seen = [...fused.registry.keys()].sort()));
    expect(values(p.call(x(), 5))).toEqual([1, 2, 3].map((v) => 10 * (v - 1 + 5)));
    expect(seen).toEqual(["in_0_x", "in_1_h", "in_1_shift", "in_2_h", "out_0_h"]); // no "out_0__"
    unfuseModules(p);
    // The other way round: the first output (2x) is the wire.
    fuseModules(p, ["a", "b", "c"], [spec(["x"], ["h", "_"]), spec(["h", "shift"], ["h"]), spec(["h"], ["y"])]);
    expect(values(p.call(x(), 5))).toEqual([1, 2, 3].map((v) => 10 * (2 * v + 5)));
  });

  it("returns the last module's outputs as they are (the parent destructures them)", () => {
    const p = new TwoOut();
    const expected = [1, 2, 3].map((v) => 2 * 3 * v + (3 * v - 1));
    expect(values(p.call(x()))).toEqual(expected);
    fuseModules(p, ["a", "b"], [spec(["x"], ["h"]), spec(["h"], ["y", "_"])]);
    expect(values(p.call(x()))).toEqual(expected);
  });

  it("says when a module returns fewer outputs than its spec names", () => {
    const p = new Straight();
    fuseModules(p, ["a", "b", "c"], [spec(["x"], ["h", "g"]), spec(["h", "shift"], ["h"]), spec(["h"], ["y"])]);
    expect(() => p.call(x(), 5)).toThrow(FusionWiringError);
    expect(() => p.call(x(), 5)).toThrow(
      /module 0 \(a, Scale\) returned a single value, but its spec names 2 outputs \[h, g\]/,
    );
    expect((p.c as FusedModule).registry.size).toBe(0);
  });

  it("empties the registry and frees the chain's intermediates when a chain module throws", () => {
    const p = new Straight();
    p.b = new Boom();
    const [{ fused }] = fuseModules(p, ["a", "b", "c"], [spec(["x"], ["h"]), spec(["h"], ["h"]), spec(["h"], ["y"])]);
    const input = x();
    const before = tf.memory().numTensors;
    expect(() => p.call(input, 5)).toThrow("boom on a tensor of shape [3]");
    expect(fused.registry.size).toBe(0);
    expect(tf.memory().numTensors).toBe(before); // the chain's intermediate (a's output) was freed
    input.dispose();
  });

  it("lets kernelize-style per-instance forwards run with `this` = the FusedModule, registry cleared even on throw", () => {
    const p = new Straight();
    const [{ fused }] = fuseModules(
      p,
      ["a", "b", "c"],
      [spec(["x"], ["h"]), spec(["h", "shift"], ["h"]), spec(["h"], ["y"])],
    );
    // A "kernel": same args as the last forward, weights read through this.chain.
    fused.forward = function (this: FusedModule, h: tf.Tensor) {
      const [a, , c] = this.chain as [Scale, Shift, Scale];
      const shift = this.registry.get("in_1_shift") as number;
      return tf.tidy(() => tf.mul(tf.add(tf.mul(h, a.k), shift), c.k));
    } as FusedModule["forward"];
    expect(values(p.call(x(), 5))).toEqual([70, 90, 110]);
    expect(fused.registry.size).toBe(0);
    fused.forward = () => {
      throw new Error("kernel failed");
    };
    expect(() => p.call(x(), 5)).toThrow("kernel failed");
    expect(fused.registry.size).toBe(0);
  });
});

describe("fusing a tiny Qwen3", () => {
  it("gives 5 parents 5 independent registries, each holding only its own layer's wires", () => {
    const model = tinyQwen(5);
    const ids = [[1, 7, 3, 9, 2]];
    const ref = flatLogitsOf(model, ids);
    const chains = fuseModules(model, NORM_MLP, [HS(), HS()]);
    expect(chains.map((c) => c.parent)).toEqual([0, 1, 2, 3, 4].map((i) => `model.layers.${i}`));
    const registries = chains.map((c) => c.fused.registry);
    expect(new Set(registries).size).toBe(5);
    const snapshots: { keys: string[]; othersEmpty: boolean; passThrough: boolean }[] = [];
    chains.forEach(({ fused }, i) => {
      fused.chain[1].registerForwardPreHook((_m, args) => {
        const reg = registries[i];
        snapshots[i] = {
          keys: [...reg.keys()].sort(),
          othersEmpty: registries.every((r, j) => j === i || r.size === 0),
          // the collector passed the un-normed hidden state on; the mlp gets the norm's output instead
          passThrough:
            reg.get("in_1_hidden_states") === reg.get("in_0_hidden_states") &&
            args[0] === reg.get("out_0_hidden_states") &&
            args[0] !== reg.get("in_0_hidden_states"),
        };
      });
    });
    expect(maxAbsDiff(flatLogitsOf(model, ids), ref)).toBe(0);
    expect(snapshots).toHaveLength(5);
    for (const s of snapshots)
      expect(s).toEqual({
        keys: ["in_0_hidden_states", "in_1_hidden_states", "out_0_hidden_states"],
        othersEmpty: true,
        passThrough: true,
      });
    expect(registries.every((r) => r.size === 0)).toBe(true);
    unfuseModules(model);
    model.dispose();
  });

  it("delegates attribute reads to the stood-for module and adds no children or parameters", () => {
    const model = tinyQwen(2);
    const layer = model.getSubmodule("model.layers.1");
    const norm = layer.getSubmodule("post_attention_layernorm") as Qwen3RMSNorm;
    const mlp = layer.getSubmodule("mlp") as Qwen3MLP;
    const keysBefore = Object.keys(model.stateDict());
    fuseModules(model, NORM_MLP, [HS(), HS()], { kernelLayerName: "NormMLP" });
    const collector = layer.getSubmodule("post_attention_layernorm") as RegistryCollector & Qwen3RMSNorm;
    const fused = layer.getSubmodule("mlp") as FusedModule & Qwen3MLP;
    expect(collector).toBeInstanceOf(RegistryCollector);
    expect(fused).toBeInstanceOf(FusedModule);
    expect(fused).toBeInstanceOf(Module);
    expect(collector.weight).toBe(norm.weight);
    expect(collector.eps).toBe(norm.eps);
    expect(fused.gate_proj).toBe(mlp.gate_proj);
    expect(fused.config).toBe(mlp.config);
    expect("down_proj" in fused).toBe(true);
    expect(fused.chain[0]).toBe(norm);
    expect(fused.chain[1]).toBe(mlp);
    expect(Object.hasOwn(fused, "kernelLayerName") && fused.kernelLayerName).toBe("NormMLP");
    expect(Object.hasOwn(collector, "kernelLayerName")).toBe(false);
    expect(fused.namedChildren().map(([n]) => n)).toEqual(["gate_proj", "up_proj", "down_proj"]);
    expect(collector.ownParameters()).toEqual(norm.ownParameters());
    const sd = model.stateDict();
    expect(Object.keys(sd)).toEqual(keysBefore);
    Object.values(sd).forEach((t) => t.dispose());
    // train()/eval() reach the originals through their stand-ins.
    model.train();
    expect(norm.training && mlp.training).toBe(true);
    model.eval();
    expect(norm.training || mlp.training).toBe(false);
    // setSubmodule through a fused module replaces the child in the original.
    const replacement = new Scale(1);
    model.setSubmodule("model.layers.1.mlp.up_proj", replacement as unknown as Module);
    expect(mlp.up_proj).toBe(replacement);
    model.dispose();
  });

  it("restores only the chains a pattern names", () => {
    const model = tinyQwen(4);
    const before = model.namedModules();
    fuseModules(model, NORM_MLP, [HS(), HS()]);
    const restored = unfuseModules(model, ["model.layers.{0,1}.mlp"]);
    expect(restored.map((c) => c.parent)).toEqual(["model.layers.0", "model.layers.1"]);
    expect(getFusedChains(model).map((c) => c.parent)).toEqual(["model.layers.2", "model.layers.3"]);
    expect(() => unfuseModules(model, ["model.layers.0.*"])).toThrow(FusionPatternError);
    expect(() => unfuseModules(model, ["model.layers.0.*"])).toThrow(
      /"model\.layers\.0\.\*" matches no fused module; closest fused paths: model\.layers\.2\./,
    );
    unfuseModules(model);
    expect(getFusedChains(model)).toEqual([]);
    const after = model.namedModules();
    expect(after.length).toBe(before.length);
    after.forEach(([p, m], i) => expect(p === before[i][0] && m === before[i][1]).toBe(true));
    model.dispose();
  });

  it("matches the unfused forward when fusing only some layers, or a single-module chain", () => {
    const model = tinyQwen(4);
    const ids = [[5, 4, 3]];
    const ref = flatLogitsOf(model, ids);
    fuseModules(model, ["model.layers.{1,3}.post_attention_layernorm", "model.layers.*.mlp"], [HS(), HS()]);
    expect(getFusedChains(model).map((c) => c.parent)).toEqual(["model.layers.1", "model.layers.3"]);
    expect(maxAbsDiff(flatLogitsOf(model, ids), ref)).toBe(0);
    fuseModules(
      model,
      ["model.layers.0.self_attn"],
      [spec(["hidden_states", "position_embeddings", "attention_mask", "past_key_values"], ["h"])],
    );
    expect(maxAbsDiff(flatLogitsOf(model, ids), ref)).toBe(0);
    unfuseModules(model);
    model.dispose();
  });
});

describe("errors", () => {
  let model: PreTrainedModel;
  beforeAll(() => {
    model = tinyQwen(2);
  });

  it("patterns and specs of different lengths", () => {
    expect(() => fuseModules(model, NORM_MLP, [HS()])).toThrow(FusionSpecError);
    expect(() => fuseModules(model, NORM_MLP, [HS()])).toThrow(
      "fuseModules got 2 pattern(s) but 1 spec(s): give one ModuleSpec per pattern, in chain order",
    );
    expect(() => fuseModules(model, NORM_MLP, [HS(), { inputs: ["x"], outputs: ["y"] } as ModuleSpec])).toThrow(
      /specs\[1\] is not a ModuleSpec/,
    );
  });

  it("a pattern that matches nothing lists the closest real paths", () => {
    const call = () => fuseModules(model, ["model.layers.*.post_attn_layernorm", "model.layers.*.mlp"], [HS(), HS()]);
    expect(call).toThrow(FusionPatternError);
    expect(call).toThrow(
      'pattern "model.layers.*.post_attn_layernorm" matches no module of Qwen3ForCausalLM; closest paths: model.layers.0.post_attention_layernorm, model.layers.0.input_layernorm, ',
    );
  });

  it("matches that do not share a parent", () => {
    const call = () => fuseModules(model, ["model.layers.*.mlp", "model.norm"], [HS(), HS()]);
    expect(call).toThrow(FusionPatternError);
    expect(call).toThrow(
      'the patterns\' matches do not share a parent, so no chain can be formed: "model.layers.*.mlp" → parents "model.layers.0", "model.layers.1"; "model.norm" → parents "model"',
    );
  });

  it("a pattern matching two children of one parent", () => {
    expect(() => fuseModules(model, ["model.layers.*.*_layernorm", "model.layers.*.mlp"], [HS(), HS()])).toThrow(
      'pattern "model.layers.*.*_layernorm" matches 2 children of "model.layers.0" (input_layernorm, post_attention_layernorm); a chain takes exactly one module per pattern',
    );
    expect(() => fuseModules(model, ["model.layers.*.mlp", "model.layers.*.{mlp,x}"], [HS(), HS()])).toThrow(
      /two patterns match the same module "model\.layers\.0\.mlp"/,
    );
  });

  it("a spec with more inputs than the forward takes", () => {
    const call = () => fuseModules(model, NORM_MLP, [HS(), spec(["hidden_states", "scale"], ["hidden_states"])]);
    expect(call).toThrow(FusionSpecError);
    expect(call).toThrow(
      'specs[1] names 2 inputs [hidden_states, scale] but Qwen3MLP.forward at "model.layers.0.mlp" takes 1 (x)',
    );
    expect(getFusedChains(model)).toEqual([]); // nothing was replaced
  });

  it("fusing an already-fused module", () => {
    fuseModules(model, NORM_MLP, [HS(), HS()]);
    try {
      expect(() => fuseModules(model, NORM_MLP, [HS(), HS()])).toThrow(AlreadyFusedError);
      expect(() => fuseModules(model, NORM_MLP, [HS(), HS()])).toThrow(
        '"model.layers.0.post_attention_layernorm" (matched by pattern "model.layers.*.post_attention_layernorm") is already fused: it is the RegistryCollector of chain model.layers.0.post_attention_layernorm → model.layers.0.mlp; call unfuseModules first',
      );
    } finally {
      unfuseModules(model);
    }
  });

  it("a missing wire says which module needs which name (chain given in the wrong order)", () => {
    const [{ fused }] = fuseModules(
      model,
      ["model.layers.*.mlp", "model.layers.*.post_attention_layernorm"],
      [HS(), HS()],
    );
    try {
      const inputIds = tf.tensor2d([[1, 2]], [1, 2], "int32");
      const before = tf.memory().numTensors;
      const call = () => model.forward({ inputIds });
      expect(call).toThrow(FusionWiringError);
      expect(call).toThrow(
        /module 0 \(model\.layers\.0\.mlp, Qwen3MLP\) needs "hidden_states", but "in_0_hidden_states" is not in the registry \(registry: in_1_hidden_states\)/,
      );
      expect(fused.registry.size).toBe(0);
      expect(tf.memory().numTensors).toBe(before);
      inputIds.dispose();
    } finally {
      unfuseModules(model);
    }
  });

  it("bad kernelLayerName and bad unfuse patterns", () => {
    expect(() => fuseModules(model, NORM_MLP, [HS(), HS()], { kernelLayerName: "" })).toThrow(
      /kernelLayerName must be a non-empty string/,
    );
    expect(() => unfuseModules(model, ["model.layers.*.mlp"])).toThrow(
      'pattern "model.layers.*.mlp" matches no fused module; nothing is fused',
    );
  });
});

// keep the imported helpers honest: the kernel-style forward above matches rmsNorm/silu composition
describe("kernel-style fused forward on Qwen3", () => {
  it("a per-instance forward reading this.chain[0].weight / this.chain[1].gate_proj equals the original", () => {
    const model = tinyQwen(3);
    const ids = [[3, 1, 4, 1, 5]];
    const ref = flatLogitsOf(model, ids);
    const chains = fuseModules(model, NORM_MLP, [HS(), HS()], { kernelLayerName: "NormMLP" });
    for (const { fused } of chains) {
      fused.forward = function (this: FusedModule, x: tf.Tensor) {
        const norm = this.chain[0] as Qwen3RMSNorm;
        const mlp = this.chain[1] as Qwen3MLP;
        return tf.tidy(() => {
          const h = rmsNorm(x, norm.weight.tensor, norm.eps);
          return mlp.down_proj.forward(tf.mul(silu(mlp.gate_proj.forward(h)), mlp.up_proj.forward(h)));
        });
      } as FusedModule["forward"];
    }
    expect(maxAbsDiff(flatLogitsOf(model, ids), ref)).toBe(0);
    expect(chains.every((c) => c.fused.registry.size === 0)).toBe(true);
    model.dispose();
  });
});
