// `npm run bench`: one benchmark report for the active backend — the machine's limits, every model
// configuration (original / runtime-fused + kernelized / patched + kernelized; f32 and bf16 storage) on the
// tiny default model and the Qwen3-0.6B-shaped preset, the PyTorch eager baseline, and the target
// ratios. Prints tables and writes bench/results.json and bench/RESULTS.md.
// Each configuration runs in its own child process (`run.js --child …`): its load time and peak RSS are
// its own, a wasm heap that runs out (0.6B with float32 weights) is a row that says so, not a crash.
import { execFile } from "node:child_process";
import { promises as fsp, readFileSync, statSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { Command } from "commander";
import { SafetensorsFile, ensureModel, setBackend, tf, type PresetName } from "../src/index.js";
import {
  allConfigs,
  ensureFp8Twin,
  measureConfig,
  type ConfigResult,
  type ConfigSpec,
  type Family,
  type Plan,
} from "./configs.js";
import {
  MATMUL_SHAPES,
  bf16GemmGflops,
  jsReadBandwidth,
  matmulGflops,
  pageCacheReadSpeed,
  poolReadBandwidth,
  wasmReadBandwidth,
} from "./machine.js";
import { kernelMicroBench } from "./kernels.js";
import { relaxedSimd } from "../src/backend/relaxed-simd.js";
import { TORCH_HOWTO, findTorchPython, runTorch } from "./torch.js";
import { ensureOnnx, ensureOrt, runOrt } from "./ort.js";
import { benchLlamaCpp } from "./llama-cpp.js";
import { benchBrowser } from "./browser.js";
import { renderMarkdown, renderTerminal } from "./report.js";
import { computeTargets } from "./targets.js";
import type { BenchResults, MachineLimits, ModelEntry } from "./types.js";
import { ensureDir, writeFileAtomically, type WriteTarget } from "../src/io/atomic.js";

/** The bench replaces its own previous results.json / RESULTS.md, never another file of those names. */
const BENCH_OUTPUT: WriteTarget = {
  kind: "benchmark result",
  overwrite: true,
  recognise: async (file) => {
    const text = await fsp.readFile(file, "utf8");
    return file.endsWith(".json") ? "elapsedS" in JSON.parse(text) : text.startsWith("# Benchmark results");
  },
};
import { busyRow, realSizeRows } from "./realsize.js";

const here = path.dirname(fileURLToPath(import.meta.url));

export interface BenchOptions {
  backend?: string;
  /** Preset names, or { name, dir } for any checkpoint directory (the smoke test uses a tiny random one). */
  models: (PresetName | { name: string; dir: string })[];
  repeats: number;
  decodeSteps: number;
  prefill: number[];
  /** Seconds per figure after which no further run starts (each figure gets ≥ 1 run). */
  figureBudgetS: number;
  skipTorch: boolean;
  /** Skip the ONNX Runtime peer (it needs the PyTorch python for the export). */
  skipOrt: boolean;
  /** Skip the llama.cpp peer (node-llama-cpp in bench/llama-cpp, when installed). */
  skipLlamaCpp?: boolean;
  /** fusekit's page and the wllama peer in headless Chromium (bench/browser.ts). Default: on unless quick. */
  browser?: boolean;
  /** Skip the wllama peer (@wllama/wllama in bench/wllama, when installed). */
  skipWllama?: boolean;
  /** Only these configuration ids (default: all). */
  configs?: string[];
  /** Run configurations in this process instead of child processes (no per-config RSS; used by the test). */
  inProcess: boolean;
  /** Checkpoints above this size are screened first (1 run, prefill 64, 16 decode steps); only each family's best gets the full plan. */
  screenAboveBytes: number;
  bandwidthBytes: number;
  matmulShapes: [number, number, number][];
  childTimeoutS: number;
  /** Fewer iterations in the kernel micro-bench. */
  quick: boolean;
  /** The real-size rows (0.6B / 1.7B / 4B loaded with no options, the busy-machine row; bench/realsize.ts). Default: on unless quick. */
  realSize?: boolean;
  log: (line: string) => void;
}

export const DEFAULTS: BenchOptions = {
  models: ["qwen3-tiny", "qwen3-0.6b"],
  repeats: 3,
  decodeSteps: 128,
  prefill: [64, 512],
  figureBudgetS: 100,
  skipTorch: false,
  skipOrt: false,
  inProcess: false,
  screenAboveBytes: 256 << 20,
  bandwidthBytes: 512 << 20,
  matmulShapes: MATMUL_SHAPES,
  childTimeoutS: 1200,
  quick: false,
  log: (line) => console.error(line),
};

/** Small counts for a smoke run. */
export const QUICK: Partial<BenchOptions> = {
  models: ["qwen3-tiny"],
  repeats: 2,
  decodeSteps: 8,
  prefill: [16, 64],
  bandwidthBytes: 64 << 20,
  matmulShapes: [
    [256, 256, 256],
    [8, 256, 768],
  ],
  quick: true,
};

/** Runs one configuration in a child process; its measurement or the reason it failed. */
function runChild(
  dir: string,
  spec: ConfigSpec,
  plan: Plan,
  backend: string,
  timeoutS: number,
): Promise<{ result?: ConfigResult; error?: string }> {
  const payload = JSON.stringify({ dir, spec, plan, backend });
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [...process.execArgv, path.join(here, "run.js"), "--child", payload], // the parent's Node flags (e.g. --experimental-wasm-relaxed-simd)
      { encoding: "utf8", timeout: timeoutS * 1000, maxBuffer: 1 << 26 },
      (err, stdout, stderr) => {
        const last = stdout.trim().split("\n").pop() ?? "";
        try {
          const j = JSON.parse(last) as { result?: ConfigResult; error?: string };
          return resolve(j);
        } catch {
          // the child died before reporting: say how, with the last lines it wrote
        }
        const lines = stderr
          .split("\n")
          .map((l) => l.trim())
          .filter((l) => /error|abort|memory|killed/i.test(l) && !/^at /.test(l));
        const how = err?.killed
          ? `killed after the ${timeoutS} s timeout`
          : `child exited (${err?.code ?? ""}${err?.signal ? ` ${err.signal}` : ""})`;
        resolve({
          error: `${how}: ${lines.slice(-2).join(" | ").slice(0, 300) || stderr.trim().split("\n").slice(-1)[0]}`,
        });
      },
    );
  });
}

