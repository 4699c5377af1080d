// Modes, mappings, validation, fallback and the hub's trust rules (lock, tamper, symlink, trustRemoteCode), and the CLI.
import { promises as fsp } from "node:fs";
import os from "node:os";
import path from "node:path";
import { Command } from "commander";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import {
  AutoModelForCausalLM,
  KernelIntegrityError,
  KernelMappingError,
  KernelModeError,
  KernelNotFoundError,
  KernelRepositoryError,
  KernelSymlinkError,
  KernelValidationError,
  LayerRepository,
  LocalLayerRepository,
  LockedLayerRepository,
  Mode,
  Module,
  Qwen3Config,
  Qwen3RMSNorm,
  UntrustedKernelError,
  activeKernel,
  applyKernelsAfterLoad,
  checkMode,
  clearKernelMapping,
  combineModes,
  discoverRepos,
  getKernelLayerName,
  getKernelMapping,
  kernelize,
  readLockfile,
  registerKernelMapping,
  setBackend,
  tf,
  useKernelForwardFromHub,
  useKernelMapping,
  writeLockfile,
} from "fusekit/internals";
import { registerKernelsCommand } from "../src/cli/kernels.js";
import { formatParameters, parameterList } from "../src/hub/signature.js";

/** A tagged test layer whose original forward doubles its input. */
@useKernelForwardFromHub("Scale")
class Scale extends Module<[tf.Tensor], tf.Tensor> {
  forward(x: tf.Tensor): tf.Tensor {
    return tf.mul(x, 2);
  }
}
class Holder extends Module<[tf.Tensor], tf.Tensor> {
  a = new Scale();
  b = new Scale();
  forward(x: tf.Tensor): tf.Tensor {
    return this.b.call(this.a.call(x));
  }
}

let tmp: string;
/** Writes a kernel repository (manifest + build files) and returns its folder. */
async function makeRepo(rel: string, manifest: object, files: Record<string, string>): Promise<string> {
  const dir = path.join(tmp, rel);
  await fsp.mkdir(dir, { recursive: true });
  await fsp.writeFile(path.join(dir, "manifest.json"), JSON.stringify(manifest));
  for (const [f, text] of Object.entries(files)) await fsp.writeFile(path.join(dir, f), text);
  return dir;
}
/** A build whose Scale layer multiplies by `k` (so which repo served a call is visible in the output). */
const scaleBuild = (k: number, layerSrc?: string) =>
  `export function createLayers({ tf }) {\n${layerSrc ?? `  class Scale { forward(x) { return tf.mul(x, ${k}); } }`}\n  return { Scale };\n}\n`;
const scaleManifest = (id: string, version = 1, builds: Record<string, string> = { any: "any.js" }) => ({
  id,
  version,
  layers: ["Scale"],
  builds,
});

const run = async (m: Module, x = tf.tensor1d([1, 2, 3])) => {
  const y = m.call(x);
  const v = Array.from(y.dataSync());
  tf.dispose([x, y]);
  return v;
};

beforeAll(async () => {
  await setBackend("cpu");
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), "fusekit-kernels-"));
});
afterAll(async () => {
  await fsp.rm(tmp, { recursive: true, force: true });
});
afterEach(() => {
  clearKernelMapping();
  delete process.env.FUSEKIT_KERNELS_PATH;
  delete process.env.FUSEKIT_KERNELS_LOCK;
  vi.restoreAllMocks();
});

