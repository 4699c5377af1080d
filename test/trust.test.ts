// Trust. What already lives in test/hub.test.ts ("the hub: versions, locks and
// trust"): an unlocked repo outside the bundled hub is refused without trustRemoteCode; a locked one loads
// and is refused once a file is tampered with or added; a symlink leading outside a repo is refused even
// with trustRemoteCode. This file adds:
//   - no code is ever loaded from a checkpoint directory: modeling_*.py / .js / .mjs / package.json next to
//     the weights and `auto_map` / `trust_remote_code` in config.json and tokenizer_config.json are ignored
//     (a FUSEKIT_REMOTE_CODE_IGNORED warning), and code files planted there never run;
//   - the source has exactly one place that loads code at run time (the kernel hub), so the above holds by
//     construction and not only for the files this test thought of;
//   - a refused kernel repo's code never RAN (not only "was refused"), for every refusal reason;
//   - `fusekit kernels lock` writes atomically: a child process killed midway leaves the previous lockfile
//     whole and nothing partial under its name.
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { spawn } from "node:child_process";
import { existsSync, promises as fsp, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import {
  AutoModelForCausalLM,
  AutoTokenizer,
  KernelIntegrityError,
  KernelRepositoryError,
  KernelSymlinkError,
  LayerRepository,
  LocalLayerRepository,
  Mode,
  Module,
  UnknownModelTypeError,
  UntrustedKernelError,
  discoverRepos,
  kernelize,
  qwen3TokenizerDir,
  readLockfile,
  setBackend,
  tf,
  useKernelForwardFromHub,
  useKernelMapping,
  writeLockfile,
} from "fusekit/internals";
import { logitsOf, savedSmallModel, tmpDir } from "./helpers/models.js";

const root = fileURLToPath(new URL("..", import.meta.url));
let work: string;
beforeAll(async () => {
  await setBackend("cpu");
  work = tmpDir("fusekit-trust-");
});
afterAll(async () => {
  await fsp.rm(work, { recursive: true, force: true });
});
afterEach(() => {
  vi.restoreAllMocks();
  delete process.env.FUSEKIT_KERNELS_PATH;
});

/** JS that, if it is ever evaluated, leaves a marker file and a global flag behind. */
const planted = (marker: string) =>
  `import { writeFileSync } from "node:fs";\nwriteFileSync(${JSON.stringify(marker)}, "ran");\nglobalThis.__fusekitPlantedCodeRan = true;\n` +
  `export function createLayers({ tf }) { class Scale { forward(x) { return tf.mul(x, 3); } } return { Scale }; }\nexport default class EvilForCausalLM {}\n`;
const ran = (marker: string) =>
  existsSync(marker) || (globalThis as { __fusekitPlantedCodeRan?: boolean }).__fusekitPlantedCodeRan === true;

describe("no code is ever loaded from a checkpoint directory", () => {
  it("modeling files, auto_map and trust_remote_code next to the weights are ignored: nothing runs, the built-in model loads", async () => {
    const clean = await savedSmallModel({}, { seed: 5 });
    const dir = await savedSmallModel({}, { seed: 5 });
    const marker = path.join(work, "checkpoint-code-ran");
    const config = JSON.parse(await fsp.readFile(path.join(dir, "config.json"), "utf8"));
    config.auto_map = {
      AutoConfig: "configuration_evil.EvilConfig",
      AutoModelForCausalLM: "modeling_evil.EvilForCausalLM",
    };
    config.trust_remote_code = true;
    await fsp.writeFile(path.join(dir, "config.json"), JSON.stringify(config));
    // Every name a loader might be tempted to import, in every flavour.
    for (const f of [
      "modeling_evil.js",
      "modeling_evil.mjs",
      "modeling_evil.cjs",
      "modeling_evil.ts",
      "configuration_evil.js",
      "index.js",
      "model.js",
      "tokenization_evil.js",
    ]) {
      await fsp.writeFile(
        path.join(dir, f),
        f.endsWith(".cjs") ? `require("node:fs").writeFileSync(${JSON.stringify(marker)}, "ran");` : planted(marker),
      );
    }
    await fsp.writeFile(
      path.join(dir, "modeling_evil.py"),
      `import os\nopen(${JSON.stringify(marker)}, "w").write("ran")\n`,
    );
    await fsp.writeFile(path.join(dir, "__init__.py"), "from .modeling_evil import *\n");
    await fsp.writeFile(
      path.join(dir, "package.json"),
      JSON.stringify({ name: "evil", type: "module", main: "index.js", exports: "./index.js" }),
    );
    // A tokenizer too, whose config names a custom tokenizer class.
    for (const f of ["tokenizer.json", "tokenizer_config.json"])
      await fsp.copyFile(path.join(qwen3TokenizerDir(), f), path.join(dir, f));
    const tcfg = JSON.parse(await fsp.readFile(path.join(dir, "tokenizer_config.json"), "utf8"));
    await fsp.writeFile(
      path.join(dir, "tokenizer_config.json"),
      JSON.stringify({
        ...tcfg,
        auto_map: { AutoTokenizer: ["tokenization_evil.EvilTokenizer", null] },
        trust_remote_code: true,
      }),
    );

    const warn = vi.spyOn(process, "emitWarning").mockImplementation(() => {});
    const model = await AutoModelForCausalLM.fromPretrained(dir, { strict: true });
    const tokenizer = await AutoTokenizer.fromPretrained(dir);
    expect(ran(marker)).toBe(false);
    expect(model.constructor.name).toBe("Qwen3ForCausalLM");
    expect(tokenizer.encode("hello world").length).toBeGreaterThan(0);
    // The same numbers as the same weights without the planted files.
    const reference = await AutoModelForCausalLM.fromPretrained(clean);
    expect(logitsOf(model, [[1, 2, 3]])).toEqual(logitsOf(reference, [[1, 2, 3]]));
    model.dispose();
    reference.dispose();

    const warnings = warn.mock.calls.filter(
      ([, o]) => (o as { code?: string })?.code === "FUSEKIT_REMOTE_CODE_IGNORED",
    );
    expect(warnings.length).toBe(1);
    expect(warnings[0][0]).toBe(
      `${path.join(dir, "config.json")}: "auto_map" and "trust_remote_code" ignored (auto_map: ${JSON.stringify(config.auto_map)}): ` +
        `fusekit never runs code from a checkpoint directory; it builds its own implementation of model_type "qwen3"`,
    );
  });

  it("a model_type only custom code could provide is an UnknownModelTypeError that says the code is not run", async () => {
    const dir = await savedSmallModel({}, { seed: 5 });
    const marker = path.join(work, "unknown-type-code-ran");
    const config = JSON.parse(await fsp.readFile(path.join(dir, "config.json"), "utf8"));
    await fsp.writeFile(
      path.join(dir, "config.json"),
      JSON.stringify({
        ...config,
        model_type: "evil",
        auto_map: { AutoModelForCausalLM: "modeling_evil.EvilForCausalLM" },
      }),
    );
    await fsp.writeFile(path.join(dir, "modeling_evil.js"), planted(marker));
    vi.spyOn(process, "emitWarning").mockImplementation(() => {});
    const err = await AutoModelForCausalLM.fromPretrained(dir).catch((e) => e);
    expect(err).toBeInstanceOf(UnknownModelTypeError);
    expect(err.message).toBe(
      `${path.join(dir, "config.json")}: model_type "evil" is not supported (supported: llama, qwen2, qwen3); its "auto_map" points at custom modeling code, which fusekit never runs`,
    );
    expect(ran(marker)).toBe(false);
  });

  it("by construction: the only run-time code loading in src/ is the kernel hub's (no eval, Function, vm or computed import/require)", () => {
    const files: string[] = [];
    const walk = (d: string) => {
      for (const e of readdirSync(d, { withFileTypes: true })) {
        if (e.isDirectory()) walk(path.join(d, e.name));
        else if (e.name.endsWith(".ts")) files.push(path.join(d, e.name));
      }
    };
    walk(path.join(root, "src"));
    expect(files.length).toBeGreaterThan(30);
    const found: string[] = [];
    for (const f of files) {
      const src = readFileSync(f, "utf8")
        .replace(/\/\*[\s\S]*?\*\//g, "")
        .replace(/^\s*\/\/.*$/gm, "");
      const rel = path.relative(root, f);
      // import("…") / require("…") with a string literal name a module of this package or a dependency.
      const lines = src.split("\n");
      lines.forEach((line, i) => {
        const bad =
          /\b(?:import|require)\s*\((?!\s*["'][^"']+["']\s*\))/.test(line) ||
          /createRequire\([^)]*\)\s*\((?!\s*["'][^"']+["']\s*\))/.test(line) ||
          /(?<![.\w])eval\s*\((?!\s*\)\s*[:{])|\bnew\s+Function\s*\(|(?<![.\w])Function\s*\(\s*["'`]|["']node:vm["']|["']node:child_process["']/.test(
            line,
          );
        if (bad) found.push(`${rel}:${i + 1}: ${line.trim()}`);
      });
    }
    // The kernel hub imports a repository's build only after checkTrust (bundled, locked, or trustRemoteCode),
    // through importer.ts, the one module that imports import-file.ts (the browser build's twin imports nothing).
    expect(found.map((f) => f.replace(/:\d+:/, ":"))).toEqual([
      "src/hub/import-file.ts: return import(pathToFileURL(file).href) as Promise<Record<string, unknown>>;",
    ]);
    const importers = files.filter((f) =>
      /from "\.\/import-file\.js"|hub\/import-file\.js"/.test(readFileSync(f, "utf8")),
    );
    expect(importers.map((f) => path.relative(root, f))).toEqual(["src/hub/importer.ts"]);
  });
});

/** A tagged module whose original forward doubles; the planted kernel triples. */
@useKernelForwardFromHub("Scale")
class Scale extends Module<[tf.Tensor], tf.Tensor> {
  forward(x: tf.Tensor): tf.Tensor {
    return tf.mul(x, 2);
  }
}

describe("a refused kernel repository's code never runs", () => {
  let n = 0;
  /** A repo folder whose build plants a marker when imported; returns [dir, marker]. */
  async function repo(manifest: Record<string, unknown> = {}): Promise<[string, string]> {
    const dir = path.join(work, `kernels-${++n}`, "ext", `scale${n}`);
    const marker = path.join(work, `kernel-${n}-ran`);
    await fsp.mkdir(dir, { recursive: true });
    await fsp.writeFile(
      path.join(dir, "manifest.json"),
      JSON.stringify({ id: `ext/scale${n}`, version: 1, layers: ["Scale"], builds: { any: "any.js" }, ...manifest }),
    );
    await fsp.writeFile(path.join(dir, "any.js"), planted(marker));
    return [dir, marker];
  }
  const kernelizeWith = (r: LayerRepository | LocalLayerRepository) =>
    useKernelMapping({ Scale: { cpu: r } }, () => kernelize(new Scale(), { mode: Mode.INFERENCE }));

  it("unlocked and untrusted: refused before import; the same repo trusted does run (so the marker would show)", async () => {
    const [dir, marker] = await repo();
    await expect(kernelizeWith(new LocalLayerRepository({ path: dir, layerName: "Scale" }))).rejects.toThrow(
      UntrustedKernelError,
    );
    process.env.FUSEKIT_KERNELS_PATH = path.dirname(path.dirname(dir));
    await expect(kernelizeWith(new LayerRepository({ repoId: `ext/scale${n}`, layerName: "Scale" }))).rejects.toThrow(
      UntrustedKernelError,
    );
    expect(ran(marker)).toBe(false);
    await kernelizeWith(new LocalLayerRepository({ path: dir, layerName: "Scale", trustRemoteCode: true }));
    expect(existsSync(marker)).toBe(true);
    delete (globalThis as { __fusekitPlantedCodeRan?: boolean }).__fusekitPlantedCodeRan;
  });

  it("locked, then tampered with: refused before import", async () => {
    const [dir, marker] = await repo();
    process.env.FUSEKIT_KERNELS_PATH = path.dirname(path.dirname(dir));
    const lockfile = path.join(work, "tamper.lock");
    await writeLockfile(
      lockfile,
      (await discoverRepos()).filter((r) => r.manifest.id === `ext/scale${n}`),
    );
    await fsp.appendFile(path.join(dir, "any.js"), "\n// changed after locking\n");
    await expect(
      kernelizeWith(new LayerRepository({ repoId: `ext/scale${n}`, layerName: "Scale", lockfile })),
    ).rejects.toThrow(KernelIntegrityError);
    expect(ran(marker)).toBe(false);
  });

  // The build is imported from the bytes that were hashed, not re-read from its path, so
  // a file swapped on disk between the check and the import cannot run unverified.
  it("locked: a build swapped on disk right after it was hashed never runs; the verified bytes do", async () => {
    const [dir, marker] = await repo();
    process.env.FUSEKIT_KERNELS_PATH = path.dirname(path.dirname(dir));
    const good =
      "export function createLayers({ tf }) { class Scale { forward(x) { return tf.mul(x, 5); } } return { Scale }; }\n";
    await fsp.writeFile(path.join(dir, "any.js"), good);
    const lockfile = path.join(work, `swap-${n}.lock`);
    await writeLockfile(
      lockfile,
      (await discoverRepos()).filter((r) => r.manifest.id === `ext/scale${n}`),
    );
    const build = path.join(dir, "any.js");
    const realOpen = fsp.open.bind(fsp);
    let swapped = false;
    // The snapshot reads each file through an open handle: swap the build right after its bytes are read.
    vi.spyOn(fsp, "open").mockImplementation((async (...args: Parameters<typeof fsp.open>) => {
      const h = await realOpen(...args);
      if (String(args[0]) !== build || swapped) return h;
      const read = h.readFile.bind(h);
      h.readFile = (async (...a: Parameters<typeof h.readFile>) => {
        const bytes = await read(...a);
        swapped = true; // the verifier has read the good bytes; now an attacker replaces the file
        await fsp.writeFile(build, planted(marker));
        return bytes;
      }) as typeof h.readFile;
      return h;
    }) as typeof fsp.open);
    const realMkdtemp = fsp.mkdtemp.bind(fsp);
    const copies: string[] = [];
    vi.spyOn(fsp, "mkdtemp").mockImplementation((async (prefix: string) => {
      const made = await realMkdtemp(prefix);
      copies.push(made);
      return made;
    }) as typeof fsp.mkdtemp);
    const m = new Scale();
    await useKernelMapping(
      { Scale: { cpu: new LayerRepository({ repoId: `ext/scale${n}`, layerName: "Scale", lockfile }) } },
      () => kernelize(m, { mode: Mode.INFERENCE }),
    );
    vi.restoreAllMocks();
    expect(swapped).toBe(true);
    expect(await fsp.readFile(build, "utf8")).toBe(planted(marker)); // the swap really happened on disk
    expect(ran(marker)).toBe(false);
    const x = tf.tensor1d([1, 2]);
    const y = m.call(x);
    expect(Array.from(y.dataSync())).toEqual([5, 10]); // the locked kernel's forward
    tf.dispose([x, y]);
    // it was imported from one private copy, which is gone
    expect(copies.map((c) => path.basename(c).startsWith("fusekit-kernel-"))).toEqual([true]);
    expect(copies.filter((c) => existsSync(c))).toEqual([]);
  });

  it("a symlinked directory leading outside the repo is refused even with trustRemoteCode, before import", async () => {
    const [dir, marker] = await repo({ builds: { any: "lib/any.js" } });
    const outside = path.join(work, "outside-lib");
    await fsp.mkdir(outside, { recursive: true });
    await fsp.rename(path.join(dir, "any.js"), path.join(outside, "any.js"));
    await fsp.symlink(outside, path.join(dir, "lib"));
    const err = await kernelizeWith(
      new LocalLayerRepository({ path: dir, layerName: "Scale", trustRemoteCode: true }),
    ).catch((e) => e);
    expect(err).toBeInstanceOf(KernelSymlinkError);
    expect(err.message).toBe(
      `${path.join(dir, "lib")}: symlink leads outside the kernel repository ${dir} (to ${await fsp.realpath(outside)}); refused`,
    );
    expect(ran(marker)).toBe(false);
  });

  it("a manifest whose build path leaves the repo is refused, trusted or not", async () => {
    const [dir, marker] = await repo({ builds: { any: "../../outside.js" } });
    await fsp.writeFile(path.join(work, "outside.js"), planted(marker));
    const err = await kernelizeWith(
      new LocalLayerRepository({ path: dir, layerName: "Scale", trustRemoteCode: true }),
    ).catch((e) => e);
    expect(err).toBeInstanceOf(KernelRepositoryError);
    expect(err.message).toBe(
      `${path.join(dir, "manifest.json")}: build "any" must be a file inside the repository, got "../../outside.js"`,
    );
    expect(ran(marker)).toBe(false);
  });
});

describe("fusekit kernels lock writes atomically (SIGKILL in a child process)", () => {
  const child = path.join(root, "test/fixtures/lock-child.mjs");
  const dist = path.join(root, "dist/src/index.js"); // built by test/global-setup.ts
  const run = (file: string, killAt: string) =>
    new Promise<NodeJS.Signals | null>((resolve, reject) => {
      const p = spawn(process.execPath, [child, dist, file, killAt], { stdio: ["ignore", "pipe", "pipe"] });
      let stderr = "";
      p.stderr.on("data", (d) => (stderr += d));
      p.on("error", reject);
      p.on("exit", (code, signal) =>
        code !== 0 && signal === null ? reject(new Error(`child failed (${code}): ${stderr}`)) : resolve(signal),
      );
    });

  // [kill point, which lock must be under the final name afterwards]
  it.each([
    ["open", "old"],
    ["half", "old"],
    ["rename", "old"],
    ["after", "new"],
  ] as const)("killed at %s → the %s lockfile, whole", async (killAt, expected) => {
    const dir = path.join(work, `lock-${killAt}`);
    await fsp.mkdir(dir, { recursive: true });
    const file = path.join(dir, "kernels.lock");
    const repos = await discoverRepos();
    const old = await writeLockfile(file, repos.slice(0, 1)); // the previous lock: one repo
    const oldText = await fsp.readFile(file, "utf8");

    expect(await run(file, killAt)).toBe("SIGKILL");
    const text = await fsp.readFile(file, "utf8");
    const lock = await readLockfile(file); // parses: never a partial file under the final name
    if (expected === "old") {
      expect(text).toBe(oldText);
      expect(lock).toEqual(old);
    } else {
      expect(lock.kernels.map((k) => k.repoId)).toEqual(repos.map((r) => r.manifest.id));
    }
    const temps = (await fsp.readdir(dir)).filter((f) => f.includes(".fusekit-tmp-"));
    expect(temps.length).toBe(killAt === "after" ? 0 : 1);

    // The next lock run replaces it and removes the dead writer's temporary.
    await writeLockfile(file, repos);
    expect(await fsp.readdir(dir)).toEqual(["kernels.lock"]);
    expect((await readLockfile(file)).kernels.length).toBe(repos.length);
  });

  it("a completed run leaves only the lockfile", async () => {
    const dir = path.join(work, "lock-none");
    await fsp.mkdir(dir, { recursive: true });
    expect(await run(path.join(dir, "kernels.lock"), "none")).toBe(null);
    expect(await fsp.readdir(dir)).toEqual(["kernels.lock"]);
  });
});
