// Renders a comparison as a terminal table, JSON, or one self-contained HTML file (inline SVG, no network).
import { promises as fsp } from "node:fs";
import { plural, terminalTable, wrapText } from "./sections.js";
import type { WriteTarget } from "../io/atomic.js";
import type { ApproachResult, ComparisonResult } from "./types.js";
import type { Estimate } from "./stats.js";

/** Marks an HTML file as a fusekit report: only such a file is ever replaced by a new report. */
const GENERATOR_META = '<meta name="generator" content="fusekit compare">';

/** The rules for writing an HTML report: only a fusekit report is replaced, and only when asked. */
export const reportTarget = (overwrite = false): WriteTarget => ({
  kind: "fusekit HTML report",
  recognise: async (file) => {
    const h = await fsp.open(file, "r");
    try {
      const { buffer, bytesRead } = await h.read(Buffer.alloc(1024), 0, 1024, 0);
      return buffer.subarray(0, bytesRead).toString("utf8").includes(GENERATOR_META);
    } finally {
      await h.close();
    }
  },
  overwrite,
});

/** What each column of the HTML report's numbers table means (shown under it). */
export const COLUMN_LEGEND: [string, string][] = [
  ["max |Δ logits|", "largest absolute difference of the prompt logits from the original model (0 = identical)"],
  ["tolerance", "the largest |Δ logits| the approach may show and still pass"],
  ["greedy = original", "greedy tokens identical to those of the original model, out of the tokens generated"],
  [
    "prefill ms",
    "time to run the whole prompt once: median over the rounds (95% confidence interval of the median) — lower is better",
  ],
  [
    "decode tok/s",
    "new tokens per second while generating with the KV cache: median (95% confidence interval) — higher is better",
  ],
  [
    "decoder-stack ms/step",
    "time of the decoder layers alone per decode step (no embedding, no lm_head), where fusion acts: median (95% confidence interval) — lower is better",
  ],
  [
    "stack time ÷ original",
    "decoder-stack time divided by that of the original in the same round: median of the per-round ratios (95% confidence interval); below 1 is faster",
  ],
  [
    "speed vs original",
    "faster ×r / slower ×r (r: the median) when the whole 95% interval of the ratio is at least 5% from 1; otherwise no measurable difference",
  ],
  ["setup ms", "time of each step that gets the model ready (load, patch, fuse, kernelize)"],
  ["params MB", "tensor memory the loaded model holds"],
  ["live tensors", "tensors the loaded model holds"],
  ["user LOC", "lines of code a user writes for this approach (its recipe files)"],
  ["saves original layout", "savePretrained writes the original checkpoint layout back"],
  ["numeric verdict", "pass / FAIL against the tolerance, or error: … when the approach crashed"],
];

/** A median with its interval, or just the median when the rounds are too few for one; "–" when not measured. */
const fmtEstimate = (e: Estimate, digits = 1) =>
  !Number.isFinite(e.median)
    ? "–"
    : Number.isFinite(e.low)
      ? `${e.median.toFixed(digits)} (${e.low.toFixed(digits)}–${e.high.toFixed(digits)})`
      : e.median.toFixed(digits);
const relativeStack = (r: ApproachResult) =>
  r.speed ? fmtEstimate(r.speed.decoderStack.relativeTime, 2) : r.id === "original" && !r.error ? "1" : "–";
const fmtDiff = (x: number) => (x === 0 ? "0" : x.toExponential(2));
const yesNo = (b: boolean | null) => (b === null ? "n/a" : b ? "yes" : "no");
const mb = (bytes: number) => (bytes / 2 ** 20).toFixed(1);
const setupText = (s: Record<string, number>) =>
  Object.entries(s)
    .map(([k, v]) => `${k} ${v.toFixed(0)}`)
    .join(", ");
const pct = (x: number) => `${Math.round(x * 100)}%`;

const paint = (on: boolean, code: number, text: string) => (on ? `\x1b[${code}m${text}\x1b[0m` : text);
const verdictColor = (r: ApproachResult) => (r.pass ? 32 : r.error ? 35 : 31);
/** Green for faster, yellow for slower, default for the rest. */
const speedColor = (r: ApproachResult) =>
  ({ faster: 32, slower: 33 })[r.speed?.decoderStack.verdict as "faster" | "slower"] ?? 0;

// cli-table3 styles headers through @colors/colors, which turns itself off without a TTY (CI, pipes):
// headers are painted here so `color: true` means colour everywhere, and never cli-table3's red default.

