// fusekit in the browser, measured: the demo page (`fusekit serve`) in headless Chromium against Node on the
// same checkpoint — page ready (model loaded) after navigation, and decode tokens/s with the same function
// (compare/measure.ts decodeTokensPerSecond: greedy steps after a prompt of `context` tokens) in both. Both
// use every core: Node's kernel pool on worker_threads, the page's on Web Workers (cross-origin isolated).
// Beside them the browser peer, wllama (bench/wllama.ts), on the same checkpoint and prompt length.
// Usage: node dist/bench/browser.js [--model DIR] [--context 64] [--steps 32] [--runs 3] [--no-isolation]
//        [--skip-wllama] [--weights int8]
import { existsSync } from "node:fs";
import os from "node:os";
import { pathToFileURL } from "node:url";
import { Command, Option } from "commander";
import { chromium } from "playwright-core";
import { AutoModelForCausalLM, defaultModelDir, kernelThreads, setBackend } from "../src/index.js";
import { WEIGHT_STORAGE_CHOICES, type WeightStorageChoice } from "../src/loading/memory-plan.js";
import { decodeTokensPerSecond, stat, type Figure } from "../src/compare/measure.js";
import { startServer } from "../src/cli/serve.js";
import { CHROMIUM, benchWllama, type WllamaRow } from "./wllama.js";
import type { PeerBenchOptions } from "./peer.js";

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const load = () => os.loadavg()[0].toFixed(2);

async function nodeDecode(
  dir: string,
  context: number,
  steps: number,
  runs: number,
  weights?: WeightStorageChoice,
): Promise<number[]> {
  await setBackend("wasm");
  const model = await AutoModelForCausalLM.fromPretrained(dir, weights ? { weightStorage: weights } : {});
  try {
    decodeTokensPerSecond(model, 2, context); // warm-up
    return Array.from({ length: runs }, () => decodeTokensPerSecond(model, steps, context));
  } finally {
    model.dispose();
  }
}

export async function pageRuns(
  dir: string,
  o: { context: number; steps: number; runs: number; isolation: boolean; weights?: WeightStorageChoice },
) {
  const server = await startServer({ modelDir: dir, isolation: o.isolation });
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox", "--disable-gpu"] });
  const out: { readyMs: number; tokensPerSecond: number; mode: string; timings: Record<string, number> }[] = [];
  try {
    for (let run = 0; run < o.runs; run++) {
      const page = await browser.newPage();
      await page.goto(server.url + (o.weights ? `?weights=${o.weights}` : ""));
      const r = await page.evaluate(
        async ({ context, steps }) => {
          const g = globalThis as any;
          await g.demo.ready;
          g.fusekit.decodeTokensPerSecond(g.demo.model, 2, context); // warm-up
          const tokensPerSecond = g.fusekit.decodeTokensPerSecond(g.demo.model, steps, context);
          const mode = g.fusekit.kernelRuntime().mode as string;
          return { readyMs: g.demo.loadMs as number, tokensPerSecond, mode, timings: g.demo.timings };
        },
        { context: o.context, steps: o.steps },
      );
      out.push(r);
      await page.close();
    }
  } finally {
    await browser.close();
    await server.close();
  }
  return out;
}

/** What the bench adds to a model's entry: the page's decode and the wllama rows beside it. */
export interface BrowserFields {
  browser?: {
    /** fusekit's demo page, decode tokens/s after a prompt of the first prefill length. */
    page?: Figure;
    /** The page's kernel runtime (threads, isolation). */
    pageMode?: string;
    pageError?: string;
    wllama: WllamaRow[];
    /** Why there are no wllama rows (not installed, skipped, no Chromium). */
    wllamaNote?: string;
  };
}