async function runConfig(
  o: BenchOptions,
  backend: string,
  dir: string,
  spec: ConfigSpec,
  plan: Plan,
): Promise<{ result?: ConfigResult; error?: string }> {
  if (!o.inProcess) return runChild(dir, spec, plan, backend, o.childTimeoutS);
  try {
    return { result: await measureConfig(dir, spec, plan) };
  } catch (e) {
    return { error: errorText(e) };
  }
}

const errorText = (e: unknown) =>
  (e instanceof Error ? `${e.name}: ${e.message}` : String(e)).split("\n")[0].slice(0, 300);

async function benchModel(
  o: BenchOptions,
  backend: string,
  name: string,
  dir: string,
  python: { python: string } | undefined,
): Promise<ModelEntry> {
  const file = path.join(dir, "model.safetensors");
  const fileBytes = statSync(file).size;
  // configurations named with --configs all get the full plan: screening picks among candidates nobody chose
  const screened = fileBytes > o.screenAboveBytes && !o.configs?.length;
  const full: Plan = {
    prefill: o.prefill,
    decodeContexts: o.prefill, // decode also after prompts of the prefill lengths: attention over a longer cache
    decodeSteps: o.decodeSteps,
    repeats: o.repeats,
    figureBudgetS: o.figureBudgetS,
  };
  const screen: Plan = {
    prefill: [o.prefill[0]],
    decodeSteps: Math.min(16, o.decodeSteps),
    repeats: 1,
    figureBudgetS: o.figureBudgetS,
  };
  o.log(`[${name}] page-cache read speed of ${(fileBytes / 1e9).toFixed(2)} GB`);
  const entry: ModelEntry = {
    name,
    dir,
    fileBytes,
    pageCacheReadGBps: await pageCacheReadSpeed(file, o.repeats),
    screened,
    configs: [],
    best: {},
    torch: [],
    ort: [],
  };

  const specs = allConfigs().filter((c) => !o.configs?.length || o.configs.includes(c.id));
  let fp8Error: string | undefined;
  if (specs.some((c) => c.storage === "fp8")) await ensureFp8Twin(dir, o.log).catch((e) => (fp8Error = errorText(e)));
  for (const spec of specs) {
    if (spec.storage === "fp8" && fp8Error) {
      entry.configs.push({ spec, status: "error", error: `no FP8 copy of the checkpoint: ${fp8Error}` });
      continue;
    }
    const f32Probe = entry.configs.find((r) => r.spec.id === "none·f32");
    if (spec.storage === "f32" && f32Probe?.error) {
      entry.configs.push({
        spec,
        status: "skipped",
        error: `not run: float32 storage did not load (original f32: ${f32Probe.error.slice(0, 120)})`,
      });
      continue;
    }
    o.log(`[${name}] ${spec.label}: ${screened ? "screening" : "measuring"}…`);
    const { result, error } = await runConfig(o, backend, dir, spec, screened ? screen : full);
    if (error) o.log(`[${name}]   error: ${error}`);
    entry.configs.push(
      error
        ? { spec, status: "error", error }
        : screened
          ? { spec, status: "screened", result, screen: result }
          : { spec, status: "full", result },
    );
  }

  const families: Family[] = ["original", "fused", "patched", "layer", "8-bit"];
  for (const family of families) {
    const ok = entry.configs.filter((r) => r.spec.family === family && r.result);
    if (!ok.length) continue;
    const best = ok.reduce((a, b) => (b.result!.decode.median > a.result!.decode.median ? b : a));
    if (screened) {
      o.log(`[${name}] ${best.spec.label}: best of its family at screening, measuring…`);
      const { result, error } = await runConfig(o, backend, dir, best.spec, full);
      if (error) {
        best.status = "error";
        best.error = `full run: ${error}`;
        continue;
      }
      best.status = "full";
      best.result = result;
    }
    entry.best[family] = best.spec.id;
  }

  if (python && !o.skipTorch) {
    for (const threads of [2, 1]) {
      o.log(`[${name}] PyTorch eager, ${threads} thread(s)…`);
      entry.torch.push(
        await runTorch(python.python, path.resolve(here, "..", "..", "bench", "pytorch_baseline.py"), dir, {
          threads,
          repeats: o.repeats,
          prefill: o.prefill,
          decodeSteps: o.decodeSteps,
          figureBudgetS: o.figureBudgetS,
          timeoutS: o.childTimeoutS,
        }),
      );
    }
  } else entry.torchNote = o.skipTorch ? "PyTorch baseline skipped (--skip-torch)" : TORCH_HOWTO;
  await benchOrt(o, entry, python);
  await benchLlamaCpp(entry, o);
  if (o.browser ?? !o.quick) await benchBrowser(entry, o);
  return entry;
}