/**
 * A table column: its heading (a shorter one for the compact layout where the full one would wrap a lot), its
 * cell, and whether the compact layout shows it (the approach column shows the id there, the label in full).
 */
interface Column {
  head: string;
  short?: string;
  compact: boolean;
  cell: (r: ApproachResult, color: boolean, compact: boolean) => string | number;
}

const APPROACH: Column = { head: "approach", compact: true, cell: (r, _, compact) => (compact ? r.id : r.label) };

const NUMBER_COLUMNS: Column[] = [
  { head: "max |Δ logits|", compact: true, cell: (r) => fmtDiff(r.maxAbsDiff) },
  { head: "greedy = orig", compact: true, cell: (r) => `${r.tokensIdentical}/${r.tokensTotal}` },
  { head: "prefill ms", compact: false, cell: (r) => fmtEstimate(r.prefillMs) },
  { head: "decode tok/s", compact: false, cell: (r) => fmtEstimate(r.decodeTokensPerSecond) },
  { head: "decoder-stack ms/step", compact: false, cell: (r) => fmtEstimate(r.decoderStackMs, 2) },
  { head: "stack time ÷ orig.", compact: true, cell: relativeStack },
  {
    head: "speed vs original",
    compact: true,
    cell: (r, color) => (speedColor(r) ? paint(color, speedColor(r), r.speedVerdict) : r.speedVerdict),
  },
  { head: "setup ms", compact: false, cell: (r) => setupText(r.setupMs) },
  { head: "params MB", compact: false, cell: (r) => mb(r.parameterBytes) },
  { head: "tensors", compact: false, cell: (r) => r.liveTensors },
  { head: "user LOC", compact: false, cell: (r) => r.userCodeLines },
  { head: "saves orig.", compact: false, cell: (r) => yesNo(r.savesOriginalLayout) },
  // compact: the verdict's word ("pass (Δ 0 ≤ 1e-6)" repeats the Δ column); a failure or crash says it all
  {
    head: "numeric verdict",
    short: "verdict",
    compact: true,
    cell: (r, color, compact) => paint(color, verdictColor(r), compact && r.pass ? "pass" : r.verdict),
  },
];

const PROPERTY_COLUMNS: Column[] = [
  {
    head: "applies to a loaded model",
    short: "on a loaded model",
    compact: true,
    cell: (r) => yesNo(r.properties!.appliesToLoadedModel),
  },
  { head: "classes per fusion", compact: true, cell: (r) => r.properties!.classesPerFusion },
  {
    head: "needs weight conversion",
    short: "converts weights",
    compact: true,
    cell: (r) => yesNo(r.properties!.needsWeightConversion),
  },
  {
    head: "reversible in place",
    short: "undone in place",
    compact: true,
    cell: (r) => yesNo(r.properties!.reversibleInPlace),
  },
  {
    head: "state-dict layout unchanged",
    short: "same state dict",
    compact: true,
    cell: (r) => yesNo(r.properties!.stateDictLayoutUnchanged),
  },
  { head: "survives save → reload", compact: true, cell: (r) => yesNo(r.properties!.survivesSaveReload) },
  {
    head: "lines the user writes per fusion",
    short: "user lines per fusion",
    compact: true,
    cell: (r) => r.properties!.linesPerFusion,
  },
];

/** The terminal layout: every column at its natural width, or the compact columns fitted to `width`. */
interface Layout {
  color: boolean;
  compact: boolean;
  width: number;
}

/** One row per given approach, in the layout's columns. */
function approachTable(rows: ApproachResult[], columns: Column[], { color, compact, width }: Layout): string {
  const shown = [APPROACH, ...columns.filter((c) => c.compact || !compact)];
  const head = shown.map((c) => paint(color, 1, compact ? (c.short ?? c.head) : c.head));
  return terminalTable(
    head,
    rows.map((r) => shown.map((c) => c.cell(r, color, compact))),
    { width },
  );
}

/** How the speed figures were measured and what the verdicts mean, in one paragraph. */
export function timingNote(result: ComparisonResult): string {
  const groups = result.timingGroups.length;
  const grouping =
    groups > 1 ? ` (in ${groups} groups, each loaded beside the original: not all fit in memory at once)` : "";
  return (
    `${result.warmupRounds} warm-up + ${plural(result.rounds, "timed round")}, approaches interleaved in an order rotated ` +
    `each round${grouping}; figures are medians (${pct(result.confidence)} confidence interval). Speed vs ` +
    `original: decoder-stack time paired by round; faster / slower when the ${pct(result.confidence)} interval ` +
    `of the ratio lies at least ${pct(result.minEffect)} from 1.`
  );
}

