#!/usr/bin/env node
// The `fusekit` binary: runs the command tree of program.ts and turns failures into one line and an exit code.
import "reflect-metadata";
import { CommanderError } from "commander";
import { FusekitError } from "../errors.js";
import { buildProgram, oneLine } from "./program.js";

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
