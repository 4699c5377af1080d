// The llama.cpp peer: the same checkpoint exported by `exportGguf` (bf16 and q8_0), run by llama.cpp through
// node-llama-cpp's prebuilt CPU binaries with 1 and 2 threads on the same prompt ids and protocol as fusekit's
// rows, plus its next-token probabilities against fusekit's own forward (fidelity). node-llama-cpp is a
// bench-only tool in a folder of its own (bench/llama-cpp, installed by hand with --ignore-scripts: its GPU
// packages make it 700+ MB): never a dependency of fusekit. Without it the bench says how to get it.
import { execFile } from "node:child_process";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { derivedDir } from "./configs.js";
import { promptIds, type Figure } from "../src/compare/measure.js";
import { AutoModelForCausalLM, exportGguf, type FromPretrainedOptions, type GgufExportType } from "../src/index.js";
import { runPeer, type PeerBenchOptions, type PeerPlan } from "./peer.js";

export const LLAMA_CPP_VERSION = "3.21.1";
const here = path.dirname(fileURLToPath(import.meta.url));
/** The bench-only npm folder (repo/bench/llama-cpp). */
export const LLAMA_CPP_DIR = path.resolve(here, "..", "..", "bench", "llama-cpp");
export const LLAMA_CPP_HOWTO = `llama.cpp rows skipped: node-llama-cpp is not installed. Get it (prebuilt CPU binaries, nothing compiled; ~700 MB) with: (cd bench/llama-cpp && npm install --ignore-scripts)`;

export interface LlamaCppRow {
  type: GgufExportType;
  threads: number;
  llamaCpp?: string;
  prefill?: Record<string, Figure>;
  decode?: Figure;
  error?: string;
}

/** How close llama.cpp's next-token distribution is to fusekit's on the same ids. */
export interface LlamaCppFidelity {
  type: GgufExportType;
  /** Prompt length. */
  ids: number;
  /** max |Δ log p| over the tokens llama.cpp reports (= logit difference after centring). */
  maxAbsLogProb?: number;
  /** max |Δ p| over the vocabulary. */
  maxAbsProb?: number;
  /** Standard deviation of fusekit's logits: the scale max |Δ| is small against. */
  logitStd?: number;
  sameArgmax?: boolean;
  error?: string;
}

/** node-llama-cpp's folder, or undefined when it is not installed. */
export function llamaCppPackage(): string | undefined {
  const dir = path.join(LLAMA_CPP_DIR, "node_modules", "node-llama-cpp");
  return existsSync(path.join(dir, "package.json")) ? dir : undefined;
}

/**
 * The GGUF export of checkpoint `dir` as `type` (cached under the fusekit cache folder, keyed by the checkpoint's
 * path, size and mtime), written with fusekit's own exportGguf when missing.
 */
export async function ensureGguf(dir: string, type: GgufExportType, log: (l: string) => void): Promise<string> {
  const folder = derivedDir(dir, "gguf");
  const file = path.join(folder, `model-${type}.gguf`);
  if (existsSync(file)) return file;
  mkdirSync(folder, { recursive: true });
  log(`exporting ${dir} to GGUF ${type} (fusekit export-gguf)…`);
  const model = await AutoModelForCausalLM.fromPretrained(dir);
  try {
    await exportGguf(model, file, { type });
  } finally {
    model.dispose();
  }
  return file;
}

/** Runs bench/llama-cpp-child.js (built to dist/bench) in a child process. */
function child(payload: object, threads: number, timeoutS: number) {
  return runPeer(process.execPath, [path.join(here, "llama-cpp-child.js"), JSON.stringify(payload)], threads, timeoutS);
}

/** llama.cpp's prefill and decode figures on `gguf`. */
export async function runLlamaCpp(
  llamaDir: string,
  gguf: string,
  type: GgufExportType,
  o: PeerPlan & { vocab: number },
): Promise<LlamaCppRow> {
  const { output, ...r } = await child({ mode: "bench", llamaDir, gguf, ...o }, o.threads, o.timeoutS);
  return { type, ...r, llamaCpp: output?.llamaCpp as string | undefined };
}

/** llama.cpp's next-token probabilities after `ids` against fusekit's forward of checkpoint `dir` on the same ids. */
export async function llamaCppFidelity(
  llamaDir: string,
  dir: string,
  gguf: string,
  type: GgufExportType,
  ids: number[],
  timeoutS: number,
): Promise<LlamaCppFidelity> {
  const probe = await new Promise<{ probs?: [number, number][]; error?: string }>((resolve) =>
    execFile(
      process.execPath,
      [path.join(here, "llama-cpp-child.js"), JSON.stringify({ mode: "probe", llamaDir, gguf, threads: 2, ids })],
      { encoding: "utf8", timeout: timeoutS * 1000, maxBuffer: 1 << 28 },
      (err, stdout, stderr) => {
        if (err) return resolve({ error: `${err.message.split("\n")[0]} ${stderr.trim().split("\n").pop() ?? ""}` });
        resolve(JSON.parse(stdout.trim().split("\n").pop()!) as { probs: [number, number][] });
      },
    ),
  );
  if (!probe.probs) return { type, ids: ids.length, error: probe.error };
  return { type, ids: ids.length, ...compareDistributions(await nextTokenLogits(dir, ids), probe.probs) };
}

/** fusekit's next-token logits after `ids` for checkpoint `dir` loaded with `options` (default: no options). */
async function nextTokenLogits(dir: string, ids: number[], options: FromPretrainedOptions = {}): Promise<Float32Array> {
  const model = await AutoModelForCausalLM.fromPretrained(dir, options);
  try {
    const out = model.forward({ inputIds: [ids], logitsToKeep: 1 }).logits; // [1, 1, vocab]
    const logits = out.dataSync() as Float32Array;
    out.dispose();
    return logits;
  } finally {
    model.dispose();
  }
}

