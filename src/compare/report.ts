// Renders a comparison as a terminal table, JSON, or one self-contained HTML file (inline SVG, no network).
import Table from "cli-table3";
import type { ApproachResult, ComparisonResult, Range } from "./types.js";

const fmtRange = (r: Range, digits = 1) => `${r.median.toFixed(digits)} (${r.min.toFixed(digits)}–${r.max.toFixed(digits)})`;
const fmtDiff = (x: number) => (x === 0 ? "0" : x.toExponential(2));
const yesNo = (b: boolean | null) => (b === null ? "n/a" : b ? "yes" : "no");
const mb = (bytes: number) => (bytes / 2 ** 20).toFixed(1);
const setupText = (s: Record<string, number>) => Object.entries(s).map(([k, v]) => `${k} ${v.toFixed(0)}`).join(", ");

export function terminalReport(result: ComparisonResult): string {
  const main = new Table({
    head: ["approach", "max |Δ logits|", "greedy = orig", "prefill ms", "decode tok/s", "decoder-stack ms/step", "setup ms", "params MB", "tensors", "user LOC", "saves orig.", "verdict"],
    wordWrap: true,
  });
  for (const r of result.rows) {
    main.push([r.label, fmtDiff(r.maxAbsDiff), `${r.tokensIdentical}/${r.tokensTotal}`, fmtRange(r.prefillMs), fmtRange(r.decodeTokensPerSecond), fmtRange(r.decoderStackMs, 2), setupText(r.setupMs), mb(r.parameterBytes), r.liveTensors, r.userCodeLines, yesNo(r.savesOriginalLayout), r.verdict]);
  }
  const props = new Table({
    head: ["approach", "applies to a loaded model", "classes per fusion", "needs weight conversion", "reversible in place", "state-dict layout unchanged", "survives save → reload", "lines the user writes per fusion"],
  });
  for (const r of result.rows) {
    const p = r.properties;
    if (!p) continue;
    props.push([r.label, yesNo(p.appliesToLoadedModel), p.classesPerFusion, yesNo(p.needsWeightConversion), yesNo(p.reversibleInPlace), yesNo(p.stateDictLayoutUnchanged), yesNo(p.survivesSaveReload), p.linesPerFusion]);
  }
  return [
    `model ${result.model} · backend ${result.backend} · ${result.weightStorage} weights · prompt ${result.promptTokens} tokens · ${result.newTokens} new tokens · median of ${result.repeats} (min–max)`,
    main.toString(),
    "Properties, found by trying each one on the model:",
    props.toString(),
    result.pass ? "All approaches within tolerance." : "FAIL: at least one approach broke its numeric tolerance.",
  ].join("\n");
}

const esc = (s: string) => s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);

/** A horizontal bar chart with min–max whiskers, as an inline SVG string. */
export function barChart(title: string, unit: string, bars: { label: string; value: Range }[]): string {
  const rowH = 26, labelW = 320, plotW = 420, top = 30;
  const max = Math.max(1e-9, ...bars.map((b) => b.value.max));
  const x = (v: number) => labelW + (v / max) * plotW;
  const h = top + bars.length * rowH + 10;
  const rows = bars
    .map((b, i) => {
      const y = top + i * rowH;
      return [
        `<text x="${labelW - 8}" y="${y + 16}" text-anchor="end">${esc(b.label)}</text>`,
        `<rect class="bar" x="${labelW}" y="${y + 4}" width="${(x(b.value.median) - labelW).toFixed(1)}" height="16"/>`,
        `<line class="whisker" x1="${x(b.value.min).toFixed(1)}" x2="${x(b.value.max).toFixed(1)}" y1="${y + 12}" y2="${y + 12}"/>`,
        `<text x="${(x(b.value.max) + 6).toFixed(1)}" y="${y + 16}">${b.value.median.toFixed(1)} ${esc(unit)}</text>`,
      ].join("");
    })
    .join("\n");
  return `<svg class="chart" role="img" aria-label="${esc(title)}" xmlns="http://www.w3.org/2000/svg" width="${labelW + plotW + 110}" height="${h}">
<text x="0" y="18" class="title">${esc(title)}</text>
${rows}
</svg>`;
}

