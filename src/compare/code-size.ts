// "Lines the user writes per fusion": non-blank, non-comment lines of the recipe files an approach needs.
import { readFileSync } from "node:fs";
import path from "node:path";
import { FUSEKIT_ROOT } from "../io/package.js";

/** Non-blank, non-comment lines of the given repo-relative source files. */
export function countCodeLines(files: string[]): number {
  return files.reduce((n, f) => n + countTextLines(readFileSync(path.join(FUSEKIT_ROOT, f), "utf8")), 0);
}

/** Non-blank, non-comment lines of a source text. */
export function countTextLines(text: string): number {
  let n = 0;
  let inBlock = false;
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (inBlock) {
      if (line.includes("*/")) inBlock = false;
      continue;
    }
    if (line.startsWith("/*")) {
      inBlock = !line.includes("*/");
      continue;
    }
    if (line === "" || line.startsWith("//")) continue;
    n++;
  }
  return n;
}
