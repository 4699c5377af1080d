// The kernel-layer rules (validateKernelLayer) message by message, and how kernelize installs and restores a
// forward on an instance that already had its own (the gaps a mutation run of src/hub/kernelize.ts found:
// docs/testing.md).
import { afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import {
  ArgumentError,
  KernelMappingError,
  KernelValidationError,
  Module,
  LayerRepository,
  Mode,
  ModuleSpec,
  Qwen3RMSNorm,
  activeKernel,
  applyKernelsAfterLoad,
  clearKernelMapping,
  fuseModules,
  getKernelLayerName,
  kernelize,
  registerKernelMapping,
  setBackend,
  tf,
  unkernelize,
  useKernelForwardFromHub,
  validateKernelLayer,
  type KernelLayerClass,
} from "fusekit/internals";

/** The message validateKernelLayer gives `layer` for a replaced forward of `arity` parameters. */
function rejection(layer: unknown, arity = 1): string {
  try {
    validateKernelLayer(layer as KernelLayerClass, arity, "Scale", "t/rules");
  } catch (err) {
    expect(err).toBeInstanceOf(KernelValidationError);
    return (err as Error).message;
  }
  return "accepted";
}

describe("validateKernelLayer", () => {
  it("accepts a stateless class whose forward has the replaced forward's arity, however often it is asked", () => {
    class Ok {
      static hasBackward = false;
      forward(x: unknown) {
        // a nested object with a method called constructor is not the class's own constructor
        const helper = {
          constructor(y: unknown) {
            return y;
          },
        };
        return helper.constructor(x);
      }
    }
    expect(rejection(Ok)).toBe("accepted");
    expect(rejection(Ok)).toBe("accepted");
    expect(rejection(Ok, 2)).toMatch(/forward takes 1 parameter but the forward it replaces takes 2/);
  });

  it("names what is wrong: not a class, no forward, own constructor, state, a non-boolean flag, the arity", () => {
    expect(rejection({ forward() {} })).toMatch(/must be a class with a forward method/);
    expect(rejection(class NoForward {})).toMatch(/must be a class with a forward method/);
    function Plain() {}
    Plain.prototype.forward = function (x: unknown) {
      return x;
    };
    expect(rejection(Plain)).toMatch(/must be a class \(a plain function is its own constructor\)/);
    function Sneaky() {
      return "class";
    } // "class" in its text, but not at the start
    Sneaky.prototype.forward = function (x: unknown) {
      return x;
    };
    expect(rejection(Sneaky)).toMatch(/must be a class \(a plain function/);
    expect(rejection(() => 1)).toMatch(/must be a class with a forward method/); // an arrow has no prototype
    expect(rejection({ prototype: { forward() {} } })).toMatch(/must be a class with a forward method/);
    expect(rejection(null)).toMatch(/must be a class with a forward method/);
    class WithCtor {
      constructor() {}
      forward(x: unknown) {
        return x;
      }
    }
    expect(rejection(WithCtor)).toMatch(/must not define its own constructor/);
    class CtorLast {
      forward(x: unknown) {
        return { x };
      }
      constructor() {}
    }
    expect(rejection(CtorLast)).toMatch(/must not define its own constructor/); // after a method body's braces
    class BadFlag {
      static hasBackward = "yes";
      forward(x: unknown) {
        return x;
      }
    }
    expect(rejection(BadFlag)).toMatch(/hasBackward must be a boolean/);
    class Two {
      forward(x: unknown, y: unknown) {
        return [x, y];
      }
    }
    expect(rejection(Two)).toMatch(/forward takes 2 parameters but the forward it replaces takes 1/);
    expect(rejection(Two, 2)).toBe("accepted");
  });

  it("names the kernel class, or <anonymous>", () => {
    const msg = rejection({});
    expect(msg).toMatch(/<anonymous>/);
    expect(msg).toMatch(/Scale/);
    expect(msg).toMatch(/t\/rules/);
  });
});

describe("kernelize on a module with its own forward", () => {
  beforeAll(async () => {
    await setBackend("cpu");
  });
  afterEach(() => clearKernelMapping());

  it("installs a hidden, writable forward and puts the instance's own forward back on unkernelize", async () => {
    const repo = new LayerRepository({ repoId: "fusekit/rmsnorm", layerName: "RMSNorm" });
    registerKernelMapping({ RMSNorm: { cpu: repo, wasm: repo } });
    const norm = new Qwen3RMSNorm(4, 1e-6);
    const own = function (this: Qwen3RMSNorm, x: tf.Tensor) {
      return Qwen3RMSNorm.prototype.forward.call(this, x);
    };
    Object.defineProperty(norm, "forward", { value: own, writable: true, configurable: true, enumerable: true });
    await kernelize(norm, { mode: Mode.INFERENCE });
    expect(activeKernel(norm)).toBe('RMSNorm from repo "fusekit/rmsnorm"');
    const d = Object.getOwnPropertyDescriptor(norm, "forward")!;
    expect([d.value === own, d.writable, d.configurable, d.enumerable]).toEqual([false, true, true, false]);
    unkernelize(norm);
    expect(activeKernel(norm)).toBeUndefined();
    expect(Object.getOwnPropertyDescriptor(norm, "forward")).toEqual({
      value: own,
      writable: true,
      configurable: true,
      enumerable: true,
    });
    norm.dispose();
  });
});

describe("kernelize on a module standing for a chain: the forward replaced is the chain's last module's", () => {
  beforeAll(async () => {
    await setBackend("cpu");
  });
  afterEach(() => clearKernelMapping());

  class Triple extends Module {
    forward(a: unknown, b: unknown, c: unknown) {
      return [a, b, c];
    }
  }
  class Single extends Module {
    forward(x: unknown) {
      return x;
    }
  }
  /** Its own forward takes two parameters; the last module of its chain takes one, the first three. */
  class Holder extends Module {
    readonly kernelLayerName = "Chained";
    constructor(readonly chain: readonly Module[]) {
      super();
    }
    forward(x: unknown, extra: unknown) {
      return [x, extra];
    }
  }
  class LikeLast {
    forward(x: unknown) {
      return ["kernel", x];
    }
  }
  class LikeHolder {
    forward(x: unknown, extra: unknown) {
      return ["kernel", x, extra];
    }
  }
  /** kernelize `module` with `layer` as the "Chained" kernel: "swapped", or the validation message. */
  async function kernelizeWith(module: Module, layer: KernelLayerClass): Promise<string> {
    const repo = { layerName: "Chained", loadLayer: async () => layer, toString: () => "t/chained" };
    registerKernelMapping({ Chained: { cpu: repo } });
    try {
      await kernelize(module, { mode: Mode.INFERENCE, backend: "cpu" });
    } catch (err) {
      expect(err).toBeInstanceOf(KernelValidationError);
      return (err as Error).message;
    } finally {
      clearKernelMapping();
    }
    expect(activeKernel(module)).toBe(`${layer.name} from t/chained`);
    unkernelize(module);
    return "swapped";
  }

  it("checks the kernel against the last module's class forward, not the holder's nor the first module's", async () => {
    const holder = new Holder([new Triple(), new Triple(), new Single()]);
    expect(await kernelizeWith(holder, LikeLast)).toBe("swapped");
    expect(await kernelizeWith(holder, LikeHolder)).toMatch(
      /forward\(x, extra\) takes 2 parameters but the forward it replaces, forward\(x\), takes 1/,
    );
    const reversed = new Holder([new Single(), new Single(), new Triple()]);
    expect(await kernelizeWith(reversed, LikeLast)).toMatch(/forward it replaces, forward\(a, b, c\), takes 3/);
  });

  it("reads the class's forward of the last module, not a forward the instance carries", async () => {
    const last = new Single();
    Object.defineProperty(last, "forward", { value: (p: unknown, q: unknown) => [p, q], configurable: true });
    expect(await kernelizeWith(new Holder([new Triple(), last]), LikeLast)).toBe("swapped");
  });

  it("an instance's kernelLayerName counts only when it is a string; otherwise the class's tag does", () => {
    @useKernelForwardFromHub("ClassTag")
    class Tagged extends Module {
      forward(x: unknown) {
        return x;
      }
    }
    const own = (value: unknown) => {
      const m = new Tagged();
      Object.defineProperty(m, "kernelLayerName", { value, enumerable: true });
      return m;
    };
    expect(getKernelLayerName(own("Instance"))).toBe("Instance");
    expect(getKernelLayerName(own(7))).toBe("ClassTag");
    expect(getKernelLayerName(new Tagged())).toBe("ClassTag");
  });

  it("a holder with an empty chain, or a chain that is no array, stands for itself", async () => {
    expect(await kernelizeWith(new Holder([]), LikeHolder)).toBe("swapped");
    expect(await kernelizeWith(new Holder([]), LikeLast)).toMatch(/forward it replaces, forward\(x, extra\), takes 2/);
    const notArray = new Holder({ length: 1, 0: new Single(), at: () => new Single() } as unknown as Module[]);
    expect(await kernelizeWith(notArray, LikeHolder)).toBe("swapped");
  });
});

describe("kernelize's own checks and messages", () => {
  beforeAll(async () => {
    await setBackend("cpu");
  });
  afterEach(() => {
    clearKernelMapping();
    vi.restoreAllMocks();
  });

  it("a forward it cannot read (bound) is compared by its length", () => {
    class One {
      forward(x: unknown) {
        return x;
      }
    }
    const bound = function (a: unknown, b: unknown) {
      return [a, b];
    }.bind(null);
    expect(() => validateKernelLayer(One as unknown as KernelLayerClass, bound, "Scale", "t/rules")).toThrow(
      /forward takes 1 parameter but the forward it replaces takes 2$/,
    );
  });

  it("refuses what is not a model", async () => {
    for (const notModel of [undefined, {}, 3])
      await expect(kernelize(notModel as never)).rejects.toThrow(
        `kernelize: expected a model (a Module), got ${ArgumentError.describe(notModel)}`,
      );
  });

  it("falls back with a FusekitKernelWarning coded FUSEKIT_KERNEL_FALLBACK", async () => {
    const warn = vi.spyOn(process, "emitWarning").mockImplementation(() => undefined);
    const norm = new Qwen3RMSNorm(4, 1e-6);
    await kernelize(norm, { mode: Mode.INFERENCE, backend: "no-such-backend" });
    expect(warn).toHaveBeenCalledTimes(1);
    expect(warn.mock.calls[0][1]).toEqual({ type: "FusekitKernelWarning", code: "FUSEKIT_KERNEL_FALLBACK" });
    norm.dispose();
  });

  it("a load's kernelMapping naming layers no module uses lists them all", async () => {
    class Plain extends Module {
      forward(x: unknown) {
        return x;
      }
    }
    const repo = { layerName: "A", loadLayer: async () => undefined, toString: () => "t/none" };
    const err = await applyKernelsAfterLoad(new Plain() as never, {
      useKernels: true,
      kernelMapping: { A: { cpu: repo }, B: { cpu: repo } },
    }).catch((e: Error) => e);
    expect(err).toBeInstanceOf(KernelMappingError);
    expect((err as Error).message).toBe(
      'kernelMapping names layers "A", "B" that no module of Plain uses (its kernel layers: none)',
    );
    @useKernelForwardFromHub("X")
    class TaggedX extends Plain {}
    @useKernelForwardFromHub("Y")
    class TaggedY extends Plain {}
    class Both extends Plain {
      x = new TaggedX();
      y = new TaggedY();
    }
    await expect(
      applyKernelsAfterLoad(new Both() as never, { useKernels: true, kernelMapping: { A: { cpu: repo } } }),
    ).rejects.toThrow('kernelMapping names layer "A" that no module of Both uses (its kernel layers: X, Y)');
  });

  it("a runtime-fused chain tagged with kernelLayerName gets the kernel for its last module's forward", async () => {
    class Single extends Module {
      forward(x: unknown) {
        return x;
      }
    }
    class Host extends Module {
      first = new Single();
      second = new Single();
      forward(x: unknown) {
        return this.second.call(this.first.call(x));
      }
    }
    class Kernel {
      forward(x: unknown) {
        return ["kernel", x];
      }
    }
    const host = new Host();
    const wire = () => new ModuleSpec({ inputs: ["x"], outputs: ["x"] });
    const [{ fused }] = fuseModules(host, ["first", "second"], [wire(), wire()], { kernelLayerName: "Pair" });
    expect(getKernelLayerName(fused)).toBe("Pair");
    const repo = { layerName: "Pair", loadLayer: async () => Kernel as KernelLayerClass, toString: () => "t/pair" };
    registerKernelMapping({ Pair: { cpu: repo } });
    await kernelize(host, { mode: Mode.INFERENCE, backend: "cpu" });
    expect(activeKernel(fused)).toBe("Kernel from t/pair");
    expect(host.call(1)).toEqual(["kernel", 1]);
  });
});
