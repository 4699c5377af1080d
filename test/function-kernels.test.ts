// Function kernels: useKernelFuncFromHub-tagged functions served by hub repositories (FuncRepository,
// LocalFuncRepository, LockedFuncRepository), with the layers' trust, lock and validation rules. RoPE is one.
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { promises as fsp } from "node:fs";
import path from "node:path";
import {
  AutoModelForCausalLM,
  FuncRepository,
  KernelIntegrityError,
  KernelRepositoryError,
  KernelValidationError,
  LocalFuncRepository,
  LockedFuncRepository,
  UntrustedKernelError,
  activeFuncKernel,
  applyRotaryPosEmb,
  discoverRepos,
  kernelizeFunctions,
  setBackend,
  tf,
  unkernelizeFunctions,
  writeLockfile,
} from "fusekit";
import { savedSmallModel, tmpDir } from "./helpers/models.js";

const tmp = tmpDir("fusekit-func-");
const hub = path.join(tmp, "hub");

async function funcRepo(name: string, body: string): Promise<string> {
  const dir = path.join(hub, "ext", name);
  await fsp.mkdir(dir, { recursive: true });
  await fsp.writeFile(
    path.join(dir, "manifest.json"),
    JSON.stringify({
      id: `ext/${name}`,
      version: 1,
      layers: [],
      functions: ["rotary_pos_emb"],
      builds: { any: "any.js" },
    }),
  );
  await fsp.writeFile(
    path.join(dir, "any.js"),
    `export function createFunctions({ tf }) {\n  ${body}\n  return { rotary_pos_emb };\n}\n`,
  );
  return dir;
}

const inputs = () => {
  const x = tf.randomNormal([1, 2, 3, 8], 0, 1, "float32", 1);
  const cos = tf.randomUniform([1, 3, 8], -1, 1, "float32", 2) as tf.Tensor3D;
  const sin = tf.randomUniform([1, 3, 8], -1, 1, "float32", 3) as tf.Tensor3D;
  return { x, cos, sin };
};

beforeAll(async () => {
  await setBackend("cpu");
  await funcRepo("double", "function rotary_pos_emb(x, cos, sin) { return tf.mul(x, 2); }");
  await funcRepo("arity", "function rotary_pos_emb(x, cos) { return x; }");
  await funcRepo("async", "async function rotary_pos_emb(x, cos, sin) { return x; }");
});
afterEach(() => {
  delete process.env.FUSEKIT_KERNELS_PATH;
});
afterAll(async () => {
  await kernelizeFunctions(); // back to the bundled defaults
  await fsp.rm(tmp, { recursive: true, force: true });
});

describe("function kernels", () => {
  it("a load installs the bundled RoPE function kernel: bit-identical to the composed ops, in one backend kernel", async () => {
    const dir = await savedSmallModel({}, { seed: 3 });
    const model = await AutoModelForCausalLM.fromPretrained(dir);
    model.dispose();
    await fsp.rm(dir, { recursive: true, force: true });
    expect(activeFuncKernel("rotary_pos_emb")).toBe('rotary_pos_emb from repo "fusekit/rope"');
    const { x, cos, sin } = inputs();
    const kernel = [...(await tf.profile(() => applyRotaryPosEmb(x, cos, sin))).kernelNames]; // (tf reuses the profile object)
    const fast = applyRotaryPosEmb(x, cos, sin).arraySync();
    unkernelizeFunctions();
    expect(activeFuncKernel("rotary_pos_emb")).toBeUndefined();
    const composed = [...(await tf.profile(() => applyRotaryPosEmb(x, cos, sin))).kernelNames];
    expect(applyRotaryPosEmb(x, cos, sin).arraySync()).toEqual(fast);
    expect(kernel).toEqual(["FusekitRope"]);
    expect(composed).not.toContain("FusekitRope");
  });

  it("a local repository's function replaces the original when trusted; refused when not", async () => {
    const local = new LocalFuncRepository({
      path: path.join(hub, "ext/double"),
      funcName: "rotary_pos_emb",
      trustRemoteCode: true,
    });
    await kernelizeFunctions({ mapping: { rotary_pos_emb: local } });
    const { x, cos, sin } = inputs();
    expect(applyRotaryPosEmb(x, cos, sin).arraySync()).toEqual(tf.mul(x, 2).arraySync());
    const untrusted = new LocalFuncRepository({ path: path.join(hub, "ext/double"), funcName: "rotary_pos_emb" });
    await expect(kernelizeFunctions({ mapping: { rotary_pos_emb: untrusted } })).rejects.toThrow(UntrustedKernelError);
    unkernelizeFunctions();
  });

  it("validation: arity and async functions are refused and nothing is installed; unknown names are repository errors", async () => {
    unkernelizeFunctions();
    for (const name of ["arity", "async"]) {
      const repo = new LocalFuncRepository({
        path: path.join(hub, "ext", name),
        funcName: "rotary_pos_emb",
        trustRemoteCode: true,
      });
      await expect(kernelizeFunctions({ mapping: { rotary_pos_emb: repo } })).rejects.toThrow(KernelValidationError);
      expect(activeFuncKernel("rotary_pos_emb")).toBeUndefined();
    }
    const wrong = new FuncRepository({ repoId: "fusekit/rope", funcName: "nope" });
    await expect(wrong.loadFunc("cpu")).rejects.toThrow(KernelRepositoryError);
  });

  it("a locked repository loads while its files match the lock and is refused after a change", async () => {
    process.env.FUSEKIT_KERNELS_PATH = hub;
    const lockfile = path.join(tmp, "kernels.lock");
    await writeLockfile(
      lockfile,
      (await discoverRepos()).filter((r) => r.manifest.id === "ext/double"),
    );
    const locked = new LockedFuncRepository({ repoId: "ext/double", funcName: "rotary_pos_emb", lockfile });
    expect(typeof (await locked.loadFunc("cpu"))).toBe("function");
    await fsp.appendFile(path.join(hub, "ext/double/any.js"), "// changed\n");
    await expect(locked.loadFunc("cpu")).rejects.toThrow(KernelIntegrityError);
  });
});
