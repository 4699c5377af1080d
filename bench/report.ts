// The bench report: the issue's target ratios (✓/✗), and the same tables rendered for the terminal
// (cli-table3) and as Markdown (bench/RESULTS.md).
import { realSizeSection } from "./realsize.js";
import Table from "cli-table3";
import type { Figure } from "../src/compare/measure.js";
import type { BenchResults, ConfigRow, MachineLimits, ModelEntry } from "./run.js";
import type { OrtResult } from "./ort.js";
import type { Family } from "./configs.js";

export interface Target {
  /** The issue that set it. */
  issue: 8 | 17;
  model: string;
  what: string;
  /** What the ratio is made of, naming the configurations (and their weight storage). */
  basis: string;
  value?: number;
  goal: number;
  ok: boolean;
}

const isTiny = (m: ModelEntry) => /tiny/.test(m.name);
const rowOf = (m: ModelEntry, id?: string) => m.configs.find((r) => r.spec.id === id);
const full = (m: ModelEntry) => m.configs.filter((r) => r.status === "full" && r.result);
const bestBy = (rows: ConfigRow[], f: (r: ConfigRow) => number) =>
  rows.reduce<ConfigRow | undefined>((a, b) => (!a || f(b) > f(a) ? b : a), undefined);
const name = (r: ConfigRow) => r.spec.label;
const torch2 = (m: ModelEntry) => m.torch.find((t) => t.threads === 2 && !t.error);

/** Decode tokens/s the read bandwidth allows for this configuration: weight bytes per token ÷ bandwidth. */
export const decodeBound = (machine: MachineLimits, r: ConfigRow) =>
  (machine.readGBps * 1e9) / r.result!.decodeWeightBytes;

/** The original configuration the load / RSS figures use: float32 storage when it loaded, else bf16. */
export const loadRow = (m: ModelEntry) => [rowOf(m, "none·f32"), rowOf(m, "none·bf16")].find((r) => r?.result);

