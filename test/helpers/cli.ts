// Spawning the built `fusekit` binary (test/global-setup.ts builds dist/ when stale), and fingerprinting
// folders, so CLI tests can show what a command wrote or deleted.
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { lstatSync, readFileSync, readdirSync, readlinkSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
export const bin = path.join(root, "dist", "src", "cli", "main.js");

export interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `node script args` with stdout/stderr piped (so never a TTY); kills it after `timeoutMs`. */
export function runNode(
  script: string,
  args: string[],
  options: { env?: Record<string, string>; cwd?: string; timeoutMs?: number } = {},
): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script, ...args], {
      env: { ...process.env, FUSEKIT_BACKEND: "", ...options.env },
      cwd: options.cwd,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 120_000);
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Runs the CLI. */
export const fusekit = (
  args: string[],
  options: { env?: Record<string, string>; cwd?: string; timeoutMs?: number } = {},
) => runNode(bin, args, options);

/** sha256 over every entry below `dir` (names, types, modes, file bytes, link targets): equal iff nothing changed. */
export function folderChecksum(dir: string): string {
  const h = createHash("sha256");
  const walk = (d: string) => {
    for (const name of readdirSync(d).sort()) {
      const p = path.join(d, name);
      const st = lstatSync(p);
      h.update(`${path.relative(dir, p)}\0${st.mode}\0`);
      if (st.isDirectory()) walk(p);
      else if (st.isSymbolicLink()) h.update(readlinkSync(p));
      else if (st.isFile()) h.update(readFileSync(p));
    }
  };
  walk(dir);
  return h.digest("hex");
}
