// The browser peer: llama.cpp's own wasm build (wllama: wasm64 + SIMD128 + pthreads) in headless Chromium on the
// same checkpoint exported by `exportGguf` (bf16 and q8_0), with the protocol of the other peers: prefill of P
// prompt tokens up to the first greedy token, then greedy decode steps on the KV cache. wllama takes text only
// (an OpenAI-style completion API), so a prompt is a text of P special tokens — each one id whatever the merges,
// and the engine's own prompt count checks it is P. @wllama/wllama is a bench-only tool in a folder of its own
// (bench/wllama, installed by hand): never a dependency of fusekit. Without it the bench says how to get it.
import { createReadStream, existsSync, readFileSync, statSync } from "node:fs";
import http from "node:http";
import path from "node:path";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { TokenizerError } from "../src/errors.js";
import { stat, type Figure } from "../src/compare/measure.js";
import type { GgufExportType } from "../src/index.js";
import { ensureGguf } from "./llama-cpp.js";
import type { PeerFigures, PeerPlan } from "./peer.js";

export const WLLAMA_VERSION = "3.8.1";
const here = path.dirname(fileURLToPath(import.meta.url));
/** The bench-only npm folder (repo/bench/wllama). */
export const WLLAMA_DIR = path.resolve(here, "..", "..", "bench", "wllama");
export const WLLAMA_HOWTO = `wllama rows skipped: @wllama/wllama is not installed. Get it (prebuilt wasm, nothing compiled; ~20 MB) with: (cd bench/wllama && npm install --ignore-scripts)`;
/** The Chromium the browser benches drive (Debian's, through playwright-core). */
export const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
export const WLLAMA_TYPES: GgufExportType[] = ["q8_0", "bf16"];

/** wllama's ES module folder (the page imports index.js and fetches wasm/wllama.wasm from it), or undefined. */
export function wllamaPackage(root = WLLAMA_DIR): string | undefined {
  const esm = path.join(root, "node_modules", "@wllama", "wllama", "esm");
  return existsSync(path.join(esm, "index.js")) && existsSync(path.join(esm, "wasm", "wllama.wasm")) ? esm : undefined;
}

// ── Prompts ────────────────────────────────────────────────────────────────────────────────────────────────

interface TokenizerJson {
  added_tokens?: { id: number; content: string; special?: boolean }[];
}

/**
 * A text of `n` special tokens and the ids it stands for: the tokenizer's special added tokens, in id order and
 * repeated, leaving out those that end generation or begin a sequence (`reserved`: bos / eos / pad ids).
 */
export function specialPrompt(
  tokenizer: TokenizerJson,
  reserved: number[],
  n: number,
): { text: string; ids: number[] } {
  const pool = (tokenizer.added_tokens ?? [])
    .filter((t) => t.special && !reserved.includes(t.id))
    .sort((a, b) => a.id - b.id);
  if (!pool.length) throw new TokenizerError("tokenizer.json: no special added token to build a prompt from");
  const picked = Array.from({ length: n }, (_, i) => pool[i % pool.length]);
  return { text: picked.map((t) => t.content).join(""), ids: picked.map((t) => t.id) };
}

/** The special-token prompt of `n` tokens for checkpoint `dir` (its tokenizer.json; reserved ids from its configs). */
export function checkpointPrompt(dir: string, n: number): { text: string; ids: number[] } {
  const read = (name: string) =>
    existsSync(path.join(dir, name)) ? (JSON.parse(readFileSync(path.join(dir, name), "utf8")) as object) : {};
  const reserved = [read("config.json"), read("generation_config.json")].flatMap((c) =>
    ["bos_token_id", "eos_token_id", "pad_token_id"].flatMap((k) => (c as Record<string, unknown>)[k] ?? []),
  ) as number[];
  return specialPrompt(read("tokenizer.json") as TokenizerJson, reserved, n);
}

// ── The page's output ──────────────────────────────────────────────────────────────────────────────────────

/** What one engine call reported: wall ms in the page, and wllama's (llama.cpp server's) own counts and timings. */
export interface WllamaCall {
  wallMs: number;
  promptTokens: number;
  /** llama.cpp's prompt processing time, ms. */
  promptMs: number;
  predictedN: number;
  predictedMs: number;
}

/** What the page returns. */
export interface WllamaOutput {
  wllama: string;
  multithread: boolean;
  threads: number;
  loadMs: number;
  /** Per prompt length, the prefill runs (max_tokens 1: the prompt up to the first token). */
  prefill: Record<string, WllamaCall[]>;
  /** Decode runs (max_tokens = steps + 1 after a prompt of the first length). */
  decode: WllamaCall[];
  decodeSteps: number;
}

