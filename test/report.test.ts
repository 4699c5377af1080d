// The comparison's renderings: colour only when asked (the CLI asks on a TTY without NO_COLOR), compact
// tables with a plain header, crashed rows said as errors, and HTML charts with axes, units and direction.
import { afterAll, describe, expect, it } from "vitest";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { COLUMN_LEGEND, barChart, htmlReport, reportTarget, terminalReport } from "../src/compare/report.js";
import { compareSpeed } from "../src/compare/stats.js";
import { useColor } from "../src/cli/common.js";
import type { ApproachResult, ComparisonResult } from "../src/compare/types.js";

const estimate = (median: number, low: number, high: number) => ({ median, low, high, coverage: 0.965, samples: 15 });
const range = (median: number, low: number, high: number) => ({ median, low, high });
const row = (over: Partial<ApproachResult>): ApproachResult => ({
  id: "original",
  label: "original",
  tolerance: 0,
  maxAbsDiff: 0,
  tokensIdentical: 4,
  tokensTotal: 4,
  prefillMs: estimate(12, 10, 15),
  decodeTokensPerSecond: estimate(40, 35, 44),
  decoderStackMs: estimate(8, 7, 9),
  timings: { prefillMs: [], decodeTokensPerSecond: [], decoderStackMs: [] },
  speedVerdict: "reference",
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
  rounds: 15,
  warmupRounds: 1,
  confidence: 0.95,
  minEffect: 0.05,
  timingGroups: [rows.map((r) => r.id)],
  rows,
  pass: rows.every((r) => r.pass),
});
const crashed = row({
  id: "x",
  label: "broken recipe",
  pass: false,
  error: "Error: boom",
  verdict: "error: Error: boom",
  speedVerdict: "",
  maxAbsDiff: Infinity,
});

/** A row whose decoder stack took `factor`× less time than the original's in each of 15 rounds. */
const timedRow = (id: string, label: string, factor: number): ApproachResult => {
  const original = Array.from({ length: 15 }, (_, i) => 8 + (i % 5) * 0.1);
  const stack = original.map((ms, i) => (ms / factor) * (1 + ((i % 3) - 1) * 0.01));
  const speed = {
    prefill: compareSpeed(original, original, "time"),
    decode: compareSpeed(original, original, "time"),
    decoderStack: compareSpeed(original, stack, "time"),
  };
  return row({
    id,
    label,
    speed,
    speedVerdict: speed.decoderStack.text,
    decoderStackMs: estimate(8 / factor, 7 / factor, 9 / factor),
  });
};

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

  it("shows each row's speed verdict against the original, apart from the numeric verdict, and how it was measured", () => {
    const text = terminalReport(
      result([row({}), timedRow("k", "with kernel", 2), timedRow("u", "unfused", 1), timedRow("s", "slow", 0.8)]),
    );
    const header = text.split("\n").find((l) => l.includes("│ approach"))!;
    expect(header).toMatch(/│ stack time ÷ orig\. +│ speed vs original +│/);
    expect(header).toMatch(/│ numeric verdict +│$/);
    const line = (label: string) => text.split("\n").find((l) => l.startsWith(`│ ${label} `))!;
    expect(line("original")).toMatch(/│ 1 +│ reference +│/);
    expect(line("with kernel")).toMatch(/│ 0\.50 \(0\.49–0\.51\) +│ faster ×2\.00 +│/);
    expect(line("unfused")).toMatch(/│ no measurable difference +│/);
    expect(line("slow")).toMatch(/│ slower ×1\.25 +│/);
    for (const label of ["with kernel", "unfused", "slow"]) expect(line(label)).toContain("│ pass (Δ 0 ≤ 0e+0) ");
    expect(line("original")).toContain("│ 12.0 (10.0–15.0) │ 40.0 (35.0–44.0) │ 8.00 (7.00–9.00)");
    expect(text).toContain(
      "1 warm-up + 15 timed rounds, approaches interleaved in an order rotated each round; figures are medians (95% confidence interval).",
    );
    expect(text).toContain("faster / slower when the 95% interval of the ratio lies at least 5% from 1.");
    expect(text.split("\n").at(-2)).toBe(
      "Decoder-stack speed vs original: 1 faster, 1 slower, 1 no measurable difference.",
    );
    const coloured = terminalReport(result([row({}), timedRow("k", "with kernel", 2)]), { color: true });
    expect(coloured).toContain("\x1b[32mfaster ×2.00\x1b[0m");
  });

  it("says when the approaches were timed in groups, and shows a median alone when the rounds give no interval", () => {
    const few = {
      ...result([row({ prefillMs: { ...estimate(12, NaN, NaN), coverage: 0 } }), row({ id: "b", label: "b" })]),
      timingGroups: [
        ["original", "a"],
        ["original", "b"],
      ],
    };
    const text = terminalReport(few);
    expect(text).toContain("(in 2 groups, each loaded beside the original: not all fit in memory at once)");
    expect(text.split("\n").find((l) => l.startsWith("│ original "))).toMatch(/│ 12\.0 +│ 40\.0 \(35\.0–44\.0\) │/);
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
  it("charts the decoder-stack time relative to the original, with its interval, the ×1 line and the ±5% band", () => {
    const html = htmlReport(result([row({}), timedRow("k", "with kernel", 2), timedRow("u", "unfused", 1)]));
    const chart = html.match(/<svg[^>]*aria-label="Decoder-stack time per decode step[^"]*"[\s\S]*?<\/svg>/)![0];
    expect(chart).toContain("relative to the original (× the original&#39;s, lower is better)");
    expect(chart).toContain("0.50 · faster ×2.00");
    expect(chart).toContain("1.00 · no measurable difference");
    expect(chart).toContain("1 · reference");
    expect(chart.match(/<rect class="bar"/g)!.length).toBe(3);
    expect(chart).toMatch(/<line class="reference"/);
    // axis 0 … 2 (1.05 rounds up to 2) over 420 px from x = 320: the band spans 1/1.05 … 1.05
    const band = /<rect class="band" x="([\d.]+)" y="\d+" width="([\d.]+)"/.exec(chart)!;
    expect(Number(band[1])).toBeCloseTo(320 + (420 * (1 / 1.05)) / 2, 0);
    expect(Number(band[1]) + Number(band[2])).toBeCloseTo(320 + (420 * 1.05) / 2, 0);
    expect(html).toContain("<th>speed vs original</th>");
    expect(html).toContain('<td class="speed">faster ×2.00</td>');
  });

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
