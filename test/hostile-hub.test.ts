// Hostile kernel repositories: a symlink flipped between the trust check and the import, FIFOs inside a
// repository, lockfiles and manifests shaped to reach Object's members, builds that do not parse. Each ends
// in a named error (or the bundled code), never a hang, a raw TypeError or untrusted code running.
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { spawn, execFileSync } from "node:child_process";
import { existsSync, promises as fsp } from "node:fs";
import path from "node:path";
import {
  KernelIntegrityError,
  KernelRepositoryError,
  LocalLayerRepository,
  UntrustedKernelError,
  readLockfile,
  setBackend,
  writeLockfile,
} from "fusekit";
import { repoAt } from "../src/hub/repos.js";
import { tmpDir } from "./helpers/models.js";
import { fusekit, root } from "./helpers/cli.js";

const BUNDLED_RMS = path.join(root, "hub/fusekit/rmsnorm");
let work: string;
beforeAll(async () => {
  await setBackend("cpu");
  work = tmpDir("fusekit-hostile-hub-");
});
afterAll(async () => {
  await fsp.rm(work, { recursive: true, force: true });
});
afterEach(() => {
  vi.restoreAllMocks();
});

/** JS that, if ever evaluated, sets a global flag; exports an RMSNorm so it passes for the bundled build. */
const EVIL = `globalThis.__fusekitEvilRan = (globalThis.__fusekitEvilRan ?? 0) + 1;
export function createLayers() { class RMSNorm { forward(x) { return x; } } return { RMSNorm }; }
`;
const evilRan = () => (globalThis as { __fusekitEvilRan?: number }).__fusekitEvilRan ?? 0;

/** An untrusted repository that looks like the bundled rmsnorm one (same manifest, builds that mark they ran). */
async function evilRepo(dir: string): Promise<string> {
  await fsp.mkdir(dir, { recursive: true });
  await fsp.copyFile(path.join(BUNDLED_RMS, "manifest.json"), path.join(dir, "manifest.json"));
  for (const f of ["cpu.js", "cpu.ts", "wasm.js", "wasm.ts"]) await fsp.writeFile(path.join(dir, f), EVIL);
  return dir;
}

/** Points `link` at `target` atomically (a new symlink renamed over the old one). */
async function pointLink(link: string, target: string): Promise<void> {
  const tmp = `${link}.tmp-${process.pid}-${Math.random().toString(16).slice(2)}`;
  await fsp.symlink(target, tmp);
  await fsp.rename(tmp, link);
}

describe("LocalLayerRepository resolves its path once", () => {
  it("a symlink flipped to an untrusted repo right after the trust check: the bundled code loads, the other never runs", async () => {
    const evil = await evilRepo(path.join(work, "evil-det"));
    const link = path.join(work, "link-det");
    await pointLink(link, BUNDLED_RMS);
    const realpath = fsp.realpath.bind(fsp);
    let flipped = false;
    vi.spyOn(fsp, "realpath").mockImplementation((async (p: string) => {
      const r = await realpath(p);
      if (p === link && !flipped) {
        flipped = true; // the verdict "bundled" is taken from this answer; now the attacker flips the link
        await pointLink(link, evil);
      }
      return r;
    }) as typeof fsp.realpath);
    const before = evilRan();
    const layer = await new LocalLayerRepository({ path: link, layerName: "RMSNorm" }).loadLayer("cpu");
    vi.restoreAllMocks();
    expect(flipped).toBe(true);
    expect(evilRan()).toBe(before);
    expect(typeof layer).toBe("function");
    expect(String(layer)).not.toContain("return x;");
  });

  const RACE_RUNS = Number(process.env.FUSEKIT_RACE_RUNS ?? 150);
  it(`the link flipped continuously by another process: ${RACE_RUNS} loads, untrusted code never runs`, async () => {
    const evil = await evilRepo(path.join(work, "evil-race"));
    const link = path.join(work, "link-race");
    await pointLink(link, BUNDLED_RMS);
    // The flipper renames fresh symlinks over the link as fast as it can, until it is killed.
    const flipper = spawn(
      process.execPath,
      [
        "-e",
        `const fs = require("node:fs"); const [link, a, b] = process.argv.slice(1); let i = 0;
         for (;;) { const t = link + ".f" + (i % 2); try { fs.unlinkSync(t); } catch {} fs.symlinkSync(i++ % 2 ? a : b, t); fs.renameSync(t, link); }`,
        link,
        BUNDLED_RMS,
        evil,
      ],
      { stdio: "ignore" },
    );
    const outcomes = { bundled: 0, refused: 0 };
    const before = evilRan();
    try {
      for (let i = 0; i < RACE_RUNS; i++) {
        // A fresh link name per run, so no import cache can hide a race on an earlier run.
        const own = path.join(work, `race-${i}`);
        await fsp.symlink(link, own);
        try {
          const layer = await new LocalLayerRepository({ path: own, layerName: "RMSNorm" }).loadLayer("cpu");
          expect(String(layer)).not.toContain("return x;");
          outcomes.bundled++;
        } catch (err) {
          if (!(err instanceof UntrustedKernelError)) throw err;
          outcomes.refused++;
        }
      }
    } finally {
      flipper.kill("SIGKILL");
    }
    expect(evilRan()).toBe(before);
    expect(outcomes.bundled + outcomes.refused).toBe(RACE_RUNS);
    console.log(
      `symlink race: ${RACE_RUNS} loads, ${outcomes.bundled} bundled, ${outcomes.refused} refused, 0 untrusted runs`,
    );
  }, 120_000);

  it("a symlink to a bundled repository loads the bundled build (not a raw 'Unknown file extension')", async () => {
    const link = path.join(work, "link-bundled");
    await pointLink(link, BUNDLED_RMS);
    const repo = await repoAt(link);
    expect(repo.bundled).toBe(true);
    expect(repo.dir).toBe(await fsp.realpath(BUNDLED_RMS));
    expect(typeof (await new LocalLayerRepository({ path: link, layerName: "RMSNorm" }).loadLayer("cpu"))).toBe(
      "function",
    );
  });
});

