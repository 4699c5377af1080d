// A report as titled tables with notes, rendered for the terminal (cli-table3) or as Markdown: one renderer
// for every report fusekit prints (the comparison's and the bench's).
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
