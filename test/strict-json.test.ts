// parseJsonStrict's two checks of one text: a quick key count against what JSON.parse made of it, and the full
// scan that names the problem. Generated objects with keys from a tiny alphabet (so that many repeat, some
// written with escapes), nested in objects and arrays: the verdict must be the tree's own, computed here.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { MAX_JSON_DEPTH, parseJsonStrict } from "../src/io/json.js";
import { scaled } from "./helpers/scale.js";

/** A JSON value as written: objects keep every key they were written with, duplicates included. */
type Written = number | string | null | Written[] | { entries: [string, Written][] };

const keyArb = fc.constantFrom("a", "b", "c", "__proto__", "é");
const leafArb: fc.Arbitrary<Written> = fc.oneof(
  fc.integer(),
  fc.constantFrom("x", "a", "{", "[,]", 'q"'),
  fc.constant(null),
);
const { tree: writtenArb } = fc.letrec<{ tree: Written }>((tie) => ({
  tree: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    leafArb,
    fc.array(tie("tree"), { maxLength: 4 }),
    fc.array(fc.tuple(keyArb, tie("tree")), { maxLength: 4 }).map((entries) => ({ entries })),
  ),
}));

/** The key as JSON text, sometimes with every character escaped (\u0061 for "a"). */
const writeKey = (key: string, escape: boolean) =>
  escape
    ? `"${[...key].map((ch) => `\\u${ch.charCodeAt(0).toString(16).padStart(4, "0")}`).join("")}"`
    : JSON.stringify(key);

function write(v: Written, escape: boolean, space: string): string {
  if (Array.isArray(v)) return `[${space}${v.map((x) => write(x, escape, space)).join(`,${space}`)}]`;
  if (v !== null && typeof v === "object")
    return `{${v.entries.map(([k, x]) => `${space}${writeKey(k, escape)}${space}:${write(x, escape, space)}`).join(",")}}`;
  return JSON.stringify(v);
}

function hasDuplicate(v: Written): boolean {
  if (Array.isArray(v)) return v.some(hasDuplicate);
  if (v === null || typeof v !== "object") return false;
  const keys = v.entries.map(([k]) => k);
  return new Set(keys).size < keys.length || v.entries.some(([, x]) => hasDuplicate(x));
}

describe("strict JSON", () => {
  it(`agrees with the tree on ${scaled(2000)} generated texts: a duplicate key anywhere is named, else the value is JSON.parse's`, () => {
    fc.assert(
      fc.property(writtenArb, fc.boolean(), fc.constantFrom("", " ", "\n  "), (tree, escape, space) => {
        const text = write(tree, escape, space);
        const result = parseJsonStrict(text);
        if (hasDuplicate(tree))
          expect(result).toMatchObject({ ok: false, problem: expect.stringMatching(/^duplicate key /) });
        else expect(result).toEqual({ ok: true, value: JSON.parse(text) });
      }),
      { numRuns: scaled(2000) },
    );
  });

  it("names a duplicate deep inside a large object, and nesting past the limit", () => {
    const vocab = Object.fromEntries(Array.from({ length: 50_000 }, (_, i) => [`t${i}`, i]));
    const text = JSON.stringify({ model: { vocab, merges: ["a b"] } });
    expect(parseJsonStrict(text)).toEqual({ ok: true, value: JSON.parse(text) });
    const dup = text.replace('"t49999":49999', '"t49999":49999,"t7":7');
    expect(parseJsonStrict(dup)).toEqual({ ok: false, problem: 'duplicate key "t7" in "model"."vocab"' });
    const deep = "[".repeat(MAX_JSON_DEPTH + 1) + "]".repeat(MAX_JSON_DEPTH + 1);
    expect(parseJsonStrict(deep)).toEqual({ ok: false, problem: `nested deeper than ${MAX_JSON_DEPTH} levels` });
    const limit = "[".repeat(MAX_JSON_DEPTH) + "]".repeat(MAX_JSON_DEPTH);
    expect(parseJsonStrict(limit).ok).toBe(true);
  });
});