describe("Mode", () => {
  it("INFERENCE and TRAINING are exclusive, FALLBACK combines with nothing, and junk is refused", () => {
    expect(() => combineModes(Mode.INFERENCE, Mode.TRAINING)).toThrow(KernelModeError);
    expect(() => combineModes(Mode.INFERENCE, Mode.TRAINING)).toThrow(
      "Mode.INFERENCE and Mode.TRAINING are mutually exclusive",
    );
    expect(() => combineModes(Mode.FALLBACK, Mode.INFERENCE)).toThrow(
      "Mode.FALLBACK cannot be combined with other modes (got FALLBACK | INFERENCE)",
    );
    expect(() => checkMode(0, "here")).toThrow("here: 0 is not a kernel Mode");
    expect(() => checkMode(64, "here")).toThrow(KernelModeError);
    expect(combineModes(Mode.INFERENCE)).toBe(Mode.INFERENCE);
  });

  it("kernelize accepts only INFERENCE or TRAINING", async () => {
    const m = new Holder();
    await expect(kernelize(m, { mode: Mode.FALLBACK })).rejects.toThrow(
      "kernelize: Mode.FALLBACK can only be used as a key in kernel mappings",
    );
    await expect(kernelize(m, { mode: Mode.INFERENCE | Mode.TRAINING })).rejects.toThrow(KernelModeError);
  });

  it("a mapping keyed by an invalid mode is refused and registers nothing", () => {
    const r = new LayerRepository({ repoId: "x/y", layerName: "Scale" });
    expect(() => registerKernelMapping({ Scale: { cpu: { [Mode.INFERENCE | Mode.TRAINING]: r } } })).toThrow(
      KernelModeError,
    );
    expect(getKernelMapping()).toEqual({});
  });
});

describe("kernel mappings", () => {
  const r = (k: string) => new LayerRepository({ repoId: `t/${k}`, layerName: "Scale" });

  it("rejects unknown backends and non-repository values, naming the layer", () => {
    expect(() => registerKernelMapping({ Scale: { cuda: r("a") } as any })).toThrow(
      'kernel mapping for layer "Scale": unknown backend "cuda"',
    );
    expect(() => registerKernelMapping({ Scale: { cpu: "t/a" as any } })).toThrow(KernelMappingError);
  });

  it("inherits by default, replaces with inherit: false; webgl and webgpu are accepted names", () => {
    registerKernelMapping({ Scale: { cpu: r("a") } });
    registerKernelMapping({ Other: { webgl: r("b"), webgpu: r("b") } });
    expect(Object.keys(getKernelMapping()).sort()).toEqual(["Other", "Scale"]);
    registerKernelMapping({ Third: { wasm: r("c") } }, { inherit: false });
    expect(Object.keys(getKernelMapping())).toEqual(["Third"]);
  });

  it("useKernelMapping is scoped: restored after return, after a throw, and across awaits", async () => {
    registerKernelMapping({ Scale: { cpu: r("a") } });
    const inside = useKernelMapping({ Extra: { cpu: r("b") } }, () => Object.keys(getKernelMapping()).sort());
    expect(inside).toEqual(["Extra", "Scale"]);
    expect(() =>
      useKernelMapping({ Extra: { cpu: r("b") } }, () => {
        throw new Error("boom");
      }),
    ).toThrow("boom");
    expect(Object.keys(getKernelMapping())).toEqual(["Scale"]);
    const seen = await useKernelMapping(
      { Extra: { cpu: r("b") } },
      async () => {
        await new Promise((res) => setTimeout(res, 5));
        return Object.keys(getKernelMapping()).sort();
      },
      { inherit: false },
    );
    expect(seen).toEqual(["Extra"]);
    expect(Object.keys(getKernelMapping())).toEqual(["Scale"]);
  });
});