export function computeTargets(machine: MachineLimits, models: ModelEntry[], prefill: number[]): Target[] {
  const out: Target[] = [];
  const add = (model: string, what: string, basis: string, value: number | undefined, goal: number) =>
    out.push({
      issue: 8,
      model,
      what,
      basis,
      value,
      goal,
      ok: value !== undefined && Number.isFinite(value) && value >= goal,
    });
  for (const m of models) {
    // fusion gain: the family's best against the original with the SAME weight storage
    const fused = rowOf(m, m.best.fused);
    const orig = fused && rowOf(m, `none·${fused.spec.storage}`);
    const goal = isTiny(m) ? 1.5 : 1.2;
    if (fused?.result && orig?.result && orig.status === "full")
      add(
        m.name,
        "best runtime-fused decode ÷ original decode",
        `${name(fused)} ÷ ${name(orig)}`,
        fused.result.decode.median / orig.result.decode.median,
        goal,
      );
    else
      add(
        m.name,
        "best runtime-fused decode ÷ original decode",
        fused ? `original (${fused.spec.storage}) has no full measurement` : "no runtime-fused configuration ran",
        undefined,
        goal,
      );
    const patched = rowOf(m, m.best.patched);
    const origP = patched && rowOf(m, `none·${patched.spec.storage}`);
    if (patched?.result && origP?.result && origP.status === "full")
      add(
        m.name,
        "best patched decode ÷ original decode",
        `${name(patched)} ÷ ${name(origP)}`,
        patched.result.decode.median / origP.result.decode.median,
        goal,
      );
    else
      add(
        m.name,
        "best patched decode ÷ original decode",
        patched ? `original (${patched.spec.storage}) has no full measurement` : "no patched configuration ran",
        undefined,
        goal,
      );
    if (isTiny(m)) continue; // the remaining targets are the 0.6B preset's

    const best = bestBy(full(m), (r) => r.result!.decode.median);
    const t = torch2(m);
    add(
      m.name,
      "decode ÷ PyTorch eager (2 threads)",
      best && t ? `${name(best)} ÷ torch` : t ? "no configuration ran" : "no PyTorch figure",
      best && t?.decode ? best.result!.decode.median / t.decode.median : undefined,
      1,
    );
    for (const n of prefill) {
      const bp = bestBy(
        full(m).filter((r) => r.result!.prefill[n]),
        (r) => r.result!.prefill[n].median,
      );
      const tp = t?.prefill?.[n];
      add(
        m.name,
        `prefill ${n} ÷ PyTorch eager (2 threads)`,
        bp && tp ? `${name(bp)} ÷ torch` : bp ? "no PyTorch figure" : `no fusekit prefill ${n} figure`,
        bp && tp ? bp.result!.prefill[n].median / tp.median : undefined,
        0.5,
      );
    }
    add(
      m.name,
      "decode ÷ memory-bandwidth bound",
      best
        ? `${name(best)}: ${(best.result!.decodeWeightBytes / 1e9).toFixed(2)} GB/token at ${machine.readGBps.toFixed(1)} GB/s`
        : "no configuration ran",
      best ? best.result!.decode.median / decodeBound(machine, best) : undefined,
      0.6,
    );
    const lr = loadRow(m);
    add(
      m.name,
      "load speed ÷ page-cache read speed",
      lr
        ? `${name(lr)}: ${(m.fileBytes / 1e9).toFixed(2)} GB in ${lr.result!.readyS.toFixed(1)} s vs ${m.pageCacheReadGBps.median.toFixed(2)} GB/s`
        : "no original loaded",
      lr ? m.fileBytes / 1e9 / lr.result!.readyS / m.pageCacheReadGBps.median : undefined,
      0.5,
    );
    // lower is better: stored as goal/value so that ≥ 1 passes, shown as the plain ratio
    const rss = lr ? lr.result!.peakRssAfterLoadBytes / (lr.result!.params * 4) : undefined;
    out.push({
      issue: 8,
      model: m.name,
      what: "peak RSS after load ÷ float32 weight bytes (≤ 1.3)",
      basis: lr ? `${name(lr)}, child process` : "no original loaded",
      value: rss,
      goal: 1.3,
      ok: rss !== undefined && rss <= 1.3,
    });
  }
  return [...out, ...issue17Targets(machine, models, prefill)];
}

/** Issue 17's baseline ("today's"): its measured table (0.6B, original bf16, 1 core) and bench/RESULTS.md of 2026-11-29 (tiny). */
export const ISSUE17_BASELINE = { prefill: { 64: 18.4, 512: 17.7 } as Record<number, number>, tinyDecode: 216 };

const ortBest = (m: ModelEntry, f: (t: OrtResult) => number | undefined) =>
  m.ort
    .filter((t) => !t.error && f(t) !== undefined)
    .reduce<OrtResult | undefined>((a, b) => (!a || f(b)! > f(a)! ? b : a), undefined);
/** Decoder-stack milliseconds per decode step (median over the runs of each run's mean, timed between the layers' hooks). */
const stackMs = (r: ConfigRow) => r.result!.decoderStackMs.median;
const kernelized = (m: ModelEntry) =>
  [rowOf(m, m.best.fused), rowOf(m, m.best.patched)].filter((r): r is ConfigRow => !!r?.result && r.status === "full");

