// Atomic multi-file saves. A checkpoint is several files (config.json + weights + maybe an index), and a
// rename replaces only one of them atomically: a process killed between two renames would leave new shards
// next to an old config.json (or an old index next to a new model.safetensors) — neither checkpoint.
// So a save commits through a journal, like a database's write-ahead log:
//   1. every file is written and fsynced under a temporary name (the old checkpoint is untouched);
//   2. a journal listing the renames (temporary → final) and the old files to delete is written to a
//      temporary name and renamed to SAVE_JOURNAL — this single rename is the commit point;
//   3. the renames and deletions run, then the journal is removed.
// A kill before 2 leaves the old checkpoint; after 2, readers see the new one: they resolve names through
// a pending journal (`pendingSave`), and the next save finishes the journal's work (`completePendingSave`).
import { promises as fsp } from "node:fs";
import path from "node:path";
import { randomBytes } from "node:crypto";
import { CheckpointFormatError } from "../errors.js";
import { readJsonObject } from "./json.js";

/** Marker in temporary file names, so leftovers of an interrupted write can be recognised and removed. */
export const TMP_MARKER = ".fusekit-tmp-";

/** The journal of a committed save whose renames may not all have happened yet. */
export const SAVE_JOURNAL = ".fusekit-save-journal.json";

/** A temporary sibling name for `finalPath`: same directory (so rename is atomic), never a final name. */
export function tempPathFor(finalPath: string): string {
  return path.join(path.dirname(finalPath), `.${path.basename(finalPath)}${TMP_MARKER}${process.pid}-${randomBytes(4).toString("hex")}`);
}

/** What a committed save still has to do (all names are bare file names inside the checkpoint directory). */
export interface SaveJournal {
  renames: { from: string; to: string }[];
  remove: string[];
}

/**
 * Writes a group of files in one directory so that a reader sees either the previous set or the new one:
 * all files are staged under temporary names, then committed through SAVE_JOURNAL (see the top of this
 * file). `remove` names old files of the directory that the new set replaces (they are deleted after the
 * commit). If a writer throws, the temporaries are removed and nothing else is touched.
 */
export async function writeFilesAtomically(files: { path: string; write: (tmpPath: string) => Promise<void> }[], options: { remove?: string[] } = {}): Promise<void> {
  if (!files.length) return;
  const dir = path.dirname(files[0].path);
  if (files.some((f) => path.dirname(f.path) !== dir)) throw new RangeError("writeFilesAtomically: all files must be in one directory");
  const staged: { tmp: string; final: string }[] = [];
  try {
    for (const f of files) {
      const tmp = tempPathFor(f.path);
      staged.push({ tmp, final: f.path });
      await f.write(tmp);
    }
    await syncDir(dir); // the staged files' names are durable before the journal can point at them
  } catch (err) {
    await Promise.all(staged.map((s) => fsp.rm(s.tmp, { force: true })));
    throw err;
  }
  const finals = new Set(staged.map((s) => path.basename(s.final)));
  const journal: SaveJournal = {
    renames: staged.map((s) => ({ from: path.basename(s.tmp), to: path.basename(s.final) })),
    remove: (options.remove ?? []).filter((n) => !finals.has(n)),
  };
  const journalPath = path.join(dir, SAVE_JOURNAL);
  const journalTmp = tempPathFor(journalPath);
  await writeTextFile(journalTmp, JSON.stringify(journal));
  await fsp.rename(journalTmp, journalPath); // commit point
  await syncDir(dir);
  await applyJournal(dir, journal);
}

/** Performs a committed journal's renames and deletions (idempotent), then removes the journal. */
async function applyJournal(dir: string, journal: SaveJournal): Promise<void> {
  for (const { from, to } of journal.renames) {
    try {
      await fsp.rename(path.join(dir, from), path.join(dir, to));
    } catch (err) {
      // Already renamed by an earlier, interrupted run of this journal.
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    }
  }
  await Promise.all(journal.remove.map((n) => fsp.rm(path.join(dir, n), { force: true })));
  await syncDir(dir);
  await fsp.rm(path.join(dir, SAVE_JOURNAL), { force: true });
  await syncDir(dir);
}

const isBareName = (n: unknown): n is string => typeof n === "string" && n !== "" && n !== "." && n !== ".." && !/[/\\\0]/.test(n);

/**
 * The pending journal of `dir`, if a save was interrupted after its commit point. A journal is data from the
 * directory like any other: one that is malformed or names anything but plain files inside `dir` is an error.
 */
export async function pendingSave(dir: string): Promise<SaveJournal | undefined> {
  const file = path.join(dir, SAVE_JOURNAL);
  const error = (message: string) => new CheckpointFormatError(`cannot read the save journal: ${message}`);
  const j = await readJsonObject(file, { error, optional: true });
  if (j === undefined) return undefined;
  const { renames, remove } = (j ?? {}) as Partial<Record<keyof SaveJournal, unknown>>;
  const ok =
    Array.isArray(renames) &&
    renames.every((r) => isBareName(r?.from) && String(r.from).includes(TMP_MARKER) && isBareName(r?.to)) &&
    Array.isArray(remove) &&
    remove.every(isBareName);
  if (!ok) throw new CheckpointFormatError("save journal is malformed or names files outside the directory", file);
  return { renames: renames as SaveJournal["renames"], remove: remove as string[] };
}

/**
 * Where to read the checkpoint file `name` of `dir`, honouring a pending journal: its staged file if the
 * rename has not happened yet, undefined if the committed save deletes it, else `dir/name`.
 */
export async function resolveCheckpointFile(dir: string, name: string, journal?: SaveJournal): Promise<string | undefined> {
  if (journal) {
    const r = journal.renames.find((x) => x.to === name);
    if (r) {
      const staged = path.join(dir, r.from);
      if (await fsp.stat(staged).then(() => true, () => false)) return staged;
      return path.join(dir, name);
    }
    if (journal.remove.includes(name)) return undefined;
  }
  return path.join(dir, name);
}

/** Finishes a save that was interrupted after its commit point (a no-op when there is none). */
export async function completePendingSave(dir: string): Promise<void> {
  const journal = await pendingSave(dir);
  if (journal) await applyJournal(dir, journal);
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

/** Removes temporaries that an interrupted write left in `dir` (call after completePendingSave). */
export async function removeStaleTemporaries(dir: string): Promise<void> {
  const names = await fsp.readdir(dir).catch(() => [] as string[]);
  await Promise.all(names.filter((n) => n.includes(TMP_MARKER)).map((n) => fsp.rm(path.join(dir, n), { force: true })));
}

async function syncDir(dir: string): Promise<void> {
  const h = await fsp.open(dir, "r");
  try {
    await h.sync();
  } finally {
    await h.close();
  }
}
