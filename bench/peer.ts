// Running a peer engine (PyTorch, ONNX Runtime) in a child process: its last stdout line is a JSON object
// with run times per prefill length and for decode; a crash, a timeout or unreadable output is returned as
// an error for the report, never thrown.
import { execFile } from "node:child_process";
import { stat, type Figure } from "../src/compare/measure.js";

/** How a peer is measured: its threads, the runs per figure, the prompt lengths, the decode steps and time limits. */
export interface PeerPlan {
  threads: number;
  repeats: number;
  prefill: number[];
  decodeSteps: number;
  figureBudgetS: number;
  timeoutS: number;
}

/** What a peer's section of the bench reads from the bench's options (the same protocol as fusekit's rows). */
export interface PeerBenchOptions {
  repeats: number;
  prefill: number[];
  decodeSteps: number;
  figureBudgetS: number;
  childTimeoutS: number;
  log: (l: string) => void;
}

/** A peer's figures at one thread count, or why there are none. */
export interface PeerFigures {
  threads: number;
  prefill?: Record<string, Figure>;
  decode?: Figure;
  error?: string;
}

interface PeerOutput {
  prefill: Record<string, number[]>;
  decode: number[];
  [field: string]: unknown;
}

const fig = (runs: number[]): Figure => ({ ...stat(runs), runs });

/** Runs `command args` (killed after `timeoutS`); resolves to its figures plus the other fields it printed. */
export function runPeer(
  command: string,
  args: string[],
  threads: number,
  timeoutS: number,
): Promise<PeerFigures & { output?: PeerOutput }> {
  return new Promise((resolve) => {
    execFile(
      command,
      args,
      { encoding: "utf8", timeout: timeoutS * 1000, maxBuffer: 1 << 24 },
      (err, stdout, stderr) => {
        if (err) {
          const why = err.killed ? `timed out after ${timeoutS} s` : err.message.split("\n")[0];
          return resolve({ threads, error: `${why} ${stderr.trim().split("\n").slice(-1)[0] ?? ""}`.trim() });
        }
        try {
          const output = JSON.parse(stdout.trim().split("\n").pop()!) as PeerOutput;
          const prefill = Object.fromEntries(Object.entries(output.prefill).map(([k, v]) => [k, fig(v)]));
          resolve({ threads, prefill, decode: fig(output.decode), output });
        } catch (e) {
          resolve({ threads, error: `unreadable output: ${(e as Error).message}` });
        }
      },
    );
  });
}
