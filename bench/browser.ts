// fusekit in the browser, measured: the demo page (`fusekit serve`) in headless Chromium against Node on the
// same checkpoint — page ready (model loaded) after navigation, and decode tokens/s with the same function
// (compare/measure.ts decodeTokensPerSecond: greedy steps after a prompt of `context` tokens) in both. Both
// use every core: Node's kernel pool on worker_threads, the page's on Web Workers (cross-origin isolated).
// Usage: node dist/bench/browser.js [--model DIR] [--context 64] [--steps 32] [--runs 3] [--no-isolation]
import { existsSync } from "node:fs";
import os from "node:os";
import { Command } from "commander";
import { chromium } from "playwright-core";
import { AutoModelForCausalLM, defaultModelDir, kernelThreads, setBackend } from "../src/index.js";
import { decodeTokensPerSecond } from "../src/compare/measure.js";
import { startServer } from "../src/cli/serve.js";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const load = () => os.loadavg()[0].toFixed(2);

async function nodeDecode(dir: string, context: number, steps: number, runs: number): Promise<number[]> {
  await setBackend("wasm");
  const model = await AutoModelForCausalLM.fromPretrained(dir);
  try {
    decodeTokensPerSecond(model, 2, context); // warm-up
    return Array.from({ length: runs }, () => decodeTokensPerSecond(model, steps, context));
  } finally {
    model.dispose();
  }
}

async function pageRuns(dir: string, o: { context: number; steps: number; runs: number; isolation: boolean }) {
  const server = await startServer({ modelDir: dir, isolation: o.isolation });
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox", "--disable-gpu"] });
  const out: { readyMs: number; tokensPerSecond: number; mode: string; timings: Record<string, number> }[] = [];
  try {
    for (let run = 0; run < o.runs; run++) {
      const page = await browser.newPage();
      await page.goto(server.url);
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

const program = new Command("bench-browser")
  .option("--model <dir>", "checkpoint folder (default: the embedded tiny model)")
  .option("--context <n>", "prompt tokens before decoding", Number, 64)
  .option("--steps <n>", "decode steps timed", Number, 32)
  .option("--runs <n>", "page loads (and Node decode runs)", Number, 3)
  .option("--no-isolation", "serve without COOP/COEP (the page then runs on one thread)")
  .action(async (o: { model?: string; context: number; steps: number; runs: number; isolation: boolean }) => {
    if (!existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM}`);
    const dir = o.model ?? (await defaultModelDir());
    console.log(`model ${dir}; context ${o.context}, ${o.steps} decode steps, ${o.runs} runs; load ${load()}`);
    const node = await nodeDecode(dir, o.context, o.steps, o.runs);
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
  });
await program.parseAsync();
