// The bench report: the machine's limits, every configuration, the peers, the real-size rows and the
// targets (bench/targets.ts), as sections rendered for the terminal and as Markdown (bench/RESULTS.md)
// through the comparison's own renderer.
import { realSizeSection } from "./realsize.js";
import type { Figure } from "../src/compare/measure.js";
import { markdownSection, terminalSection, type Section } from "../src/compare/sections.js";
import type { BenchResults, ConfigRow, ModelEntry } from "./types.js";
import type { OrtResult } from "./ort.js";
import type { LlamaCppFields } from "./llama-cpp.js";
import type { BrowserFields } from "./browser.js";
import type { Family } from "./configs.js";
import { TARGET_GROUPS, decodeBound } from "./targets.js";
import { WLLAMA_VERSION } from "./wllama.js";

const rowOf = (m: ModelEntry, id?: string) => m.configs.find((r) => r.spec.id === id);
const torch2 = (m: ModelEntry) => m.torch.find((t) => t.threads === 2 && !t.error);

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
      return [
        star + c.spec.label,
        `error: ${c.error}`.slice(0, 160),
        "",
        ...prefill.map(() => ""),
        "",
        ...prefill.map(() => ""),
        "",
        "",
        "",
      ];
    const orig = rowOf(m, `none·${c.spec.storage}`);
    const vsOrig =
      c.spec.family !== "original" && orig !== c && orig?.result && orig.status === "full" && c.status === "full"
        ? ratio(res.decode.median, orig.result.decode.median)
        : "";
    return [
      star + c.spec.label,
      status,
      `${res.readyS.toFixed(1)} s / ${mb(res.peakRssAfterLoadBytes)} MB`,
      ...prefill.map((n) => (res.prefill[n] ? fig(res.prefill[n]) : res.errors?.[`prefill ${n}`] ? "error" : "")),
      fig(res.decode),
      ...prefill.map((n) => {
        const at = res.decodeAt?.[n];
        const base = c.spec.family !== "original" ? orig?.result?.decodeAt?.[n] : undefined;
        return at ? `${fig(at)}${base ? ` ${ratio(at.median, base.median)}` : ""}` : "";
      }),
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
      ...prefill.map((n) => `decode after ${n} (× original)`),
      "decode × original (same storage)",
      "decode vs bandwidth bound",
      "kernels/step",
    ],
    rows,
    notes: [
      "★ = best of its family (original / runtime-fused + kernelized / patched + kernelized / DecoderLayer kernel / 8-bit weights) by decode tokens/s. " +
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
  const oneThread = ["none·bf16·1t", "none·int8·1t"];
  const shown = [
    ...(["original", "fused", "patched", "layer", "8-bit"] as Family[]).map((f) => m.best[f]),
    ...oneThread,
  ];
  for (const id of [...new Set(shown)]) {
    const c = rowOf(m, id);
    if (!c?.result || (c.status !== "full" && !oneThread.includes(id!))) continue;
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

/**
 * llama.cpp (node-llama-cpp) on the same checkpoint exported by export-gguf, beside fusekit's best row of each
 * weight storage (bf16, int8, FP8 kept) on every core and on one thread; then fidelity.
 */
function llamaCppSection(r: BenchResults, m: ModelEntry & LlamaCppFields): Section {
  const prefill = r.options.prefill;
  const full = m.configs.filter((c) => c.status === "full" && c.result);
  /** fusekit's fastest decode with `storage` weights, on every core or on one thread. */
  const fastest = (storage: string, oneThread: boolean) =>
    full
      .filter((c) => c.spec.storage === storage && (c.spec.threads === 1) === oneThread)
      .reduce<ConfigRow | undefined>(
        (a, c) => (!a || c.result!.decode.median > a.result!.decode.median ? c : a),
        undefined,
      );
  const mine = (["bf16", "int8", "fp8"] as const).flatMap((storage) =>
    [false, true].map((one) => fastest(storage, one)).filter((c): c is ConfigRow => !!c),
  );
  const fusekitRows = mine.map((c) => [
    `fusekit ${c.spec.label}${c.spec.threads === 1 ? "" : ", every core"}`,
    c.spec.storage,
    ...prefill.map((n) => fig(c.result!.prefill[n])),
    fig(c.result!.decode),
  ]);
  const rows = (m.llamaCpp ?? []).map((l) => {
    if (l.error)
      return [
        `llama.cpp ${l.llamaCpp ?? ""}, ${l.threads} thread(s)`,
        l.type,
        `error: ${l.error}`,
        ...prefill.map(() => ""),
      ];
    // the same bit width at the same thread count: bf16 against bf16, q8_0 against int8
    const same = fastest(l.type === "q8_0" ? "int8" : "bf16", l.threads === 1);
    return [
      `llama.cpp ${l.llamaCpp}, ${l.threads} thread(s)`,
      l.type,
      ...prefill.map((n) => fig(l.prefill?.[n])),
      `${fig(l.decode)} ${same ? `fusekit ${ratio(same.result!.decode.median, l.decode?.median)}` : ""}`.trim(),
    ];
  });
  const fidelity = (m.llamaCppFidelity ?? []).map((f) =>
    f.error
      ? `${f.type}: fidelity not measured (${f.error})`
      : `${f.type}: next-token log-probabilities after ${f.ids} prompt ids, llama.cpp vs fusekit's forward of the checkpoint: max |Δ log p| ${f.maxAbsLogProb!.toExponential(2)}, max |Δ p| ${f.maxAbsProb!.toExponential(2)}, fusekit logit std ${f.logitStd!.toFixed(3)}, same argmax: ${f.sameArgmax ? "yes" : "no"}`,
  );
  const i8 = m.int8Fidelity;
  if (i8)
    fidelity.push(
      i8.error
        ? `fusekit int8: fidelity not measured (${i8.error})`
        : `fusekit int8 vs fusekit bf16, same ${i8.ids} prompt ids: max |Δ log p| ${i8.maxAbsLogProb!.toExponential(2)}, max |Δ p| ${i8.maxAbsProb!.toExponential(2)}, same argmax: ${i8.sameArgmax ? "yes" : "no"}`,
    );
  return {
    title: `${m.name} — llama.cpp on the same checkpoint (GGUF by fusekit export-gguf, same prompt ids and protocol)`,
    head: ["", "weights", ...prefill.map((n) => `prefill ${n} tok/s`), `decode tok/s (${r.options.decodeSteps} new)`],
    rows: [...fusekitRows, ...rows],
    notes: [
      ...(m.llamaCppNote ? [m.llamaCppNote] : []),
      ...(rows.length
        ? [
            "fusekit ×r = fusekit's fastest decode at the same bit width and thread count (bf16 for bf16, int8 for q8_0) ÷ that row's decode.",
          ]
        : []),
      ...fidelity,
    ],
  };
}

/** In headless Chromium: fusekit's demo page and wllama (llama.cpp's wasm build) on the same checkpoint. */
function browserSection(r: BenchResults, m: ModelEntry & BrowserFields): Section[] {
  const b = m.browser;
  if (!b) return [];
  const prefill = r.options.prefill;
  const page = b.page
    ? [
        "fusekit page (demo page, `fusekit serve`)",
        `as stored, ${b.pageMode ?? ""} kernels`,
        ...prefill.map(() => ""),
        fig(b.page),
      ]
    : ["fusekit page (demo page, `fusekit serve`)", `error: ${b.pageError}`, ...prefill.map(() => ""), ""];
  const rows = b.wllama.map((w) =>
    w.error
      ? [`wllama ${WLLAMA_VERSION}, ${w.threads} thread(s)`, w.type, `error: ${w.error}`, ...prefill.map(() => "")]
      : [
          `wllama ${WLLAMA_VERSION} (llama.cpp ${w.wllama}), ${w.threads} thread(s)`,
          w.type,
          ...prefill.map((n) => fig(w.prefill?.[n])),
          `${fig(w.decode)} ${b.page ? `page ${ratio(b.page.median, w.decode?.median)}` : ""}`.trim(),
        ],
  );
  return [
    {
      title: `${m.name} — in headless Chromium: fusekit's page vs wllama (GGUF by fusekit export-gguf, same prompt length)`,
      head: ["", "weights", ...prefill.map((n) => `prefill ${n} tok/s`), `decode tok/s (${r.options.decodeSteps} new)`],
      rows: [page, ...rows],
      notes: [
        ...(b.wllamaNote ? [b.wllamaNote] : []),
        `page = decodeTokensPerSecond in the page after a ${prefill[0]}-token prompt (one page load per run). wllama takes text: ` +
          "its prompts are P special tokens (the engine's prompt count checked = P); prefill = P ÷ wall time to the first token, " +
          "decode = steps ÷ llama.cpp's own generation time after a prompt of the first length; page ×r = page decode ÷ that row's.",
      ],
    },
  ];
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
      ...(ma.relaxedSimd === undefined
        ? []
        : [
            ma.relaxedSimd
              ? "Prefill kernels: the relaxed-SIMD build (f32x4.relaxed_madd)."
              : "Prefill kernels: the baseline SIMD128 build (this runtime does not validate relaxed SIMD; on Node 20 run the bench with `node --experimental-wasm-relaxed-simd dist/bench/run.js`, which its children inherit).",
          ]),
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

const TARGET_NOTES: Record<string, string> = {
  "fusion gain":
    "Fusion ratios compare a family's best configuration with the original model loaded with the same weight storage (f32 or bf16), named in the basis column.",
  peers:
    "Every fusekit configuration runs its bf16 kernels on every core (FUSEKIT_THREADS unset) unless its label says 1 thread; ORT = onnxruntime-node with float32 weights.",
};

function targetSection(r: BenchResults, group: string): Section {
  return {
    title: `targets: ${group}`,
    head: ["model", "ratio", "value", "goal", "", "basis"],
    rows: r.targets
      .filter((t) => t.group === group)
      .map((t) => [
        t.model,
        t.what,
        t.value === undefined ? "n/a" : t.value.toFixed(2),
        `${t.atMost ? "≤" : "≥"} ${t.goal}`,
        t.ok ? "✓" : "✗",
        t.basis,
      ]),
    notes: TARGET_NOTES[group] ? [TARGET_NOTES[group]] : [],
  };
}

function sections(r: BenchResults): Section[] {
  const realSize = r.realSize?.length
    ? [realSizeSection(r.realSize, r.options.prefill[0], r.options.decodeSteps, r.busy)]
    : [];
  return [
    machineSection(r),
    kernelSection(r),
    ...r.models.flatMap((m) => [
      configSection(r, m),
      torchSection(r, m),
      llamaCppSection(r, m),
      ...browserSection(r, m),
    ]),
    ...realSize,
    ...TARGET_GROUPS.map((g) => targetSection(r, g)),
  ];
}

export function renderTerminal(r: BenchResults): string {
  const out = [
    `backend ${r.backend}, node ${r.node}, ${r.options.repeats} runs per figure (fewer when a figure passes ${r.options.figureBudgetS} s), ${r.elapsedS.toFixed(0)} s`,
  ];
  for (const s of sections(r)) out.push(terminalSection(s, [34, s.head[1] === "status" ? 28 : null]));
  return out.join("\n");
}

export function renderMarkdown(r: BenchResults): string {
  const out = [
    "# Benchmark results",
    "",
    `Produced by \`${r.command}\` on ${r.date}: backend \`${r.backend}\`, Node ${r.node}, ${r.cpus} cores, ${r.options.repeats} runs per figure ` +
      `(median, min–max, n = runs; a figure stops early once it passes ${r.options.figureBudgetS} s), whole run ${(r.elapsedS / 60).toFixed(1)} min. ` +
      "The machine is shared with other jobs, so the numbers are noisy. Raw figures: `bench/results.json`.",
  ];
  for (const s of sections(r)) out.push("", markdownSection(s));
  return out.join("\n") + "\n";
}
