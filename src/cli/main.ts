#!/usr/bin/env node
// The `fusekit` command. Each subcommand lives in its own file (src/cli/<command>.ts) exporting a
// `register…(program)` function, and is registered below.
import "reflect-metadata";
import { readFileSync } from "node:fs";
import { Command } from "commander";
import { registerGenerate } from "./generate.js";
import { registerInspect } from "./inspect.js";
import { registerMakeTiny } from "./make-tiny.js";
import { registerQuantizeFp8 } from "./quantize.js";
import { registerCompare } from "./compare.js";
import { registerKernelsCommand } from "./kernels.js";

function version(): string {
  try {
    return JSON.parse(readFileSync(new URL("../../../package.json", import.meta.url), "utf8")).version;
  } catch {
    return "unknown";
  }
}

export function buildProgram(): Command {
  const program = new Command("fusekit")
    .description("Run Hugging Face Qwen3 checkpoints on TensorFlow.js and compare two ways of plugging in fused kernels.")
    .version(version())
    .showHelpAfterError("(run with --help for usage)")
    .configureOutput({ outputError: (str, write) => write(`fusekit: ${str}`) });

  // ── Model commands ──────────────────────────────────────────────────────────────────────────────
  registerGenerate(program);
  registerInspect(program);
  registerMakeTiny(program);
  registerQuantizeFp8(program);

  // ── Fusion / kernel commands ───────────────────────────────────────────────────────────────────
  registerCompare(program);
  registerKernelsCommand(program);

  return program;
}

/** One line on stderr (`fusekit: <ErrorName>: message`) and a non-zero exit; FUSEKIT_DEBUG=1 adds the stack. */
function reportError(err: unknown): void {
  const e = err instanceof Error ? err : new Error(String(err));
  process.stderr.write(`fusekit: ${e.name}: ${e.message.replace(/\s*\n\s*/g, " ")}\n`);
  if (process.env.FUSEKIT_DEBUG) process.stderr.write(`${e.stack}\n`);
}

try {
  await buildProgram().parseAsync(process.argv);
} catch (err) {
  reportError(err);
  process.exitCode = 1;
}
