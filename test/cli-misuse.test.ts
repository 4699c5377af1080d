// Misusing the `fusekit` binary (spawned, built): every mistake is caught before any work, reported as
// ONE line naming the input and what is allowed, with exit code 2 (usage) or 1 (failure), and nothing is
// written or deleted: a checksum of the folder the command runs in (holding a user's files, and the
// cache folder it would fill) is the same before and after.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { PRESETS, WEIGHT_STORAGE_CHOICES } from "fusekit";
import { folderChecksum, fusekit, type Run } from "./helpers/cli.js";
import { defaultApproaches } from "../src/compare/approaches.js";

const tmp = mkdtempSync(path.join(os.tmpdir(), "fusekit-misuse-"));
const APPROACH_IDS = defaultApproaches()
  .map((a) => a.id)
  .join(", ");
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** A folder of a user's files (and where the cache would go) to run a command in. */
function userFolder(): string {
  const ws = mkdtempSync(path.join(tmp, "ws-"));
  writeFileSync(path.join(ws, "notes.txt"), "my notes\n");
  mkdirSync(path.join(ws, "photos"));
  writeFileSync(path.join(ws, "photos", "cat.jpg"), Buffer.from([0xff, 0xd8, 0xff, 0xe0, 1, 2, 3]));
  writeFileSync(path.join(ws, "page.html"), "<!doctype html><p>mine</p>\n");
  writeFileSync(path.join(ws, "kernels.lock"), "not a lockfile, a user's file that happens to have that name\n");
  return ws;
}

/** Runs the CLI inside a fresh user folder; checks it changed nothing there and printed one line. */
async function misuse(args: (ws: string) => string[], env: Record<string, string> = {}): Promise<Run & { ws: string }> {
  const ws = userFolder();
  return misuseIn(ws, args(ws), env);
}

async function misuseIn(ws: string, argv: string[], env: Record<string, string> = {}): Promise<Run & { ws: string }> {
  const before = folderChecksum(ws);
  const r = await fusekit(argv, {
    cwd: ws,
    env: { FUSEKIT_CACHE_DIR: path.join(ws, "cache"), ...env },
    timeoutMs: 60_000,
  });
  expect(folderChecksum(ws), "nothing written or deleted").toBe(before);
  expect(r.stdout).toBe("");
  expect(r.stderr.split("\n")).toEqual([expect.any(String), ""]); // exactly one line
  expect(r.stderr).not.toMatch(/\n\s+at /); // no stack
  return { ...r, ws };
}

