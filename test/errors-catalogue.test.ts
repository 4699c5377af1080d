// The error catalogue (docs/errors.md) cannot fall behind src/errors.ts: every exported
// error class has a row (class, cause, remedy), every row names a real class, rows indented under a base
// really extend it, and every class is reachable from the public API.
import { describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import * as errors from "../src/errors.js";
import * as api from "fusekit";

const doc = readFileSync(fileURLToPath(new URL("../docs/errors.md", import.meta.url)), "utf8");
const classes = (Object.entries(errors) as [string, unknown][]).filter(
  (e): e is [string, new (...a: never[]) => Error] => typeof e[1] === "function",
);

/** Catalogue table rows whose first cell is a class name: [name, indented, cells]. */
const rows = doc
  .split("\n")
  .map((line) => /^\|\s*((?:&nbsp;)*)`(\w+)`\s*\|(.*)\|\s*$/.exec(line))
  .filter((m): m is RegExpExecArray => m !== null && /Error$/.test(m[2]))
  .map((m) => ({ name: m[2], indented: m[1] !== "", cells: m[3].split(" | ").map((c) => c.trim()) }));

describe("docs/errors.md", () => {
  it("src/errors.ts exports error classes, all FusekitErrors, all in the public API", () => {
    expect(classes.length).toBeGreaterThanOrEqual(28);
    for (const [name, cls] of classes) {
      expect(cls === errors.FusekitError || cls.prototype instanceof errors.FusekitError, name).toBe(true);
      expect((api as Record<string, unknown>)[name], `${name} exported from "fusekit"`).toBe(cls);
    }
  });

  it("lists every exported class exactly once, with a cause and a remedy", () => {
    const listed = rows.map((r) => r.name);
    const missing = classes.map(([n]) => n).filter((n) => !listed.includes(n));
    expect(missing, "classes without a catalogue row").toEqual([]);
    const twice = listed.filter((n, i) => listed.indexOf(n) !== i);
    expect(twice).toEqual([]);
    for (const r of rows) {
      expect(r.cells.length, r.name).toBe(2);
      expect(
        r.cells.every((c) => c.length > 20),
        `${r.name}: cause and remedy`,
      ).toBe(true);
    }
  });

  it("names no class that does not exist, and indents subclasses under their base", () => {
    const known = new Map(classes);
    expect(rows.map((r) => r.name).filter((n) => !known.has(n))).toEqual([]);
    let base: (typeof classes)[number][1] | undefined;
    for (const r of rows) {
      const cls = known.get(r.name)!;
      if (!r.indented) base = cls;
      else expect(cls.prototype instanceof base!, `${r.name} extends the row above it`).toBe(true);
    }
  });
});