describe("kernelize: mode priority, fallback, validation", () => {
  let three: LocalLayerRepository;
  let five: LocalLayerRepository;
  beforeAll(async () => {
    three = new LocalLayerRepository({
      path: await makeRepo("prio/three", scaleManifest("t/three"), { "any.js": scaleBuild(3) }),
      layerName: "Scale",
      trustRemoteCode: true,
    });
    five = new LocalLayerRepository({
      path: await makeRepo("prio/five", scaleManifest("t/five"), { "any.js": scaleBuild(5) }),
      layerName: "Scale",
      trustRemoteCode: true,
    });
  });

  it("INFERENCE takes INFERENCE, then TRAINING, then FALLBACK; TRAINING never takes INFERENCE", async () => {
    const m = new Holder();
    await useKernelMapping({ Scale: { cpu: { [Mode.TRAINING]: three, [Mode.FALLBACK]: five } } }, () =>
      kernelize(m, { mode: Mode.INFERENCE }),
    );
    expect(await run(m)).toEqual([9, 18, 27]);
    await useKernelMapping({ Scale: { cpu: { [Mode.INFERENCE]: three, [Mode.FALLBACK]: five } } }, () =>
      kernelize(m, { mode: Mode.TRAINING }),
    );
    expect(await run(m)).toEqual([25, 50, 75]);
    await useKernelMapping({ Scale: { cpu: { [Mode.INFERENCE]: three } } }, () =>
      kernelize(m, { mode: Mode.TRAINING }),
    );
    expect(activeKernel(m.a)).toBeUndefined();
    expect(await run(m)).toEqual([4, 8, 12]); // original forward
  });

  it("no mapping: one warning per layer name and the original forward; useFallback: false throws and swaps nothing", async () => {
    const warn = vi.spyOn(process, "emitWarning").mockImplementation(() => {});
    const m = new Holder();
    await kernelize(m, { mode: Mode.INFERENCE });
    expect(warn).toHaveBeenCalledTimes(1);
    expect(String(warn.mock.calls[0][0])).toBe('no kernel mapping for layer "Scale"; keeping the original forward');
    expect(await run(m)).toEqual([4, 8, 12]);

    // a backend without an entry: the same rule
    await expect(
      useKernelMapping({ Scale: { wasm: three } }, () =>
        kernelize(m, { mode: Mode.INFERENCE, backend: "cpu", useFallback: false }),
      ),
    ).rejects.toThrow(
      'kernelize: no kernel mapping for layer "Scale" on backend "cpu" (mapped: wasm) (module "a"; useFallback is false)',
    );
    await expect(kernelize(m, { mode: Mode.INFERENCE, useFallback: false })).rejects.toThrow(KernelNotFoundError);
    expect(activeKernel(m.a)).toBeUndefined();
  });

  it("a repo without a build for the backend falls back (or throws without fallback)", async () => {
    const cpuOnly = new LocalLayerRepository({
      path: await makeRepo("builds/cpu-only", scaleManifest("t/cpu-only", 1, { cpu: "cpu.js" }), {
        "cpu.js": scaleBuild(3),
      }),
      layerName: "Scale",
      trustRemoteCode: true,
    });
    const warn = vi.spyOn(process, "emitWarning").mockImplementation(() => {});
    const m = new Holder();
    await useKernelMapping({ Scale: { wasm: cpuOnly } }, () => kernelize(m, { mode: Mode.INFERENCE, backend: "wasm" }));
    expect(warn).toHaveBeenCalledTimes(1);
    expect(String(warn.mock.calls[0][0])).toContain('has no build for backend "wasm" (layer "Scale")');
    await expect(
      useKernelMapping({ Scale: { wasm: cpuOnly } }, () =>
        kernelize(m, { mode: Mode.INFERENCE, backend: "wasm", useFallback: false }),
      ),
    ).rejects.toThrow(KernelNotFoundError);
  });

  const bad: [string, string, string][] = [
    [
      "own constructor",
      `  class Scale { constructor() { this.k = 3; } forward(x) { return x; } }`,
      "must not define its own constructor: a kernel layer is stateless",
    ],
    [
      "instance state",
      `  class Scale { cache = new Map(); forward(x) { return x; } }`,
      "must not hold state or members besides forward and capability flags (hasBackward); found field cache",
    ],
    [
      "extra members",
      `  class Scale { static factor = 3; helper() {} forward(x) { return x; } }`,
      "found method helper, static factor",
    ],
    [
      "another arity",
      `  class Scale { forward(x, y) { return x; } }`,
      "forward(x, y) takes 2 parameters but the forward it replaces, forward(x), takes 1",
    ],
    [
      "a rest parameter for a positional one",
      `  class Scale { forward(...xs) { return xs[0]; } }`,
      "forward(...xs) does not match forward(x): parameter 1 is rest, not positional",
    ],
    [
      "a base class",
      `  class Base {}\n  class Scale extends Base { forward(x) { return x; } }`,
      "must not extend another class",
    ],
  ];
  it.each(bad)("refuses a kernel layer with %s, naming kernel, layer and repo", async (name, src, message) => {
    const dir = await makeRepo(`bad/${name.replace(/ /g, "-")}`, scaleManifest(`bad/${name.replace(/ /g, "-")}`), {
      "any.js": scaleBuild(0, src),
    });
    const repo = new LocalLayerRepository({ path: dir, layerName: "Scale", trustRemoteCode: true });
    const m = new Holder();
    const err = await useKernelMapping({ Scale: { cpu: repo } }, () => kernelize(m, { mode: Mode.INFERENCE })).catch(
      (e) => e,
    );
    expect(err).toBeInstanceOf(KernelValidationError);
    expect(err.message.startsWith(`kernel layer "Scale" from local repo ${dir} for layer "Scale": `)).toBe(true);
    expect(err.message).toContain(message);
    expect([err.kernel, err.layer, err.repo]).toEqual(["Scale", "Scale", `local repo ${dir}`]);
    expect(activeKernel(m.a)).toBeUndefined();
  });

  it("a layer mapped for TRAINING without a backward is an error; an instance kernelLayerName wins over the class tag", async () => {
    const noBack = new LocalLayerRepository({
      path: await makeRepo("nobackward", scaleManifest("t/nobackward"), {
        "any.js": scaleBuild(0, `  class Scale { static hasBackward = false; forward(x) { return x; } }`),
      }),
      layerName: "Scale",
      trustRemoteCode: true,
    });
    await expect(
      useKernelMapping({ Scale: { cpu: { [Mode.TRAINING]: noBack } } }, () =>
        kernelize(new Holder(), { mode: Mode.TRAINING }),
      ),
    ).rejects.toThrow("is mapped for Mode.TRAINING but declares hasBackward = false");
    const s = new Scale();
    expect(getKernelLayerName(s)).toBe("Scale");
    Object.defineProperty(s, "kernelLayerName", { value: "Other", enumerable: true });
    expect(getKernelLayerName(s)).toBe("Other");
    expect(getKernelLayerName(Scale)).toBe("Scale");
  });
});