function issue17Targets(machine: MachineLimits, models: ModelEntry[], prefill: number[]): Target[] {
  const out: Target[] = [];
  const add = (model: string, what: string, basis: string, value: number | undefined, goal: number, lower = false) =>
    out.push({
      issue: 17,
      model,
      what,
      basis,
      value,
      goal,
      ok: value !== undefined && Number.isFinite(value) && (lower ? value <= goal : value >= goal),
    });
  for (const m of models) {
    const best = bestBy(full(m), (r) => r.result!.decode.median);
    const kz = bestBy(kernelized(m), (r) => r.result!.decode.median);
    const orig = kz && rowOf(m, `none·${kz.spec.storage}`);
    const both = kz?.result && orig?.result && orig.status === "full";
    add(
      m.name,
      "best kernelized decode ÷ original (same storage, same threads)",
      both ? `${name(kz!)} ÷ ${name(orig!)}` : "no pair measured",
      both ? kz!.result!.decode.median / orig!.result!.decode.median : undefined,
      1.3,
    );
    add(
      m.name,
      "decoder-stack ms per decode step, kernelized ÷ original (≤ 0.5)",
      both
        ? `${name(kz!)} ${stackMs(kz!).toFixed(2)} ms ÷ ${name(orig!)} ${stackMs(orig!).toFixed(2)} ms (decoder layers alone, timed between their forward hooks)`
        : "no pair measured",
      both ? stackMs(kz!) / stackMs(orig!) : undefined,
      0.5,
      true,
    );
    if (isTiny(m)) {
      add(
        m.name,
        "end-to-end decode ÷ today's",
        best
          ? `${name(best)} ÷ ${ISSUE17_BASELINE.tinyDecode} tok/s (original bf16, bench/RESULTS.md of 2026-11-29)`
          : "no configuration ran",
        best ? best.result!.decode.median / ISSUE17_BASELINE.tinyDecode : undefined,
        1.5,
      );
      continue;
    }
    const ob = ortBest(m, (t) => t.decode?.median);
    add(
      m.name,
      "decode ÷ ONNX Runtime (best thread count)",
      best && ob ? `${name(best)} ÷ ORT ${ob.threads} thread(s)` : "no ORT figure",
      best && ob ? best.result!.decode.median / ob.decode!.median : undefined,
      1.3,
    );
    const bound =
      best && machine.poolReadGBps ? (machine.poolReadGBps.median * 1e9) / best.result!.decodeWeightBytes : undefined;
    add(
      m.name,
      "decode ÷ two-core bandwidth bound",
      bound
        ? `${name(best!)}: ${(best!.result!.decodeWeightBytes / 1e9).toFixed(2)} GB/token at ${machine.poolReadGBps!.median.toFixed(1)} GB/s`
        : "no pool bandwidth figure",
      bound ? best!.result!.decode.median / bound : undefined,
      0.7,
    );
    const gemm = Math.max(0, ...(machine.bf16Gemm ?? []).filter((g) => g.threads > 1).map((g) => g.gflops.median));
    for (const n of prefill) {
      const bp = bestBy(
        full(m).filter((r) => r.result!.prefill[n]),
        (r) => r.result!.prefill[n].median,
      );
      const v = bp?.result!.prefill[n].median;
      const base = ISSUE17_BASELINE.prefill[n];
      add(
        m.name,
        `prefill ${n} ÷ today's`,
        bp && base ? `${name(bp)} ÷ ${base} tok/s (issue 17's table)` : "no figure",
        v && base ? v / base : undefined,
        2,
      );
      const rate = v && bp ? (2 * bp.result!.layerMacsPerToken * v) / 1e9 : undefined;
      const ort = ortBest(m, (t) => t.prefill?.[n]?.median)?.prefill?.[n]?.median;
      add(
        m.name,
        `prefill ${n} matmul GFLOP/s ÷ best two-core GEMM rate`,
        rate && gemm
          ? `${rate.toFixed(1)} ÷ ${gemm.toFixed(1)} GFLOP/s (bf16 matmul on the pool)${ort && v ? `; fusekit = ${((100 * v) / ort).toFixed(0)}% of ORT's prefill ${n}` : ""}`
          : "no figure",
        rate && gemm ? rate / gemm : undefined,
        0.8,
      );
    }
  }
  return out;
}

// ---- rendering ----

interface Section {
  title: string;
  head: string[];
  rows: string[][];
  notes?: string[];
}

const n1 = (x: number) => (x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2));
export const fig = (f?: Figure) => (f ? `${n1(f.median)} (${n1(f.min)}–${n1(f.max)}) n=${f.runs.length}` : "");
const ratio = (a?: number, b?: number) => (a !== undefined && b ? `×${(a / b).toFixed(2)}` : "");
const mb = (b: number) => (b / 2 ** 20).toFixed(0);

