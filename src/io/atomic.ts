import { promises as fsp } from "node:fs";
import path from "node:path";
import { randomBytes } from "node:crypto";

/** Marker in temporary file names, so leftovers of an interrupted write can be recognised and removed. */
export const TMP_MARKER = ".fusekit-tmp-";

/** A temporary sibling name for `finalPath`: same directory (so rename is atomic), never a final name. */
export function tempPathFor(finalPath: string): string {
  return path.join(path.dirname(finalPath), `.${path.basename(finalPath)}${TMP_MARKER}${process.pid}-${randomBytes(4).toString("hex")}`);
}

/**
 * Writes a group of files so that each final name only ever holds a complete file: everything is written
 * and fsynced under temporary names first, then renamed into place in the given order (put the file that
 * makes the rest "current" — config.json, an index — last). If the writer throws, the temporaries are removed
 * and no final name is touched.
 */
export async function writeFilesAtomically(files: { path: string; write: (tmpPath: string) => Promise<void> }[]): Promise<void> {
  const staged: { tmp: string; final: string }[] = [];
  try {
    for (const f of files) {
      const tmp = tempPathFor(f.path);
      staged.push({ tmp, final: f.path });
      await f.write(tmp);
    }
  } catch (err) {
    await Promise.all(staged.map((s) => fsp.rm(s.tmp, { force: true })));
    throw err;
  }
  for (const s of staged) await fsp.rename(s.tmp, s.final);
  // Make the renames durable.
  const dirs = new Set(staged.map((s) => path.dirname(s.final)));
  for (const d of dirs) {
    const h = await fsp.open(d, "r");
    try {
      await h.sync();
    } finally {
      await h.close();
    }
  }
}

export async function writeTextFile(tmpPath: string, text: string): Promise<void> {
  const h = await fsp.open(tmpPath, "w");
  try {
    await h.writeFile(text);
    await h.sync();
  } finally {
    await h.close();
  }
}

/** Removes temporaries that an interrupted write left in `dir`. */
export async function removeStaleTemporaries(dir: string): Promise<void> {
  const names = await fsp.readdir(dir).catch(() => [] as string[]);
  await Promise.all(names.filter((n) => n.includes(TMP_MARKER)).map((n) => fsp.rm(path.join(dir, n), { force: true })));
}
