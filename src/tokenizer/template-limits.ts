// Bounds on rendering a chat template. A template is data from the checkpoint, and @huggingface/jinja runs
// it unbounded: `range(120000000)` aborts the process (V8 runs out of heap, uncatchable), nested loops
// spin for hours, a loop of appends grows a string to gigabytes. The render stays in this thread (it is
// synchronous API), metered by the interpreter itself:
//   - `range()` refuses a count above `rangeItems` before allocating (the global `range` is swapped for a
//     bounded one as the render's environment declares it);
//   - every `Interpreter.evaluate` / `evaluateBlock` call (each loop iteration is one) counts towards `steps`,
//     and every 4096 steps the clock is checked against `timeMs`;
//   - every value a step produces is checked: a string above `valueChars` or a list above `rangeItems` ends the
//     render, and the lengths of all strings produced add up towards `producedChars` (which bounds what a
//     loop accumulates before its block returns).
// The meter is a module-level variable set only while `renderBounded` runs (rendering is synchronous, so no
// other render can interleave); with no meter the patched methods are the library's own.
import { Environment, Interpreter, type Template } from "@huggingface/jinja";

export interface ChatTemplateLimits {
  /** Interpreter steps (expression / statement evaluations) per render. */
  steps: number;
  /** Wall-clock milliseconds per render. */
  timeMs: number;
  /** Items one `range()` call or one list value may have. */
  rangeItems: number;
  /** Characters one string value (the output included) may have. */
  valueChars: number;
  /** Characters of all string values produced in one render, added up. */
  producedChars: number;
}

/** Real chat templates use a few thousand steps and produce the prompt's length a few times over. */
export const CHAT_TEMPLATE_LIMITS: Readonly<ChatTemplateLimits> = {
  steps: 10_000_000,
  timeMs: 5_000,
  // A loop prepares every iteration's scope before running one (unmetered): 1e5 items keep that under ~0.2 s.
  rangeItems: 100_000,
  valueChars: 16 * 2 ** 20,
  producedChars: 128 * 2 ** 20,
};

/** A render stopped by a limit; the caller turns it into a ChatTemplateError. */
export class TemplateLimitError extends Error {}

interface Meter {
  limits: ChatTemplateLimits;
  steps: number;
  produced: number;
  deadline: number;
}
let meter: Meter | undefined;

type Evaluate = (this: Interpreter, ...args: unknown[]) => { value?: unknown } | undefined;
/** `evaluate` (every node) and `evaluateBlock` (every loop iteration, even of an empty body) are metered. */
for (const method of ["evaluate", "evaluateBlock"] as const) {
  const proto = Interpreter.prototype as unknown as Record<typeof method, Evaluate>;
  const original = proto[method];
  proto[method] = function (this: Interpreter, ...args) {
    const m = meter;
    return m ? metered(m, () => original.apply(this, args)) : original.apply(this, args);
  };
}

function metered(m: Meter, step: () => { value?: unknown } | undefined): { value?: unknown } | undefined {
  if (++m.steps > m.limits.steps) throw new TemplateLimitError(`more than ${m.limits.steps} evaluation steps`);
  if ((m.steps & 4095) === 0 && Date.now() > m.deadline)
    throw new TemplateLimitError(`rendering took more than ${m.limits.timeMs} ms`);
  const result = step();
  const v = result?.value;
  if (typeof v === "string") {
    if (v.length > m.limits.valueChars)
      throw new TemplateLimitError(`a string of ${v.length} characters (limit ${m.limits.valueChars})`);
    m.produced += v.length;
    if (m.produced > m.limits.producedChars)
      throw new TemplateLimitError(`more than ${m.limits.producedChars} characters of strings produced`);
  } else if (Array.isArray(v) && v.length > m.limits.rangeItems) {
    throw new TemplateLimitError(`a list of ${v.length} items (limit ${m.limits.rangeItems})`);
  }
  return result;
}

// Template.render declares its globals with Environment.set, `range` among them: while metered, ours is declared.
type EnvSet = (this: Environment, name: string, value: unknown) => unknown;
const set = Environment.prototype.set as unknown as EnvSet;
(Environment.prototype as unknown as { set: EnvSet }).set = function (this: Environment, name, value) {
  const m = meter;
  const swap = m && name === "range" && typeof value === "function";
  return set.call(this, name, swap ? boundedRange(m.limits.rangeItems) : value);
};

/** jinja's `range(stop)` / `range(start, stop[, step])`, refusing more than `limit` items before allocating. */
function boundedRange(limit: number) {
  return (start: number, stop?: number, step = 1): number[] => {
    if (stop === undefined) [start, stop] = [0, start];
    if (step === 0) throw new Error("range() step must not be zero");
    const count = Math.ceil((stop - start) / step);
    if (!(count <= limit)) {
      if (Number.isNaN(count)) throw new Error("range() arguments must be numbers");
      throw new TemplateLimitError(`range() of ${count} items (limit ${limit})`);
    }
    return Array.from({ length: Math.max(count, 0) }, (_, i) => start + i * step);
  };
}

/** Renders `template` with `vars` under `limits`; a limit ends it with a TemplateLimitError. */
export function renderBounded(
  template: Template,
  vars: Record<string, unknown>,
  limits: ChatTemplateLimits = CHAT_TEMPLATE_LIMITS,
): string {
  const outer = meter;
  meter = { limits, steps: 0, produced: 0, deadline: Date.now() + limits.timeMs };
  try {
    return template.render(vars);
  } finally {
    meter = outer;
  }
}
