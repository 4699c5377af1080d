// The bench's target ratios as data: each says what it compares, its goal, and which models it applies to;
// `computeTargets` measures every one against a run's results. Change a goal here, nowhere else.
import type { ConfigRow, MachineLimits, ModelEntry, Target } from "./types.js";
import type { OrtResult } from "./ort.js";
import type { LlamaCppFields } from "./llama-cpp.js";
import type { BrowserFields } from "./browser.js";
import type { GgufExportType } from "../src/index.js";

/** A recorded earlier run that "÷ baseline" targets compare with (0.6B: original bf16 on 1 core; tiny: bench/RESULTS.md). */
export const BASELINE = {
  source: "the bench of 2026-11-29 (original bf16)",
  prefill: { 64: 18.4, 512: 17.7 } as Record<number, number>,
  tinyDecode: 216,
};

/** fusekit's bf16 prefill in the side-by-side run that set the 8-bit targets (0.6B shape, both cores, tok/s). */
export const EIGHT_BIT_BASELINE = {
  source: "fusekit bf16 in the llama.cpp side-by-side before 8-bit weights",
  prefill: { 64: 34, 512: 40 } as Record<number, number>,
};

interface Context {
  machine: MachineLimits;
  model: ModelEntry;
  /** The prompt length, for targets measured per prefill length. */
  prefill?: number;
}

interface Ratio {
  value?: number;
  basis: string;
}

export interface TargetSpec {
  group: "fusion gain" | "8-bit weights" | "peers" | "machine" | "progress";
  what: string | ((prefill: number) => string);
  goal: number;
  /** The goal is an upper bound (lower is better). */
  atMost?: boolean;
  /** "tiny": the embedded default model; "real": the 0.6B preset and larger. */
  models: "tiny" | "real" | "all";
  /** One target per prefill length of the run. */
  perPrefill?: boolean;
  ratio(c: Context): Ratio;
}

// ── Reading a model's rows ────────────────────────────────────────────────────────────────────────────────

const isTiny = (m: ModelEntry) => /tiny/.test(m.name);
const rowOf = (m: ModelEntry, id?: string) => m.configs.find((r) => r.spec.id === id);
const full = (m: ModelEntry) => m.configs.filter((r) => r.status === "full" && r.result);
const measured = (r?: ConfigRow): r is ConfigRow => !!r?.result && r.status === "full";
const bestBy = (rows: ConfigRow[], f: (r: ConfigRow) => number) =>
  rows.reduce<ConfigRow | undefined>((a, b) => (!a || f(b) > f(a) ? b : a), undefined);
const name = (r: ConfigRow) => r.spec.label;
const decode = (r: ConfigRow) => r.result!.decode.median;
const bestDecode = (m: ModelEntry) => bestBy(full(m), decode);
const bestPrefill = (m: ModelEntry, n: number) =>
  bestBy(
    full(m).filter((r) => r.result!.prefill[n]),
    (r) => r.result!.prefill[n].median,
  );
/** Decoder-stack milliseconds per decode step (each run's mean, timed between the layers' hooks). */
const stackMs = (r: ConfigRow) => r.result!.decoderStackMs.median;
const torch2 = (m: ModelEntry) => m.torch.find((t) => t.threads === 2 && !t.error);
const ortBest = (m: ModelEntry, f: (t: OrtResult) => number | undefined) =>
  m.ort
    .filter((t) => !t.error && f(t) !== undefined)
    .reduce<OrtResult | undefined>((a, b) => (!a || f(b)! > f(a)! ? b : a), undefined);

const llamaCppDecode = (m: ModelEntry, type: GgufExportType, threads: number) =>
  (m as ModelEntry & LlamaCppFields).llamaCpp?.find((l) => l.type === type && l.threads === threads && l.decode)
    ?.decode;

/** The fastest fully measured decode with `storage` weights, on every core or (`oneThread`) on one thread. */
const fastestOf = (m: ModelEntry, storage: string, oneThread = false) =>
  bestBy(
    full(m).filter((r) => r.spec.storage === storage && (r.spec.threads === 1) === oneThread),
    decode,
  );

/** fusekit's fastest decode at the same bit width (bf16 against bf16, int8 against q8_0) ÷ llama.cpp's. */
function againstLlamaCpp(m: ModelEntry, type: GgufExportType, threads: number): Ratio {
  const mine = fastestOf(m, type === "q8_0" ? "int8" : "bf16", threads === 1);
  const theirs = llamaCppDecode(m, type, threads);
  const notRun = (m as ModelEntry & LlamaCppFields).llamaCppNote;
  if (!theirs)
    return { basis: `no llama.cpp ${type} ${threads}-thread figure${notRun ? ` (${notRun.split(":")[0]})` : ""}` };
  if (!measured(mine)) return { basis: `no fusekit ${type === "q8_0" ? "int8" : "bf16"} configuration measured` };
  return { value: decode(mine) / theirs.median, basis: `${name(mine)} ÷ llama.cpp ${type}, ${threads} thread(s)` };
}

