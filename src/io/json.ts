// Strict JSON: the one reader of every JSON file fusekit opens (config.json, shard indexes, generation and
// tokenizer configs, kernel manifests and locks, save journals) and of safetensors headers.
// JSON.parse silently keeps the last of two equal keys and accepts any nesting depth; a hostile file can use
// the first to make two readers see different tensors and the second to overflow recursive code later
// (JSON.stringify of a 10^5-deep value throws RangeError). No maintained npm package reports duplicate keys
// without pulling in a whole parser, so this hand-written scan does, after JSON.parse has validated the text.

import { promises as fsp } from "node:fs";
import { ConfigError } from "../errors.js";

/** The reference implementation (serde_json) refuses deeper nesting than this. */
export const MAX_JSON_DEPTH = 128;

export type StrictJsonResult = { ok: true; value: unknown } | { ok: false; problem: string };

/** Parses `text`; reports invalid JSON, nesting deeper than MAX_JSON_DEPTH, or a key repeated in one object. */
export function parseJsonStrict(text: string): StrictJsonResult {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    return { ok: false, problem: `not valid JSON (${(err as Error).message})` };
  }
  // the quick check holds for almost every file; the full scan only runs to name what is wrong
  const problem = keyCountsMatch(text, value) ? undefined : scanStructure(text);
  return problem ? { ok: false, problem } : { ok: true, value };
}

/**
 * True when `value` (JSON.parse of `text`) has as many keys in each object as the text wrote there, and no
 * nesting is deeper than MAX_JSON_DEPTH: JSON.parse keeps one of two equal keys, so a count short of the text's
 * means a duplicate. Slices out only the keys that open a nested container, so a 151k-entry vocab costs one
 * pass over the text (scanStructure slices and stores every key). False also when unsure.
 */
function keyCountsMatch(text: string, value: unknown): boolean {
  const containers: unknown[] = []; // the parsed object / array at each open depth
  const counts: number[] = []; // keys written so far (objects), or commas (arrays: the current index)
  let expectKey = false;
  let keyStart = 0;
  let keyEnd = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    const top = containers.length - 1;
    if (c === 0x22 /* " */) {
      const start = i;
      i = stringEnd(text, i);
      if (expectKey) {
        counts[top]++;
        keyStart = start;
        keyEnd = i;
        expectKey = false;
      }
    } else if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      if (containers.length >= MAX_JSON_DEPTH) return false;
      const parent = containers[top];
      let child = value;
      if (Array.isArray(parent)) child = parent[counts[top]];
      else if (top >= 0) child = (parent as Record<string, unknown>)[keyOf(text.slice(keyStart, keyEnd + 1))];
      if (typeof child !== "object" || child === null || Array.isArray(child) !== (c === 0x5b)) return false;
      containers.push(child);
      counts.push(0);
      expectKey = c === 0x7b;
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      const closed = containers.pop() as object;
      const written = counts.pop();
      if (c === 0x7d && Object.keys(closed).length !== written) return false;
      expectKey = false; // back in the parent, after a value
    } else if (c === 0x2c /* , */) {
      if (Array.isArray(containers[top])) counts[top]++;
      else expectKey = true;
    }
  }
  return true;
}

/** Index of the quote closing the string that opens at `i` in valid JSON text (an escape skips one character). */
function stringEnd(text: string, i: number): number {
  for (i++; i < text.length; i++) {
    const d = text.charCodeAt(i);
    if (d === 0x5c /* \ */) i++;
    else if (d === 0x22 /* " */) return i;
  }
  return i;
}

/** A key's value from its quoted JSON text. */
const keyOf = (raw: string): string => (raw.includes("\\") ? (JSON.parse(raw) as string) : raw.slice(1, -1));

interface Frame {
  keys?: Set<string>; // present for objects
  path: string;
  expectKey: boolean;
}

/** Walks already-valid JSON text once, iteratively (no recursion, so depth cannot overflow the stack). */
function scanStructure(text: string): string | undefined {
  const stack: Frame[] = [];
  let lastKey = "";
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      const start = i;
      i = stringEnd(text, i);
      const top = stack[stack.length - 1];
      if (top?.keys && top.expectKey) {
        const key = keyOf(text.slice(start, i + 1));
        if (top.keys.has(key)) return `duplicate key ${preview(key)}${top.path ? ` in ${top.path}` : ""}`;
        top.keys.add(key);
        top.expectKey = false;
        lastKey = key;
      }
    } else if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      if (stack.length >= MAX_JSON_DEPTH) return `nested deeper than ${MAX_JSON_DEPTH} levels`;
      const parent = stack[stack.length - 1];
      const path = parent
        ? parent.keys
          ? `${parent.path}${parent.path ? "." : ""}${preview(lastKey)}`
          : `${parent.path}[]`
        : "";
      stack.push({ keys: c === 0x7b ? new Set() : undefined, path, expectKey: c === 0x7b });
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      stack.pop();
    } else if (c === 0x2c /* , */) {
      const top = stack[stack.length - 1];
      if (top?.keys) top.expectKey = true;
    }
  }
  return undefined;
}

/** A value for an error message: JSON, cut to `max` characters, never throwing (even on deep nesting). */
export function preview(value: unknown, max = 120): string {
  let s: string;
  try {
    s = JSON.stringify(value) ?? String(value);
  } catch {
    s = Array.isArray(value) ? "[…]" : typeof value === "object" ? "{…}" : String(value);
  }
  return s.length > max ? `${s.slice(0, max)}…` : s;
}

/** Largest JSON file read into memory (a real tokenizer.json is ~11 MB, config.json a few KB). */
export const MAX_JSON_FILE_BYTES = 100_000_000;

export interface ReadJsonOptions {
  /** Makes the error thrown for a problem; its message already starts with the file (default: ConfigError). */
  error?: (message: string) => Error;
  /** Resolve to undefined when the file does not exist, instead of failing. */
  optional?: boolean;
}

/**
 * Reads a JSON object from `file` strictly: a regular file of bounded size (checked before reading: a FIFO
 * would block forever, /dev/zero never end), valid UTF-8, valid JSON with no repeated key and bounded depth,
 * an object at the top.
 */
export async function readJsonObject(
  file: string,
  options: ReadJsonOptions & { optional: true },
): Promise<Record<string, unknown> | undefined>;
export async function readJsonObject(file: string, options?: ReadJsonOptions): Promise<Record<string, unknown>>;
export async function readJsonObject(
  file: string,
  options: ReadJsonOptions = {},
): Promise<Record<string, unknown> | undefined> {
  const fail = (problem: string) => (options.error ?? ((m: string) => new ConfigError(m)))(`${file}: ${problem}`);
  let bytes: Buffer;
  try {
    const stat = await fsp.stat(file);
    if (!stat.isFile()) throw fail("not a regular file");
    if (stat.size > MAX_JSON_FILE_BYTES)
      throw fail(`${stat.size} bytes is larger than the ${MAX_JSON_FILE_BYTES}-byte limit for JSON files`);
    bytes = await fsp.readFile(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === undefined) throw err;
    if (code === "ENOENT" && options.optional) return undefined;
    throw fail(code === "ENOENT" ? "file not found" : `cannot read (${code})`);
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw fail("not valid UTF-8");
  }
  const parsed = parseJsonStrict(text);
  if (!parsed.ok) throw fail(parsed.problem);
  const value = parsed.value;
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw fail("expected a JSON object");
  return value as Record<string, unknown>;
}
