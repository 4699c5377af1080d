// `fusekit compare`: every approach side by side on one checkpoint (the main job; `npm start` runs it).
import { promises as fsp } from "node:fs";
import type { Command } from "commander";
import type { WeightStorageChoice } from "../loading/plan.js";
import { addModelOptions, parseInteger, resolveModelDir, setBackend } from "./common.js";
import { runComparison, DEFAULT_PROMPT } from "../compare/run.js";
import { defaultApproaches } from "../compare/approaches.js";
import { htmlReport, terminalReport } from "../compare/report.js";

export function registerCompare(program: Command): void {
  addModelOptions(
    program
      .command("compare")
      .description("compare runtime fusion and patch mapping (± kernels) against the original model: numbers, speed, memory, code size; exits 1 if any approach breaks its tolerance"),
  )
    .option("-p, --prompt <text>", "prompt to measure on", DEFAULT_PROMPT)
    .option("-n, --new-tokens <n>", "greedy tokens generated per approach", parseInteger, 16)
    .option("-r, --repeats <n>", "timing runs per figure (median, min–max)", parseInteger, 3)
    .option("--json", "print the result as JSON instead of tables")
    .option("--report <file.html>", "also write a self-contained HTML report")
    .action(async (opts: { model?: string; backend?: string; prompt: string; newTokens: number; repeats: number; json?: boolean; report?: string; weightStorage: WeightStorageChoice }) => {
      await setBackend(opts.backend);
      const dir = await resolveModelDir(opts.model);
      const result = await runComparison({
        modelDir: dir,
        prompt: opts.prompt,
        newTokens: opts.newTokens,
        repeats: opts.repeats,
        weightStorage: opts.weightStorage,
        approaches: defaultApproaches(),
        log: opts.json ? undefined : (line) => process.stderr.write(`… ${line}\n`),
      });
      process.stdout.write(opts.json ? JSON.stringify(result, null, 2) + "\n" : terminalReport(result) + "\n");
      if (opts.report) {
        await fsp.writeFile(opts.report, htmlReport(result));
        if (!opts.json) process.stdout.write(`report written to ${opts.report}\n`);
      }
      if (!result.pass) process.exitCode = 1;
    });
}