// huggingface/kernels' _validate_layer compares `inspect.signature(...).parameters` of the two forwards: the
// same number of parameters and the same kind at each position (names and defaults are free). JS's
// Function.length stops at the first default, so it cannot tell `forward(x, residual = undefined)` takes 2.
describe("kernel-layer validation compares parameter lists, as kernels does", () => {
  @useKernelForwardFromHub("AddNorm")
  class AddNorm extends Module<[tf.Tensor, tf.Tensor?], tf.Tensor> {
    forward(x: tf.Tensor, residual: tf.Tensor | undefined = undefined): tf.Tensor {
      return residual ? tf.add(x, residual) : tf.mul(x, 1);
    }
  }
  const build = (cls: string) => `export function createLayers({ tf }) {\n  ${cls}\n  return { AddNorm };\n}\n`;
  const repoWith = async (name: string, cls: string) =>
    new LocalLayerRepository({
      path: await makeRepo(
        `sig/${name}`,
        { id: `sig/${name}`, version: 1, layers: ["AddNorm"], builds: { any: "any.js" } },
        { "any.js": build(cls) },
      ),
      layerName: "AddNorm",
      trustRemoteCode: true,
    });

  it("accepts forward(x, residual) for forward(x, residual = undefined) (Function.length says 1 and 2)", async () => {
    expect(AddNorm.prototype.forward.length).toBe(1);
    const m = new AddNorm();
    const repo = await repoWith("ok", "class AddNorm { forward(x, residual) { return tf.sub(x, residual); } }");
    await useKernelMapping({ AddNorm: { cpu: repo } }, () => kernelize(m, { mode: Mode.INFERENCE }));
    expect(activeKernel(m)).toBe(`AddNorm from ${repo}`);
    const [x, r] = [tf.tensor1d([5, 7]), tf.tensor1d([1, 2])];
    const y = m.call(x, r);
    expect(Array.from(y.dataSync())).toEqual([4, 5]);
    tf.dispose([x, r, y]);
  });

  it("reads parameter lists of methods, functions and arrows (defaults, rest, destructuring); native code is unreadable", () => {
    const list = (f: (...a: never[]) => unknown) => {
      const p = parameterList(f);
      return p && formatParameters(p);
    };
    class C {
      forward(x: number, { a }: { a: number } = { a: 1 }, ...more: number[]) {
        return x + a + more.length;
      }
    }
    expect(list(C.prototype.forward)).toBe("(x, {…} = …, ...more)");
    expect(
      list(function named(a: number, b = 2) {
        return a + b;
      }),
    ).toBe("(a, b = …)");
    expect(list((x: number) => x)).toBe("(x)");
    expect(list(async (x: number, [y]: number[]) => x + y)).toBe("(x, […])");
    expect(list(Math.max)).toBeUndefined();
  });

  it("refuses one parameter too few, naming both parameter lists", async () => {
    const repo = await repoWith("short", "class AddNorm { forward(x) { return x; } }");
    const err = await useKernelMapping({ AddNorm: { cpu: repo } }, () =>
      kernelize(new AddNorm(), { mode: Mode.INFERENCE }),
    ).catch((e) => e);
    expect(err).toBeInstanceOf(KernelValidationError);
    expect(err.message).toContain(
      "forward(x) takes 1 parameter but the forward it replaces, forward(x, residual = …), takes 2",
    );
  });
});