export interface WllamaRow extends PeerFigures {
  type: GgufExportType;
  wllama?: string;
  /** Model load in the page (GGUF already fetched into a Blob), ms. */
  loadMs?: number;
  /** Decode as the page saw it (a cross-check): steps ÷ (the call's wall time − llama.cpp's prompt time). */
  decodeWall?: Figure;
}

const fig = (runs: number[]): Figure => ({ ...stat(runs), runs });

/**
 * The page's output as peer figures, checked: every prompt tokenized to its P ids, every decode run generated
 * steps + 1 tokens, and wllama ran on the threads asked for (its multi-thread build when more than one).
 * Prefill = P ÷ the call's wall time (prompt up to the first token); decode = steps ÷ wllama's own generation
 * time (llama.cpp's server timings from the first token on: `steps` forwards on the KV cache, no messaging).
 */
export function wllamaFigures(out: WllamaOutput, type: GgufExportType, threads: number): WllamaRow {
  const row = { type, threads, wllama: out.wllama, loadMs: out.loadMs };
  const wrong: string[] = [];
  if (out.threads !== threads || out.multithread !== threads > 1)
    wrong.push(
      `ran on ${out.threads} thread(s) (${out.multithread ? "multi" : "single"}-thread build), asked ${threads}`,
    );
  for (const [n, calls] of Object.entries(out.prefill))
    for (const c of calls)
      if (c.promptTokens !== Number(n)) wrong.push(`a ${n}-token prompt tokenized to ${c.promptTokens} tokens`);
  for (const c of out.decode)
    if (c.predictedN !== out.decodeSteps + 1)
      wrong.push(`a decode run generated ${c.predictedN} tokens, not ${out.decodeSteps + 1}`);
  if (!out.decode.length) wrong.push("no decode run");
  if (wrong.length) return { ...row, error: [...new Set(wrong)].join("; ") };
  return {
    ...row,
    prefill: Object.fromEntries(
      Object.entries(out.prefill).map(([n, calls]) => [n, fig(calls.map((c) => (Number(n) / c.wallMs) * 1000))]),
    ),
    decode: fig(out.decode.map((c) => (out.decodeSteps / c.predictedMs) * 1000)),
    decodeWall: fig(out.decode.map((c) => (out.decodeSteps / (c.wallMs - c.promptMs)) * 1000)),
  };
}

// ── The page ───────────────────────────────────────────────────────────────────────────────────────────────

const PAGE = `<!doctype html><meta charset="utf-8"><title>wllama peer</title><p>wllama peer page</p>`;

/**
 * A static server on 127.0.0.1 for the wllama page: "/" (an empty page), "/wllama/…" (the package's esm files)
 * and "/model.gguf", cross-origin isolated (COOP/COEP) so wllama gets SharedArrayBuffer and its pthreads.
 * node:http is enough for three routes.
 */
export async function serveWllama(esm: string, gguf: string): Promise<{ url: string; close(): Promise<void> }> {
  const types: Record<string, string> = { ".js": "text/javascript", ".wasm": "application/wasm" };
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://localhost").pathname;
    const headers = {
      "cross-origin-opener-policy": "same-origin",
      "cross-origin-embedder-policy": "require-corp",
      "cross-origin-resource-policy": "same-origin",
      "cache-control": "no-store",
    };
    if (url === "/") return void res.writeHead(200, { ...headers, "content-type": "text/html" }).end(PAGE);
    const file =
      url === "/model.gguf"
        ? gguf
        : url.startsWith("/wllama/") && !url.includes("..")
          ? path.join(esm, ...url.slice("/wllama/".length).split("/"))
          : undefined;
    const size = file && existsSync(file) && statSync(file).isFile() ? statSync(file).size : undefined;
    if (!file || size === undefined) return void res.writeHead(404).end();
    const type = types[path.extname(file)] ?? "application/octet-stream";
    res.writeHead(200, { ...headers, "content-type": type, "content-length": String(size) });
    createReadStream(file)
      .on("error", () => res.destroy())
      .pipe(res);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/`,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** wllama's figures on `gguf` in headless Chromium; a failure or timeout is the row's error, never thrown. */
export async function runWllama(
  esm: string,
  gguf: string,
  type: GgufExportType,
  prompts: Record<number, string>,
  o: PeerPlan,
): Promise<WllamaRow> {
  const server = await serveWllama(esm, gguf);
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox", "--disable-gpu"] });
  let timer: NodeJS.Timeout | undefined;
  try {
    const page = await browser.newPage();
    await page.goto(server.url);
    const longest = Math.max(...o.prefill);
    const { threads, repeats, prefill, decodeSteps, figureBudgetS, timeoutS } = o; // what the page may see
    const plan = { threads, repeats, prefill, decodeSteps, figureBudgetS, timeoutS };
    const args = { ...plan, prompts, nCtx: longest + decodeSteps + 64, nBatch: Math.max(512, longest) };
    const run = page.evaluate(pageMain, args);
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${o.timeoutS} s`)), o.timeoutS * 1000);
    });
    return wllamaFigures(await Promise.race([run, timeout]), type, o.threads);
  } catch (e) {
    return { type, threads: o.threads, error: (e as Error).message.split("\n")[0].slice(0, 300) };
  } finally {
    clearTimeout(timer);
    await browser.close();
    await server.close();
  }
}

