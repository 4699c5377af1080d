// Real-size rows of `npm run bench`: per preset (Qwen3-0.6B, 1.7B and 4B shapes, BF16) a load with no
// options, as a new user runs it — its speed against the checkpoint's page-cache read speed measured in the
// same run, the first forward, then prefill and decode tokens/s, and its peak RSS through all of it against the
// bytes the chosen storage needs; or the memory planner's reason it cannot run. Each preset runs in its own child
// process (`realsize.js --child`), so its RSS is its own. Then the busy-machine row: the first preset decoded with
// a CPU hog (`yes`) beside it, on every kernel thread and on one.
import { execFile, spawn } from "node:child_process";
import { statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { AutoModelForCausalLM, ensureModel, getBackend, setBackend, tf, type PresetName } from "../src/index.js";
import { kernelPool } from "../src/backend/pool.js";
import { decodeTokensPerSecond, prefillTokensPerSecond, stat } from "../src/compare/measure.js";
import { freshMemoryReadSpeed, pageCacheReadSpeed } from "./machine.js";

export const REAL_SIZE_PRESETS: PresetName[] = ["qwen3-0.6b", "qwen3-1.7b", "qwen3-4b"];

/** Peak RSS allowed for a model: 1.15 × the bytes its storage needs + 150 MB (one copy of every weight). */
export const rssBound = (storageBytes: number) => 1.15 * storageBytes + 150e6;

export interface RealSizeRow {
  preset: string;
  fileBytes: number;
  /** Page-cache read speed of model.safetensors, GB/s (median). */
  readGBps: number;
  /** Its tensors read into fresh memory by the loader's parallel reads alone (machine.ts `freshMemoryReadSpeed`), GB/s (median). */
  freshReadGBps: number;
  storage?: string;
  /** Median of LOADS loads, each in its own child process. */
  loadS?: number;
  loadRuns?: number[];
  /** Load speed (file bytes ÷ load time) ÷ page-cache read speed: the target is ≥ 0.5. */
  loadRatio?: number;
  /** Load speed ÷ the read speed into fresh memory: how near the loader comes to its reads alone (≤ 1). */
  loadRatioFresh?: number;
  /** maxRSS of the child through loading, the first forward, prefill and decode. */
  peakRssBytes?: number;
  /** Bytes the chosen storage needs: weights + the backend's copy of them (memory plan). */
  storageBytes?: number;
  /** peakRss ÷ storageBytes. */
  rssRatio?: number;
  /** peakRss ÷ rssBound(storageBytes): the target is ≤ 1. */
  rssToBound?: number;
  /** Seconds of the first forward after loading (one token). */
  firstForwardS?: number;
  prefillTokS?: number;
  decodeTokS?: number;
  error?: string;
}

interface ChildResult {
  /** RSS of the process with the runtime up (backend, kernel pool started) before any model, after a GC. */
  runtimeRssBytes?: number;
  storage: string;
  loadS: number;
  firstForwardS: number;
  peakRssBytes: number;
  storageBytes: number;
  prefillTokS: number;
  decodeTokS: number;
}

const here = path.dirname(fileURLToPath(import.meta.url));
const maxRss = () => process.resourceUsage().maxRSS * 1024;
/** Loads timed per preset (one with prefill and decode, the others load only): VM noise is ±10% per load. */
const LOADS = 3;

/** The real-size rows: each preset is created if missing (the 1.7B shape is written once, ~3.4 GB, several minutes). */
export async function realSizeRows(
  backend: string,
  o: { prefill: number; decodeSteps: number; timeoutS: number; log: (l: string) => void },
): Promise<RealSizeRow[]> {
  const rows: RealSizeRow[] = [];
  for (const preset of REAL_SIZE_PRESETS) {
    o.log(`[real size ${preset}] checkpoint, page-cache read speed, load with no options…`);
    const dir = await ensureModel(preset);
    const file = path.join(dir, "model.safetensors");
    const fileBytes = statSync(file).size;
    const readGBps = (await pageCacheReadSpeed(file, 2)).median;
    const freshReadGBps = (await freshMemoryReadSpeed(dir, 2)).median;
    const payload = { dir, backend, prefill: o.prefill, decodeSteps: o.decodeSteps };
    const { result, error } = await runRealSizeChild<ChildResult>(payload, o.timeoutS);
    if (!result) {
      rows.push({ preset, fileBytes, readGBps, freshReadGBps, error });
      continue;
    }
    // two more loads, each in a fresh process (a second load in one process reuses memory already faulted in)
    const loads = [result.loadS];
    for (let i = 1; i < LOADS; i++) {
      const again = await runRealSizeChild<Pick<ChildResult, "loadS">>({ ...payload, loadOnly: true }, o.timeoutS);
      if (again.result) loads.push(again.result.loadS);
    }
    const loadS = stat(loads).median;
    const loadGBps = fileBytes / 1e9 / loadS;
    rows.push({
      preset,
      fileBytes,
      readGBps,
      freshReadGBps,
      ...result,
      loadS,
      loadRuns: loads,
      loadRatio: loadGBps / readGBps,
      loadRatioFresh: loadGBps / freshReadGBps,
      rssRatio: result.peakRssBytes / result.storageBytes,
      rssToBound: result.peakRssBytes / rssBound(result.storageBytes),
    });
  }
  return rows;
}

/** The busy-machine row: decode of `preset` with one CPU hog beside it, on every kernel thread and on one. */
export interface BusyRow {
  preset: string;
  poolDecodeTokS?: number;
  oneThreadDecodeTokS?: number;
  poolFirstForwardS?: number;
  oneThreadFirstForwardS?: number;
  /** pool ÷ one thread, decode: the target is ≥ 0.9. */
  decodeRatio?: number;
  /** pool ÷ one thread, first forward: the target is ≤ 1.5. */
  firstForwardRatio?: number;
  error?: string;
}

export async function busyRow(
  backend: string,
  o: { prefill: number; decodeSteps: number; timeoutS: number; log: (l: string) => void },
): Promise<BusyRow> {
  const preset = REAL_SIZE_PRESETS[0];
  o.log(`[real size ${preset}] decode beside a CPU hog, every kernel thread and one…`);
  const dir = await ensureModel(preset);
  const payload = { dir, backend, prefill: o.prefill, decodeSteps: o.decodeSteps };
  const hog = spawn("yes", { stdio: "ignore" });
  try {
    const pool = await runRealSizeChild<ChildResult>(payload, o.timeoutS);
    const one = await runRealSizeChild<ChildResult>(payload, o.timeoutS, { FUSEKIT_THREADS: "1" });
    if (!pool.result || !one.result) return { preset, error: pool.error ?? one.error };
    return {
      preset,
      poolDecodeTokS: pool.result.decodeTokS,
      oneThreadDecodeTokS: one.result.decodeTokS,
      poolFirstForwardS: pool.result.firstForwardS,
      oneThreadFirstForwardS: one.result.firstForwardS,
      decodeRatio: pool.result.decodeTokS / one.result.decodeTokS,
      firstForwardRatio: pool.result.firstForwardS / one.result.firstForwardS,
    };
  } finally {
    hog.kill("SIGKILL");
  }
}

function runRealSizeChild<R>(
  payload: object,
  timeoutS: number,
  env: Record<string, string> = {},
): Promise<{ result?: R; error?: string }> {
  return new Promise((resolve) => {
    const args = [...process.execArgv, path.join(here, "realsize.js"), "--child", JSON.stringify(payload)]; // the parent's Node flags (e.g. --experimental-wasm-relaxed-simd)
    execFile(
      process.execPath,
      args,
      { encoding: "utf8", timeout: timeoutS * 1000, maxBuffer: 1 << 24, env: { ...process.env, ...env } },
      (err, stdout, stderr) => {
        try {
          return resolve(JSON.parse(stdout.trim().split("\n").pop() ?? ""));
        } catch {
          resolve({
            error: `${err?.killed ? `killed after ${timeoutS} s` : "child failed"}: ${stderr.trim().split("\n").slice(-1)[0] ?? ""}`,
          });
        }
      },
    );
  });
}

/** The child: load with no options (weightStorage "auto", the planner first), then (unless loadOnly) prefill and decode. */
async function childMain(payload: string): Promise<void> {
  const { dir, backend, prefill, decodeSteps, loadOnly, runtimeBaseline } = JSON.parse(payload) as {
    dir: string;
    backend: string;
    prefill: number;
    decodeSteps: number;
    loadOnly?: boolean;
    /** Measure the runtime's own RSS first (run node with --expose-gc): what the model adds is peak − it. */
    runtimeBaseline?: boolean;
  };
  let out: { result?: ChildResult | Pick<ChildResult, "loadS">; error?: string };
  try {
    await setBackend(backend);
    let runtimeRssBytes: number | undefined;
    if (runtimeBaseline) {
      tf.tidy(() => tf.matMul(tf.ones([64, 64]), tf.ones([64, 64])).dataSync()); // the backend's kernels in use
      if (getBackend() === "wasm") kernelPool().workersStarted(); // its threads are the runtime's, not the model's
      (globalThis as { gc?: () => void }).gc?.();
      runtimeRssBytes = process.memoryUsage().rss;
    }
    const t0 = performance.now();
    const model = await AutoModelForCausalLM.fromPretrained(dir, {
      contextLength: prefill + decodeSteps + 16,
      promptLength: prefill,
    });
    const loadS = (performance.now() - t0) / 1000;
    const plan = model.memoryPlan!;
    if (loadOnly) out = { result: { loadS } };
    else {
      const t1 = performance.now();
      prefillTokensPerSecond(model, 1); // the first forward (and the warm-up)
      const firstForwardS = (performance.now() - t1) / 1000;
      const prefillTokS = prefillTokensPerSecond(model, prefill);
      const decodeTokS = decodeTokensPerSecond(model, decodeSteps);
      out = {
        result: {
          ...(runtimeRssBytes !== undefined ? { runtimeRssBytes } : {}),
          storage: plan.storage,
          loadS,
          firstForwardS,
          peakRssBytes: maxRss(),
          storageBytes: plan.weightBytes + plan.backendCopyBytes,
          prefillTokS,
          decodeTokS,
        },
      };
    }
    model.dispose();
  } catch (e) {
    out = { error: e instanceof Error ? `${e.name}: ${e.message}`.slice(0, 400) : String(e) };
  }
  process.stdout.write(JSON.stringify(out) + "\n");
}

const mark = (ok: boolean) => (ok ? "✓" : "✗");

/** The rows as a report section (bench/report.ts renders it with the others). */
export function realSizeSection(rows: RealSizeRow[], prefill: number, decodeSteps: number, busy?: BusyRow) {
  const g = (x?: number, d = 2) => (x === undefined ? "" : x.toFixed(d));
  return {
    title: "real sizes: load with no options",
    head: [
      "preset",
      "file GB",
      "page cache GB/s",
      "storage",
      `load s (median of ${LOADS})`,
      "load ÷ read speed (≥ 0.5)",
      "fresh-memory read GB/s",
      "highest load ÷ read speed possible",
      "load ÷ fresh-memory read",
      "first forward s (≤ 0.3 at 0.6B)",
      "peak RSS GiB",
      "RSS ÷ storage bytes",
      "RSS ÷ (1.15 × storage + 150 MB) (≤ 1)",
      `prefill ${prefill} tok/s`,
      `decode ${decodeSteps} tok/s`,
    ],
    rows: rows.map((r) =>
      r.error
        ? [
            r.preset,
            g(r.fileBytes / 1e9),
            g(r.readGBps),
            "",
            "",
            "",
            g(r.freshReadGBps),
            g(r.freshReadGBps / r.readGBps),
            "",
            "",
            "",
            "",
            "",
            "",
            r.error,
          ]
        : [
            r.preset,
            g(r.fileBytes / 1e9),
            g(r.readGBps),
            r.storage!,
            g(r.loadS),
            g(r.loadRatio),
            g(r.freshReadGBps),
            g(r.freshReadGBps / r.readGBps),
            g(r.loadRatioFresh),
            `${g(r.firstForwardS, 3)}${r.preset === "qwen3-0.6b" ? ` ${mark(r.firstForwardS! <= 0.3)}` : ""}`,
            g(r.peakRssBytes! / 2 ** 30),
            g(r.rssRatio),
            `${g(r.rssToBound)} ${mark(r.rssToBound! <= 1)}`,
            g(r.prefillTokS, 1),
            g(r.decodeTokS, 1),
          ],
    ),
    notes: [
      `Each load runs in its own child process with no options (weightStorage auto, planned before reading); the load time is the median of ${LOADS} such loads (runs in results.json). The first child then runs one forward of one token (the first forward), a ${prefill}-token prefill and ${decodeSteps} decode steps; RSS is its maxRSS through all of it, storage bytes are the plan's weights plus the backend's copy.`,
      ...(busy
        ? [
            busy.error
              ? `Busy machine (${busy.preset}, a \`yes\` beside it): ${busy.error}`
              : `Busy machine (${busy.preset}, a \`yes\` beside it): decode ${g(busy.poolDecodeTokS, 1)} tok/s on every kernel thread vs ${g(busy.oneThreadDecodeTokS, 1)} on one = ${g(busy.decodeRatio)} (≥ 0.9 ${mark(busy.decodeRatio! >= 0.9)}); first forward ${g(busy.poolFirstForwardS, 3)} vs ${g(busy.oneThreadFirstForwardS, 3)} s = ${g(busy.firstForwardRatio)} (≤ 1.5 ${mark(busy.firstForwardRatio! <= 1.5)}).`,
          ]
        : []),
      "page cache GB/s (the load target's baseline) reads the file through one reused 16 MB buffer. fresh-memory read " +
        "GB/s reads its tensors into memory never touched before, as a loader must place them, with the loader's own " +
        "parallel reads and nothing else (no model, no plan): it pays the kernel's page faults, which on these VMs " +
        "cost several times the copy, so it is the fastest any loader places these bytes here, and its ratio to the " +
        "page-cache speed is the highest load ÷ read speed this run allows.",
    ],
  };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href && process.argv[2] === "--child") {
  childMain(process.argv[3]).catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
