// Builds dist/ once before the suite when it is missing or older than the sources, because the CLI
// tests spawn the real `fusekit` binary (node dist/src/cli/main.js). After `npm ci` (whose prepare
// script builds) nothing needs doing.
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, rmSync, statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const projectRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const SOURCES = ["src", "patches", "conversions", "fusions", "hub", "bench"];

function newestSourceMtime(dir: string): number {
  if (!existsSync(dir)) return 0;
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestSourceMtime(p));
    else if (/\.(ts|json)$/.test(entry.name)) newest = Math.max(newest, statSync(p).mtimeMs);
  }
  return newest;
}

export default function setup(): void {
  buildDist(projectRoot);
}

/** Builds `root`/dist with the project's tsc unless it is newer than every source; throws when the build fails. */
export function buildDist(root: string): void {
  const entry = path.join(root, "dist", "src", "cli", "main.js");
  const built = existsSync(entry) ? statSync(entry).mtimeMs : 0;
  const newest = Math.max(
    ...SOURCES.map((d) => newestSourceMtime(path.join(root, d))),
    statSync(path.join(root, "tsconfig.json")).mtimeMs,
  );
  if (built >= newest) return;
  try {
    execFileSync(
      process.execPath,
      [path.join(root, "node_modules", "typescript", "bin", "tsc"), "-p", path.join(root, "tsconfig.build.json")],
      {
        cwd: root,
        stdio: "inherit",
      },
    );
  } catch (err) {
    // A failed build fails the run: the CLI tests must not run a stale or half-built dist/. The entry
    // point goes too, so the next run builds again instead of taking what this one emitted as fresh.
    rmSync(entry, { force: true });
    const status = (err as { status?: number }).status;
    throw new Error(`global-setup: building dist/ failed (tsc exit ${status ?? "?"}, errors above)`, { cause: err });
  }
}