describe("the hub: versions, locks and trust", () => {
  let hubDir: string;
  beforeAll(async () => {
    hubDir = path.join(tmp, "hub");
    await makeRepo("hub/ext/scale", scaleManifest("ext/scale", 1), { "any.js": scaleBuild(3) });
    await makeRepo("hub/ext/scale-v2", scaleManifest("ext/scale", 2), { "any.js": scaleBuild(7) });
  });
  const withHub = () => (process.env.FUSEKIT_KERNELS_PATH = hubDir);

  it("bundled repos are listed with their layers and builds", async () => {
    const repos = await discoverRepos();
    const ids = repos
      .filter((r) => r.bundled)
      .map((r) => `${r.manifest.id}@${r.manifest.version}:${r.manifest.layers}:${Object.keys(r.manifest.builds)}`);
    expect(ids).toEqual([
      "fusekit/activation@1:SiluAndMul:wasm,cpu",
      "fusekit/decoder-layer@1:DecoderLayer:wasm,cpu",
      "fusekit/norm-mlp@1:NormMLP:wasm,cpu",
      "fusekit/norm-qkv@1:NormQKV:any",
      "fusekit/rmsnorm@1:RMSNorm:wasm,cpu",
      "fusekit/rope@1::wasm,cpu",
    ]);
  });

  it("an unlocked repo outside the bundled hub is refused without trustRemoteCode", async () => {
    withHub();
    const m = new Holder();
    const err = await useKernelMapping(
      { Scale: { cpu: new LayerRepository({ repoId: "ext/scale", layerName: "Scale", version: 1 }) } },
      () => kernelize(m, { mode: Mode.INFERENCE }),
    ).catch((e) => e);
    expect(err).toBeInstanceOf(UntrustedKernelError);
    expect(err.message).toBe(
      `repo "ext/scale" v1 at ${path.join(hubDir, "ext/scale")} is outside the bundled kernel hub and not locked; lock it (fusekit kernels lock) or pass trustRemoteCode: true to run its code`,
    );
    const local = new LocalLayerRepository({ path: path.join(hubDir, "ext/scale"), layerName: "Scale" });
    await expect(
      useKernelMapping({ Scale: { cpu: local } }, () => kernelize(m, { mode: Mode.INFERENCE })),
    ).rejects.toThrow(UntrustedKernelError);
    expect(activeKernel(m.a)).toBeUndefined();
  });

  it("versions: the highest by default, a pinned major on request, a missing one named", async () => {
    withHub();
    const m = new Holder();
    const repo = (version?: number) =>
      new LayerRepository({ repoId: "ext/scale", layerName: "Scale", version, trustRemoteCode: true });
    await useKernelMapping({ Scale: { cpu: repo() } }, () => kernelize(m, { mode: Mode.INFERENCE }));
    expect(await run(m)).toEqual([49, 98, 147]);
    await useKernelMapping({ Scale: { cpu: repo(1) } }, () => kernelize(m, { mode: Mode.INFERENCE }));
    expect(await run(m)).toEqual([9, 18, 27]);
    await expect(
      useKernelMapping({ Scale: { cpu: repo(3) } }, () => kernelize(m, { mode: Mode.INFERENCE })),
    ).rejects.toThrow('kernel repository "ext/scale" has no version 3 (available: 1, 2)');
    await expect(
      useKernelMapping({ Scale: { cpu: new LayerRepository({ repoId: "ext/none", layerName: "Scale" }) } }, () =>
        kernelize(m, { mode: Mode.INFERENCE }),
      ),
    ).rejects.toThrow(KernelRepositoryError);
  });

  // kernels lists available versions sorted as numbers and warns when a pinned version is not the newest.
  it("versions are listed in numeric order (1, 2, 10), and pinning an older one warns once", async () => {
    const root = path.join(tmp, "hub-numeric");
    for (const v of [10, 2, 1])
      await makeRepo(`hub-numeric/num/v${v}`, scaleManifest("num/scale", v), { "any.js": scaleBuild(v) });
    process.env.FUSEKIT_KERNELS_PATH = root;
    expect((await discoverRepos()).filter((r) => r.manifest.id === "num/scale").map((r) => r.manifest.version)).toEqual(
      [1, 2, 10],
    );
    const repo = (version: number) =>
      new LayerRepository({ repoId: "num/scale", layerName: "Scale", version, trustRemoteCode: true });
    await expect(repo(3).loadLayer("cpu")).rejects.toThrow(
      'kernel repository "num/scale" has no version 3 (available: 1, 2, 10)',
    );
    const warn = vi.spyOn(process, "emitWarning").mockImplementation(() => {});
    const outdated = () =>
      warn.mock.calls
        .filter(([, o]) => (o as { code?: string })?.code === "FUSEKIT_KERNEL_OUTDATED")
        .map(([msg]) => String(msg));
    await repo(10).loadLayer("cpu");
    expect(outdated()).toEqual([]);
    const m = new Holder();
    await useKernelMapping({ Scale: { cpu: repo(2) } }, () => kernelize(m, { mode: Mode.INFERENCE }));
    await repo(2).loadLayer("cpu");
    expect(await run(m)).toEqual([4, 8, 12]); // the pinned version still serves
    expect(outdated()).toEqual(['kernel repository "num/scale": version 2 is pinned, but 10 is available']);
  });

  it("a locked outside repo loads; once a file is tampered with it is refused", async () => {
    withHub();
    const lockfile = path.join(tmp, "outside.lock");
    const dir = await makeRepo(
      "hub/ext/locked",
      { ...scaleManifest("ext/locked"), layers: ["Scale"] },
      { "any.js": scaleBuild(3) },
    );
    const repos = (await discoverRepos()).filter((r) => r.manifest.id === "ext/locked");
    await writeLockfile(lockfile, repos);
    const lock = await readLockfile(lockfile);
    expect(Object.keys(lock.kernels[0].files)).toEqual(["any.js", "manifest.json"]);

    const m = new Holder();
    await useKernelMapping(
      { Scale: { cpu: new LayerRepository({ repoId: "ext/locked", layerName: "Scale", lockfile }) } },
      () => kernelize(m, { mode: Mode.INFERENCE }),
    );
    expect(await run(m)).toEqual([9, 18, 27]);
    await useKernelMapping(
      { Scale: { cpu: new LockedLayerRepository({ repoId: "ext/locked", layerName: "Scale", lockfile }) } },
      () => kernelize(m, { mode: Mode.INFERENCE }),
    );
    expect(activeKernel(m.a)).toBe(`Scale from locked repo "ext/locked" (${lockfile})`);

    await fsp.writeFile(path.join(dir, "any.js"), scaleBuild(4));
    for (const repo of [
      new LockedLayerRepository({ repoId: "ext/locked", layerName: "Scale", lockfile }),
      new LayerRepository({ repoId: "ext/locked", layerName: "Scale", lockfile }),
    ]) {
      const err = await useKernelMapping({ Scale: { cpu: repo } }, () =>
        kernelize(new Holder(), { mode: Mode.INFERENCE }),
      ).catch((e) => e);
      expect(err).toBeInstanceOf(KernelIntegrityError);
      expect(err.message).toMatch(
        new RegExp(
          `^kernel repository "ext/locked" at ${dir} does not match ${lockfile}: any\\.js has sha256 [0-9a-f]{12}…, locked [0-9a-f]{12}…; refused$`,
        ),
      );
    }
    await fsp.writeFile(path.join(dir, "extra.js"), "export {}");
    await expect(
      new LockedLayerRepository({ repoId: "ext/locked", layerName: "Scale", lockfile }).loadLayer("cpu"),
    ).rejects.toThrow("extra.js is not in the lock");
    await expect(
      new LockedLayerRepository({ repoId: "ext/scale", layerName: "Scale", lockfile }).loadLayer("cpu"),
    ).rejects.toThrow(`kernel repository "ext/scale" is not locked in ${lockfile}`);
  });

  it("a symlink leading outside the repo is refused, even with trustRemoteCode", async () => {
    const secret = path.join(tmp, "secret.js");
    await fsp.writeFile(secret, scaleBuild(3));
    const dir = await makeRepo("links/escape", scaleManifest("links/escape"), {});
    await fsp.symlink(secret, path.join(dir, "any.js"));
    const repo = new LocalLayerRepository({ path: dir, layerName: "Scale", trustRemoteCode: true });
    const err = await repo.loadLayer("cpu").catch((e) => e);
    expect(err).toBeInstanceOf(KernelSymlinkError);
    expect(err.message).toBe(
      `${path.join(dir, "any.js")}: symlink leads outside the kernel repository ${dir} (to ${await fsp.realpath(secret)}); refused`,
    );
    // a symlink that stays inside is fine
    const ok = await makeRepo("links/inside", scaleManifest("links/inside"), { "real.js": scaleBuild(3) });
    await fsp.symlink(path.join(ok, "real.js"), path.join(ok, "any.js"));
    expect(
      typeof (await new LocalLayerRepository({ path: ok, layerName: "Scale", trustRemoteCode: true }).loadLayer("cpu")),
    ).toBe("function");
  });

  it("the bundled hub locks and verifies like any other", async () => {
    const lockfile = path.join(tmp, "bundled.lock");
    await writeLockfile(
      lockfile,
      (await discoverRepos()).filter((r) => r.bundled),
    );
    const layer = await new LockedLayerRepository({
      repoId: "fusekit/rmsnorm",
      layerName: "RMSNorm",
      lockfile,
    }).loadLayer("cpu");
    expect(layer?.name).toBe("RMSNorm");
    await expect(
      new LayerRepository({ repoId: "fusekit/rmsnorm", layerName: "Nope" }).loadLayer("cpu"),
    ).rejects.toThrow('repo "fusekit/rmsnorm" does not export layer "Nope" (it exports: RMSNorm)');
  });
});

