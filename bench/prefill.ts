// Where a prefill's time goes: one forward per prompt length with fusekit's prefill kernels timed (the bf16
// matmuls of many rows, the blocked attention; the rest is norms, RoPE, SiLU·mul, copies and the one-row
// lm_head), as GFLOP/s and as a share of the tiled GEMM's own inner loop on data in cache (its peak, measured
// here on one core and on every kernel thread). Standalone: `node dist/bench/prefill.js DIR [--lengths
// 64,512,2048] [--repeats 2]` prints the table (DIR: a checkpoint folder, loaded with bf16 weights on wasm).
import { loadavg } from "node:os";
import { fileURLToPath } from "node:url";
import { AutoModelForCausalLM, setBackend, tf, type PreTrainedModel } from "../src/index.js";
import { BF16_MATMUL } from "../src/backend/kernels.js";
import { PREFILL_ATTENTION } from "../src/backend/prefill-attention-kernel.js";
import { tiledGemmPeak, type GemmPeak } from "../src/backend/gemm.js";
import { relaxedSimd } from "../src/backend/relaxed-simd.js";
import { promptIds } from "../src/compare/measure.js";
import { layerMacsPerToken } from "./configs.js";

export interface PrefillPhases {
  prompt: number;
  /** The fastest of the runs (least disturbed by other load): its wall time and its phases. */
  ms: number;
  matmulMs: number;
  attentionMs: number;
  restMs: number;
  tokS: number;
  /** Matmul flops (2 · layer MACs per token · prompt) ÷ matmul time. */
  matmulGflops: number;
  /** Causal attention flops (4 · heads · d · Σ keys attended, every layer) ÷ attention time. */
  attentionGflops: number;
  /** Matmul flops ÷ the whole forward's time (the "GFLOP/s" of a prefill). */
  gflops: number;
  /** matmulGflops ÷ the GEMM's in-cache peak on every kernel thread (one core without a pool). */
  matmulShareOfPeak: number;
  /** The process's peak RSS after this length (they run shortest first). */
  peakRssBytes: number;
}

export interface PrefillReport {
  peak: GemmPeak;
  loadAverage: number[];
  rows: PrefillPhases[];
}

/** Wraps a kernel's function to add its time (ms) per call to `into[key]` when `when` says so; returns an undo. */
function timeKernel(name: string, when: (inputs: tf.NamedTensorInfoMap) => boolean, add: (ms: number) => void) {
  const k = tf.getKernel(name, tf.getBackend());
  if (!k) return () => {};
  const f = k.kernelFunc;
  k.kernelFunc = (args) => {
    const t0 = performance.now();
    try {
      return f(args);
    } finally {
      if (when(args.inputs)) add(performance.now() - t0);
    }
  };
  return () => void (k.kernelFunc = f);
}

/** Each prompt length's best of `repeats` forwards (logits of the last position), phases timed. */
export function prefillPhases(model: PreTrainedModel, lengths: number[], repeats = 2): PrefillReport {
  const peak = tiledGemmPeak();
  const config = model.config as unknown as {
    vocab_size: number;
    num_attention_heads: number;
    head_dim: number;
    num_hidden_layers: number;
  };
  const macs = layerMacsPerToken(model);
  let matmulMs = 0;
  let attentionMs = 0;
  const undo = [
    timeKernel(
      BF16_MATMUL,
      (i) => (i.x?.shape[0] ?? 0) > 1,
      (ms) => (matmulMs += ms),
    ), // not the one-row lm_head
    timeKernel(
      PREFILL_ATTENTION,
      () => true,
      (ms) => (attentionMs += ms),
    ),
  ];
  const rows: PrefillPhases[] = [];
  try {
    for (const P of [...lengths].sort((a, b) => a - b)) {
      const ids = promptIds(P, config.vocab_size);
      let best: Omit<PrefillPhases, "peakRssBytes"> | undefined;
      for (let r = 0; r < repeats; r++) {
        [matmulMs, attentionMs] = [0, 0];
        const t0 = performance.now();
        const { logits } = model.forward({ inputIds: [ids], logitsToKeep: 1 });
        logits.dataSync();
        const ms = performance.now() - t0;
        logits.dispose();
        const flops = 2 * macs * P;
        const attnFlops =
          4 * config.num_attention_heads * config.head_dim * ((P * (P + 1)) / 2) * config.num_hidden_layers;
        const matmulGflops = flops / (matmulMs / 1000) / 1e9;
        const row = {
          prompt: P,
          ms,
          matmulMs,
          attentionMs,
          restMs: ms - matmulMs - attentionMs,
          tokS: P / (ms / 1000),
          matmulGflops,
          attentionGflops: attentionMs ? attnFlops / (attentionMs / 1000) / 1e9 : 0,
          gflops: flops / (ms / 1000) / 1e9,
          matmulShareOfPeak: matmulGflops / (peak.allCores ?? peak.oneCore),
        };
        if (!best || row.ms < best.ms) best = row;
      }
      rows.push({ ...best!, peakRssBytes: process.resourceUsage().maxRSS * 1024 });
    }
  } finally {
    for (const u of undo) u();
  }
  return { peak, loadAverage: loadavg(), rows };
}

/** The report as text lines (a Markdown table). */
export function prefillLines(r: PrefillReport): string[] {
  const f = (x: number, d = 1) => x.toFixed(d);
  return [
    `GEMM tile in-cache peak: ${f(r.peak.oneCore)} GFLOP/s on one core, ${r.peak.allCores ? f(r.peak.allCores) : "n/a"} on ${r.peak.threads} thread(s) (${relaxedSimd() ? "relaxed-SIMD" : "baseline SIMD128"} build)`,
    "",
    "| prompt | tok/s | GFLOP/s | matmuls ms (GFLOP/s, share of peak) | attention ms (GFLOP/s) | rest ms | peak RSS MB |",
    "|---|---|---|---|---|---|---|",
    ...r.rows.map(
      (p) =>
        `| ${p.prompt} | ${f(p.tokS)} | ${f(p.gflops)} | ${f(p.matmulMs, 0)} (${f(p.matmulGflops)}, ${f(100 * p.matmulShareOfPeak, 0)}%) | ${f(p.attentionMs, 0)} (${f(p.attentionGflops)}) | ${f(p.restMs, 0)} | ${f(p.peakRssBytes / 1e6, 0)} |`,
    ),
  ];
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const args = process.argv.slice(2);
  const opt = (name: string, dflt: string) => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : dflt;
  };
  const dir = args.find((a, i) => !a.startsWith("--") && !args[i - 1]?.startsWith("--"));
  if (!dir) {
    console.error("usage: node dist/bench/prefill.js DIR [--lengths 64,512,2048] [--repeats 2]");
    process.exit(2);
  }
  await setBackend("wasm");
  const model = await AutoModelForCausalLM.fromPretrained(dir, { weightStorage: "bf16" });
  const lengths = opt("--lengths", "64,512,2048").split(",").map(Number);
  const report = prefillPhases(model, lengths, Number(opt("--repeats", "2")));
  console.log(prefillLines(report).join("\n"));
  console.log(`load average ${report.loadAverage.map((l) => l.toFixed(1)).join(" ")}`);
}
