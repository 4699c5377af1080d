// Runtime fusion's edges on toy modules (cpu): argument checks message by message, chains on the root's own
// children, unfusing after the user changed the model, the stand-ins' delegation and registry, and the wiring
// errors' texts (the gaps a mutation run of src/fusion found: docs/testing.md).
import { beforeAll, describe, expect, it } from "vitest";
import {
  Module,
  ModuleSpec,
  RegistryCollector,
  fuseModules,
  getFusedChains,
  setBackend,
  tf,
  unfuseModules,
} from "fusekit";

const spec = (inputs: string[], outputs: string[]) => new ModuleSpec({ inputs, outputs });
const X = () => spec(["x"], ["x"]);

class Scale extends Module<[tf.Tensor], tf.Tensor> {
  constructor(readonly k: number) {
    super();
  }
  /** Read through a stand-in: a getter on the prototype, not an own property. */
  get doubled(): number {
    return 2 * this.k;
  }
  times(v: number): number {
    return v * this.k;
  }
  forward(x: tf.Tensor): tf.Tensor {
    return tf.mul(x, this.k);
  }
}
class NoArgs extends Module {
  forward(): number {
    return 1;
  }
}
class Pair extends Module {
  forward(x: tf.Tensor, s: number): tf.Tensor[] {
    return [tf.add(x, s), tf.sub(x, s)];
  }
}
/** first → second → third, children of the root itself (names longer than one character). */
class Root extends Module<[tf.Tensor], tf.Tensor> {
  first: Module = new Scale(2);
  second: Module = new Scale(3);
  third: Module = new Scale(5);
  forward(x: tf.Tensor): tf.Tensor {
    return this.third.call(this.second.call(this.first.call(x)));
  }
}
const input = () => tf.tensor1d([1, 2, 3]);
const run = (m: Module) => {
  const x = input();
  const y = m.call(x) as tf.Tensor;
  const v = Array.from(y.dataSync());
  tf.dispose([x, y]);
  return v;
};
const message = (f: () => unknown) => {
  try {
    f();
  } catch (err) {
    return `${(err as Error).constructor.name}: ${(err as Error).message}`;
  }
  return "no error";
};

beforeAll(async () => {
  await setBackend("cpu");
});