/** The ONNX Runtime peer on the same checkpoint (exported with the PyTorch python), 1 and 2 intra-op threads. */
async function benchOrt(o: BenchOptions, entry: ModelEntry, python: { python: string } | undefined): Promise<void> {
  if (o.skipOrt || !python) {
    entry.ortNote = o.skipOrt
      ? "ONNX Runtime skipped (--skip-ort)"
      : "ONNX Runtime skipped: the ONNX export needs the PyTorch python (see above)";
    return;
  }
  const onnx = ensureOnnx(python.python, entry.dir, o.log);
  const pkg = "error" in onnx ? onnx : ensureOrt(o.log);
  if ("error" in onnx || "error" in pkg) {
    entry.ortNote = `ONNX Runtime skipped: ${"error" in onnx ? onnx.error : (pkg as { error: string }).error}`;
    return;
  }
  const vocab = (JSON.parse(readFileSync(path.join(entry.dir, "config.json"), "utf8")) as { vocab_size: number })
    .vocab_size;
  for (const threads of [1, 2]) {
    o.log(`[${entry.name}] ONNX Runtime, ${threads} intra-op thread(s)…`);
    const run = {
      threads,
      repeats: o.repeats,
      prefill: o.prefill,
      decodeSteps: o.decodeSteps,
      figureBudgetS: o.figureBudgetS,
      timeoutS: o.childTimeoutS,
      vocab,
    };
    entry.ort.push(await runOrt(pkg.dir, onnx.file, run));
  }
}

