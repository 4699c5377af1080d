import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import {
  AutoModelForCausalLM,
  Linear,
  Module,
  PatchMappingError,
  PatchTypeError,
  Qwen3Attention,
  Qwen3Config,
  Qwen3DecoderLayer,
  Qwen3ForCausalLM,
  Qwen3MLP,
  Qwen3RMSNorm,
  applyPatches,
  clearPatchMapping,
  construct,
  getPatchMapping,
  registerPatchMapping,
  setBackend,
  tf,
  unregisterPatchMapping,
  withPatches,
  withoutPatches,
} from "fusekit";
import { buildInScope } from "../src/patching/registry.js";

const config = new Qwen3Config({
  vocab_size: 32,
  hidden_size: 16,
  intermediate_size: 24,
  num_hidden_layers: 2,
  num_attention_heads: 2,
  num_key_value_heads: 1,
  head_dim: 8,
});
const build = () => AutoModelForCausalLM.fromConfig(config, { seed: 1 }) as Qwen3ForCausalLM;

class MLPA extends Qwen3MLP {}
class MLPB extends Qwen3MLP {}
class NormA extends Qwen3RMSNorm {}
class NormB extends Qwen3RMSNorm {}
class NotAModule {}

/** Class name of every module in the model, by path. */
const classes = (m: Module) => new Map(m.namedModules().map(([p, mod]) => [p, mod.constructor]));

beforeAll(() => setBackend("cpu"));
afterEach(() => clearPatchMapping());