describe("argument checks name what is wrong", () => {
  it("fuseModules: patterns, specs and kernelLayerName", () => {
    const root = new Root();
    const bad = "FusionSpecError: fuseModules needs a non-empty array of non-empty glob patterns, got";
    for (const patterns of ["first", [], [""], ["first", "  "], [3]])
      expect(message(() => fuseModules(root, patterns as string[], []))).toBe(`${bad} ${JSON.stringify(patterns)}`);
    expect(message(() => fuseModules(root, ["first"], X() as unknown as ModuleSpec[]))).toBe(
      "FusionSpecError: fuseModules got 1 pattern(s) but no array of spec(s): give one ModuleSpec per pattern, in chain order",
    );
    for (const kernelLayerName of ["  ", 5])
      expect(message(() => fuseModules(root, ["first"], [X()], { kernelLayerName } as never))).toBe(
        `FusionSpecError: kernelLayerName must be a non-empty string, got ${JSON.stringify(kernelLayerName)}`,
      );
    expect(getFusedChains(root)).toEqual([]);
  });

  it("unfuseModules: patterns", () => {
    const root = new Root();
    fuseModules(root, ["first", "second"], [X(), X()]);
    const bad = "FusionSpecError: unfuseModules patterns must be an array of non-empty glob patterns, got";
    for (const patterns of ["first", [""], ["first", "  "], [3]])
      expect(message(() => unfuseModules(root, patterns as string[]))).toBe(`${bad} ${JSON.stringify(patterns)}`);
    expect(message(() => unfuseModules(root, ["thrid"]))).toBe(
      'FusionPatternError: pattern "thrid" matches no fused module; closest fused paths: first, second',
    );
    expect(getFusedChains(root)).toHaveLength(1);
  });

  it("a spec with more inputs than the forward takes lists its parameters, or none", () => {
    class Host extends Module {
      none: Module = new NoArgs();
      pair: Module = new Pair();
      forward() {
        return undefined;
      }
    }
    expect(message(() => fuseModules(new Host(), ["none"], [spec(["x"], ["y"])]))).toBe(
      'FusionSpecError: specs[0] names 1 inputs [x] but NoArgs.forward at "none" takes 0 (none)',
    );
    expect(message(() => fuseModules(new Host(), ["pair"], [spec(["x", "s", "t"], ["y"])]))).toBe(
      'FusionSpecError: specs[0] names 3 inputs [x, s, t] but Pair.forward at "pair" takes 2 (x, s)',
    );
  });

  it("pattern messages: no module at all, the root module, more than four parents", () => {
    expect(message(() => fuseModules(new NoArgs(), ["x"], [X()]))).toBe(
      'FusionPatternError: pattern "x" matches no module of NoArgs; closest paths: none',
    );
    expect(message(() => fuseModules(new Root(), ["{first,second}", "third"], [X(), X()]))).toBe(
      'FusionPatternError: pattern "{first,second}" matches 2 children of the root module (first, second); a chain takes exactly one module per pattern',
    );
    class Block extends Module {
      inner: Module = new Scale(1);
      forward(x: tf.Tensor) {
        return this.inner.call(x);
      }
    }
    /** Blocks b0…b{n-1}, each with an "inner", and a "last" of its own. */
    class Wide extends Module {
      last: Module = new Scale(1);
      constructor(n: number) {
        super();
        for (let i = 0; i < n; i++) Object.assign(this, { [`b${i}`]: new Block() });
      }
      forward(x: tf.Tensor) {
        return x;
      }
    }
    const parents = (n: number) => message(() => fuseModules(new Wide(n), ["*.inner", "last"], [X(), X()]));
    const intro = "FusionPatternError: the patterns' matches do not share a parent, so no chain can be formed: ";
    expect(parents(4)).toBe(`${intro}"*.inner" → parents "b0", "b1", "b2", "b3"; "last" → parents the root module`);
    expect(parents(5)).toBe(
      `${intro}"*.inner" → parents "b0", "b1", "b2", "b3" … (5 in all); "last" → parents the root module`,
    );
  });
});

describe("chains among the root's own children", () => {
  it("fuse and unfuse give the same values; the root itself is never a chain member", () => {
    const root = new Root();
    const want = [30, 60, 90];
    const [chain] = fuseModules(root, ["first", "second", "third"], [X(), X(), X()]);
    expect([chain.parent, chain.paths]).toEqual(["", ["first", "second", "third"]]);
    expect(run(root)).toEqual(want);
    unfuseModules(root);
    expect(run(root)).toEqual(want);
    class One extends Module<[tf.Tensor], tf.Tensor> {
      only: Module = new Scale(7);
      forward(x: tf.Tensor) {
        return this.only.call(x);
      }
    }
    const one = new One();
    expect(fuseModules(one, ["**"], [X()]).map((c) => c.paths)).toEqual([["only"]]); // "**" also matches ""
    expect(run(one)).toEqual([7, 14, 21]);
  });

  it("unfusing with several patterns restores each chain any of them names", () => {
    class Two extends Module<[tf.Tensor], tf.Tensor> {
      left = new Root();
      right = new Root();
      forward(x: tf.Tensor) {
        return this.right.call(this.left.call(x));
      }
    }
    const two = new Two();
    fuseModules(two, ["*.first", "*.second"], [X(), X()]);
    expect(unfuseModules(two, ["left.first", "right.second"]).map((c) => c.parent)).toEqual(["left", "right"]);
    expect(getFusedChains(two)).toEqual([]);
  });

  it("unfusing leaves a child the user replaced, or removed, as the user left it", () => {
    const root = new Root();
    const second = root.second;
    fuseModules(root, ["first", "second"], [X(), X()]);
    const mine = new Scale(11);
    root.setSubmodule("first", mine);
    unfuseModules(root);
    expect(root.first).toBe(mine);
    expect(root.second).toBe(second);

    const again = new Root();
    const again2 = again.second;
    fuseModules(again, ["first", "second"], [X(), X()]);
    delete (again as Partial<Root>).first;
    expect(() => unfuseModules(again)).not.toThrow();
    expect(again.first).toBeUndefined();
    expect(again.second).toBe(again2);
  });

  it("a chain whose FusedModule the user replaced is still found, and unfusing restores its other members", () => {
    const root = new Root();
    const first = root.first;
    const [{ fused }] = fuseModules(root, ["first", "second"], [X(), X()]);
    const mine = new Scale(7);
    root.setSubmodule("second", mine);
    expect(getFusedChains(root)).toEqual([{ parent: "", paths: ["first", "second"], fused }]);
    expect(run(root)).toEqual([35, 70, 105]); // the collector passes x through: 7 · 5 · x
    expect(unfuseModules(root, ["first"]).map((c) => c.fused)).toEqual([fused]);
    expect([root.first, root.second]).toEqual([first, mine]);
    expect(run(root)).toEqual([70, 140, 210]); // 2 · 7 · 5 · x
    expect(getFusedChains(root)).toEqual([]);
  });
});