describe("usage errors: exit 2, one line naming the option and what is allowed", () => {
  it.each([
    [
      ["compare", "--rounds", "0"],
      "option '-r, --rounds <n>' argument '0' is invalid. expected an integer from 1 to 1000.",
    ],
    [
      ["compare", "--rounds", "2.5"],
      "option '-r, --rounds <n>' argument '2.5' is invalid. expected an integer from 1 to 1000.",
    ],
    [
      ["compare", "--repeats", "0"], // the old name of --rounds, still checked the same way
      "option '--repeats <n>' argument '0' is invalid. expected an integer from 1 to 1000.",
    ],
    [
      ["compare", "--warmup", "-1"],
      "option '--warmup <n>' argument '-1' is invalid. expected an integer from 0 to 100.",
    ],
    [
      ["compare", "--approaches", "fused,fast"],
      `option '-a, --approaches <ids>' argument 'fused,fast' is invalid. unknown approach id "fast"; valid ids: ${APPROACH_IDS}.`,
    ],
    [
      ["compare", "--approaches", " , "],
      "option '-a, --approaches <ids>' argument ' , ' is invalid. expected comma-separated approach ids.",
    ],
    [
      ["compare", "--new-tokens", "-1"],
      "option '-n, --new-tokens <n>' argument '-1' is invalid. expected an integer ≥ 1.",
    ],
    [["compare", "--prompt", ""], "option '-p, --prompt <text>' argument '' is invalid. expected non-empty text."],
    [
      ["compare", "--weight-storage", "f16"],
      `option '-w, --weight-storage <kind>' argument 'f16' is invalid. Allowed choices are ${WEIGHT_STORAGE_CHOICES.join(", ")}.`,
    ],
    [["generate", "--prompt", ""], "option '-p, --prompt <text>' argument '' is invalid. expected non-empty text."],
    [
      ["generate", "--prompt", "   "],
      "option '-p, --prompt <text>' argument '   ' is invalid. expected non-empty text.",
    ],
    [
      ["generate", "--prompt", "hi", "--temperature", "-1"],
      "option '-t, --temperature <t>' argument '-1' is invalid. expected a number ≥ 0 (0 = greedy).",
    ],
    [
      ["generate", "--prompt", "hi", "--temperature", "warm"],
      "option '-t, --temperature <t>' argument 'warm' is invalid. expected a number ≥ 0 (0 = greedy).",
    ],
    [
      ["generate", "--prompt", "hi", "--top-p", "0"],
      "option '--top-p <p>' argument '0' is invalid. expected a number in (0, 1].",
    ],
    [
      ["generate", "--prompt", "hi", "--top-k", "-3"],
      "option '--top-k <k>' argument '-3' is invalid. expected an integer ≥ 0.",
    ],
    [
      ["generate", "--prompt", "hi", "--repetition-penalty", "0"],
      "option '--repetition-penalty <r>' argument '0' is invalid. expected a number > 0.",
    ],
    [
      ["generate", "--prompt", "hi", "--seed", "-5"],
      "option '-s, --seed <n>' argument '-5' is invalid. expected an integer from 0 to 4294967295.",
    ],
    [
      ["generate", "--prompt", "hi", "--max-new-tokens", "0"],
      "option '-n, --max-new-tokens <n>' argument '0' is invalid. expected an integer ≥ 1.",
    ],
    [
      ["generate", "--prompt", "hi", "--stop", ""],
      "option '--stop <text...>' argument '' is invalid. expected non-empty text.",
    ],
    [["generate", "--promt", "hi"], "unknown option '--promt' (Did you mean --prompt?)"],
    [["generate"], "required option '-p, --prompt <text>' not specified"],
    [["generate", "--prompt", "hi", "--no-thinking"], "option '--no-thinking' needs --chat"],
    [["generate", "--prompt", "hi", "extra"], "too many arguments for 'generate'. Expected 0 arguments but got 1."],
    [["genrate", "--prompt", "hi"], "unknown command 'genrate' (Did you mean generate?)"],
    [
      ["inspect", "--backend", "gpu"],
      "option '-b, --backend <name>' argument 'gpu' is invalid. Allowed choices are tensorflow, wasm, cpu.",
    ],
    [
      ["make-model", "--seed", "-1"],
      "option '-s, --seed <n>' argument '-1' is invalid. expected an integer from 0 to 4294967295.",
    ],
    [
      ["make-model", "--preset", "qwen3-70b"],
      `option '-p, --preset <name>' argument 'qwen3-70b' is invalid. Allowed choices are ${Object.keys(PRESETS).join(", ")}.`,
    ],
    [["kernels", "lok"], "unknown command 'lok' (Did you mean lock?)"],
    [["make-model", "--out", ""], "option '-o, --out <dir>' argument '' is invalid. expected non-empty text."],
    [["compare", "--report", ""], "option '--report <file.html>' argument '' is invalid. expected non-empty text."],
    [["inspect", "--model", ""], "option '-m, --model <dir-or-id>' argument '' is invalid. expected non-empty text."],
  ])("%j", async (args, message) => {
    const r = await misuse(() => args);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(`fusekit: error: ${message} (see --help)\n`);
  });
});

