// `npm run bench`: throughput and load figures for the active backend, on the tiny default model and the
// Qwen3-0.6B-shaped preset. Writes bench/results.json and bench/RESULTS.md and prints a table.
import { execFileSync } from "node:child_process";
import { promises as fsp, statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Command } from "commander";
import Table from "cli-table3";
import { AutoModelForCausalLM, ensureModel, setBackend, type PresetName } from "../src/index.js";
import { decodeTokensPerSecond, prefillTokensPerSecond, repeat, type Stat } from "../src/compare/measure.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const repoBench = path.resolve(here, "..", "..", "bench"); // dist/bench → bench

const program = new Command()
  .option("--backend <name>", "tfjs backend (default: FUSEKIT_BACKEND or the best available)")
  .option("--presets <list>", "comma-separated presets", "qwen3-tiny,qwen3-0.6b")
  .option("--repeats <n>", "runs per figure (median, min–max)", "3")
  .option("--decode-steps <n>", "new tokens per decode run", "128")
  .parse();
const opts = program.opts<{ backend?: string; presets: string; repeats: string; decodeSteps: string }>();
const R = Number(opts.repeats);
const backend = await setBackend(opts.backend);

interface Row { preset: string; prefill64: Stat; prefill512: Stat; decode: Stat; loadMs?: number; peakRssBytes?: number; fileBytes?: number; params?: number }
const rows: Row[] = [];

for (const preset of opts.presets.split(",") as PresetName[]) {
  const dir = await ensureModel(preset);
  const fileBytes = statSync(path.join(dir, "model.safetensors")).size;
  const child = JSON.parse(execFileSync(process.execPath, [path.join(here, "load-rss.js"), dir, backend], { encoding: "utf8" }));
  const model = await AutoModelForCausalLM.fromPretrained(dir);
  prefillTokensPerSecond(model, 8); // warm-up: kernels compiled, buffers sized
  const row: Row = {
    preset,
    prefill64: repeat(R, () => prefillTokensPerSecond(model, 64)),
    prefill512: repeat(R, () => prefillTokensPerSecond(model, 512)),
    decode: repeat(R, () => decodeTokensPerSecond(model, Number(opts.decodeSteps))),
    loadMs: child.loadMs,
    peakRssBytes: child.peakRssBytes,
    fileBytes,
    params: child.params,
  };
  model.dispose();
  rows.push(row);
}

const fmt = (s: Stat) => `${s.median.toFixed(1)} (${s.min.toFixed(1)}–${s.max.toFixed(1)})`;
const table = new Table({ head: ["model", "prefill 64 tok/s", "prefill 512 tok/s", `decode tok/s (${opts.decodeSteps} new)`, "load s", "peak RSS MB", "f32 weights MB"] });
for (const r of rows) {
  table.push([r.preset, fmt(r.prefill64), fmt(r.prefill512), fmt(r.decode), ((r.loadMs ?? 0) / 1000).toFixed(2), ((r.peakRssBytes ?? 0) / 2 ** 20).toFixed(0), (((r.params ?? 0) * 4) / 2 ** 20).toFixed(0)]);
}
console.log(`backend: ${backend}, repeats: ${R}, node ${process.version}`);
console.log(table.toString());

const results = { date: new Date().toISOString(), backend, repeats: R, command: "npm run bench", rows };
await fsp.mkdir(repoBench, { recursive: true });
await fsp.writeFile(path.join(repoBench, "results.json"), JSON.stringify(results, null, 2) + "\n");
const md = [
  `# Benchmark results`, ``, `Produced by \`npm run bench\` on ${results.date} (backend \`${backend}\`, median of ${R} runs, min–max in parentheses).`, ``,
  `| model | prefill 64 tok/s | prefill 512 tok/s | decode tok/s | load s | peak RSS MB | f32 weights MB |`, `|---|---|---|---|---|---|---|`,
  ...rows.map((r) => `| ${r.preset} | ${fmt(r.prefill64)} | ${fmt(r.prefill512)} | ${fmt(r.decode)} | ${((r.loadMs ?? 0) / 1000).toFixed(2)} | ${((r.peakRssBytes ?? 0) / 2 ** 20).toFixed(0)} | ${(((r.params ?? 0) * 4) / 2 ** 20).toFixed(0)} |`),
  ``,
].join("\n");
await fsp.writeFile(path.join(repoBench, "RESULTS.md"), md);