async function machineLimits(o: BenchOptions): Promise<MachineLimits> {
  o.log(`machine: read bandwidth over ${o.bandwidthBytes >> 20} MB, matmul GFLOP/s`);
  const jsReadGBps = jsReadBandwidth(o.bandwidthBytes, o.repeats);
  const wasmReadGBps = wasmReadBandwidth(o.bandwidthBytes, o.repeats);
  const poolReadGBps = poolReadBandwidth(o.bandwidthBytes, o.repeats);
  const matmul = matmulGflops(o.matmulShapes, o.repeats);
  const bf16Gemm = bf16GemmGflops(
    o.matmulShapes.filter(([, k]) => k % 8 === 0),
    o.repeats,
  );
  return {
    jsReadGBps,
    wasmReadGBps,
    readGBps: Math.max(jsReadGBps.median, wasmReadGBps?.median ?? 0),
    poolReadGBps,
    matmul,
    bestGflops: Math.max(...matmul.map((m) => m.gflops.median)),
    bf16Gemm,
    relaxedSimd: relaxedSimd(),
  };
}

/** The whole bench; returns the results (the CLI writes and prints them). */
export async function runBench(options: Partial<BenchOptions> = {}): Promise<BenchResults> {
  const o: BenchOptions = { ...DEFAULTS, ...options };
  const t0 = performance.now();
  const backend = await setBackend(o.backend);
  const machine = await machineLimits(o);
  o.log("kernels: micro-bench vs composed ops");
  const kernelMicro = await kernelMicroBench(o.quick ? { iters: 20, rounds: 3 } : {}).catch((e: unknown) => ({
    error: errorText(e),
  }));
  const python = o.skipTorch && o.skipOrt ? undefined : findTorchPython(); // ORT's export needs it too
  const models: ModelEntry[] = [];
  for (const m of o.models) {
    const { name, dir } = typeof m === "string" ? { name: m, dir: await ensureModel(m) } : m;
    models.push(await benchModel(o, backend, name, dir, python));
  }
  for (const m of models) m.params = m.configs.find((c) => c.result)?.result?.params; // float32 weights = 4 × params
  const realOptions = { prefill: o.prefill[0], decodeSteps: o.decodeSteps, timeoutS: o.childTimeoutS, log: o.log };
  const realSize = (o.realSize ?? !o.quick) ? await realSizeRows(backend, realOptions) : undefined;
  const busy = realSize ? await busyRow(backend, realOptions) : undefined;
  return {
    date: new Date().toISOString(),
    command: process.argv.slice(1).length
      ? `node ${path.relative(process.cwd(), process.argv[1])} ${process.argv.slice(2).join(" ")}`.trim()
      : "runBench()",
    backend,
    node: process.version,
    cpus: os.cpus().length,
    loadAverage: os.loadavg(),
    options: {
      repeats: o.repeats,
      decodeSteps: o.decodeSteps,
      prefill: o.prefill,
      figureBudgetS: o.figureBudgetS,
      inProcess: o.inProcess,
    },
    machine,
    kernelMicro,
    models,
    targets: computeTargets(machine, models, o.prefill),
    realSize,
    busy,
    elapsedS: (performance.now() - t0) / 1000,
  };
}

/** On wasm, why a load may have failed: the heap's size then, against its 4 GB ceiling and the float32 weights. */
async function heapNote(dir: string): Promise<string> {
  const heap = (tf.backend() as unknown as { wasm?: { HEAPU8: Uint8Array } }).wasm?.HEAPU8.buffer.byteLength;
  if (heap === undefined) return "";
  const file = await SafetensorsFile.open(path.join(dir, "model.safetensors"));
  const f32 = [...file.tensors.values()].reduce((n, t) => n + 4 * tf.util.sizeFromShape(t.shape), 0);
  await file.close();
  return ` (wasm heap ${(heap / 2 ** 30).toFixed(2)} GiB at the failure, 4 GiB maximum; float32 weights alone are ${(f32 / 2 ** 30).toFixed(2)} GiB)`;
}

async function childMain(payload: string): Promise<void> {
  const { dir, spec, plan, backend } = JSON.parse(payload) as {
    dir: string;
    spec: ConfigSpec;
    plan: Plan;
    backend: string;
  };
  let out: string;
  try {
    await setBackend(backend);
    out = JSON.stringify({ result: await measureConfig(dir, spec, plan) });
  } catch (e) {
    const text = errorText(e);
    out = JSON.stringify({
      error: text + (/memory|alloc|abort|grow/i.test(text) ? await heapNote(dir).catch(() => "") : ""),
    });
  }
  process.stdout.write(out + "\n");
}

