// `fusekit compare`: every approach side by side on one checkpoint (the main job; `npm start` runs it).
import type { WeightStorageChoice } from "../loading/memory-plan.js";
import { InvalidArgumentError, Option, type Command } from "commander";
import {
  addModelOptions,
  resolveModelAndTokenizer,
  setBackend,
  addForceOption,
  integerIn,
  nonEmptyText,
  stepProgress,
  terminalWidth,
  useColor,
} from "./common.js";
import { runComparison, DEFAULT_PROMPT, DEFAULT_ROUNDS, DEFAULT_WARMUP } from "../compare/run.js";
import { defaultApproaches, selectApproaches } from "../compare/approaches.js";
import { ArgumentError } from "../errors.js";
import { CONFIDENCE, MIN_EFFECT, minimumRounds } from "../compare/stats.js";
import { htmlReport, reportTarget, terminalReport } from "../compare/report.js";
import { preflightWrite, writeFileAtomically } from "../io/atomic.js";

interface CompareCliOptions {
  model?: string;
  revision?: string;
  backend?: string;
  prompt: string;
  newTokens: number;
  rounds: number;
  /** The old name of --rounds, still accepted. */
  repeats?: number;
  warmup: number;
  approaches?: string[];
  json?: boolean;
  wide?: boolean;
  report?: string;
  force?: boolean;
  weightStorage: WeightStorageChoice;
}

/** `--approaches a,b`: known ids (the API's ArgumentError becomes a usage error naming the valid ones). */
function approachIds(value: string): string[] {
  const ids = value
    .split(",")
    .map((id) => id.trim())
    .filter(Boolean);
  if (!ids.length) throw new InvalidArgumentError("expected comma-separated approach ids.");
  try {
    selectApproaches(ids);
  } catch (err) {
    if (err instanceof ArgumentError) throw new InvalidArgumentError(`${err.message}.`);
    throw err;
  }
  return ids;
}

/** The ids --approaches takes, with what each one is, for --help. */
function approachesHelp(): string {
  const all = defaultApproaches();
  const [level, effect] = [CONFIDENCE, MIN_EFFECT].map((x) => `${Math.round(x * 100)}%`);
  const width = Math.max(...all.map((a) => a.id.length));
  return [
    "",
    "Approaches (ids for --approaches; the original is always included, as the reference):",
    ...all.map((a) => `  ${a.id.padEnd(width)}  ${a.label}`),
    "",
    "Speed: the selected approaches are loaded together and timed in interleaved",
    "rounds (order rotated each round), each against the original in the same round.",
    `Figures are medians with ${level} confidence intervals. A row is faster ×r / slower ×r`,
    `when the whole ${level} interval of its decoder-stack time ratio to the original's is`,
    `at least ${effect} from 1, else "no measurable difference" (an interval needs --rounds`,
    `≥ ${minimumRounds()}). Memory holds every selected model at once (tiny: ~40 MB each; 0.6B in`,
    "bf16: ~1.1 GiB each, three fit wasm's 4 GiB heap); when they do not all fit, they",
    "are timed in groups, each beside the original.",
  ].join("\n");
}

export function registerCompare(program: Command): void {
  const cmd = addModelOptions(
    program
      .command("compare")
      .description(
        "compare runtime fusion and patch mapping (± kernels) against the original model: numbers, speed (interleaved rounds, medians with 95% intervals, a verdict per row), memory, code size; exits 1 if any approach breaks its tolerance or crashes",
      ),
  )
    .option("-p, --prompt <text>", "prompt to measure on (non-empty)", nonEmptyText, DEFAULT_PROMPT)
    .option("-n, --new-tokens <n>", "greedy tokens generated per approach (≥ 1)", integerIn(1), 16)
    .option(
      "-a, --approaches <ids>",
      "comma-separated approach ids to compare (default: all; listed below)",
      approachIds,
    )
    .option(
      "-r, --rounds <n>",
      "timed rounds, 1 to 1000: each times every approach once (prefill + decode)",
      integerIn(1, 1000),
      DEFAULT_ROUNDS,
    )
    .addOption(new Option("--repeats <n>", "old name of --rounds").argParser(integerIn(1, 1000)).hideHelp())
    .option("--warmup <n>", "untimed rounds before them, 0 to 100", integerIn(0, 100), DEFAULT_WARMUP)
    .option("--json", "print the result as JSON instead of tables")
    .option(
      "--wide",
      "tables with every column (prefill, decode, setup, memory, code size) and the approaches' labels; default: the columns that decide, fitted to $COLUMNS or the terminal",
    )
    .option("--report <file.html>", "also write a self-contained HTML report (its folder must exist)", nonEmptyText)
    .addHelpText("after", approachesHelp); // built only when --help asks
  addForceOption(cmd, "an HTML report").action(compare);
}

/** Runs the comparison and prints it: tables fitted to the terminal (or every column with --wide), or JSON. */
async function compare(opts: CompareCliOptions): Promise<void> {
  // Every input is checked before the comparison starts: a bad path must not cost a whole run.
  if (opts.report) await preflightWrite(opts.report, reportTarget(opts.force));
  const { dir, tokenizer } = await resolveModelAndTokenizer(opts.model, opts.revision);
  await setBackend(opts.backend);
  const progress = stepProgress("timing rounds");
  const result = await runComparison({
    modelDir: dir,
    prompt: opts.prompt,
    promptIds: tokenizer.encode(opts.prompt),
    newTokens: opts.newTokens,
    rounds: opts.repeats ?? opts.rounds,
    warmup: opts.warmup,
    weightStorage: opts.weightStorage,
    approaches: selectApproaches(opts.approaches),
    log: opts.json ? undefined : (line) => progress.log(`… ${line}`),
    onRound: progress.update,
  }).finally(progress.stop);
  const tables = () =>
    terminalReport(result, {
      color: useColor(),
      columns: opts.wide ? "all" : "compact",
      width: opts.wide ? Infinity : terminalWidth(),
    });
  process.stdout.write((opts.json ? JSON.stringify(result, null, 2) : tables()) + "\n");
  if (opts.report) {
    await writeFileAtomically(opts.report, htmlReport(result), reportTarget(opts.force));
    if (!opts.json) process.stdout.write(`report written to ${opts.report}\n`);
  }
  if (!result.pass) process.exitCode = 1;
}
