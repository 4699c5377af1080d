// Glob patterns on dotted module paths, matched with minimatch after turning path dots into slashes
// (minimatch's `*` stops only at `/`): `*` is one path segment, `**` any depth, `{a,b}` alternatives.
import { minimatch } from "minimatch";
import type { Module } from "../nn/module.js";

/**
 * A dotted-path glob in minimatch's slash form. Dots become `/`, also inside `{…}` so an alternative may
 * span segments (`{mlp,self_attn.o_proj}`), except the `..` of a numeric range (`layers.{0..3}.mlp`).
 */
export function toSlashGlob(pattern: string): string {
  let out = "";
  let braces = 0;
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === "{") braces++;
    else if (c === "}") braces = Math.max(0, braces - 1);
    if (c === "." && braces > 0 && (pattern[i + 1] === "." || pattern[i - 1] === ".")) out += c;
    else out += c === "." ? "/" : c;
  }
  return out;
}

/** True when the dotted module path matches the dotted glob. */
export function matchesModulePath(path: string, pattern: string): boolean {
  return minimatch(path.replaceAll(".", "/"), toSlashGlob(pattern));
}

/** Dotted paths of the modules under `model` (not `model` itself) that match the glob, in module order. */
export function matchModulePaths(model: Module, pattern: string): string[] {
  return model
    .namedModules()
    .map(([p]) => p)
    .filter((p) => p !== "" && matchesModulePath(p, pattern));
}

/**
 * The real paths most like a pattern that matched nothing, by edit distance, at most `count`. Paths that
 * differ only in numeric segments (`layers.0.mlp`, `layers.1.mlp`) count once, so the suggestions differ.
 */
export function closestPaths(paths: readonly string[], pattern: string, count = 3): string[] {
  const best = new Map<string, { path: string; distance: number }>();
  for (const path of paths) {
    if (path === "") continue;
    const family = path.replace(/(^|\.)\d+(?=\.|$)/g, "$1#");
    const distance = editDistance(pattern, path);
    const prev = best.get(family);
    if (!prev || distance < prev.distance) best.set(family, { path, distance });
  }
  return [...best.values()]
    .sort((a, b) => a.distance - b.distance || (a.path < b.path ? -1 : 1))
    .slice(0, count)
    .map((e) => e.path);
}

/** Levenshtein distance (hand-written: a dozen lines, not worth a dependency). */
export function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = row;
  }
  return prev[b.length];
}

/**
 * A dotted-path glob as regex source (no anchors): `*` one segment, `**` any depth, `{a,b}` alternatives,
 * dots literal. For checkpoint-key rules generated from module globs. Hand-written: minimatch's makeRe works
 * on slash paths and its output cannot be embedded in a lookbehind.
 */
export function globToRegexSource(glob: string): string {
  let out = "";
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i];
    if (c === "*" && glob[i + 1] === "*") {
      out += ".*";
      i++;
    } else if (c === "*") out += "[^.]+";
    else if (c === "{") out += "(?:";
    else if (c === "}") out += ")";
    else if (c === ",") out += "|";
    else out += c.replace(/[.+?^$()[\]\\|]/g, "\\$&");
  }
  return out;
}
