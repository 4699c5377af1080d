// node:util in the browser build: only what the report code uses.
const VT =
  // eslint-disable-next-line no-control-regex
  /[\u001b\u009b][[\]()#;?]*(?:(?:(?:;[-a-zA-Z\d/#&.:=?%@~_]+)*|[a-zA-Z\d]+(?:;[-a-zA-Z\d/#&.:=?%@~_]*)*)?\u0007|(?:\d{1,4}(?:;\d{0,4})*)?[\dA-PR-TZcf-nq-uy=><~])/g;

export function stripVTControlCharacters(s: string): string {
  return s.replace(VT, "");
}

/** What the terminal-table package prints values with: String is enough for its tables. */
export function inspect(value: unknown): string {
  return typeof value === "string" ? value : (JSON.stringify(value) ?? String(value));
}

export default { stripVTControlCharacters, inspect };