/** fusekit's page decode ÷ wllama's (`type`) in the same headless Chromium, same threads and prompt length. */
function againstWllama(m: ModelEntry, type: GgufExportType): Ratio {
  const b = (m as ModelEntry & BrowserFields).browser;
  const theirs = b?.wllama.find((w) => w.type === type && w.decode);
  if (!b?.page) return { basis: `no page decode figure${b?.pageError ? ` (${b.pageError})` : ""}` };
  if (!theirs) return { basis: `no wllama ${type} figure${b.wllamaNote ? ` (${b.wllamaNote.split(":")[0]})` : ""}` };
  return {
    value: b.page.median / theirs.decode!.median,
    basis: `page (${b.pageMode}) ÷ wllama ${type}, ${theirs.threads} thread(s)`,
  };
}

/** Decode tokens/s the read bandwidth allows for this configuration: weight bytes per token ÷ bandwidth. */
export const decodeBound = (machine: MachineLimits, r: ConfigRow) =>
  (machine.readGBps * 1e9) / r.result!.decodeWeightBytes;

/** The original configuration the load / RSS figures use: float32 storage when it loaded, else bf16. */
export const loadRow = (m: ModelEntry) => [rowOf(m, "none·f32"), rowOf(m, "none·bf16")].find((r) => r?.result);

/** A family's best row against the original loaded with the same weight storage. */
function againstOriginal(m: ModelEntry, bestId: string | undefined, label: string, f = decode): Ratio {
  const best = rowOf(m, bestId);
  const orig = best && rowOf(m, `none·${best.spec.storage}`);
  if (!measured(best) || !measured(orig))
    return {
      basis: best ? `original (${best.spec.storage}) has no full measurement` : `no ${label} configuration ran`,
    };
  return { value: f(best) / f(orig), basis: `${name(best)} ÷ ${name(orig)}` };
}

const kernelizedBest = (m: ModelEntry) =>
  bestBy([rowOf(m, m.best.fused), rowOf(m, m.best.patched), rowOf(m, m.best.layer)].filter(measured), decode)?.spec.id;

// ── The targets ───────────────────────────────────────────────────────────────────────────────────────────

const fusionGain = (models: "tiny" | "real", goal: number): TargetSpec[] => [
  {
    group: "fusion gain",
    what: "best runtime-fused decode ÷ original decode",
    goal,
    models,
    ratio: ({ model }) => againstOriginal(model, model.best.fused, "runtime-fused"),
  },
  {
    group: "fusion gain",
    what: "best patched decode ÷ original decode",
    goal,
    models,
    ratio: ({ model }) => againstOriginal(model, model.best.patched, "patched"),
  },
];

/** The DecoderLayer kernel's row and the original's, both bf16 (the kernel's storage). */
const layerRows = (m: ModelEntry) => [rowOf(m, "decoder-layer·bf16"), rowOf(m, "none·bf16")] as const;

/** Decode tokens/s after a `context`-token prompt, the DecoderLayer kernel ÷ the original. */
function layerAfter(m: ModelEntry, context: number): Ratio {
  const [layer, orig] = layerRows(m);
  const [a, b] = [layer?.result?.decodeAt?.[context], orig?.result?.decodeAt?.[context]];
  if (!a || !b) return { basis: `no decode-after-${context} figure for both` };
  return { value: a.median / b.median, basis: `${name(layer!)} ÷ ${name(orig!)}, after a ${context}-token prompt` };
}