describe("stand-ins", () => {
  it("read attributes through: prototype getters, methods bound to the module, `in`, training; toString", () => {
    const root = new Root();
    const first = root.first as Scale;
    const [{ fused }] = fuseModules(root, ["first", "second"], [X(), X()]);
    const collector = root.first as RegistryCollector & Scale;
    expect(collector.doubled).toBe(4);
    const times = collector.times; // detached: still runs with `this` = the module
    expect(times(5)).toBe(10);
    expect((fused as unknown as Scale).doubled).toBe(6);
    expect(["k" in collector, "times" in collector, "nonsense" in collector]).toEqual([true, true, false]);
    first.training = true;
    expect(collector.training).toBe(true);
    first.training = false;
    expect(collector.training).toBe(false);
    expect(String(collector)).toBe("RegistryCollector(first → Scale)");
    expect(String(fused)).toBe("FusedModule(first → second)");
    expect(Object.hasOwn(fused, "kernelLayerName")).toBe(false); // only when fuseModules got one
  });

  it("a FusedModule's forward called directly also leaves its registry empty", () => {
    const root = new Root();
    const [{ fused }] = fuseModules(root, ["first", "second"], [X(), X()]);
    const x = input();
    root.first.call(x);
    const y = fused.forward(x) as tf.Tensor;
    expect(Array.from(y.dataSync())).toEqual([6, 12, 18]);
    expect(fused.registry.size).toBe(0);
    tf.dispose([x, y]);
  });
});

describe("wiring errors", () => {
  it("a module returning fewer values than its spec names; a spec with no outputs keeps the value out of the registry", () => {
    class Host extends Module<[tf.Tensor], unknown> {
      pair: Module = new Pair();
      last: Module = new Scale(1);
      forward(x: tf.Tensor) {
        this.pair.call(x, 1);
        return this.last.call(x);
      }
    }
    const host = new Host();
    fuseModules(host, ["pair", "last"], [spec(["x", "s"], ["a", "b", "c"]), X()]);
    expect(message(() => run(host))).toBe(
      "FusionWiringError: module 0 (pair, Pair) returned 2 values, but its spec names 3 outputs [a, b, c]",
    );
    unfuseModules(host);
    const quiet = new Root();
    fuseModules(quiet, ["first", "second"], [spec(["x"], []), X()]);
    expect(run(quiet)).toEqual([15, 30, 45]); // second reads its own input: first's output is not wired
  });

  it("a chain member its parent did not call says neither wire is there", () => {
    class Skipping extends Module<[tf.Tensor], tf.Tensor> {
      first: Module = new Scale(2);
      second: Module = new Scale(3);
      third: Module = new Scale(5);
      forward(x: tf.Tensor) {
        this.first.call(x);
        return this.third.call(x); // second is never called
      }
    }
    const m = new Skipping();
    fuseModules(m, ["first", "second", "third"], [X(), spec(["y"], ["z"]), spec(["z"], ["out"])]);
    const err = message(() => run(m));
    expect(err).toMatch(/^FusionWiringError: fused chain at first…: module 1 \(second, Scale\) needs "y", /);
    expect(err).toContain('but neither "out_0_y" nor "in_1_y" is in the registry (registry: in_0_x, in_2_z, out_0_x)');
  });
});