/** Runs in the page (serialised by playwright): loads the GGUF in wllama and times completions. */
async function pageMain(a: PeerPlan & { prompts: Record<number, string>; nCtx: number; nBatch: number }) {
  const mod = "/wllama/index.js"; // a variable: the page resolves it, not tsc
  const { Wllama } = (await import(mod)) as { Wllama: { new (...args: unknown[]): any; getLibllamaVersion(): string } };
  const w = new Wllama({ default: "/wllama/wasm/wllama.wasm" }, { suppressNativeLog: true });
  w.setCompat(null); // the local build, never the CDN's compatibility one
  const blob = await (await fetch("/model.gguf")).blob();
  const t0 = performance.now();
  await w.loadModel([blob], {
    n_threads: a.threads,
    n_ctx: a.nCtx,
    n_batch: a.nBatch,
    n_gpu_layers: 0,
    n_parallel: 1,
  });
  const loadMs = performance.now() - t0;
  const call = async (n: number, maxTokens: number) => {
    const t = performance.now();
    const r = await w.createCompletion({
      prompt: a.prompts[n],
      max_tokens: maxTokens,
      temperature: 0,
      ignore_eos: true,
      cache_prompt: false,
    });
    const wallMs = performance.now() - t;
    return {
      wallMs,
      promptTokens: r.usage.prompt_tokens as number,
      promptMs: r.timings.prompt_ms as number,
      predictedN: r.timings.predicted_n as number,
      predictedMs: r.timings.predicted_ms as number,
    };
  };
  /** Up to `repeats` runs, stopping once one more would pass the budget (≥ 1 run), as the other peers do. */
  const within = async (fn: () => Promise<{ wallMs: number }>) => {
    const runs = [];
    const start = performance.now();
    while (runs.length < a.repeats) {
      const t = performance.now();
      runs.push(await fn());
      if (2 * performance.now() - t - start > a.figureBudgetS * 1000) break;
    }
    return runs;
  };
  await call(a.prefill[0], 3); // warm-up
  const prefill: Record<string, unknown[]> = {};
  for (const n of a.prefill) prefill[n] = await within(() => call(n, 1));
  const decode = await within(() => call(a.prefill[0], a.decodeSteps + 1));
  const out = {
    wllama: Wllama.getLibllamaVersion(),
    multithread: w.isMultithread() as boolean,
    threads: w.getNumThreads() as number,
    loadMs,
    prefill,
    decode,
    decodeSteps: a.decodeSteps,
  };
  await w.exit();
  return out as unknown as WllamaOutput;
}

// ── The bench's rows ───────────────────────────────────────────────────────────────────────────────────────

/** wllama on checkpoint `dir`: q8_0 and bf16 exports on `threads`, or why there are none (`note`). */
export async function benchWllama(
  dir: string,
  o: PeerPlan & { skip?: boolean; log: (l: string) => void; packageRoot?: string },
): Promise<{ rows: WllamaRow[]; note?: string }> {
  if (o.skip) return { rows: [], note: "wllama skipped (--skip-wllama)" };
  const esm = wllamaPackage(o.packageRoot);
  if (!esm) return { rows: [], note: WLLAMA_HOWTO };
  if (!existsSync(CHROMIUM)) return { rows: [], note: `wllama rows skipped: no Chromium at ${CHROMIUM}` };
  const prompts = Object.fromEntries(o.prefill.map((n) => [n, checkpointPrompt(dir, n).text]));
  const rows: WllamaRow[] = [];
  for (const type of WLLAMA_TYPES) {
    let gguf: string;
    try {
      gguf = await ensureGguf(dir, type, o.log);
    } catch (e) {
      rows.push({ type, threads: o.threads, error: `GGUF export failed: ${(e as Error).message}` });
      continue;
    }
    o.log(`wllama ${type}, ${o.threads} thread(s), headless Chromium…`);
    rows.push(await runWllama(esm, gguf, type, prompts, o));
  }
  return { rows };
}