export function htmlReport(result: ComparisonResult): string {
  const row = (r: ApproachResult) =>
    `<tr class="${r.pass ? "pass" : "fail"}"><td>${esc(r.label)}</td><td>${fmtDiff(r.maxAbsDiff)}</td><td>${r.tolerance.toExponential(0)}</td><td>${r.tokensIdentical}/${r.tokensTotal}</td><td>${fmtRange(r.prefillMs)}</td><td>${fmtRange(r.decodeTokensPerSecond)}</td><td>${fmtRange(r.decoderStackMs, 2)}</td><td>${esc(setupText(r.setupMs))}</td><td>${mb(r.parameterBytes)}</td><td>${r.liveTensors}</td><td>${r.userCodeLines}</td><td>${yesNo(r.savesOriginalLayout)}</td><td>${esc(r.verdict)}</td></tr>`;
  const prop = (r: ApproachResult) => {
    const p = r.properties;
    if (!p) return "";
    return `<tr><td>${esc(r.label)}</td><td>${yesNo(p.appliesToLoadedModel)}</td><td>${p.classesPerFusion}</td><td>${yesNo(p.needsWeightConversion)}</td><td>${yesNo(p.reversibleInPlace)}</td><td>${yesNo(p.stateDictLayoutUnchanged)}</td><td>${yesNo(p.survivesSaveReload)}</td><td>${p.linesPerFusion}</td></tr>`;
  };
  const ok = result.rows.filter((r) => !r.error);
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>fusekit comparison — ${esc(result.model)}</title>
<style>
body{font:14px system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child,th:first-child{text-align:left}
tr.fail td{background:#fdd}tr.pass td:last-child{color:#060}
.chart text{font:12px system-ui,sans-serif}.chart .title{font-weight:bold}.bar{fill:#4a7bd0}.whisker{stroke:#222;stroke-width:1.5}
</style></head><body>
<h1>fusekit: runtime fusion vs patch mapping</h1>
<p>Model <code>${esc(result.model)}</code>, backend <code>${esc(result.backend)}</code>, ${esc(result.weightStorage)} weights, prompt of ${result.promptTokens} tokens, ${result.newTokens} new tokens, median of ${result.repeats} runs (min–max). Generated ${esc(result.date)}.</p>
<p><strong>${result.pass ? "All approaches within their numeric tolerance." : "At least one approach broke its numeric tolerance."}</strong></p>
<h2>Speed</h2>
${barChart("Prefill latency", "ms", ok.map((r) => ({ label: r.label, value: r.prefillMs })))}
${barChart("Decode throughput", "tok/s", ok.map((r) => ({ label: r.label, value: r.decodeTokensPerSecond })))}
<h2>Numbers</h2>
<table id="numbers"><thead><tr><th>approach</th><th>max |Δ logits|</th><th>tolerance</th><th>greedy = original</th><th>prefill ms</th><th>decode tok/s</th><th>decoder-stack ms/step</th><th>setup ms</th><th>params MB</th><th>live tensors</th><th>user LOC</th><th>saves original layout</th><th>verdict</th></tr></thead>
<tbody>${result.rows.map(row).join("\n")}</tbody></table>
<h2>Properties (found by trying them)</h2>
<table id="properties"><thead><tr><th>approach</th><th>applies to a loaded model</th><th>classes per fusion</th><th>needs weight conversion</th><th>reversible in place</th><th>state-dict layout unchanged</th><th>survives save → reload</th><th>lines the user writes per fusion</th></tr></thead>
<tbody>${result.rows.map(prop).join("\n")}</tbody></table>
</body></html>
`;
}