describe("applyKernelsAfterLoad", () => {
  const config = new Qwen3Config({
    vocab_size: 32,
    hidden_size: 16,
    intermediate_size: 24,
    num_hidden_layers: 1,
    num_attention_heads: 2,
    num_key_value_heads: 1,
    head_dim: 8,
  });

  it("uses the bundled defaults in eval mode, falls back in train mode, and honours kernelMapping", async () => {
    const model = AutoModelForCausalLM.fromConfig(config, { seed: 1 });
    const norm = (model as any).model.norm as Qwen3RMSNorm;
    expect(await applyKernelsAfterLoad(model, {})).toBe(model);
    expect(activeKernel(norm)).toBeUndefined();
    await applyKernelsAfterLoad(model, { useKernels: true });
    expect(activeKernel(norm)).toBe('RMSNorm from repo "fusekit/rmsnorm"');
    expect(getKernelMapping()).toEqual({}); // the defaults were scoped to the call

    const warn = vi.spyOn(process, "emitWarning").mockImplementation(() => {});
    model.train();
    await applyKernelsAfterLoad(model, { useKernels: true });
    expect(activeKernel(norm)).toBeUndefined();
    expect(warn).toHaveBeenCalledTimes(1);
    model.eval();

    const local = new LocalLayerRepository({
      path: path.join(process.cwd(), "hub/fusekit/rmsnorm"),
      layerName: "RMSNorm",
    });
    await applyKernelsAfterLoad(model, { useKernels: true, kernelMapping: { RMSNorm: { cpu: local } } });
    expect(activeKernel(norm)).toBe(`RMSNorm from local repo ${path.join(process.cwd(), "hub/fusekit/rmsnorm")}`);
    model.dispose();
  });

  // transformers' KernelConfig.sanitize_kernel_mapping: "Each layer_name in the mapping is registered in the
  // model (i.e., the model contains a module with a matching kernel_layer_name)", else ValueError.
  it("a kernelMapping for a layer name no module uses is a KernelMappingError, and nothing is kernelized", async () => {
    const model = AutoModelForCausalLM.fromConfig(config, { seed: 1 });
    const norm = (model as any).model.norm as Qwen3RMSNorm;
    const local = new LocalLayerRepository({
      path: path.join(process.cwd(), "hub/fusekit/rmsnorm"),
      layerName: "RMSNorm",
    });
    const err = await applyKernelsAfterLoad(model, {
      useKernels: true,
      kernelMapping: { RMSNrom: { cpu: local } },
    }).catch((e) => e);
    expect(err).toBeInstanceOf(KernelMappingError);
    expect(err.message).toBe(
      'kernelMapping names layer "RMSNrom" that no module of Qwen3ForCausalLM uses (its kernel layers: RMSNorm)',
    );
    expect(activeKernel(norm)).toBeUndefined();
    model.dispose();

    const dir = await fsp.mkdtemp(path.join(tmp, "ckpt-"));
    const saved = AutoModelForCausalLM.fromConfig(config, { seed: 1 });
    await saved.savePretrained(dir);
    saved.dispose();
    await expect(
      AutoModelForCausalLM.fromPretrained(dir, { useKernels: true, kernelMapping: { NormMLP: { cpu: local } } }),
    ).rejects.toThrow(
      'kernelMapping names layer "NormMLP" that no module of Qwen3ForCausalLM uses (its kernel layers: RMSNorm)',
    );
  });
});

