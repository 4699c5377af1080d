// The suite's global setup builds dist/ for the spawned-CLI tests; a build that fails must fail the run,
// not leave the CLI tests on a stale dist/. Tried on a throwaway project with the real tsc.
import { existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { buildDist } from "./global-setup.js";
import { tmpDir } from "./helpers/tmp.js";

const projectRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

/** A minimal project whose src/cli/main.ts holds `source`, compiled by this repository's typescript. */
function project(source: string): string {
  const root = tmpDir("fusekit-setup-");
  symlinkSync(path.join(projectRoot, "node_modules"), path.join(root, "node_modules"), "dir");
  mkdirSync(path.join(root, "src", "cli"), { recursive: true });
  writeFileSync(path.join(root, "src", "cli", "main.ts"), source);
  writeFileSync(
    path.join(root, "tsconfig.json"),
    JSON.stringify({
      compilerOptions: { strict: true, target: "ES2022", module: "NodeNext", outDir: "dist", rootDir: ".", types: [] },
    }),
  );
  writeFileSync(
    path.join(root, "tsconfig.build.json"),
    JSON.stringify({ extends: "./tsconfig.json", include: ["src"] }),
  );
  return root;
}

describe("global setup: building dist/", () => {
  it("builds a project that compiles, and leaves a fresh build alone", () => {
    const root = project("export const answer: number = 42;\n");
    const entry = path.join(root, "dist", "src", "cli", "main.js");
    buildDist(root);
    expect(existsSync(entry)).toBe(true);
    writeFileSync(entry, "// untouched\n"); // a second call with no newer source must not rebuild
    buildDist(root);
    expect(readFileSync(entry, "utf8")).toBe("// untouched\n");
  });

  it("throws when tsc fails, and removes the entry point so the next run builds again", () => {
    const root = project('export const answer: number = "forty-two";\n');
    const entry = path.join(root, "dist", "src", "cli", "main.js");
    expect(() => buildDist(root)).toThrow(/global-setup: building dist\/ failed \(tsc exit 2/);
    expect(existsSync(entry)).toBe(false);
  });
});
