// The kernel-layer rules (validateKernelLayer) message by message, and how kernelize installs and restores a
// forward on an instance that already had its own (the gaps a mutation run of src/hub/kernelize.ts found:
// docs/testing.md).
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  KernelValidationError,
  LayerRepository,
  Mode,
  Qwen3RMSNorm,
  activeKernel,
  clearKernelMapping,
  kernelize,
  registerKernelMapping,
  setBackend,
  tf,
  unkernelize,
  validateKernelLayer,
  type KernelLayerClass,
} from "fusekit";

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