/** One line counting the speed verdicts. */
export function speedSummary(result: ComparisonResult): string {
  const counts = new Map<string, number>();
  for (const r of result.rows)
    if (r.speed) counts.set(r.speed.decoderStack.verdict, (counts.get(r.speed.decoderStack.verdict) ?? 0) + 1);
  const parts = ["faster", "slower", "no measurable difference", "too few rounds"]
    .filter((v) => counts.has(v))
    .map((v) => `${counts.get(v)} ${v}`);
  return `Decoder-stack speed vs original: ${parts.join(", ") || "nothing compared"}.`;
}

/** How `terminalReport` lays its tables out. */
export interface TerminalReportOptions {
  /** ANSI colour (the CLI: a TTY without NO_COLOR). */
  color?: boolean;
  /**
   * "all" (default): every column, each as wide as its text, approaches by label. "compact": the columns that
   * decide (Δ, greedy tokens, decoder-stack ratio and verdict, the properties), approaches by id, fitted to
   * `width`.
   */
  columns?: "all" | "compact";
  /** Terminal columns the tables may take (cells wrap at spaces to fit); default: no limit. */
  width?: number;
}

/** The comparison as terminal tables, one row per approach, with how it was measured and a summary. */
export function terminalReport(
  result: ComparisonResult,
  { color = false, columns = "all", width = Infinity }: TerminalReportOptions = {},
): string {
  const layout = { color, compact: columns === "compact", width };
  const prose = (text: string) => wrapText(text, width);
  return [
    prose(
      `model ${result.model} · backend ${result.backend} · ${result.weightStorage} weights · ` +
        `prompt ${plural(result.promptTokens, "token")} · ${plural(result.newTokens, "new token")}`,
    ),
    prose(timingNote(result)),
    approachTable(result.rows, NUMBER_COLUMNS, layout),
    "Properties, found by trying each one on the model:",
    approachTable(
      result.rows.filter((r) => r.properties),
      PROPERTY_COLUMNS,
      layout,
    ),
    ...(layout.compact
      ? [prose("Approach ids: `fusekit compare --help` says what each one is; --wide shows every column and label.")]
      : []),
    prose(speedSummary(result)),
    paint(color, result.pass ? 32 : 31, summary(result)),
  ].join("\n");
}

/** One line: all passed, or how many crashed and how many broke their tolerance. */
function summary(result: ComparisonResult): string {
  if (result.pass) return "All approaches within tolerance.";
  const crashed = result.rows.filter((r) => r.error).length;
  const failed = result.rows.filter((r) => !r.pass && !r.error).length;
  const parts = [
    crashed && `${crashed} approach${crashed > 1 ? "es" : ""} crashed (verdict "error: …")`,
    failed && `${failed} broke the numeric tolerance`,
  ];
  return `FAIL: ${parts.filter(Boolean).join("; ")}.`;
}

const esc = (s: string) =>
  s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);

/** The smallest 1, 2 or 5 × 10^k at or above `v`: a round end for a value axis. */
function roundUp(v: number): number {
  const p = 10 ** Math.floor(Math.log10(v));
  return [1, 2, 5, 10].map((m) => m * p).find((c) => c >= v * (1 - 1e-12))!;
}

const tickText = (v: number) => String(Number(v.toPrecision(3)));

/** A bar's value: its median and the ends of its interval (NaN ends: no interval, no whisker). */
export interface BarValue {
  median: number;
  low: number;
  high: number;
}

/** A vertical line across a chart at a value (e.g. the original's ×1), with an optional shaded band around it. */
export interface ChartReference {
  at: number;
  label: string;
  band?: [number, number];
}

/**
 * A horizontal bar chart with confidence-interval whiskers and a value axis (ticks, unit, which way is
 * better), as an inline SVG string; `note` replaces a bar's value text, `reference` draws a line (and band).
 */