function configSection(r: BenchResults, m: ModelEntry): Section {
  const bestIds = new Set(Object.values(m.best));
  const prefill = r.options.prefill;
  const rows = m.configs.map((c) => {
    const res = c.result;
    const star = bestIds.has(c.spec.id) ? "★ " : "";
    const failed = Object.entries(res?.errors ?? {})
      .map(([f, e]) => `${f}: ${e}`)
      .join("; ");
    const status =
      (c.status === "screened"
        ? "screened: 1 run, 16 steps"
        : c.status === "full"
          ? "measured"
          : (c.error ?? c.status)) + (failed ? ` — ${failed}` : "");
    if (!res)
      return [star + c.spec.label, `error: ${c.error}`.slice(0, 160), "", ...prefill.map(() => ""), "", "", "", ""];
    const orig = rowOf(m, `none·${c.spec.storage}`);
    const vsOrig =
      c.spec.family !== "original" && orig?.result && orig.status === "full" && c.status === "full"
        ? ratio(res.decode.median, orig.result.decode.median)
        : "";
    return [
      star + c.spec.label,
      status,
      `${res.readyS.toFixed(1)} s / ${mb(res.peakRssAfterLoadBytes)} MB`,
      ...prefill.map((n) => (res.prefill[n] ? fig(res.prefill[n]) : res.errors?.[`prefill ${n}`] ? "error" : "")),
      fig(res.decode),
      vsOrig,
      `${((100 * res.decode.median) / decodeBound(r.machine, c)).toFixed(0)}% of ${n1(decodeBound(r.machine, c))}`,
      String(res.kernelsPerDecodeStep),
    ];
  });
  return {
    title: `${m.name} — ${(m.fileBytes / 1e9).toFixed(2)} GB checkpoint, ${m.params ? (m.params / 1e6).toFixed(0) + "M params" : "?"} (tokens/s: median (min–max) n=runs)`,
    head: [
      "configuration",
      "status",
      "ready / RSS after load",
      ...prefill.map((n) => `prefill ${n}`),
      `decode (${r.options.decodeSteps} new)`,
      "decode × original (same storage)",
      "decode vs bandwidth bound",
      "kernels/step",
    ],
    rows,
    notes: [
      "★ = best of its family (original / runtime-fused + kernelized / patched + kernelized) by decode tokens/s. " +
        "fused NormMLP = fusions/norm-mlp.ts fuseNormMLP(model, { kernel: true }) then kernelize; patched = fromPretrained with patches/ + conversions/ norm-mlp or gate-up-qkv, then kernelize. " +
        "ready = fromPretrained until ready to run; RSS after load = the child process's peak RSS then; kernels/step = tfjs kernels per decode step.",
      ...(m.screened
        ? [
            "This checkpoint is large: every candidate was screened (1 run: prefill of the first length, 16 decode steps) and only each family's best got the full plan.",
          ]
        : []),
    ],
  };
}