const layerTargets: TargetSpec[] = [
  {
    group: "fusion gain",
    what: "decode after a 512-token prompt, DecoderLayer kernel ÷ original (bf16)",
    goal: 1.3,
    models: "real",
    ratio: ({ model }) => layerAfter(model, 512),
  },
  {
    group: "fusion gain",
    what: "decode after a 64-token prompt, DecoderLayer kernel ÷ two-core bandwidth bound",
    goal: 0.95,
    models: "real",
    ratio: ({ model, machine }) => {
      const [layer] = layerRows(model);
      const at = layer?.result?.decodeAt?.[64];
      if (!at || !machine.poolReadGBps) return { basis: "no figure" };
      const bound = (machine.poolReadGBps.median * 1e9) / layer!.result!.decodeWeightBytes;
      return {
        value: at.median / bound,
        basis: `${at.median.toFixed(1)} ÷ ${bound.toFixed(1)} tok/s (${(layer!.result!.decodeWeightBytes / 1e9).toFixed(2)} GB/token at ${machine.poolReadGBps.median.toFixed(1)} GB/s)`,
      };
    },
  },
  {
    group: "fusion gain",
    what: "end-to-end decode, DecoderLayer kernel ÷ original (bf16)",
    goal: 1.2,
    models: "tiny",
    ratio: ({ model }) => {
      const [layer, orig] = layerRows(model);
      if (!measured(layer) || !measured(orig)) return { basis: "no full measurement of both" };
      return { value: decode(layer) / decode(orig), basis: `${name(layer)} ÷ ${name(orig)}` };
    },
  },
];

/** The same approach (recipe) with bf16 weights as 8-bit row `r`: `decoder-layer·int8` → `decoder-layer·bf16`. */
const bf16Twin = (m: ModelEntry, r: ConfigRow) => rowOf(m, r.spec.id.replace(/·(int8|fp8)$/, "·bf16"));

const eightBitTargets: TargetSpec[] = [
  {
    group: "8-bit weights",
    what: "int8 decode ÷ bf16 decode (same approach)",
    goal: 1.6,
    models: "real",
    ratio: ({ model }) => {
      const i8 = fastestOf(model, "int8");
      const bf = i8 && bf16Twin(model, i8);
      if (!i8 || !measured(bf)) return { basis: "no full int8 and bf16 measurement of one approach" };
      return { value: decode(i8) / decode(bf), basis: `${name(i8)} ÷ ${name(bf)}` };
    },
  },
  {
    group: "8-bit weights",
    what: (n) => `int8 prefill ${n} ÷ bf16 before 8-bit weights`,
    goal: 2,
    models: "real",
    perPrefill: true,
    ratio: ({ model, prefill: n }) => {
      const i8 = bestBy(
        full(model).filter((r) => r.spec.storage === "int8" && r.result!.prefill[n!]),
        (r) => r.result!.prefill[n!].median,
      );
      const base = EIGHT_BIT_BASELINE.prefill[n!];
      if (!i8 || !base) return { basis: "no figure" };
      const mine = i8.result!.prefill[n!].median;
      const q8 = (model as ModelEntry & LlamaCppFields).llamaCpp?.find(
        (l) => l.type === "q8_0" && l.threads === 2 && l.prefill?.[n!],
      )?.prefill?.[n!].median;
      return {
        value: mine / base,
        basis: `${name(i8)} ${mine.toFixed(1)} ÷ ${base} tok/s (${EIGHT_BIT_BASELINE.source})${q8 ? `; ÷ llama.cpp q8_0 2 threads ${(mine / q8).toFixed(2)}` : ""}`,
      };
    },
  },
  {
    group: "8-bit weights",
    what: "int8 max |Δ log p| against bf16 ÷ llama.cpp q8_0's",
    goal: 1,
    atMost: true,
    models: "real",
    ratio: ({ model }) => {
      const e = model as ModelEntry & LlamaCppFields;
      const q8 = e.llamaCppFidelity?.find((f) => f.type === "q8_0" && f.maxAbsLogProb !== undefined);
      const i8 = e.int8Fidelity?.maxAbsLogProb;
      if (!q8 || i8 === undefined) return { basis: "no fidelity figure for both" };
      return {
        value: i8 / q8.maxAbsLogProb!,
        basis: `${i8.toExponential(2)} ÷ ${q8.maxAbsLogProb!.toExponential(2)} (next token after ${q8.ids} ids; logit std ${q8.logitStd!.toFixed(3)})`,
      };
    },
  },
  {
    group: "8-bit weights",
    what: "peak RSS after load, FP8 checkpoint kept ÷ bf16 checkpoint",
    goal: 0.6,
    atMost: true,
    models: "real",
    ratio: ({ model }) => {
      const [f8, bf] = [rowOf(model, "none·fp8"), rowOf(model, "none·bf16")];
      if (!f8?.result || !bf?.result) return { basis: "no original FP8 and bf16 rows" };
      const [a, b] = [f8.result.peakRssAfterLoadBytes, bf.result.peakRssAfterLoadBytes];
      return { value: a / b, basis: `${(a / 1e9).toFixed(2)} ÷ ${(b / 1e9).toFixed(2)} GB (child processes)` };
    },
  },
];