describe("patch mapping registry", () => {
  it("registers, returns a copy, unregisters and clears", () => {
    registerPatchMapping({ Qwen3MLP: MLPA });
    const copy = getPatchMapping();
    expect(copy).toEqual({ Qwen3MLP: MLPA });
    copy.Qwen3MLP = MLPB;
    delete (copy as Record<string, unknown>).Qwen3MLP;
    expect(getPatchMapping()).toEqual({ Qwen3MLP: MLPA });
    registerPatchMapping({ Qwen3RMSNorm: NormA });
    unregisterPatchMapping("Qwen3MLP");
    expect(getPatchMapping()).toEqual({ Qwen3RMSNorm: NormA });
    clearPatchMapping();
    expect(getPatchMapping()).toEqual({});
  });

  it("a value that is not a Module subclass is a PatchTypeError naming the key, and nothing is registered", () => {
    for (const bad of [NotAModule, 42, null, () => 0, Module.prototype]) {
      const err = catchError(() => registerPatchMapping({ Qwen3RMSNorm: NormA, Qwen3MLP: bad as never }));
      expect(err).toBeInstanceOf(PatchTypeError);
      expect(err).toBeInstanceOf(PatchMappingError);
      expect(err.message).toMatch(
        /^registerPatchMapping: the replacement for "Qwen3MLP" must be a Module subclass \(TypeError\), got /,
      );
    }
    expect(catchError(() => registerPatchMapping({ Qwen3MLP: NotAModule as never })).message).toContain(
      "got function NotAModule (not a Module subclass)",
    );
    expect(catchError(() => registerPatchMapping({ Qwen3MLP: 42 as never })).message).toContain("got number 42");
    expect(getPatchMapping()).toEqual({});
    expect(catchError(() => registerPatchMapping([] as never)).message).toBe(
      "registerPatchMapping: expected an object of class name → Module subclass, got an object (Array)",
    );
  });

  it("re-registering a key needs overwrite", () => {
    registerPatchMapping({ Qwen3MLP: MLPA });
    const err = catchError(() => registerPatchMapping({ Qwen3MLP: MLPB }));
    expect(err).toBeInstanceOf(PatchMappingError);
    expect(err.message).toBe(
      'registerPatchMapping: "Qwen3MLP" already patched (by MLPA); pass { overwrite: true } to replace',
    );
    expect(getPatchMapping().Qwen3MLP).toBe(MLPA);
    registerPatchMapping({ Qwen3MLP: MLPB }, { overwrite: true });
    expect(getPatchMapping().Qwen3MLP).toBe(MLPB);
  });

  it("unregistering an unknown key is an error and removes nothing", () => {
    registerPatchMapping({ Qwen3MLP: MLPA });
    const err = catchError(() => unregisterPatchMapping(["Qwen3MLP", "Nope"]));
    expect(err).toBeInstanceOf(PatchMappingError);
    expect(err.message).toBe('unregisterPatchMapping: "Nope" not registered (registered: Qwen3MLP)');
    expect(getPatchMapping()).toEqual({ Qwen3MLP: MLPA });
  });

  it("an invalid regex key is an error", () => {
    const err = catchError(() => registerPatchMapping({ "Qwen3(MLP": MLPA }));
    expect(err).toBeInstanceOf(PatchMappingError);
    expect(err.message).toMatch(/^registerPatchMapping: key "Qwen3\(MLP" is neither a class name nor a valid regex \(/);
  });
});

describe("patches apply at construction", () => {
  it("a registered patch reaches every place the class is built inside a scope, and the original classes are untouched", () => {
    const forward = Qwen3MLP.prototype.forward;
    const protoKeys = Object.getOwnPropertyNames(Qwen3MLP.prototype);
    registerPatchMapping({ Qwen3MLP: MLPA });
    const model = build();
    const plainBefore = new Qwen3MLP(config);
    expect([...model.model.layers].map((l) => l.mlp.constructor)).toEqual([MLPA, MLPA]);
    expect(plainBefore.constructor).toBe(Qwen3MLP); // `new` is not patched; only construct() in a scope is
    expect(applyPatches(() => construct(Qwen3MLP, config))).toBeInstanceOf(MLPA);
    expect(Qwen3MLP.prototype.forward).toBe(forward);
    expect(Object.getOwnPropertyNames(Qwen3MLP.prototype)).toEqual(protoKeys);
    model.dispose();
  });

  it("a regex key patches every class whose name it matches, and nothing else", () => {
    const plain = classes(build());
    registerPatchMapping({ "Qwen3.*Norm": NormA });
    const patched = classes(build());
    let normCount = 0;
    for (const [p, cls] of plain) {
      if (cls === Qwen3RMSNorm) {
        normCount++;
        expect(patched.get(p), p).toBe(NormA);
      } else {
        expect(patched.get(p), p).toBe(cls);
      }
    }
    // input/post-attention norms + q/k norms per layer, and the final norm
    expect(normCount).toBe(2 * 4 + 1);
  });

  // transformers' register_patch_mapping: "Exact matches take precedence over patterns. Patterns are matched
  // using `re.search()`, so they can match anywhere in the class name unless you use anchors (`^` for start,
  // `$` for end)." — `".*Attention"` (and plain "Attention") patch LlamaAttention.
  it('regex keys are searched in the class name (re.search): "Attention" patches Qwen3Attention; anchors restrict', () => {
    class AttnA extends Qwen3Attention {}
    registerPatchMapping({ Attention: AttnA, "^MLP": MLPA, Norm$: NormA });
    const m = build();
    expect([...m.model.layers].map((l) => [l.self_attn.constructor, l.mlp.constructor])).toEqual([
      [AttnA, Qwen3MLP],
      [AttnA, Qwen3MLP],
    ]);
    expect(m.model.norm.constructor).toBe(NormA);
    expect(m.model.layers.at(0).constructor).toBe(Qwen3DecoderLayer); // "Attention" is not in "Qwen3DecoderLayer"
  });

  it("patterns are tried in insertion order after the exact names (transformers: exact first, then patterns in order)", () => {
    registerPatchMapping({ RMS: NormA, Norm: NormB });
    expect(build().model.norm.constructor).toBe(NormA);
    clearPatchMapping();
    registerPatchMapping({ Norm: NormB, RMS: NormA });
    expect(build().model.norm.constructor).toBe(NormB);
    registerPatchMapping({ Qwen3RMSNorm: NormA }); // an exact name registered last still wins
    expect(build().model.norm.constructor).toBe(NormA);
  });

  it("a replacement may wrap the class it replaces: construct() inside it builds the original", () => {
    class WrappedMLP extends Module<[tf.Tensor], tf.Tensor> {
      inner: Qwen3MLP;
      constructor(c: Qwen3Config) {
        super();
        this.inner = construct(Qwen3MLP, c);
      }
      forward(x: tf.Tensor): tf.Tensor {
        return this.inner.call(x);
      }
    }
    registerPatchMapping({ Qwen3MLP: WrappedMLP as never });
    const mlps = [...build().model.layers].map((l) => l.mlp as unknown as WrappedMLP);
    expect(mlps.map((m) => [m.constructor, m.inner.constructor])).toEqual([
      [WrappedMLP, Qwen3MLP],
      [WrappedMLP, Qwen3MLP],
    ]);
    expect(applyPatches(() => construct(Qwen3MLP, config))).toBeInstanceOf(WrappedMLP); // the guard is gone afterwards
  });

  it("an exact key wins over a regex registered before it", () => {
    registerPatchMapping({ "Qwen3RMS.*": NormA, Qwen3RMSNorm: NormB });
    expect(build().model.norm.constructor).toBe(NormB);
  });
});

// transformers' register_patch_mapping: "Register patch mappings to enable automatic patching during model
// creation using `from_pretrained`, `from_config` or within the `apply_patches` context manager." Outside
// those, `Qwen2MoeModel(Qwen2MoeConfig())` builds the original classes.
describe("registered patches apply only inside fromPretrained / fromConfig / applyPatches()", () => {
  class LinearA extends Linear {}

  it("`new Qwen3ForCausalLM(config)` and construct(Linear, …) outside any scope are plain", () => {
    registerPatchMapping({ Qwen3MLP: MLPA, "^Linear$": LinearA });
    const direct = new Qwen3ForCausalLM(config);
    expect([...direct.model.layers].map((l) => [l.mlp.constructor, l.mlp.gate_proj.constructor])).toEqual([
      [Qwen3MLP, Linear],
      [Qwen3MLP, Linear],
    ]);
    expect(construct(Linear, 4, 2).constructor).toBe(Linear);
    expect(construct(Qwen3MLP, config).constructor).toBe(Qwen3MLP);
    direct.dispose();
  });

  it("applyPatches(fn) applies them to everything built inside, and is undone after a return or a throw", async () => {
    registerPatchMapping({ Qwen3MLP: MLPA, "^Linear$": LinearA });
    const inside = applyPatches(() => new Qwen3ForCausalLM(config));
    expect(inside.model.layers.at(0).mlp).toBeInstanceOf(MLPA);
    expect(inside.lm_head.constructor).toBe(LinearA);
    expect(applyPatches(() => construct(Linear, 4, 2)).constructor).toBe(LinearA);
    expect(() =>
      applyPatches(() => {
        throw new RangeError("boom");
      }),
    ).toThrow("boom");
    await expect(
      applyPatches(async () => {
        await new Promise((r) => setTimeout(r, 1));
        throw new RangeError("late");
      }),
    ).rejects.toThrow("late");
    expect(new Qwen3ForCausalLM(config).model.layers.at(0).mlp.constructor).toBe(Qwen3MLP);
    // inside withoutPatches, applyPatches keeps the plain scope (fromPretrained / fromConfig there stay plain)
    expect(withoutPatches(() => applyPatches(() => construct(Linear, 4, 2))).constructor).toBe(Linear);
    expect(withoutPatches(() => build()).model.layers.at(0).mlp.constructor).toBe(Qwen3MLP);
  });

  it("fromConfig applies them (as transformers' from_config does)", () => {
    registerPatchMapping({ Qwen3MLP: MLPA });
    expect([...build().model.layers].map((l) => l.mlp.constructor)).toEqual([MLPA, MLPA]);
  });
});

describe("scoped patches", () => {
  it("withPatches applies only inside, over the global mapping, and is restored after a throw", async () => {
    registerPatchMapping({ Qwen3RMSNorm: NormA });
    const inside = withPatches({ Qwen3MLP: MLPA }, () => build());
    expect(inside.model.layers.at(0).mlp).toBeInstanceOf(MLPA);
    expect(inside.model.norm).toBeInstanceOf(NormA);
    expect(build().model.layers.at(0).mlp.constructor).toBe(Qwen3MLP);

    expect(() =>
      withPatches({ Qwen3MLP: MLPA }, () => {
        throw new RangeError("boom");
      }),
    ).toThrow("boom");
    expect(build().model.layers.at(0).mlp.constructor).toBe(Qwen3MLP);
    await expect(
      withPatches({ Qwen3MLP: MLPA }, async () => {
        await new Promise((r) => setTimeout(r, 1));
        throw new RangeError("late boom");
      }),
    ).rejects.toThrow("late boom");
    expect(build().model.layers.at(0).mlp.constructor).toBe(Qwen3MLP);
  });

  it("a scope holds across awaits, inner scopes win over outer ones and over the global mapping", async () => {
    registerPatchMapping({ Qwen3MLP: MLPA });
    await withPatches({ Qwen3MLP: MLPB, Qwen3RMSNorm: NormA }, async () => {
      await new Promise((r) => setTimeout(r, 1));
      expect(build().model.layers.at(0).mlp).toBeInstanceOf(MLPB);
      await withPatches({ Qwen3RMSNorm: NormB }, async () => {
        await new Promise((r) => setTimeout(r, 1));
        const m = build();
        expect(m.model.norm).toBeInstanceOf(NormB);
        expect(m.model.layers.at(0).mlp).toBeInstanceOf(MLPB);
      });
      expect(build().model.norm).toBeInstanceOf(NormA);
    });
    expect(build().model.layers.at(0).mlp).toBeInstanceOf(MLPA);
  });

  it("withoutPatches hides registered and enclosing scoped patches", () => {
    registerPatchMapping({ Qwen3MLP: MLPA });
    withPatches({ Qwen3RMSNorm: NormA }, () => {
      const m = withoutPatches(() => build());
      expect([m.model.layers.at(0).mlp.constructor, m.model.norm.constructor]).toEqual([Qwen3MLP, Qwen3RMSNorm]);
      const inner = withoutPatches(() => withPatches({ Qwen3RMSNorm: NormB }, () => build()));
      expect([inner.model.layers.at(0).mlp.constructor, inner.model.norm.constructor]).toEqual([Qwen3MLP, NormB]);
    });
  });

  it("fusekit's own synchronous builds (buildInScope) scope as withPatches / withoutPatches do, innermost first", async () => {
    registerPatchMapping({ Qwen3RMSNorm: NormA });
    const m = buildInScope({ Qwen3MLP: MLPA }, () => build());
    expect([m.model.layers.at(0).mlp.constructor, m.model.norm.constructor]).toEqual([MLPA, NormA]);
    const plain = buildInScope(null, () => build());
    expect([plain.model.layers.at(0).mlp.constructor, plain.model.norm.constructor]).toEqual([Qwen3MLP, Qwen3RMSNorm]);
    // a withPatches inside a build is inner to it; a build inside an async withPatches sees it after an await
    const nested = buildInScope({ Qwen3MLP: MLPA }, () => withPatches({ Qwen3MLP: MLPB }, () => build()));
    expect(nested.model.layers.at(0).mlp).toBeInstanceOf(MLPB);
    await withPatches({ Qwen3MLP: MLPB }, async () => {
      await new Promise((r) => setTimeout(r, 1));
      const inner = buildInScope({ Qwen3RMSNorm: NormB }, () => build());
      expect([inner.model.layers.at(0).mlp.constructor, inner.model.norm.constructor]).toEqual([MLPB, NormB]);
    });
    // undone after a throw, and a build that returns a promise is refused (its later steps would be unscoped)
    expect(() =>
      buildInScope({ Qwen3MLP: MLPA }, () => {
        throw new RangeError("boom");
      }),
    ).toThrow("boom");
    expect(() => buildInScope({ Qwen3MLP: MLPA }, async () => build())).toThrow(TypeError);
    expect(build().model.layers.at(0).mlp.constructor).toBe(Qwen3MLP);
    expect(catchError(() => buildInScope({ Qwen3MLP: NotAModule as never }, () => 1))).toBeInstanceOf(PatchTypeError);
  });

  it("withPatches validates its mapping", () => {
    const err = catchError(() => withPatches({ Qwen3MLP: NotAModule as never }, () => 1));
    expect(err).toBeInstanceOf(PatchTypeError);
    expect(err.message).toMatch(/^withPatches: the replacement for "Qwen3MLP" must be a Module subclass/);
  });

  describe("fromPretrained({ patches })", () => {
    let dir: string;
    beforeAll(async () => {
      dir = await mkdtemp(path.join(os.tmpdir(), "fusekit-patching-"));
      const m = build();
      await m.savePretrained(dir);
      m.dispose();
    });
    afterAll(() => rm(dir, { recursive: true, force: true }));

    it("two concurrent loads with different scoped patches each get their own classes", async () => {
      class AttnA extends Qwen3Attention {}
      class LayerB extends Qwen3DecoderLayer {}
      const [a, b, c] = (await Promise.all([
        AutoModelForCausalLM.fromPretrained(dir, { patches: { Qwen3MLP: MLPA, Qwen3Attention: AttnA } }),
        AutoModelForCausalLM.fromPretrained(dir, { patches: { Qwen3MLP: MLPB, Qwen3DecoderLayer: LayerB } }),
        AutoModelForCausalLM.fromPretrained(dir),
      ])) as Qwen3ForCausalLM[];
      for (const l of a.model.layers)
        expect([l.constructor, l.mlp.constructor, l.self_attn.constructor]).toEqual([Qwen3DecoderLayer, MLPA, AttnA]);
      for (const l of b.model.layers)
        expect([l.constructor, l.mlp.constructor, l.self_attn.constructor]).toEqual([LayerB, MLPB, Qwen3Attention]);
      for (const l of c.model.layers)
        expect([l.constructor, l.mlp.constructor, l.self_attn.constructor]).toEqual([
          Qwen3DecoderLayer,
          Qwen3MLP,
          Qwen3Attention,
        ]);
      // Same weights, same math: the subclasses change nothing but the class.
      const out = [a, b, c].map((m) => m.forward({ inputIds: [[1, 2, 3]] }).logits);
      expect(out[0].arraySync()).toEqual(out[2].arraySync());
      expect(out[1].arraySync()).toEqual(out[2].arraySync());
      tf.dispose(out);
      [a, b, c].forEach((m) => m.dispose());
      expect(getPatchMapping()).toEqual({});
    });

    it("a bad scoped mapping rejects the load with a PatchTypeError", async () => {
      await expect(
        AutoModelForCausalLM.fromPretrained(dir, {
          patches: { Qwen3MLP: Linear as never, Qwen3RMSNorm: "x" as never },
        }),
      ).rejects.toThrow(
        /withPatches: the replacement for "Qwen3RMSNorm" must be a Module subclass \(TypeError\), got string "x"/,
      );
    });
  });
});

function catchError(fn: () => unknown): Error {
  try {
    fn();
  } catch (err) {
    return err as Error;
  }
  throw new Error("expected a throw");
}