export function barChart(
  title: string,
  unit: string,
  better: "higher" | "lower",
  bars: { label: string; value: BarValue; note?: string }[],
  reference?: ChartReference,
): string {
  const rowH = 26,
    labelW = 320,
    plotW = 420,
    top = reference ? 44 : 30, // room for the reference's label under the title
    ticks = 4;
  const reach = (v: BarValue) => (Number.isFinite(v.high) ? Math.max(v.high, v.median) : v.median);
  const max = roundUp(
    Math.max(
      1e-9,
      ...bars.map((b) => reach(b.value)).filter(Number.isFinite),
      reference?.at ?? 0,
      reference?.band?.[1] ?? 0,
    ),
  );
  const x = (v: number) => labelW + (v / max) * plotW;
  const axisY = top + bars.length * rowH + 4;
  const rows = bars
    .map((b, i) => {
      const y = top + i * rowH;
      const v = b.value;
      const whisker = Number.isFinite(v.low)
        ? `<line class="whisker" x1="${x(v.low).toFixed(1)}" x2="${x(v.high).toFixed(1)}" y1="${y + 12}" y2="${y + 12}"/>`
        : "";
      const text = b.note ?? `${v.median.toFixed(1)} ${unit}`;
      return [
        `<text x="${labelW - 8}" y="${y + 16}" text-anchor="end">${esc(b.label)}</text>`,
        `<rect class="bar" x="${labelW}" y="${y + 4}" width="${(x(v.median) - labelW).toFixed(1)}" height="16"/>`,
        whisker,
        `<text x="${(x(reach(v)) + 6).toFixed(1)}" y="${y + 16}">${esc(text)}</text>`,
      ].join("");
    })
    .join("\n");
  const [band, line] = reference ? referenceMarker(reference, x, top, axisY) : ["", ""];
  const tickMarks = Array.from({ length: ticks + 1 }, (_, k) => {
    const v = (max * k) / ticks,
      tx = x(v).toFixed(1);
    return `<line class="axis" x1="${tx}" x2="${tx}" y1="${axisY}" y2="${axisY + 5}"/><text x="${tx}" y="${axisY + 18}" text-anchor="middle">${tickText(v)}</text>`;
  }).join("");
  const axis = [
    `<line class="axis" x1="${labelW}" x2="${labelW}" y1="${top}" y2="${axisY}"/>`,
    `<line class="axis" x1="${labelW}" x2="${labelW + plotW}" y1="${axisY}" y2="${axisY}"/>`,
    tickMarks,
    `<text class="axis-title" x="${labelW + plotW / 2}" y="${axisY + 34}" text-anchor="middle">${esc(unit)} — ${better} is better</text>`,
  ].join("\n");
  return `<svg class="chart" role="img" aria-label="${esc(`${title} (${unit}, ${better} is better)`)}" xmlns="http://www.w3.org/2000/svg" width="${labelW + plotW + 190}" height="${axisY + 44}">
<text x="0" y="18" class="title">${esc(title)} (${esc(unit)}, ${better} is better)</text>
${band}
${rows}
${line}
${axis}
</svg>`;
}

/** A chart's reference value: the band to draw behind the bars, and the labelled line to draw over them. */
function referenceMarker(
  reference: ChartReference,
  x: (v: number) => number,
  top: number,
  bottom: number,
): [band: string, line: string] {
  const at = x(reference.at).toFixed(1);
  const band = reference.band
    ? `<rect class="band" x="${x(reference.band[0]).toFixed(1)}" y="${top}" width="${(x(reference.band[1]) - x(reference.band[0])).toFixed(1)}" height="${bottom - top}"/>`
    : "";
  return [
    band,
    `<line class="reference" x1="${at}" x2="${at}" y1="${top - 4}" y2="${bottom}"/>` +
      `<text class="reference-label" x="${(x(reference.at) + 4).toFixed(1)}" y="${top - 6}">${esc(reference.label)}</text>`,
  ];
}

/** The decoder-stack time of each row relative to the original's, with its interval and verdict. */
function relativeStackChart(result: ComparisonResult, rows: ApproachResult[]): string {
  const bars = rows.map((r) =>
    r.speed
      ? {
          label: r.label,
          value: r.speed.decoderStack.relativeTime,
          note: `${r.speed.decoderStack.relativeTime.median.toFixed(2)} · ${r.speed.decoderStack.text}`,
        }
      : { label: r.label, value: { median: 1, low: NaN, high: NaN }, note: "1 · reference" },
  );
  return barChart("Decoder-stack time per decode step, relative to the original", "× the original's", "lower", bars, {
    at: 1,
    label: "original",
    band: [1 / (1 + result.minEffect), 1 + result.minEffect],
  });
}

