// The README and docs/ cannot rot: every ```ts block is a complete program (its own imports, its own `dir`) that is
// type-checked against the built package and run, as pasted, in a fresh Node process on the embedded tiny model —
// a hub id such as "Qwen/Qwen3-0.6B" is that model in a Hugging Face cache of symlinked blobs, offline; the README
// stays a guide (at most 200 lines, its own blocks fit 100 columns, every docs/ page linked); and the CLI summary
// lists exactly the options each command's --help shows.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import ts from "typescript";
import { Command, type Option } from "commander";
import { defaultModelDir, setBackend } from "fusekit";
import { buildProgram } from "../src/cli/program.js";
import { root, runNode } from "./helpers/cli.js";
import { tmpDir } from "./helpers/models.js";
import { folderFiles, writeCachedModel } from "./helpers/hub.js";

const readme = readFileSync(path.join(root, "README.md"), "utf8");
const docs = readdirSync(path.join(root, "docs"))
  .filter((n) => n.endsWith(".md"))
  .sort();
const pages: [string, string][] = [
  ["README.md", readme],
  ...docs.map((n): [string, string] => [`docs/${n}`, readFileSync(path.join(root, "docs", n), "utf8")]),
];
const blocks = pages.flatMap(([page, text]) =>
  [...text.matchAll(/^```ts\n([\s\S]*?)^```$/gm)].map((m, i) => ({ name: `${page} block ${i + 1}`, code: m[1] })),
);
/** Hub ids the snippets name: each is the embedded tiny model in the test's Hugging Face cache. */
const HUB_IDS = ["Qwen/Qwen3-0.6B"];

// Inside the package, so `import … from "fusekit"` resolves to the package itself (its built dist/).
const work = mkdtempSync(path.join(root, "test", ".readme-snippets-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const files = blocks.map(({ name, code }) => {
  const file = path.join(work, `${name.replace(/[^\w]+/g, "-")}.ts`);
  writeFileSync(file, code);
  return file;
});

let cache: string;
beforeAll(async () => {
  await setBackend("wasm");
  const model = folderFiles(await defaultModelDir());
  cache = tmpDir("fusekit-readme-cache-");
  for (const id of HUB_IDS) writeCachedModel(cache, id, model);
});
afterAll(() => rmSync(cache, { recursive: true, force: true }));

describe("README and docs/ code blocks", () => {
  it("are there, and each starts with its imports", () => {
    expect(blocks.filter((b) => b.name.startsWith("README")).length).toBeGreaterThanOrEqual(2);
    expect(blocks.length).toBeGreaterThanOrEqual(10);
    for (const { name, code } of blocks) expect(code.startsWith("import "), `${name}: ${code.slice(0, 80)}`).toBe(true);
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

  it.each(files.map((f, i) => [blocks[i].name, f]))("%s runs to completion", async (_, file) => {
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
    const env = {
      FUSEKIT_BACKEND: "wasm",
      HF_HUB_CACHE: cache,
      HF_HUB_OFFLINE: "1",
      HF_ENDPOINT: "http://127.0.0.1:9",
    };
    const r = await runNode(mjs, [], { cwd: root, env });
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
      "export-gguf",
      "generate",
      "inspect",
      "kernels list",
      "kernels lock",
      "make-model",
      "quantize-fp8",
      "serve",
    ]);
    for (const [name, options] of commands) {
      const line = summary.split("\n").find((l) => l.startsWith(`fusekit ${name} `));
      expect(line, `README line for ${name}`).toBeDefined();
      expect([...line!.matchAll(/--[a-z][a-z-]*/g)].map((m) => m[0]).sort(), name).toEqual([...options].sort());
    }
  });
});

describe("README as a guide", () => {
  it("is at most 200 lines, links every docs/ page, and what `npm start` printed fits 100 columns", () => {
    expect(readme.trimEnd().split("\n").length).toBeLessThanOrEqual(200);
    for (const page of docs) expect(readme, page).toContain(`(docs/${page})`);
    const code = [...readme.matchAll(/^```\w*\n([\s\S]*?)^```$/gm)].map((m) => m[1].split("\n"));
    const printed = code.find((lines) => lines[0] === "$ COLUMNS=100 npm start");
    expect(printed?.length).toBeGreaterThan(20);
    expect(printed!.filter((line) => line.length > 100)).toEqual([]);
    expect(code.flat().filter((line) => line.length > 120)).toEqual([]); // the code's own width (.prettierrc)
  });
});