async function main(): Promise<void> {
  const program = new Command()
    .option("--backend <name>", "tfjs backend (default: FUSEKIT_BACKEND or the best available)")
    .option("--presets <list>", "comma-separated presets", DEFAULTS.models.join(","))
    .option("--repeats <n>", "runs per figure (median, min–max)", String(DEFAULTS.repeats))
    .option("--decode-steps <n>", "new tokens per decode run", String(DEFAULTS.decodeSteps))
    .option(
      "--figure-budget <s>",
      "seconds per figure after which no further run starts",
      String(DEFAULTS.figureBudgetS),
    )
    .option("--skip-torch", "skip the PyTorch baseline")
    .option("--skip-ort", "skip the ONNX Runtime peer")
    .option("--skip-llama-cpp", "skip the llama.cpp peer (run when node-llama-cpp is installed in bench/llama-cpp)")
    .option("--skip-wllama", "skip the wllama peer (run when @wllama/wllama is installed in bench/wllama)")
    .option("--no-browser", "skip fusekit's page and the wllama peer in headless Chromium")
    .option("--configs <ids>", "only these configuration ids (comma-separated, e.g. none·bf16,norm-mlp-patch·bf16)")
    .option("--quick", "small counts for a smoke run (tiny model unless --presets)")
    .option("--in-process", "run the configurations in this process (no per-configuration RSS)")
    .option("--no-real-size", "skip the real-size rows (0.6B / 1.7B / 4B loaded with no options, the busy-machine row)")
    .option("--out <dir>", "where results.json and RESULTS.md go", path.resolve(here, "..", "..", "bench"))
    .option("--render <results.json>", "only re-render the tables and RESULTS.md from a results.json")
    .option("--child <json>", "internal: measure one configuration and print JSON")
    .parse();
  const a = program.opts<{
    backend?: string;
    presets: string;
    repeats: string;
    decodeSteps: string;
    figureBudget: string;
    skipTorch?: boolean;
    skipOrt?: boolean;
    skipLlamaCpp?: boolean;
    skipWllama?: boolean;
    browser: boolean;
    configs?: string;
    quick?: boolean;
    inProcess?: boolean;
    out: string;
    child?: string;
    render?: string;
    realSize: boolean;
  }>();
  if (a.child) return childMain(a.child);
  if (a.render) {
    const results = JSON.parse(await fsp.readFile(a.render, "utf8")) as BenchResults;
    console.log(renderTerminal(results));
    return writeFileAtomically(path.join(a.out, "RESULTS.md"), renderMarkdown(results), BENCH_OUTPUT);
  }
  const unknown = a.configs?.split(",").filter((id) => !allConfigs().some((c) => c.id === id));
  if (unknown?.length)
    program.error(
      `unknown configuration id(s): ${unknown.join(", ")} (known: ${allConfigs()
        .map((c) => c.id)
        .join(", ")})`,
    );
  const quick = a.quick ? QUICK : {};
  const given = (name: string) => program.getOptionValueSource(name) === "cli";
  const results = await runBench({
    ...quick,
    backend: a.backend,
    ...(given("presets") || !a.quick ? { models: a.presets.split(",") as PresetName[] } : {}),
    ...(given("repeats") || !a.quick ? { repeats: Number(a.repeats) } : {}),
    ...(given("decodeSteps") || !a.quick ? { decodeSteps: Number(a.decodeSteps) } : {}),
    figureBudgetS: Number(a.figureBudget),
    skipTorch: Boolean(a.skipTorch),
    skipOrt: Boolean(a.skipOrt),
    skipLlamaCpp: Boolean(a.skipLlamaCpp),
    skipWllama: Boolean(a.skipWllama),
    ...(a.browser ? {} : { browser: false }),
    ...(a.configs ? { configs: a.configs.split(",") } : {}),
    inProcess: Boolean(a.inProcess),
    ...(a.realSize ? {} : { realSize: false }),
  });
  results.command = ["npm run bench", ...(process.argv.length > 2 ? ["--", ...process.argv.slice(2)] : [])].join(" ");
  console.log(renderTerminal(results));
  await ensureDir(a.out);
  await writeFileAtomically(path.join(a.out, "results.json"), JSON.stringify(results, null, 2) + "\n", BENCH_OUTPUT);
  await writeFileAtomically(path.join(a.out, "RESULTS.md"), renderMarkdown(results), BENCH_OUTPUT);
  console.log(`wrote ${path.join(a.out, "results.json")} and RESULTS.md (${results.elapsedS.toFixed(0)} s)`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
