// A report as titled tables with notes, rendered for the terminal (cli-table3) or as Markdown: one renderer
// for every report fusekit prints (the comparison's and the bench's).
import { stripVTControlCharacters } from "node:util";
import Table from "cli-table3";

export interface Section {
  title: string;
  head: string[];
  rows: string[][];
  notes?: string[];
}

/** Cells longer than this are cut with an ellipsis on a terminal (Markdown keeps them whole). */
const TERMINAL_CELL = 120;

/** One section as a terminal table; `widths` fixes column widths where given (the rest fit their text). */
export function terminalSection(s: Section, widths: (number | null)[] = []): string {
  const t = new Table({
    head: s.head,
    style: { head: [], border: [] },
    wordWrap: true,
    colWidths: s.head.map((_, i) => widths[i] ?? null) as number[],
  });
  for (const row of s.rows)
    t.push(row.map((c) => (c.length > TERMINAL_CELL ? c.slice(0, TERMINAL_CELL - 3) + "…" : c)));
  return [`\n${s.title}`, t.toString(), ...(s.notes ?? []).map((n) => `  ${n}`)].join("\n");
}

/** `1 token`, `2 tokens`: a count with its noun in the right number. */
export const plural = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

/** Terminal columns one line of a cell takes (colour codes take none; every character fusekit prints is narrow). */
const shown = (text: string) => stripVTControlCharacters(text).length;

/**
 * Column widths (padding included) that make a table at most `width` terminal columns wide, when its words allow.
 * Headings wrap first (down to their body's width), then the widest column gives up a column at a time until the
 * table fits or every column is as narrow as its longest word. cli-table3 wraps cells at spaces, but only to
 * widths it is given.
 */
export function fitWidths(head: string[], rows: string[][], width: number): number[] {
  const longest = (parts: string[]) => Math.max(1, ...parts.map(shown)) + 2;
  const lines = (t: string) => t.split("\n");
  const words = (t: string) => t.split(/\s+/);
  const body = head.map((_, i) => rows.map((r) => r[i] ?? ""));
  const widths = head.map((h, i) => longest([h, ...body[i]].flatMap(lines)));
  const floor = head.map((h, i) => longest([h, ...body[i]].flatMap(words)));
  const total = () => widths.reduce((a, b) => a + b, 0) + widths.length + 1;
  const shrinkTo = (floors: number[]) => {
    while (total() > width) {
      let widest = -1;
      for (let i = 0; i < widths.length; i++)
        if (widths[i] > floors[i] && (widest < 0 || widths[i] > widths[widest])) widest = i;
      if (widest < 0) return;
      widths[widest]--;
    }
  };
  shrinkTo(floor.map((f, i) => Math.max(f, longest(body[i].flatMap(lines)))));
  shrinkTo(floor);
  return widths;
}

/**
 * Prose wrapped at spaces to lines of at most `width` columns (a longer word keeps a line of its own). Hand-written:
 * a few lines, where the wrapping libraries in node_modules are only other packages' dependencies.
 */
export function wrapText(text: string, width = Infinity): string {
  const out: string[] = [];
  for (const word of text.split(" ")) {
    const last = out.length - 1;
    if (last >= 0 && shown(out[last]) + 1 + shown(word) <= width) out[last] += ` ${word}`;
    else out.push(word);
  }
  return out.join("\n");
}

/**
 * A table for the terminal, at most `width` columns wide when its words allow (cells wrap at spaces); compact:
 * no rule between body rows.
 */
export function terminalTable(
  head: string[],
  rows: (string | number)[][],
  { width = Infinity, compact = true }: { width?: number; compact?: boolean } = {},
): string {
  const text = rows.map((r) => r.map(String));
  const t = new Table({
    head,
    style: { head: [], border: [], compact },
    wordWrap: true,
    colWidths: fitWidths(head, text, width),
  });
  t.push(...text);
  return t.toString();
}

const esc = (s: string) => s.replace(/\|/g, "\\|");

/** One section as a Markdown heading, table and bullet notes. */
export function markdownSection(s: Section): string {
  const out = [
    `## ${s.title}`,
    "",
    `| ${s.head.map(esc).join(" | ")} |`,
    `|${s.head.map(() => "---").join("|")}|`,
    ...s.rows.map((row) => `| ${row.map(esc).join(" | ")} |`),
  ];
  if (s.notes?.length) out.push("", ...s.notes.map((n) => `- ${n}`));
  return out.join("\n");
}