describe("fusekit kernels (CLI)", () => {
  const cli = async (...args: string[]) => {
    const out: string[] = [];
    vi.spyOn(console, "log").mockImplementation((s: unknown) => void out.push(String(s)));
    const program = new Command().exitOverride();
    registerKernelsCommand(program);
    await program.parseAsync(["node", "fusekit", ...args]);
    vi.restoreAllMocks();
    return out.join("\n");
  };

  it("list shows repos, versions, layers and backends (table and JSON)", async () => {
    const rows = JSON.parse(await cli("kernels", "list", "--json"));
    expect(rows.find((r: any) => r.repoId === "fusekit/norm-mlp")).toEqual({
      repoId: "fusekit/norm-mlp",
      version: 1,
      layers: ["NormMLP"],
      backends: ["wasm", "cpu"],
      location: "bundled",
    });
    const table = await cli("kernels", "list");
    expect(table).toMatch(/fusekit\/rmsnorm\s*│\s*1\s*│\s*RMSNorm\s*│\s*wasm, cpu\s*│\s*bundled/);
  });

  it("lock writes kernels.lock with the sha256 of every file, and refuses unknown repos", async () => {
    const out = path.join(tmp, "cli.lock");
    expect(await cli("kernels", "lock", "fusekit/rmsnorm", "--out", out)).toBe(
      `locked 1 kernel repository (6 files) in ${out}`,
    );
    const lock = await readLockfile(out);
    expect(lock.kernels.map((k) => [k.repoId, k.version, Object.keys(k.files)])).toEqual([
      ["fusekit/rmsnorm", 1, ["cpu.ts", "kernel.ts", "manifest.json", "rmsnorm.wasm.ts", "rmsnorm.wat", "wasm.ts"]],
    ]);
    const { createHash } = await import("node:crypto");
    const manifest = await fsp.readFile(path.join(process.cwd(), "hub/fusekit/rmsnorm/manifest.json"));
    expect(lock.kernels[0].files["manifest.json"]).toBe(createHash("sha256").update(manifest).digest("hex"));
    await expect(cli("kernels", "lock", "nope/missing", "--out", out, "--force")).rejects.toThrow(
      "kernels lock: not in the hub: nope/missing",
    );
  });
});
