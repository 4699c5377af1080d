// `fusekit compare`: every approach side by side on one checkpoint (the main job; `npm start` runs it).
import type { WeightStorageChoice } from "../loading/memory-plan.js";
import type { Command } from "commander";
import {
  addModelOptions,
  resolveModelAndTokenizer,
  setBackend,
  addForceOption,
  integerIn,
  nonEmptyText,
  useColor,
} from "./common.js";
import { runComparison, DEFAULT_PROMPT } from "../compare/run.js";
import { defaultApproaches } from "../compare/approaches.js";
import { htmlReport, reportTarget, terminalReport } from "../compare/report.js";
import { preflightWrite, writeFileAtomically } from "../io/atomic.js";

interface CompareCliOptions {
  model?: string;
  revision?: string;
  backend?: string;
  prompt: string;
  newTokens: number;
  repeats: number;
  json?: boolean;
  report?: string;
  force?: boolean;
  weightStorage: WeightStorageChoice;
}

export function registerCompare(program: Command): void {
  const cmd = addModelOptions(
    program
      .command("compare")
      .description(
        "compare runtime fusion and patch mapping (± kernels) against the original model: numbers, speed, memory, code size; exits 1 if any approach breaks its tolerance or crashes",
      ),
  )
    .option("-p, --prompt <text>", "prompt to measure on (non-empty)", nonEmptyText, DEFAULT_PROMPT)
    .option("-n, --new-tokens <n>", "greedy tokens generated per approach (≥ 1)", integerIn(1), 16)
    .option("-r, --repeats <n>", "timing runs per figure, 1 to 1000 (median, min–max)", integerIn(1, 1000), 3)
    .option("--json", "print the result as JSON instead of tables")
    .option("--report <file.html>", "also write a self-contained HTML report (its folder must exist)", nonEmptyText);
  addForceOption(cmd, "an HTML report").action(async (opts: CompareCliOptions) => {
    // Every input is checked before the comparison starts: a bad path must not cost a whole run.
    if (opts.report) await preflightWrite(opts.report, reportTarget(opts.force));
    const { dir, tokenizer } = await resolveModelAndTokenizer(opts.model, opts.revision);
    await setBackend(opts.backend);
    const result = await runComparison({
      modelDir: dir,
      prompt: opts.prompt,
      promptIds: tokenizer.encode(opts.prompt),
      newTokens: opts.newTokens,
      repeats: opts.repeats,
      weightStorage: opts.weightStorage,
      approaches: defaultApproaches(),
      log: opts.json ? undefined : (line) => process.stderr.write(`… ${line}\n`),
    });
    process.stdout.write(
      opts.json ? JSON.stringify(result, null, 2) + "\n" : terminalReport(result, { color: useColor() }) + "\n",
    );
    if (opts.report) {
      await writeFileAtomically(opts.report, htmlReport(result), reportTarget(opts.force));
      if (!opts.json) process.stdout.write(`report written to ${opts.report}\n`);
    }
    if (!result.pass) process.exitCode = 1;
  });
}
