// Temp dirs for tests that clean themselves up: every dir made here is removed after the test file that
// made it (an afterAll registered when a test file first imports this module; vitest isolates each file,
// so each file gets its own list). Tests need not remember to remove them, and a failing test leaks none.
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll } from "vitest";

const made = new Set<string>();

afterAll(() => {
  for (const dir of made) rmSync(dir, { recursive: true, force: true });
  made.clear();
});

/** A fresh empty directory under the system temp folder, removed after the current test file. */
export function tmpDir(tag = "fusekit-test-"): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), tag));
  made.add(dir);
  return dir;
}