export function htmlReport(result: ComparisonResult): string {
  const row = (r: ApproachResult) =>
    `<tr class="${r.pass ? "pass" : "fail"}"><td>${esc(r.label)}</td><td>${fmtDiff(r.maxAbsDiff)}</td><td>${r.tolerance.toExponential(0)}</td><td>${r.tokensIdentical}/${r.tokensTotal}</td><td>${fmtEstimate(r.prefillMs)}</td><td>${fmtEstimate(r.decodeTokensPerSecond)}</td><td>${fmtEstimate(r.decoderStackMs, 2)}</td><td>${relativeStack(r)}</td><td class="speed">${esc(r.speedVerdict)}</td><td>${esc(setupText(r.setupMs))}</td><td>${mb(r.parameterBytes)}</td><td>${r.liveTensors}</td><td>${r.userCodeLines}</td><td>${yesNo(r.savesOriginalLayout)}</td><td>${esc(r.verdict)}</td></tr>`;
  const prop = (r: ApproachResult) => {
    const p = r.properties;
    if (!p) return "";
    return `<tr><td>${esc(r.label)}</td><td>${yesNo(p.appliesToLoadedModel)}</td><td>${p.classesPerFusion}</td><td>${yesNo(p.needsWeightConversion)}</td><td>${yesNo(p.reversibleInPlace)}</td><td>${yesNo(p.stateDictLayoutUnchanged)}</td><td>${yesNo(p.survivesSaveReload)}</td><td>${p.linesPerFusion}</td></tr>`;
  };
  const ok = result.rows.filter((r) => !r.error);
  const level = pct(result.confidence);
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">${GENERATOR_META}<title>fusekit comparison — ${esc(result.model)}</title>
<style>
body{font:14px system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child,th:first-child{text-align:left}
tr.fail td{background:#fdd}tr.pass td:last-child{color:#060}
.chart text{font:12px system-ui,sans-serif}.chart .title{font-weight:bold}.bar{fill:#4a7bd0}.whisker{stroke:#222;stroke-width:1.5}
.axis{stroke:#555;stroke-width:1}.chart .axis-title{fill:#444}.reference{stroke:#c33;stroke-width:1.5}.band{fill:#ddd;opacity:.6}
dl.legend{display:grid;grid-template-columns:max-content auto;gap:2px 12px}dl.legend dt{font-weight:bold}dl.legend dd{margin:0}
</style></head><body>
<h1>fusekit: runtime fusion vs patch mapping</h1>
<p>Model <code>${esc(result.model)}</code>, backend <code>${esc(result.backend)}</code>, ${esc(result.weightStorage)} weights, prompt of ${plural(result.promptTokens, "token")}, ${plural(result.newTokens, "new token")}. Generated ${esc(result.date)}.</p>
<p>${esc(timingNote(result))}</p>
<p><strong>${esc(summary(result))}</strong> ${esc(speedSummary(result))}</p>
<h2>Speed</h2>
<p>Where fusion acts: the decoder layers' time per decode step, each approach's divided by the original's in the same round. Bars are the median ratio, whiskers its ${level} confidence interval; the shaded band is ±${pct(result.minEffect)}, inside which no difference is claimed.</p>
${relativeStackChart(result, ok)}
<p>Absolute figures: bars are medians over the rounds, whiskers the ${level} confidence interval of the median.</p>
${barChart(
  "Prefill latency",
  "ms",
  "lower",
  ok.map((r) => ({ label: r.label, value: r.prefillMs })),
)}
${barChart(
  "Decode throughput",
  "tokens/s",
  "higher",
  ok.map((r) => ({ label: r.label, value: r.decodeTokensPerSecond })),
)}
<h2>Numbers</h2>
<table id="numbers"><thead><tr><th>approach</th><th>max |Δ logits|</th><th>tolerance</th><th>greedy = original</th><th>prefill ms</th><th>decode tok/s</th><th>decoder-stack ms/step</th><th>stack time ÷ original</th><th>speed vs original</th><th>setup ms</th><th>params MB</th><th>live tensors</th><th>user LOC</th><th>saves original layout</th><th>numeric verdict</th></tr></thead>
<tbody>${result.rows.map(row).join("\n")}</tbody></table>
<dl class="legend">${COLUMN_LEGEND.map(([k, v]) => `<dt>${esc(k)}</dt><dd>${esc(v)}</dd>`).join("")}</dl>
<h2>Properties (found by trying them)</h2>
<table id="properties"><thead><tr><th>approach</th><th>applies to a loaded model</th><th>classes per fusion</th><th>needs weight conversion</th><th>reversible in place</th><th>state-dict layout unchanged</th><th>survives save → reload</th><th>lines the user writes per fusion</th></tr></thead>
<tbody>${result.rows.map(prop).join("\n")}</tbody></table>
</body></html>
`;
}