function torchSection(r: BenchResults, m: ModelEntry): Section {
  const prefill = r.options.prefill;
  const rows: string[][] = m.torch.map((t) =>
    t.error
      ? [`PyTorch ${t.torch ?? ""} eager, ${t.threads} thread(s)`, `error: ${t.error}`, ...prefill.map(() => ""), ""]
      : [
          `PyTorch ${t.torch} eager, ${t.threads} thread(s)`,
          "f32",
          ...prefill.map((n) => fig(t.prefill?.[n])),
          fig(t.decode),
        ],
  );
  for (const o of m.ort ?? [])
    rows.push(
      o.error
        ? [`ONNX Runtime ${o.ort ?? ""}, ${o.threads} thread(s)`, `error: ${o.error}`, ...prefill.map(() => ""), ""]
        : [
            `ONNX Runtime ${o.ort}, ${o.threads} intra-op thread(s)`,
            "f32",
            ...prefill.map((n) => fig(o.prefill?.[n])),
            fig(o.decode),
          ],
    );
  const t2 = torch2(m);
  const t1 = m.torch.find((t) => t.threads === 1 && !t.error);
  const ort = (f: (t: OrtResult) => Figure | undefined) =>
    (m.ort ?? [])
      .filter((t) => !t.error && f(t))
      .reduce<Figure | undefined>((a, t) => (!a || f(t)!.median > a.median ? f(t) : a), undefined);
  // a figure is missing because it failed (its error is in the configuration table) or was never run (screened)
  const cell = (v: Figure | undefined, failed: boolean, a?: Figure, b?: Figure, o?: Figure) =>
    v
      ? `${fig(v)} ${ratio(v.median, a?.median)}${a && b ? " / " : ""}${ratio(v.median, b?.median)}${o ? ` · ORT ${ratio(v.median, o.median)}` : ""}`.trim()
      : failed
        ? "error (see above)"
        : "not measured (screened)";
  const shown = [...(["original", "fused", "patched"] as Family[]).map((f) => m.best[f]), "none·bf16·1t"];
  for (const id of [...new Set(shown)]) {
    const c = rowOf(m, id);
    if (!c?.result || (c.status !== "full" && id !== "none·bf16·1t")) continue;
    rows.push([
      `fusekit ${c.spec.family}: ${c.spec.label}`,
      c.spec.storage,
      ...prefill.map((n) =>
        cell(
          c.result!.prefill[n],
          c.result!.errors?.[`prefill ${n}`] !== undefined,
          t2?.prefill?.[n],
          t1?.prefill?.[n],
          ort((t) => t.prefill?.[n]),
        ),
      ),
      cell(
        c.result.decode,
        c.result.errors?.decode !== undefined,
        t2?.decode,
        t1?.decode,
        ort((t) => t.decode),
      ),
    ]);
  }
  return {
    title: `${m.name} — fusekit vs PyTorch eager and ONNX Runtime (same checkpoint, same prompts)`,
    head: ["", "weights", ...prefill.map((n) => `prefill ${n} tok/s`), `decode tok/s (${r.options.decodeSteps} new)`],
    rows,
    notes: [
      m.torchNote ??
        "fusekit rows: ×a / ×b = fusekit ÷ PyTorch with 2 threads / with 1 thread; ORT ×c = fusekit ÷ ONNX Runtime's better thread count. PyTorch and ORT compute in float32 with bf16 weights widened at export / load.",
      ...(m.ortNote ? [m.ortNote] : []),
    ],
  };
}

function machineSection(r: BenchResults): Section {
  const ma = r.machine;
  return {
    title: `machine limits (${r.cpus} cores, load average ${r.loadAverage.map((l) => l.toFixed(1)).join(" ")} at the end)`,
    head: ["measure", "median (min–max) n=runs"],
    rows: [
      ["read bandwidth, JS loop over a Float32Array (GB/s)", fig(ma.jsReadGBps)],
      [
        "read bandwidth, wasm SIMD readsum over the tfjs heap (GB/s)",
        ma.wasmReadGBps ? fig(ma.wasmReadGBps) : `n/a on ${r.backend}`,
      ],
      ...(ma.poolReadGBps
        ? [["read bandwidth, wasm SIMD readsum on every kernel thread (shared heap, GB/s)", fig(ma.poolReadGBps)]]
        : []),
      ...ma.matmul.map((mm) => [
        `tf.matMul [${mm.shape[0]}×${mm.shape[1]}]·[${mm.shape[1]}×${mm.shape[2]}] persistent weight (GFLOP/s)`,
        fig(mm.gflops),
      ]),
      ...(ma.bf16Gemm ?? []).map((g) => [
        `fusekit bf16 matmul [${g.shape[0]}×${g.shape[1]}]·[${g.shape[1]}×${g.shape[2]}], ${g.threads} thread(s) (GFLOP/s)`,
        fig(g.gflops),
      ]),
      ...r.models.map((m) => [
        `page-cache read speed of ${m.name} (${(m.fileBytes / 1e9).toFixed(2)} GB, GB/s)`,
        fig(m.pageCacheReadGBps),
      ]),
    ],
    notes: [
      `decode bound = weight bytes per token ÷ ${ma.readGBps.toFixed(2)} GB/s (the higher read bandwidth); best matmul ${ma.bestGflops.toFixed(1)} GFLOP/s.`,
    ],
  };
}

