// The README cannot rot: every ```ts block is a complete program (its own imports, its own `dir`) that is
// type-checked against the built package and run in a fresh Node process on the embedded tiny model; and
// the CLI summary lists exactly the options each command's --help shows.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import ts from "typescript";
import { Command, type Option } from "commander";
import { buildProgram } from "../src/cli/program.js";
import { root, runNode } from "./helpers/cli.js";

const readme = readFileSync(path.join(root, "README.md"), "utf8");
const blocks = [...readme.matchAll(/^```ts\n([\s\S]*?)^```$/gm)].map((m) => m[1]);

// Inside the package, so `import … from "fusekit"` resolves to the package itself (its built dist/).
const work = mkdtempSync(path.join(root, "test", ".readme-snippets-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const files = blocks.map((code, i) => {
  const file = path.join(work, `block-${i + 1}.ts`);
  writeFileSync(file, code);
  return file;
});

describe("README code blocks", () => {
  it("are there, and each starts with its imports", () => {
    expect(blocks.length).toBeGreaterThanOrEqual(4);
    for (const code of blocks) expect(code.startsWith("import "), code.slice(0, 80)).toBe(true);
  });

  it("type-check as they are written", () => {
    const config = ts.getParsedCommandLineOfConfigFile(
      path.join(root, "tsconfig.json"),
      {},
      { ...ts.sys, onUnRecoverableConfigFileDiagnostic: () => {} },
    )!;
    const program = ts.createProgram(files, { ...config.options, noEmit: true, declaration: false });
    const problems = ts
      .getPreEmitDiagnostics(program)
      .filter((d) => d.file && files.includes(path.resolve(d.file.fileName)))
      .map((d) => `${path.basename(d.file!.fileName)}: ${ts.flattenDiagnosticMessageText(d.messageText, "\n")}`);
    expect(problems).toEqual([]);
  });

  it.each(files.map((f, i) => [i + 1, f]))("block %i runs to completion", async (_, file) => {
    const js = ts.transpileModule(readFileSync(file, "utf8"), {
      compilerOptions: {
        module: ts.ModuleKind.ESNext,
        target: ts.ScriptTarget.ES2022,
        experimentalDecorators: true,
        useDefineForClassFields: true,
      },
    }).outputText;
    const mjs = file.replace(/\.ts$/, ".mjs");
    writeFileSync(mjs, js);
    const r = await runNode(mjs, [], { cwd: root, env: { FUSEKIT_BACKEND: "wasm" } });
    expect(
      r.stderr.replace(
        /\(node:\d+\) \[FUSEKIT_[A-Z_]+\] FusekitKernelWarning.*\n|\(Use `node --trace-warnings.*\n/g,
        "",
      ),
    ).toBe("");
    expect(r.code).toBe(0);
  });
});

/** Every command that runs something, by its path ("kernels lock"), with the long options its --help lists. */
function leafCommands(cmd: Command, prefix: string[] = []): [string, string[]][] {
  return cmd.commands.flatMap((c) => {
    const name = [...prefix, c.name()];
    const own: [string, string[]][] = c.commands.length
      ? []
      : [[name.join(" "), c.options.map((o: Option) => o.long!)]];
    return [...own, ...leafCommands(c, name)];
  });
}

describe("README CLI summary", () => {
  let summary: string;
  beforeAll(() => {
    summary = /^## CLI\n\n```\n([\s\S]*?)^```$/m.exec(readme)![1].replace(/\n {2,}/g, " ");
  });

  it("lists every command with exactly the options its --help shows", () => {
    const commands = leafCommands(buildProgram());
    expect(commands.map(([name]) => name).sort()).toEqual([
      "compare",
      "generate",
      "inspect",
      "kernels list",
      "kernels lock",
      "make-model",
      "quantize-fp8",
    ]);
    for (const [name, options] of commands) {
      const line = summary.split("\n").find((l) => l.startsWith(`fusekit ${name} `));
      expect(line, `README line for ${name}`).toBeDefined();
      expect([...line!.matchAll(/--[a-z][a-z-]*/g)].map((m) => m[0]).sort(), name).toEqual([...options].sort());
    }
  });
});