export const TARGETS: TargetSpec[] = [
  ...fusionGain("tiny", 1.5),
  ...fusionGain("real", 1.2),
  ...layerTargets,
  ...eightBitTargets,
  {
    group: "fusion gain",
    what: "best kernelized decode ÷ original (same storage, same threads)",
    goal: 1.3,
    models: "all",
    ratio: ({ model }) => againstOriginal(model, kernelizedBest(model), "kernelized"),
  },
  {
    group: "fusion gain",
    what: "decoder-stack ms per decode step, kernelized ÷ original",
    goal: 0.5,
    atMost: true,
    models: "all",
    ratio: ({ model }) => {
      const r = againstOriginal(model, kernelizedBest(model), "kernelized", stackMs);
      return { ...r, basis: `${r.basis} (decoder layers alone, timed between their forward hooks)` };
    },
  },
  {
    group: "peers",
    what: "decode ÷ PyTorch eager (2 threads)",
    goal: 1,
    models: "real",
    ratio: ({ model }) => {
      const [best, t] = [bestDecode(model), torch2(model)];
      if (!best || !t?.decode) return { basis: t ? "no configuration ran" : "no PyTorch figure" };
      return { value: decode(best) / t.decode.median, basis: `${name(best)} ÷ torch` };
    },
  },
  {
    group: "peers",
    what: (n) => `prefill ${n} ÷ PyTorch eager (2 threads)`,
    goal: 0.5,
    models: "real",
    perPrefill: true,
    ratio: ({ model, prefill: n }) => {
      const [bp, tp] = [bestPrefill(model, n!), torch2(model)?.prefill?.[n!]];
      if (!bp || !tp) return { basis: bp ? "no PyTorch figure" : `no fusekit prefill ${n} figure` };
      return { value: bp.result!.prefill[n!].median / tp.median, basis: `${name(bp)} ÷ torch` };
    },
  },
  {
    group: "peers",
    what: "decode ÷ ONNX Runtime (best thread count)",
    goal: 1.3,
    models: "real",
    ratio: ({ model }) => {
      const [best, ob] = [bestDecode(model), ortBest(model, (t) => t.decode?.median)];
      if (!best || !ob) return { basis: "no ORT figure" };
      return { value: decode(best) / ob.decode!.median, basis: `${name(best)} ÷ ORT ${ob.threads} thread(s)` };
    },
  },
  {
    group: "peers",
    what: "bf16 decode ÷ llama.cpp bf16 (2 threads)",
    goal: 1,
    models: "real",
    ratio: ({ model }) => againstLlamaCpp(model, "bf16", 2),
  },
  {
    group: "peers",
    what: "int8 decode ÷ llama.cpp q8_0 (2 threads)",
    goal: 1,
    models: "real",
    ratio: ({ model }) => againstLlamaCpp(model, "q8_0", 2),
  },
  {
    group: "peers",
    what: "one-thread int8 decode ÷ llama.cpp q8_0 on one thread",
    goal: 0.6,
    models: "real",
    ratio: ({ model }) => againstLlamaCpp(model, "q8_0", 1),
  },
  {
    group: "peers",
    what: "page decode ÷ wllama bf16 (headless Chromium, every core)",
    goal: 3,
    models: "real",
    ratio: ({ model }) => againstWllama(model, "bf16"),
  },
  {
    group: "peers",
    what: "page decode ÷ wllama q8_0 (headless Chromium, every core)",
    goal: 3,
    models: "real",
    ratio: ({ model }) => againstWllama(model, "q8_0"),
  },
  {
    group: "machine",
    what: "decode ÷ memory-bandwidth bound",
    goal: 0.6,
    models: "real",
    ratio: ({ model, machine }) => {
      const best = bestDecode(model);
      if (!best) return { basis: "no configuration ran" };
      const gb = best.result!.decodeWeightBytes / 1e9;
      return {
        value: decode(best) / decodeBound(machine, best),
        basis: `${name(best)}: ${gb.toFixed(2)} GB/token at ${machine.readGBps.toFixed(1)} GB/s`,
      };
    },
  },
  {
    group: "machine",
    what: "decode ÷ two-core bandwidth bound",
    goal: 0.7,
    models: "real",
    ratio: ({ model, machine }) => {
      const best = bestDecode(model);
      if (!best || !machine.poolReadGBps) return { basis: "no pool bandwidth figure" };
      const bound = (machine.poolReadGBps.median * 1e9) / best.result!.decodeWeightBytes;
      const gb = best.result!.decodeWeightBytes / 1e9;
      return {
        value: decode(best) / bound,
        basis: `${name(best)}: ${gb.toFixed(2)} GB/token at ${machine.poolReadGBps.median.toFixed(1)} GB/s`,
      };
    },
  },
  {
    group: "machine",
    what: (n) => `prefill ${n} matmul GFLOP/s ÷ best two-core GEMM rate`,
    goal: 0.8,
    models: "real",
    perPrefill: true,
    ratio: ({ model, machine, prefill: n }) => {
      const gemm = Math.max(0, ...(machine.bf16Gemm ?? []).filter((g) => g.threads > 1).map((g) => g.gflops.median));
      const bp = bestPrefill(model, n!);
      const v = bp?.result!.prefill[n!].median;
      const rate = v && bp ? (2 * bp.result!.layerMacsPerToken * v) / 1e9 : undefined;
      if (!rate || !gemm) return { basis: "no figure" };
      const ort = ortBest(model, (t) => t.prefill?.[n!]?.median)?.prefill?.[n!]?.median;
      const vsOrt = ort && v ? `; fusekit = ${((100 * v) / ort).toFixed(0)}% of ORT's prefill ${n}` : "";
      return {
        value: rate / gemm,
        basis: `${rate.toFixed(1)} ÷ ${gemm.toFixed(1)} GFLOP/s (bf16 matmul on the pool)${vsOrt}`,
      };
    },
  },
  {
    group: "machine",
    what: "load speed ÷ page-cache read speed",
    goal: 0.5,
    models: "real",
    ratio: ({ model }) => {
      const lr = loadRow(model);
      if (!lr) return { basis: "no original loaded" };
      const speed = model.fileBytes / 1e9 / lr.result!.readyS;
      return {
        value: speed / model.pageCacheReadGBps.median,
        basis: `${name(lr)}: ${(model.fileBytes / 1e9).toFixed(2)} GB in ${lr.result!.readyS.toFixed(1)} s vs ${model.pageCacheReadGBps.median.toFixed(2)} GB/s`,
      };
    },
  },
  {
    group: "machine",
    what: "peak RSS after load ÷ float32 weight bytes",
    goal: 1.3,
    atMost: true,
    models: "real",
    ratio: ({ model }) => {
      const lr = loadRow(model);
      if (!lr) return { basis: "no original loaded" };
      return { value: lr.result!.peakRssAfterLoadBytes / (lr.result!.params * 4), basis: `${name(lr)}, child process` };
    },
  },
  {
    group: "progress",
    what: "end-to-end decode ÷ baseline",
    goal: 1.5,
    models: "tiny",
    ratio: ({ model }) => {
      const best = bestDecode(model);
      if (!best) return { basis: "no configuration ran" };
      return {
        value: decode(best) / BASELINE.tinyDecode,
        basis: `${name(best)} ÷ ${BASELINE.tinyDecode} tok/s (${BASELINE.source})`,
      };
    },
  },
  {
    group: "progress",
    what: (n) => `prefill ${n} ÷ baseline`,
    goal: 2,
    models: "real",
    perPrefill: true,
    ratio: ({ model, prefill: n }) => {
      const [bp, base] = [bestPrefill(model, n!), BASELINE.prefill[n!]];
      if (!bp || !base) return { basis: "no figure" };
      return {
        value: bp.result!.prefill[n!].median / base,
        basis: `${name(bp)} ÷ ${base} tok/s (${BASELINE.source}, 1 core)`,
      };
    },
  },
];

const applies = (spec: TargetSpec, m: ModelEntry) => spec.models === "all" || (spec.models === "tiny") === isTiny(m);

/** Every target that applies to each model of the run, measured (in TARGETS order, model by model). */
export function computeTargets(
  machine: MachineLimits,
  models: ModelEntry[],
  prefill: number[],
  specs: TargetSpec[] = TARGETS,
): Target[] {
  const out: Target[] = [];
  for (const model of models)
    for (const spec of specs.filter((s) => applies(s, model)))
      for (const n of spec.perPrefill ? prefill : [undefined]) {
        const { value, basis } = spec.ratio({ machine, model, prefill: n });
        const what = typeof spec.what === "string" ? spec.what : spec.what(n!);
        const met = spec.atMost ? value! <= spec.goal : value! >= spec.goal;
        const ok = value !== undefined && Number.isFinite(value) && met;
        out.push({
          group: spec.group,
          model: model.name,
          what,
          basis,
          value,
          goal: spec.goal,
          atMost: !!spec.atMost,
          ok,
        });
      }
  return out;
}

/** The groups in the order the report shows them. */
export const TARGET_GROUPS: TargetSpec["group"][] = ["fusion gain", "8-bit weights", "peers", "machine", "progress"];