describe("failures found before any work: exit 1, one line naming the path", () => {
  it.each([
    [
      "make-model --out <folder with a user's files>",
      (ws: string) => ["make-model", "--out", ws],
      "OutputPathError: {ws}: a folder that is not a checkpoint folder fusekit wrote is already there; refusing to replace it (choose another path)",
    ],
    [
      "… even with --force",
      (ws: string) => ["make-model", "--out", ws, "--force"],
      "OutputPathError: {ws}: a folder that is not a checkpoint folder fusekit wrote is already there; refusing to replace it (choose another path)",
    ],
    [
      "make-model --out .",
      () => ["make-model", "--out", "."],
      "OutputPathError: {ws}: a folder that is not a checkpoint folder fusekit wrote is already there; refusing to replace it (choose another path)",
    ],
    [
      "make-model --out <a user's file>",
      (ws: string) => ["make-model", "--out", path.join(ws, "notes.txt"), "--force"],
      "OutputPathError: {ws}/notes.txt: a file that is not a checkpoint folder fusekit wrote is already there; refusing to replace it (choose another path)",
    ],
    [
      "make-model --out below a file",
      (ws: string) => ["make-model", "--out", path.join(ws, "notes.txt", "model")],
      "OutputPathError: {ws}/notes.txt/model: cannot write here (ENOTDIR)",
    ],
    [
      "make-model --out /proc/nope (used to spin forever)",
      () => ["make-model", "--out", "/proc/nope"],
      "OutputPathError: /proc/nope: cannot create files in /proc (ENOENT)",
    ],
    [
      "make-model --out /etc/passwd",
      () => ["make-model", "--out", "/etc/passwd"],
      "OutputPathError: /etc/passwd: a file that is not a checkpoint folder fusekit wrote is already there; refusing to replace it (choose another path)",
    ],
    [
      "compare --report in a missing folder",
      () => ["compare", "--report", "/nonexistent/x.html"],
      "OutputPathError: /nonexistent/x.html: folder /nonexistent does not exist",
    ],
    [
      "compare --report <a user's HTML file>",
      (ws: string) => ["compare", "--report", path.join(ws, "page.html"), "--force"],
      "OutputPathError: {ws}/page.html: a file that is not a fusekit HTML report fusekit wrote is already there; refusing to replace it (choose another path)",
    ],
    [
      "compare --report <a folder>",
      (ws: string) => ["compare", "--report", path.join(ws, "photos")],
      "OutputPathError: {ws}/photos: a folder that is not a fusekit HTML report fusekit wrote is already there; refusing to replace it (choose another path)",
    ],
    [
      "compare --model /etc/passwd (same ConfigError as generate)",
      () => ["compare", "--model", "/etc/passwd"],
      "ConfigError: /etc/passwd: not a checkpoint directory (it does not exist or is not a folder)",
    ],
    [
      "generate --model /etc/passwd",
      () => ["generate", "--model", "/etc/passwd", "--prompt", "hi"],
      "ConfigError: /etc/passwd: not a checkpoint directory (it does not exist or is not a folder)",
    ],
    [
      "inspect --model <a folder without config.json>",
      (ws: string) => ["inspect", "--model", path.join(ws, "photos")],
      "ConfigError: {ws}/photos/config.json: file not found",
    ],
    [
      "kernels lock -o in a missing folder",
      () => ["kernels", "lock", "-o", "/nonexistent/dir/k.lock"],
      "OutputPathError: /nonexistent/dir/k.lock: folder /nonexistent/dir does not exist",
    ],
    [
      "kernels lock over a user's file named kernels.lock",
      () => ["kernels", "lock", "--force"],
      "OutputPathError: {ws}/kernels.lock: a file that is not a kernel lockfile fusekit wrote is already there; refusing to replace it (choose another path)",
    ],
    [
      "compare --report <a symlink to a user's file>",
      (ws: string) => {
        symlinkSync(path.join(ws, "notes.txt"), path.join(ws, "link.html"));
        return ["compare", "--report", path.join(ws, "link.html"), "--force"];
      },
      "OutputPathError: {ws}/link.html: a symlink that is not a fusekit HTML report fusekit wrote is already there; refusing to replace it (choose another path)",
    ],
    [
      "compare --report <a FIFO> (never opened, so never blocks)",
      (ws: string) => {
        execFileSync("mkfifo", [path.join(ws, "pipe.html")]);
        return ["compare", "--report", path.join(ws, "pipe.html"), "--force"];
      },
      "OutputPathError: {ws}/pipe.html: a special file that is not a fusekit HTML report fusekit wrote is already there; refusing to replace it (choose another path)",
    ],
    [
      "generate --model <a checkpoint without a tokenizer>",
      (ws: string) => {
        mkdirSync(path.join(ws, "ckpt"));
        writeFileSync(path.join(ws, "ckpt", "config.json"), JSON.stringify({ model_type: "qwen3" }));
        return ["generate", "--model", path.join(ws, "ckpt"), "--prompt", "hi"];
      },
      "TokenizerError: ",
    ],
    [
      "kernels lock of an unknown repo",
      (ws: string) => ["kernels", "lock", "nope/missing", "-o", path.join(ws, "k.lock")],
      "KernelRepositoryError: kernels lock: not in the hub: nope/missing (available: ",
    ],
  ])("%s", async (_, args, message) => {
    const r = await misuse(args);
    expect(r.code).toBe(1);
    expect(r.stderr.startsWith(`fusekit: ${message.replaceAll("{ws}", r.ws)}`), r.stderr).toBe(true);
  });

  it("FUSEKIT_DEBUG=1 adds the stack", async () => {
    const ws = userFolder();
    const r = await fusekit(["make-model", "--out", ws], { env: { FUSEKIT_DEBUG: "1" } });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^fusekit: OutputPathError: .*\nOutputPathError: .*\n\s+at /);
  });
});

