// The comparison's renderings: colour only when asked (the CLI asks on a TTY without NO_COLOR), compact
// tables with a plain header, crashed rows said as errors, and HTML charts with axes, units and direction.
import { afterAll, describe, expect, it } from "vitest";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { COLUMN_LEGEND, barChart, htmlReport, reportTarget, terminalReport } from "../src/compare/report.js";
import { useColor } from "../src/cli/common.js";
import type { ApproachResult, ComparisonResult } from "../src/compare/types.js";

const range = (median: number, min: number, max: number) => ({ median, min, max });
const row = (over: Partial<ApproachResult>): ApproachResult => ({
  id: "original",
  label: "original",
  tolerance: 0,
  maxAbsDiff: 0,
  tokensIdentical: 4,
  tokensTotal: 4,
  prefillMs: range(12, 10, 15),
  decodeTokensPerSecond: range(40, 35, 44),
  decoderStackMs: range(8, 7, 9),
  setupMs: { load: 100 },
  parameterBytes: 2 ** 20,
  liveTensors: 10,
  userCodeLines: 0,
  savesOriginalLayout: true,
  pass: true,
  verdict: "pass (Δ 0 ≤ 0e+0)",
  ...over,
});
const result = (rows: ApproachResult[]): ComparisonResult => ({
  date: "2026-01-01T00:00:00.000Z",
  model: "/m",
  backend: "wasm",
  weightStorage: "f32",
  prompt: "p",
  promptTokens: 5,
  newTokens: 4,
  repeats: 3,
  rows,
  pass: rows.every((r) => r.pass),
});
const crashed = row({
  id: "x",
  label: "broken recipe",
  pass: false,
  error: "Error: boom",
  verdict: "error: Error: boom",
  maxAbsDiff: Infinity,
});

const tmp = mkdtempSync(path.join(os.tmpdir(), "fusekit-report-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe("terminal report", () => {
  it("has no escape codes unless colour is asked for, and never a red header", () => {
    const plain = terminalReport(result([row({}), crashed]));
    expect(plain).not.toContain("\x1b[");
    const coloured = terminalReport(result([row({}), crashed]), { color: true });
    expect(coloured).toContain("\x1b[1mapproach\x1b[0m"); // bold header, with or without a TTY
    const header = coloured.split("\n").find((l) => l.includes("approach"))!;
    expect(header).not.toContain("\x1b[31m"); // not red (cli-table3's default)
    expect(coloured).toContain("\x1b[32mpass (Δ 0 ≤ 0e+0)\x1b[0m");
  });

  it("is compact: no separator line between body rows", () => {
    const lines = terminalReport(result([row({}), row({ id: "b", label: "b" }), row({ id: "c", label: "c" })])).split(
      "\n",
    );
    const start = lines.findIndex((l) => l.includes("│ original"));
    expect(lines[start + 1]).toContain("│ b");
    expect(lines[start + 2]).toContain("│ c");
  });

  it("a crashed approach says error, and the summary counts it apart from tolerance failures", () => {
    const text = terminalReport(
      result([
        row({}),
        crashed,
        row({ id: "f", label: "off", pass: false, verdict: "FAIL (Δ 1e-2 vs 1e-6, 4/4 tokens)" }),
      ]),
    );
    expect(text).toContain("error: Error: boom");
    expect(text.split("\n").at(-1)).toBe(
      'FAIL: 1 approach crashed (verdict "error: …"); 1 broke the numeric tolerance.',
    );
  });

  it("useColor: only on a TTY, never with NO_COLOR", () => {
    const saved = process.env.NO_COLOR;
    try {
      delete process.env.NO_COLOR;
      expect([useColor({ isTTY: true }), useColor({ isTTY: false }), useColor({})]).toEqual([true, false, false]);
      process.env.NO_COLOR = "1";
      expect(useColor({ isTTY: true })).toBe(false);
    } finally {
      if (saved === undefined) delete process.env.NO_COLOR;
      else process.env.NO_COLOR = saved;
    }
  });
});

describe("HTML report", () => {
  it("charts have a value axis with round ticks, the unit and which way is better", () => {
    const svg = barChart("Prefill latency", "ms", "lower", [
      { label: "a", value: range(30, 20, 37) },
      { label: "b", value: range(10, 9, 11) },
    ]);
    expect(svg).toContain("Prefill latency (ms, lower is better)");
    expect(svg).toContain("ms — lower is better");
    // max 37 rounds up to 50: ticks 0, 12.5, 25, 37.5, 50 at x = 320 + v/50·420
    const ticks = [...svg.matchAll(/<text x="([\d.]+)" y="\d+" text-anchor="middle">([\d.]+)<\/text>/g)].map((m) => [
      Number(m[1]),
      m[2],
    ]);
    expect(ticks).toEqual([
      [320, "0"],
      [425, "12.5"],
      [530, "25"],
      [635, "37.5"],
      [740, "50"],
    ]);
    // bar a: median 30 → width 30/50·420 = 252
    expect(svg).toContain('<rect class="bar" x="320" y="34" width="252.0" height="16"/>');
  });

  it("explains every column of the numbers table, and says higher is better for throughput", () => {
    const html = htmlReport(result([row({}), crashed]));
    for (const [name, text] of COLUMN_LEGEND)
      expect(html).toContain(`<dt>${name.replace(/</g, "&lt;")}</dt><dd>${text}</dd>`);
    expect(html).toContain("Decode throughput (tokens/s, higher is better)");
    expect(html).toContain("1 approach crashed (verdict &quot;error: …&quot;)");
  });

  it("reportTarget recognises a report fusekit wrote, not a user's HTML page", async () => {
    const mine = path.join(tmp, "report.html");
    const theirs = path.join(tmp, "page.html");
    writeFileSync(mine, htmlReport(result([row({})])));
    writeFileSync(theirs, "<!doctype html><title>my page</title>");
    const t = reportTarget();
    expect([await t.recognise(mine), await t.recognise(theirs)]).toEqual([true, false]);
  });
});