function kernelSection(r: BenchResults): Section {
  const k = r.kernelMicro;
  return {
    title: "bundled kernels vs the composed ops they replace (µs per call, median)",
    head: ["kernel", "composed ops", "kernel", "speed-up"],
    rows:
      "error" in k
        ? [["micro-bench", `error: ${k.error}`, "", ""]]
        : k.map((x) => [
            x.name,
            x.composedUs.toFixed(1),
            x.kernelUs.toFixed(1),
            `×${(x.composedUs / x.kernelUs).toFixed(2)}`,
          ]),
  };
}

function targetSection(r: BenchResults, issue: 8 | 17): Section {
  return {
    title: `targets (issue ${issue})`,
    head: ["model", "ratio", "value", "goal", "", "basis"],
    rows: r.targets
      .filter((t) => (t.issue ?? 8) === issue)
      .map((t) => [
        t.model,
        t.what,
        t.value === undefined ? "n/a" : t.value.toFixed(2),
        `${t.what.includes("≤") ? "≤" : "≥"} ${t.goal}`,
        t.ok ? "✓" : "✗",
        t.basis,
      ]),
    notes: [
      issue === 8
        ? "Fusion ratios compare a family's best configuration with the original model loaded with the same weight storage (f32 or bf16), named in the basis column."
        : "Every fusekit configuration runs its bf16 kernels on every core (FUSEKIT_THREADS unset) unless its label says 1 thread; ORT = onnxruntime-node with float32 weights.",
    ],
  };
}

function sections(r: BenchResults): Section[] {
  const realSize = r.realSize?.length ? [realSizeSection(r.realSize, r.options.prefill[0], r.options.decodeSteps)] : [];
  return [
    machineSection(r),
    kernelSection(r),
    ...r.models.flatMap((m) => [configSection(r, m), torchSection(r, m)]),
    ...realSize,
    targetSection(r, 8),
    targetSection(r, 17),
  ];
}

export function renderTerminal(r: BenchResults): string {
  const out = [
    `backend ${r.backend}, node ${r.node}, ${r.options.repeats} runs per figure (fewer when a figure passes ${r.options.figureBudgetS} s), ${r.elapsedS.toFixed(0)} s`,
  ];
  for (const s of sections(r)) {
    const t = new Table({
      head: s.head,
      style: { head: [], border: [] },
      wordWrap: true,
      colWidths: s.head.map((_, i) => (i === 0 ? 34 : i === 1 && s.head[1] === "status" ? 28 : null)) as number[],
    });
    for (const row of s.rows) t.push(row.map((c) => (c.length > 120 ? c.slice(0, 117) + "…" : c)));
    out.push(`\n${s.title}`, t.toString(), ...(s.notes ?? []).map((n) => `  ${n}`));
  }
  return out.join("\n");
}

const esc = (s: string) => s.replace(/\|/g, "\\|");

export function renderMarkdown(r: BenchResults): string {
  const out = [
    "# Benchmark results",
    "",
    `Produced by \`${r.command}\` on ${r.date}: backend \`${r.backend}\`, Node ${r.node}, ${r.cpus} cores, ${r.options.repeats} runs per figure ` +
      `(median, min–max, n = runs; a figure stops early once it passes ${r.options.figureBudgetS} s), whole run ${(r.elapsedS / 60).toFixed(1)} min. ` +
      "The machine is shared with other jobs, so the numbers are noisy. Raw figures: `bench/results.json`.",
  ];
  for (const s of sections(r)) {
    out.push(
      "",
      `## ${s.title}`,
      "",
      `| ${s.head.map(esc).join(" | ")} |`,
      `|${s.head.map(() => "---").join("|")}|`,
      ...s.rows.map((row) => `| ${row.map(esc).join(" | ")} |`),
    );
    if (s.notes?.length) out.push("", ...s.notes.map((n) => `- ${n}`));
  }
  return out.join("\n") + "\n";
}