describe("replacing only what fusekit wrote, and only with --force", () => {
  let ws: string;
  beforeAll(() => {
    ws = userFolder();
  });

  it("make-model into a new folder works; again refuses without --force; --force replaces it; user files stay", async () => {
    const out = path.join(ws, "models", "tiny"); // missing parents are created
    const userFiles = () =>
      ["notes.txt", "page.html", "kernels.lock", "photos/cat.jpg"]
        .map((f) => readFileSync(path.join(ws, f), "utf8"))
        .join("|");
    const mine = userFiles();
    expect((await fusekit(["make-model", "--out", out, "--seed", "1"])).code).toBe(0);
    const first = readFileSync(path.join(out, "model.safetensors"));

    const sum = folderChecksum(ws);
    const again = await fusekit(["make-model", "--out", out, "--seed", "2"]);
    expect(again.code).toBe(1);
    expect(again.stderr).toBe(
      `fusekit: OutputPathError: ${out}: a checkpoint folder is already there; pass --force (API: overwrite: true) to replace it\n`,
    );
    expect(folderChecksum(ws)).toBe(sum);

    const forced = await fusekit(["make-model", "--out", out, "--seed", "2", "--force"]);
    expect(forced.code).toBe(0);
    expect(readFileSync(path.join(out, "model.safetensors")).equals(first)).toBe(false); // seed 2's weights
    expect(userFiles()).toBe(mine);
  });

  it("a checkpoint folder that also holds a user's file is never replaced, even with --force", async () => {
    const out = path.join(ws, "models", "tiny");
    writeFileSync(path.join(out, "my-eval-results.csv"), "step,loss\n1,2.5\n");
    const sum = folderChecksum(ws);
    const r = await fusekit(["make-model", "--out", out, "--force"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${out}: a folder that is not a checkpoint folder fusekit wrote is already there`);
    expect(folderChecksum(ws)).toBe(sum);
  });

  it("quantize-fp8 --out its own --model folder (by any path) is refused, even with --force; nothing changes", async () => {
    const src = path.join(ws, "models", "fp8-src");
    expect((await fusekit(["make-model", "--out", src, "--seed", "3"])).code).toBe(0);
    symlinkSync(src, path.join(ws, "models", "link-to-src"));
    for (const out of [src, path.join(ws, "models", "link-to-src"), `${src}/.`]) {
      for (const force of [[], ["--force"]]) {
        const sum = folderChecksum(ws);
        const r = await fusekit(["quantize-fp8", "--model", src, "--out", out, "--block", "64,64", ...force]);
        expect(r.code).toBe(1);
        expect(r.stderr).toBe(
          `fusekit: OutputPathError: ${path.resolve(out)}: is the source checkpoint (--model); write the quantized copy to another folder\n`,
        );
        expect(folderChecksum(ws)).toBe(sum);
      }
    }
  });

  it("quantize-fp8 --out an existing checkpoint: refused without --force, replaced with it; a folder that only looks like one never", async () => {
    const src = path.join(ws, "models", "fp8-src");
    const out = path.join(ws, "models", "fp8-other");
    expect((await fusekit(["make-model", "--out", out, "--seed", "4"])).code).toBe(0);
    const sum = folderChecksum(ws);
    const r = await fusekit(["quantize-fp8", "--model", src, "--out", out, "--block", "64,64"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(
      `fusekit: OutputPathError: ${out}: a checkpoint folder is already there; pass --force (API: overwrite: true) to replace it\n`,
    );
    expect(folderChecksum(ws)).toBe(sum);
    const forced = await fusekit(["quantize-fp8", "--model", src, "--out", out, "--block", "64,64", "--force"]);
    expect(forced.code).toBe(0);
    expect(JSON.parse(readFileSync(path.join(out, "config.json"), "utf8")).quantization_config).toMatchObject({
      quant_method: "fp8",
    });
    // A project folder whose config.json names no model_type is not a checkpoint, whatever else is in it.
    const project = path.join(ws, "models", "project");
    mkdirSync(project);
    writeFileSync(path.join(project, "config.json"), '{"name": "my-project"}\n');
    writeFileSync(path.join(project, "model.safetensors"), "not weights\n");
    const sum2 = folderChecksum(ws);
    const p = await fusekit(["quantize-fp8", "--model", src, "--out", project, "--force"]);
    expect(p.code).toBe(1);
    expect(p.stderr).toContain(`${project}: a folder that is not a checkpoint folder fusekit wrote is already there`);
    expect(folderChecksum(ws)).toBe(sum2);
  });

  it("kernels lock: writes a new lockfile, refuses to replace it without --force, replaces it with --force", async () => {
    const lock = path.join(ws, "k.lock");
    expect((await fusekit(["kernels", "lock", "fusekit/rmsnorm", "-o", lock])).code).toBe(0);
    const text = readFileSync(lock, "utf8");
    const r = await fusekit(["kernels", "lock", "-o", lock]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(
      `fusekit: OutputPathError: ${lock}: a kernel lockfile is already there; pass --force (API: overwrite: true) to replace it\n`,
    );
    expect(readFileSync(lock, "utf8")).toBe(text);
    expect((await fusekit(["kernels", "lock", "-o", lock, "--force"])).code).toBe(0);
    expect(JSON.parse(readFileSync(lock, "utf8")).kernels.length).toBeGreaterThan(1);
  });
});

describe("compare end to end (piped, so never coloured)", () => {
  it("writes its report where allowed, without colour codes, and refuses to replace it without --force", async () => {
    const ws = userFolder();
    const report = path.join(ws, "report.html");
    const before = folderChecksum(ws);
    const args = ["compare", "--new-tokens", "2", "--rounds", "1", "--warmup", "0", "--wide", "--report", report];
    const r = await fusekit(args, {
      cwd: ws,
      timeoutMs: 600_000,
    });
    expect(r.code).toBe(0);
    expect(r.stdout).not.toContain("\x1b[");
    expect(r.stdout).toMatch(/^│ approach +│ max \|Δ logits\| +│/m);
    expect(r.stdout).toMatch(/│ speed vs original +│/m);
    expect(r.stdout).toMatch(/│ runtime fusion, then unfused +│.*│ too few rounds +│/m); // one round: no interval
    expect(r.stdout.trimEnd().split("\n").at(-1)).toBe(`report written to ${report}`);
    const html = readFileSync(report, "utf8");
    expect(html).toContain('<meta name="generator" content="fusekit compare">');
    rmSync(report);
    expect(folderChecksum(ws)).toBe(before); // the report is all it wrote
    writeFileSync(report, html);
    const again = await misuseIn(ws, ["compare", "--report", report]);
    expect(again.code).toBe(1);
    expect(again.stderr).toBe(
      `fusekit: OutputPathError: ${report}: a fusekit HTML report is already there; pass --force (API: overwrite: true) to replace it\n`,
    );
  });
});

describe("compare --approaches (piped JSON)", () => {
  it("runs the named approaches with the original as the reference, and gives each a speed verdict", async () => {
    const r = await fusekit(
      ["compare", "--approaches", "fused-kernel,fused-unfused", "--rounds", "6", "--new-tokens", "2", "--json"],
      { timeoutMs: 600_000 },
    );
    expect(r.code).toBe(0);
    const result = JSON.parse(r.stdout);
    expect(result.rows.map((row: { id: string }) => row.id)).toEqual(["original", "fused-unfused", "fused-kernel"]);
    expect([result.rounds, result.warmupRounds, result.timingGroups.length]).toEqual([6, 1, 1]);
    expect(result.rows[0].speedVerdict).toBe("reference");
    for (const row of result.rows.slice(1)) {
      expect(row.speed.decoderStack.relativeTime.samples).toBe(6);
      expect(row.speedVerdict).toMatch(/^(faster ×\d+\.\d\d|slower ×\d+\.\d\d|no measurable difference)$/);
    }
  });
});
