// ModuleSpec: the wire names of one chain member, matched to its forward's parameters by position.
import { FusionSpecError } from "../errors.js";

/** The name that drops an output instead of putting it on a wire. */
export const DROP_OUTPUT = "_";

export interface ModuleSpecInit {
  /** Wire names for the forward's parameters, in order; optional trailing parameters may be left out. */
  inputs: readonly string[];
  /** Wire names for the forward's outputs (one name: the whole return value; more: a returned array, by position). */
  outputs: readonly string[];
}

export class ModuleSpec {
  readonly inputs: readonly string[];
  readonly outputs: readonly string[];

  constructor({ inputs, outputs }: ModuleSpecInit) {
    this.inputs = checkNames(inputs, "inputs", false);
    this.outputs = checkNames(outputs, "outputs", true);
  }

  toString(): string {
    return `ModuleSpec(inputs: [${this.inputs.join(", ")}], outputs: [${this.outputs.join(", ")}])`;
  }
}

function checkNames(names: unknown, field: string, allowDrop: boolean): readonly string[] {
  if (!Array.isArray(names) || names.some((n) => typeof n !== "string" || n.trim() === "")) {
    throw new FusionSpecError(
      `ModuleSpec ${field} must be an array of non-empty strings, got ${JSON.stringify(names)}`,
    );
  }
  const seen = new Set<string>();
  for (const n of names as string[]) {
    if (n === DROP_OUTPUT && !allowDrop)
      throw new FusionSpecError(`ModuleSpec inputs cannot use "${DROP_OUTPUT}" (it only drops outputs)`);
    if (n !== DROP_OUTPUT && seen.has(n)) throw new FusionSpecError(`ModuleSpec ${field} name "${n}" appears twice`);
    seen.add(n);
  }
  return Object.freeze([...(names as string[])]);
}

export interface ForwardParameters {
  /** Positional parameter names (a rest parameter is not included). */
  names: string[];
  /** True when the function ends in a `...rest` parameter, so it takes any number of arguments. */
  rest: boolean;
}

/**
 * The positional parameters of a function, read from its source text. `fn.length` is not enough: it
 * stops counting at the first parameter with a default (`forward(x, scale = 1)` has length 1), and
 * trailing optional parameters are exactly the ones a spec may wire or leave out. Hand-written because
 * no maintained package does just this; it handles defaults (with nested brackets, strings and
 * comments), rest parameters, arrows and methods. Native / bound functions fall back to `fn.length`.
 */
export function forwardParameters(fn: (...args: never[]) => unknown): ForwardParameters {
  const src = Function.prototype.toString.call(fn);
  if (/\{\s*\[native code\]\s*\}\s*$/.test(src)) {
    return { names: Array.from({ length: fn.length }, (_, i) => `arg${i}`), rest: false };
  }
  const s = src.replace(/^\s*async\s+/, "");
  const bare = /^([\w$]+)\s*=>/.exec(s); // `x => …`
  if (bare) return { names: [bare[1]], rest: false };
  let i = 0;
  if (s[0] === "[") i = skipBalanced(s, 0); // computed method name `[key](…)`
  const open = s.indexOf("(", i);
  if (open < 0) return { names: Array.from({ length: fn.length }, (_, k) => `arg${k}`), rest: false };
  const pieces = splitTopLevel(s, open);
  const names: string[] = [];
  let rest = false;
  for (const piece of pieces) {
    if (piece.startsWith("...")) {
      rest = true;
      break;
    }
    names.push(piece.split("=")[0].trim());
  }
  return { names, rest };
}

const CLOSE: Record<string, string> = { "(": ")", "[": "]", "{": "}" };

/** Index just past the bracket group that opens at `start`. */
function skipBalanced(s: string, start: number): number {
  let depth = 0;
  for (let i = start; i < s.length; i++) {
    const skipped = skipLiteral(s, i);
    if (skipped !== i) {
      i = skipped - 1;
      continue;
    }
    if (s[i] in CLOSE) depth++;
    else if (s[i] === ")" || s[i] === "]" || s[i] === "}") {
      depth--;
      if (depth === 0) return i + 1;
    }
  }
  return s.length;
}

/** The comma-separated parameter texts inside the parenthesis opening at `open` (comments removed). */
function splitTopLevel(s: string, open: number): string[] {
  const pieces: string[] = [];
  let current = "";
  let depth = 0;
  for (let i = open + 1; i < s.length; i++) {
    const c = s[i];
    if ((c === "/" && (s[i + 1] === "/" || s[i + 1] === "*")) || c === "'" || c === '"' || c === "`") {
      const end = skipLiteral(s, i);
      if (c !== "/") current += s.slice(i, end); // keep strings (they are default values), drop comments
      i = end - 1;
      continue;
    }
    if (c in CLOSE) depth++;
    else if (c === ")" || c === "]" || c === "}") {
      if (depth === 0) break;
      depth--;
    } else if (c === "," && depth === 0) {
      pieces.push(current.trim());
      current = "";
      continue;
    }
    current += c;
  }
  pieces.push(current.trim());
  return pieces.filter((p) => p !== ""); // a trailing comma leaves an empty piece
}

/** If a string, template or comment starts at `i`, the index just past it; else `i`. */
function skipLiteral(s: string, i: number): number {
  const c = s[i];
  if (c === "/" && s[i + 1] === "/") {
    const end = s.indexOf("\n", i);
    return end < 0 ? s.length : end + 1;
  }
  if (c === "/" && s[i + 1] === "*") {
    const end = s.indexOf("*/", i + 2);
    return end < 0 ? s.length : end + 2;
  }
  if (c === "'" || c === '"' || c === "`") {
    for (let j = i + 1; j < s.length; j++) {
      if (s[j] === "\\") j++;
      else if (s[j] === c) return j + 1;
    }
    return s.length;
  }
  return i;
}