/** The browser rows of checkpoint `dir`: the page's decode (one page load per run), then wllama q8_0 and bf16. */
export async function benchBrowser(
  entry: { name: string; dir: string } & BrowserFields,
  o: PeerBenchOptions & { skipWllama?: boolean },
): Promise<void> {
  const b: NonNullable<BrowserFields["browser"]> = { wllama: [] };
  entry.browser = b;
  if (!existsSync(CHROMIUM)) {
    b.pageError = b.wllamaNote = `no Chromium at ${CHROMIUM}`;
    return;
  }
  o.log(`[${entry.name}] fusekit's page in headless Chromium, decode…`);
  try {
    const runs = await pageRuns(entry.dir, {
      context: o.prefill[0],
      steps: o.decodeSteps,
      runs: o.repeats,
      isolation: true,
    });
    const tps = runs.map((r) => r.tokensPerSecond);
    b.page = { ...stat(tps), runs: tps };
    b.pageMode = runs[0].mode;
  } catch (e) {
    b.pageError = (e as Error).message.split("\n")[0].slice(0, 300);
  }
  const threads = os.cpus().length;
  const { rows, note } = await benchWllama(entry.dir, {
    threads,
    skip: o.skipWllama,
    repeats: o.repeats,
    prefill: o.prefill,
    decodeSteps: o.decodeSteps,
    figureBudgetS: o.figureBudgetS,
    timeoutS: o.childTimeoutS,
    log: (l) => o.log(`[${entry.name}] ${l}`),
  });
  b.wllama = rows;
  b.wllamaNote = note;
}

const program = new Command("bench-browser")
  .option("--model <dir>", "checkpoint folder (default: the embedded tiny model)")
  .option("--context <n>", "prompt tokens before decoding", Number, 64)
  .option("--steps <n>", "decode steps timed", Number, 32)
  .option("--runs <n>", "page loads (and Node decode runs)", Number, 3)
  .option("--no-isolation", "serve without COOP/COEP (the page then runs on one thread)")
  .option("--skip-wllama", "leave out the wllama rows (run when @wllama/wllama is installed in bench/wllama)")
  .addOption(
    new Option("--weights <storage>", "weight storage in Node and the page (default: auto)").choices([
      ...WEIGHT_STORAGE_CHOICES,
    ]),
  )
  .action(
    async (o: {
      model?: string;
      context: number;
      steps: number;
      runs: number;
      isolation: boolean;
      skipWllama?: boolean;
      weights?: WeightStorageChoice;
    }) => {
      if (!existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM}`);
      const dir = o.model ?? (await defaultModelDir());
      console.log(
        `model ${dir}; weights ${o.weights ?? "auto"}; context ${o.context}, ${o.steps} decode steps, ${o.runs} runs; load ${load()}`,
      );
      const node = await nodeDecode(dir, o.context, o.steps, o.runs, o.weights);
      console.log(
        `node  decode ${median(node).toFixed(1)} tok/s (runs ${node.map((x) => x.toFixed(1)).join(", ")}; ` +
          `${kernelThreads()} threads); load ${load()}`,
      );
      const page = await pageRuns(dir, o);
      console.log(
        `page  decode ${median(page.map((p) => p.tokensPerSecond)).toFixed(1)} tok/s (runs ` +
          `${page.map((p) => p.tokensPerSecond.toFixed(1)).join(", ")}; ${page[0].mode}); load ${load()}`,
      );
      console.log(
        `page  ready ${median(page.map((p) => p.readyMs)).toFixed(0)} ms after navigation (runs ` +
          `${page.map((p) => p.readyMs.toFixed(0)).join(", ")})`,
      );
      const steps = Object.keys(page[0].timings);
      const at = (k: string) => median(page.map((p) => p.timings[k])).toFixed(0);
      console.log(`page  steps done at (ms after navigation, median): ${steps.map((k) => `${k} ${at(k)}`).join(", ")}`);
      const threads = os.cpus().length;
      const wllama = await benchWllama(dir, {
        threads,
        skip: o.skipWllama,
        repeats: o.runs,
        prefill: [o.context],
        decodeSteps: o.steps,
        figureBudgetS: 600,
        timeoutS: 3600,
        log: (l) => console.log(l),
      });
      if (wllama.note) console.log(wllama.note);
      for (const r of wllama.rows) {
        const runs = (f?: Figure) => f?.runs.map((x) => x.toFixed(2)).join(", ");
        console.log(
          r.error
            ? `wllama ${r.type} error: ${r.error}`
            : `wllama ${r.type} (llama.cpp ${r.wllama}, ${r.threads} threads): prefill ${o.context} ` +
                `${r.prefill![o.context].median.toFixed(2)} tok/s (runs ${runs(r.prefill![o.context])}), decode ` +
                `${r.decode!.median.toFixed(2)} tok/s (runs ${runs(r.decode)}; page wall clock ${runs(r.decodeWall)}); ` +
                `model load ${(r.loadMs! / 1000).toFixed(1)} s; load ${load()}`,
        );
      }
    },
  );
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await program.parseAsync();
