// A function's parameter list, read from its source with acorn, for comparing a kernel layer's forward with
// the forward it replaces as huggingface/kernels does with inspect.signature: the same number of parameters
// and the same kind (positional or rest) at each position. `Function.length` cannot do this: it stops
// counting at the first parameter with a default, so `forward(x, residual = undefined)` "takes 1".
import { parseExpressionAt, type Node, type Pattern } from "acorn";

export interface ForwardParameter {
  /** The name as written ("{…}" / "[…]" for a destructured parameter). */
  name: string;
  kind: "positional" | "rest";
  /** Has a default value. */
  optional: boolean;
}

/** The parameter list of `fn`, or undefined when its source cannot be read (native or bound functions). */
export function parameterList(fn: (...args: never[]) => unknown): ForwardParameter[] | undefined {
  const src = Function.prototype.toString.call(fn);
  // A function or arrow expression parses as it is; a method (`forward(x) {…}`) inside an object literal.
  for (const text of [`(${src})`, `({${src}})`]) {
    const node = parse(text);
    const method = (node as unknown as { properties?: { value?: Node }[] } | undefined)?.properties?.[0]?.value;
    const f = node?.type === "ObjectExpression" ? method : node;
    if (f && (f.type === "FunctionExpression" || f.type === "ArrowFunctionExpression")) {
      return (f as unknown as { params: Pattern[] }).params.map(describeParameter);
    }
  }
  return undefined;
}

function parse(text: string): Node | undefined {
  try {
    return parseExpressionAt(text, 0, { ecmaVersion: "latest" });
  } catch {
    return undefined;
  }
}

function describeParameter(p: Pattern): ForwardParameter {
  if (p.type === "RestElement") return { ...describeParameter(p.argument), kind: "rest" };
  if (p.type === "AssignmentPattern") return { ...describeParameter(p.left), optional: true };
  const shape: Record<string, string> = { ObjectPattern: "{…}", ArrayPattern: "[…]" };
  const name = p.type === "Identifier" ? p.name : (shape[p.type] ?? "?");
  return { name, kind: "positional", optional: false };
}

/** `(x, residual = …, ...rest)`, for messages. */
export function formatParameters(params: ForwardParameter[]): string {
  return `(${params.map((p) => `${p.kind === "rest" ? "..." : ""}${p.name}${p.optional ? " = …" : ""}`).join(", ")})`;
}

/**
 * Why `kernel`'s parameters cannot stand in for `original`'s (huggingface/kernels' rule: the same number of
 * parameters, and the same kind at each position; names and defaults may differ), or undefined when they can.
 */
export function parameterMismatch(kernel: ForwardParameter[], original: ForwardParameter[]): string | undefined {
  const k = formatParameters(kernel);
  const o = formatParameters(original);
  if (kernel.length !== original.length) {
    const n = `${kernel.length} parameter${kernel.length === 1 ? "" : "s"}`;
    return `forward${k} takes ${n} but the forward it replaces, forward${o}, takes ${original.length}`;
  }
  const i = kernel.findIndex((p, j) => p.kind !== original[j].kind);
  if (i < 0) return undefined;
  return `forward${k} does not match forward${o}: parameter ${i + 1} is ${kernel[i].kind}, not ${original[i].kind}`;
}