/**
 * fusekit's int8 weights against its bf16 forward after the same ids, by the measure llama.cpp's q8_0 gets against
 * that forward (every token's probability counts here).
 */
export async function int8Fidelity(dir: string, ids: number[]): Promise<Omit<LlamaCppFidelity, "type">> {
  const bf16 = await nextTokenLogits(dir, ids, { weightStorage: "bf16" });
  const int8 = await nextTokenLogits(dir, ids, { weightStorage: "int8" });
  const max = bf16.reduce((a, b) => Math.max(a, b), -Infinity);
  const sum = bf16.reduce((a, v) => a + Math.exp(v - max), 0);
  const probs = Array.from(bf16, (v, i): [number, number] => [i, Math.exp(v - max) / sum]);
  return { ids: ids.length, ...compareDistributions(int8, probs) };
}

/** fusekit's logits against llama.cpp's probabilities (a sparse list: tokens it omits count as p = 0). */
export function compareDistributions(logits: Float32Array, probs: [number, number][]) {
  const n = logits.length;
  let max = -Infinity;
  for (const v of logits) max = Math.max(max, v);
  let sum = 0;
  for (const v of logits) sum += Math.exp(v - max);
  const lse = max + Math.log(sum);
  const theirs = new Float64Array(n);
  for (const [id, p] of probs) theirs[id] = p;
  let maxAbsProb = 0;
  let maxAbsLogProb = 0;
  let argmaxTheirs = 0;
  for (let i = 0; i < n; i++) {
    const mine = Math.exp(logits[i] - lse);
    maxAbsProb = Math.max(maxAbsProb, Math.abs(mine - theirs[i]));
    if (theirs[i] > 0) maxAbsLogProb = Math.max(maxAbsLogProb, Math.abs(logits[i] - lse - Math.log(theirs[i])));
    if (theirs[i] > theirs[argmaxTheirs]) argmaxTheirs = i;
  }
  const mean = logits.reduce((a, b) => a + b, 0) / n;
  const logitStd = Math.sqrt(logits.reduce((a, b) => a + (b - mean) ** 2, 0) / n);
  const argmaxMine = logits.indexOf(max);
  return { maxAbsLogProb, maxAbsProb, logitStd, sameArgmax: argmaxMine === argmaxTheirs };
}

/** The vocabulary size of checkpoint `dir`. */
export const vocabOf = (dir: string) =>
  (JSON.parse(readFileSync(path.join(dir, "config.json"), "utf8")) as { vocab_size: number }).vocab_size;

/** What the bench adds to a model's entry. */
export interface LlamaCppFields {
  llamaCpp?: LlamaCppRow[];
  llamaCppFidelity?: LlamaCppFidelity[];
  /** fusekit's int8 weights against its own bf16 forward, measured as llama.cpp's q8_0 is. */
  int8Fidelity?: Omit<LlamaCppFidelity, "type">;
  /** Why there are no llama.cpp rows (not installed, skipped, export failed). */
  llamaCppNote?: string;
}

export const LLAMA_CPP_TYPES: GgufExportType[] = ["bf16", "q8_0"];

/**
 * The llama.cpp rows of one checkpoint: bf16 and q8_0 exports, 1 and 2 threads, the same prompts and protocol as
 * fusekit's rows; then each type's next-token probabilities against fusekit's forward on the first prompt.
 */
export async function benchLlamaCpp(
  entry: { name: string; dir: string } & LlamaCppFields,
  o: PeerBenchOptions & { skipLlamaCpp?: boolean },
): Promise<void> {
  if (o.skipLlamaCpp) {
    entry.llamaCppNote = "llama.cpp skipped (--skip-llama-cpp)";
    return;
  }
  const llamaDir = llamaCppPackage();
  if (!llamaDir) {
    entry.llamaCppNote = LLAMA_CPP_HOWTO;
    return;
  }
  const vocab = vocabOf(entry.dir);
  entry.llamaCpp = [];
  entry.llamaCppFidelity = [];
  for (const type of LLAMA_CPP_TYPES) {
    let gguf: string;
    try {
      gguf = await ensureGguf(entry.dir, type, o.log);
    } catch (e) {
      entry.llamaCpp.push({ type, threads: 0, error: `GGUF export failed: ${(e as Error).message}` });
      continue;
    }
    for (const threads of [1, 2]) {
      o.log(`[${entry.name}] llama.cpp ${type}, ${threads} thread(s)…`);
      const run = {
        threads,
        repeats: o.repeats,
        prefill: o.prefill,
        decodeSteps: o.decodeSteps,
        figureBudgetS: o.figureBudgetS,
        timeoutS: o.childTimeoutS,
        vocab,
      };
      entry.llamaCpp.push(await runLlamaCpp(llamaDir, gguf, type, run));
    }
    o.log(`[${entry.name}] llama.cpp ${type}: next-token probabilities against fusekit's forward…`);
    const ids = promptIds(o.prefill[0], vocab);
    entry.llamaCppFidelity.push(
      await llamaCppFidelity(llamaDir, entry.dir, gguf, type, ids, o.childTimeoutS).catch((e: unknown) => ({
        type,
        ids: ids.length,
        error: (e as Error).message,
      })),
    );
  }
  o.log(`[${entry.name}] fusekit int8: next-token probabilities against fusekit's bf16 forward…`);
  const ids = promptIds(o.prefill[0], vocab);
  entry.int8Fidelity = await int8Fidelity(entry.dir, ids).catch((e: unknown) => ({
    ids: ids.length,
    error: (e as Error).message,
  }));
}
