#!/usr/bin/env node
// The `fusekit` command. Each subcommand lives in its own file (src/cli/<command>.ts) exporting a
// `register…(program)` function, and is registered below.
import "reflect-metadata";
import { readFileSync } from "node:fs";
import { Command, CommanderError } from "commander";
import { FusekitError } from "../errors.js";
import { registerGenerate } from "./generate.js";
import { registerInspect } from "./inspect.js";
import { registerMakeTiny } from "./make-tiny.js";
import { registerCompare } from "./compare.js";
import { registerKernelsCommand } from "./kernels.js";

function version(): string {
  try {
    return JSON.parse(readFileSync(new URL("../../../package.json", import.meta.url), "utf8")).version;
  } catch {
    return "unknown";
  }
}

/** Commander's message (which may span lines, e.g. "(Did you mean --prompt?)") as one line. */
const oneLine = (text: string) => text.trim().replace(/\s*\n\s*/g, " ");

export function buildProgram(): Command {
  const program = new Command("fusekit")
    .description("Run Hugging Face Qwen3 checkpoints on TensorFlow.js and compare two ways of plugging in fused kernels.")
    .version(version())
    .showSuggestionAfterError(true)
    // Usage errors are one line; commander then throws (exitOverride) and the caller exits with status 2.
    .configureOutput({ outputError: (str, write) => write(`fusekit: ${oneLine(str)} (see --help)\n`) })
    .exitOverride();

  // ── Model commands ──────────────────────────────────────────────────────────────────────────────
  registerGenerate(program);
  registerInspect(program);
  registerMakeTiny(program);

  // ── Fusion / kernel commands ───────────────────────────────────────────────────────────────────
  registerCompare(program);
  registerKernelsCommand(program);

  return program;
}

/** One line on stderr (`fusekit: <ErrorName>: message`); FUSEKIT_DEBUG=1 adds the stack. */
function reportError(err: unknown): void {
  const e = err instanceof Error ? err : new Error(String(err));
  const bug = e instanceof FusekitError ? "" : " (an internal error: please report it; FUSEKIT_DEBUG=1 shows where)";
  process.stderr.write(`fusekit: ${e.name}: ${oneLine(e.message)}${bug}\n`);
  if (process.env.FUSEKIT_DEBUG) process.stderr.write(`${e.stack}\n`);
}

/** Exit status: 0 for --help / --version, 2 for usage errors (commander has printed them), 1 for failures. */
async function main(argv: string[]): Promise<number> {
  try {
    await buildProgram().parseAsync(argv);
    return Number(process.exitCode ?? 0);
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2;
    reportError(err);
    return 1;
  }
}

process.exitCode = await main(process.argv);