/** A local repository with one `any` build. */
async function localRepo(name: string, build: string, manifest: Record<string, unknown> = {}): Promise<string> {
  const dir = path.join(work, name);
  await fsp.mkdir(dir, { recursive: true });
  const m = { id: `ext/${name}`, version: 1, layers: ["Scale"], builds: { any: "any.js" }, ...manifest };
  await fsp.writeFile(path.join(dir, "manifest.json"), JSON.stringify(m));
  await fsp.writeFile(path.join(dir, "any.js"), build);
  return dir;
}
const SCALE = `export function createLayers({ tf }) { class Scale { forward(x) { return tf.mul(x, 2); } } return { Scale }; }\n`;

describe("special files in a kernel repository", () => {
  async function fifoRepo(name: string): Promise<string> {
    const dir = await localRepo(name, SCALE);
    execFileSync("mkfifo", [path.join(dir, "pipe")]);
    return dir;
  }

  it("an untrusted repo with a FIFO is refused without reading it", async () => {
    const dir = await fifoRepo("fifo-untrusted");
    await expect(new LocalLayerRepository({ path: dir, layerName: "Scale" }).loadLayer("cpu")).rejects.toThrow(
      UntrustedKernelError,
    );
  }, 10_000);

  it("a trusted repo with a FIFO: a named error, no hang", async () => {
    const dir = await fifoRepo("fifo-trusted");
    const err = await new LocalLayerRepository({ path: dir, layerName: "Scale", trustRemoteCode: true })
      .loadLayer("cpu")
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KernelRepositoryError);
    expect((err as Error).message).toBe(
      `${path.join(await fsp.realpath(dir), "pipe")}: not a regular file or folder (a FIFO, socket or device?) in kernel repository ${await fsp.realpath(dir)}; refused`,
    );
  }, 10_000);

  it("writeLockfile over a repo with a FIFO: a named error, no hang", async () => {
    const dir = await fifoRepo("fifo-lock");
    await expect(writeLockfile(path.join(work, "fifo.lock"), [await repoAt(dir)])).rejects.toThrow(
      KernelRepositoryError,
    );
    expect(existsSync(path.join(work, "fifo.lock"))).toBe(false);
  }, 10_000);

  it("`fusekit kernels lock` over a hub root holding a FIFO: exit 1 with a named error, no hang", async () => {
    const hubRoot = path.join(work, "fifo-root");
    await fsp.mkdir(hubRoot);
    await fsp.rename(await fifoRepo("fifo-cli"), path.join(hubRoot, "fifo-cli"));
    const r = await fusekit(["kernels", "lock", "-o", path.join(work, "cli.lock")], {
      env: { FUSEKIT_KERNELS_PATH: hubRoot },
      timeoutMs: 20_000,
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^fusekit: KernelRepositoryError: .*pipe: not a regular file or folder/);
  }, 30_000);
});

describe("names that reach Object's members, and builds that do not load", () => {
  it.each([
    ["[null]", [null], /kernels\[0\]: must be an object/],
    ["files: null", [{ repoId: "a/b", version: 1, files: null }], /kernels\[0\]: "files" must be an object/],
    ["files: 'abc'", [{ repoId: "a/b", version: 1, files: "abc" }], /kernels\[0\]: "files" must be an object/],
    ["a digest that is not one", [{ repoId: "a/b", version: 1, files: { "x.js": 5 } }], /"x\.js" must be a sha256/],
    ["no repoId", [{ version: 1, files: {} }], /"repoId" must be a non-empty string/],
  ])("a lockfile entry %s is a KernelIntegrityError", async (_, kernels, message) => {
    const file = path.join(work, `bad-${Math.random().toString(16).slice(2)}.lock`);
    await fsp.writeFile(file, JSON.stringify({ lockfileVersion: 1, kernels }));
    const err = await readLockfile(file).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KernelIntegrityError);
    expect((err as Error).message).toMatch(message);
  });

  it('layerName "constructor" listed by a manifest but not built: a named error, not Object', async () => {
    const dir = await localRepo("ctor", `export function createLayers() { return {}; }\n`, { layers: ["constructor"] });
    const err = await new LocalLayerRepository({ path: dir, layerName: "constructor", trustRemoteCode: true })
      .loadLayer("cpu")
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KernelRepositoryError);
    expect((err as Error).message).toMatch(/createLayers\(\) returned no layer "constructor"/);
  });

  it("a trusted build with a syntax error: KernelRepositoryError with the parse error as cause", async () => {
    const dir = await localRepo("syntax", `export function createLayers( {\n`);
    const err = await new LocalLayerRepository({ path: dir, layerName: "Scale", trustRemoteCode: true })
      .loadLayer("cpu")
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KernelRepositoryError);
    const file = path.join(await fsp.realpath(dir), "any.js");
    expect((err as Error).message.startsWith(`kernel repository "ext/syntax": build ${file} failed to load: `)).toBe(
      true,
    );
    expect((err as Error).cause).toBeInstanceOf(Error); // the parser's own error (vite's under vitest)
  });

  it("a missing folder is a KernelRepositoryError", async () => {
    await expect(
      new LocalLayerRepository({ path: path.join(work, "nope"), layerName: "Scale" }).loadLayer("cpu"),
    ).rejects.toThrow(KernelRepositoryError);
  });
});
