// The PyTorch eager baseline: runs bench/pytorch_baseline.py (same checkpoint, same prompts) with a python3
// that imports torch, when there is one.
import { execFileSync } from "node:child_process";
import type { Figure } from "../src/compare/measure.js";
import { runPeer, type PeerPlan } from "./peer.js";

export const TORCH_HOWTO =
  "PyTorch baseline skipped: no python3 that imports torch and numpy. On Debian: apt-get install python3-torch python3-numpy libopenblas0-pthread";

/** The first of `python3`, `/usr/bin/python3` that imports torch and numpy, with torch's version. */
export function findTorchPython(
  candidates = ["python3", "/usr/bin/python3"],
): { python: string; torch: string } | undefined {
  for (const python of candidates) {
    try {
      const torch = execFileSync(python, ["-c", "import numpy, torch; print(torch.__version__)"], {
        encoding: "utf8",
        stdio: ["ignore", "pipe", "ignore"],
        timeout: 60_000,
      }).trim();
      return { python, torch };
    } catch {
      // not this one
    }
  }
  return undefined;
}

export interface TorchResult {
  threads: number;
  torch?: string;
  prefill?: Record<string, Figure>;
  decode?: Figure;
  error?: string;
}

/** Runs the baseline script on `dir`; errors are returned, not thrown. */
export function runTorch(python: string, script: string, dir: string, o: PeerPlan): Promise<TorchResult> {
  const args = [
    script,
    dir,
    "--threads",
    String(o.threads),
    "--repeats",
    String(o.repeats),
    "--prefill",
    o.prefill.join(","),
    "--decode-steps",
    String(o.decodeSteps),
    "--figure-budget",
    String(o.figureBudgetS),
  ];
  return runPeer(python, args, o.threads, o.timeoutS).then(({ output, ...r }) => ({
    ...r,
    threads: (output?.threads as number | undefined) ?? o.threads,
    torch: output?.torch as string | undefined,
  }));
}
