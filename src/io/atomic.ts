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
//
// This file is also the one home of single-target writes (a whole checkpoint folder, a lockfile, a report):
// built under a fresh temporary sibling and renamed into place; what is already at the target is replaced
// only when fusekit recognises it as its own kind of output AND the caller asked for it (`overwrite`).
import { promises as fsp } from "node:fs";
import path from "node:path";
import { randomBytes } from "node:crypto";
import { CheckpointFormatError, OutputPathError } from "../errors.js";
import { readJsonObject } from "./json.js";

/** Marker in temporary file names, so leftovers of an interrupted write can be recognised and removed. */
export const TMP_MARKER = ".fusekit-tmp-";

/** The journal of a committed save whose renames may not all have happened yet. */
export const SAVE_JOURNAL = ".fusekit-save-journal.json";

/** The mkdtemp prefix of a temporary sibling folder of `finalPath` (marked like tempPathFor's names). */
const tempPrefixFor = (finalPath: string) =>
  path.join(path.dirname(finalPath), `.${path.basename(finalPath)}${TMP_MARKER}${process.pid}-`);

/** A temporary sibling name for `finalPath`: same directory (so rename is atomic), never a final name. */
export function tempPathFor(finalPath: string): string {
  return tempPrefixFor(finalPath) + randomBytes(4).toString("hex");
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
export async function writeFilesAtomically(
  files: { path: string; write: (tmpPath: string) => Promise<void> }[],
  options: { remove?: string[] } = {},
): Promise<void> {
  if (!files.length) return;
  const dir = path.dirname(files[0].path);
  if (files.some((f) => path.dirname(f.path) !== dir))
    throw new RangeError("writeFilesAtomically: all files must be in one directory");
  const staged: { tmp: string; final: string }[] = [];
  try {
    for (const f of files) {
      const tmp = tempPathFor(f.path);
      staged.push({ tmp, final: f.path });
      await f.write(tmp);
    }
    await syncDir(dir); // the staged files' names are durable before the journal can point at them
  } catch (err) {
    await removeQuietly(staged.map((s) => s.tmp));
    throw err;
  }
  const finals = new Set(staged.map((s) => path.basename(s.final)));
  const journal: SaveJournal = {
    renames: staged.map((s) => ({ from: path.basename(s.tmp), to: path.basename(s.final) })),
    remove: (options.remove ?? []).filter((n) => !finals.has(n)),
  };
  const journalPath = path.join(dir, SAVE_JOURNAL);
  const journalTmp = tempPathFor(journalPath);
  try {
    await writeTextFile(journalTmp, JSON.stringify(journal));
    await fsp.rename(journalTmp, journalPath); // commit point
  } catch (err) {
    // Not committed (a full disk fails the journal's write): the staged files must not stay on it.
    await removeQuietly([journalTmp, ...staged.map((s) => s.tmp)]);
    throw err;
  }
  await syncDir(dir);
  await applyJournal(dir, journal);
}

/** Best-effort removal while a write is already failing: the write's own error is the one to report. */
async function removeQuietly(files: string[]): Promise<void> {
  await Promise.all(files.map((f) => fsp.rm(f, { force: true }).catch(() => {})));
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

const isBareName = (n: unknown): n is string =>
  typeof n === "string" && n !== "" && n !== "." && n !== ".." && !/[/\\\0]/.test(n);

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
export async function resolveCheckpointFile(
  dir: string,
  name: string,
  journal?: SaveJournal,
): Promise<string | undefined> {
  if (journal) {
    const r = journal.renames.find((x) => x.to === name);
    if (r) {
      const staged = path.join(dir, r.from);
      if (
        await fsp.stat(staged).then(
          () => true,
          () => false,
        )
      )
        return staged;
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

export async function writeTextFile(tmpPath: string, text: string | Uint8Array): Promise<void> {
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

// ── Single targets ───────────────────────────────────────────────────────────────────────────────────

/** What a single-target write produces, and when an existing target may be replaced. */
export interface WriteTarget {
  /** What is written, for messages: "checkpoint folder", "kernel lockfile", "HTML report". */
  kind: string;
  /** A folder (its missing parents are created; an empty folder counts as free) rather than a file. */
  folder?: boolean;
  /** Whether what already exists at a path is a `kind` fusekit wrote: nothing else is ever replaced. */
  recognise: (existing: string) => Promise<boolean>;
  /** Replace a recognised target (the CLI's `--force`, the API's `overwrite: true`). */
  overwrite?: boolean;
}

const codeOf = (err: unknown) => (err as NodeJS.ErrnoException)?.code ?? (err as Error)?.message ?? String(err);

/** An fs failure while writing `target`, as one named error (fusekit's own errors pass through). */
export function asOutputError(err: unknown, target: string): Error {
  if (err instanceof OutputPathError || !(err as NodeJS.ErrnoException)?.code) return err as Error;
  return new OutputPathError(`cannot write here (${codeOf(err)})`, target);
}

/**
 * Checks that `target` may be written under `t`'s rules without touching anything; throws an
 * OutputPathError that names the path otherwise. Returns whether an existing target would be replaced.
 */
export async function checkWriteTarget(target: string, t: WriteTarget): Promise<"create" | "replace"> {
  const st = await fsp.lstat(target).catch((err: NodeJS.ErrnoException) => err);
  if (st instanceof Error) {
    if (st.code !== "ENOENT") throw new OutputPathError(`cannot write here (${codeOf(st)})`, target);
    await checkParent(target, t);
    return "create";
  }
  if (t.folder && st.isDirectory() && (await fsp.readdir(target)).length === 0) return "create";
  // Only a plain file (or folder) can be fusekit's: a symlink, FIFO or device is never opened to find out.
  const plain = t.folder ? st.isDirectory() : st.isFile();
  if (plain && (await t.recognise(target).catch(() => false))) {
    if (!t.overwrite) {
      const message = `a ${t.kind} is already there; pass --force (API: overwrite: true) to replace it`;
      throw new OutputPathError(message, target);
    }
    return "replace";
  }
  const what = st.isDirectory() ? "folder" : st.isSymbolicLink() ? "symlink" : st.isFile() ? "file" : "special file";
  const message = `a ${what} that is not a ${t.kind} fusekit wrote is already there; refusing to replace it`;
  throw new OutputPathError(`${message} (choose another path)`, target);
}

/** The folder that will hold `target` exists (for a folder target: its nearest existing ancestor) and is one. */
async function checkParent(target: string, t: WriteTarget): Promise<void> {
  let dir = path.dirname(path.resolve(target));
  // Bounded: every step goes one level up, and the root exists.
  for (;;) {
    const st = await fsp.stat(dir).catch((err: NodeJS.ErrnoException) => err);
    if (!(st instanceof Error)) {
      if (!st.isDirectory()) throw new OutputPathError(`${dir} is not a folder`, target);
      return;
    }
    if (st.code !== "ENOENT" || !t.folder || path.dirname(dir) === dir) {
      const why = st.code === "ENOENT" ? "does not exist" : `cannot be used (${st.code})`;
      throw new OutputPathError(`folder ${dir} ${why}`, target);
    }
    dir = path.dirname(dir);
  }
}

/**
 * checkWriteTarget, then proves that entries can be created next to the target by making and removing a
 * temporary sibling folder: what a command runs before any long work, so a bad path fails in a second.
 */
export async function preflightWrite(target: string, t: WriteTarget): Promise<void> {
  await checkWriteTarget(target, t);
  let dir = path.dirname(path.resolve(target));
  while (
    !(await fsp.stat(dir).then(
      (s) => s.isDirectory(),
      () => false,
    ))
  )
    dir = path.dirname(dir); // ends at "/"
  const probe = await fsp.mkdtemp(tempPrefixFor(path.join(dir, path.basename(target)))).catch((err) => {
    throw new OutputPathError(`cannot create files in ${dir} (${codeOf(err)})`, target);
  });
  await fsp.rmdir(probe);
}

/** `mkdir -p` with a bounded walk (Node's recursive mkdir spins forever on paths like /proc/x/y). */
export async function ensureDir(dir: string): Promise<void> {
  const missing: string[] = [];
  for (let d = path.resolve(dir); ; d = path.dirname(d)) {
    const st = await fsp.stat(d).catch((err: NodeJS.ErrnoException) => err);
    if (!(st instanceof Error)) {
      if (!st.isDirectory()) throw new OutputPathError("is not a folder", d);
      break;
    }
    if (st.code !== "ENOENT" || path.dirname(d) === d) {
      throw new OutputPathError(`cannot use this folder (${codeOf(st)})`, d);
    }
    missing.push(d);
  }
  for (const d of missing.reverse()) {
    await fsp.mkdir(d).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== "EEXIST") throw new OutputPathError(`cannot create this folder (${codeOf(err)})`, d);
    });
  }
}

/**
 * Writes one file atomically: fsynced under a temporary sibling name, then moved into place — with
 * link() when nothing is there (which never clobbers a file that appeared meanwhile), with rename() over
 * a recognised target being replaced.
 */
export async function writeFileAtomically(
  file: string,
  data: string | Uint8Array | ((tmpPath: string) => Promise<void>),
  t: WriteTarget,
): Promise<void> {
  const mode = await checkWriteTarget(file, t);
  const tmp = tempPathFor(file);
  try {
    // A function writes (and fsyncs) the file itself: for outputs too large to hold in memory at once.
    await (typeof data === "function" ? data(tmp) : writeTextFile(tmp, data));
    if (mode === "replace" || !(await linkNoClobber(tmp, file, t))) await fsp.rename(tmp, file);
  } catch (err) {
    throw asOutputError(err, file);
  } finally {
    await fsp.rm(tmp, { force: true });
  }
}

/** link(tmp → file); false when the filesystem has no hard links (then a rename does the job). */
async function linkNoClobber(tmp: string, file: string, t: WriteTarget): Promise<boolean> {
  try {
    await fsp.link(tmp, file);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST") await checkWriteTarget(file, { ...t, overwrite: false });
    if (["EPERM", "ENOTSUP", "EOPNOTSUPP", "ENOSYS"].includes((err as NodeJS.ErrnoException).code ?? "")) return false;
    throw err;
  }
}

/**
 * Builds a folder atomically: `fill` writes into a fresh temporary sibling, which is then renamed into
 * place. A recognised folder being replaced is moved aside first and deleted only after the new one is in.
 * Returns the folder's absolute path.
 */
export async function writeFolderAtomically(
  dir: string,
  fill: (tmpDir: string) => Promise<void>,
  t: WriteTarget,
): Promise<string> {
  const dest = path.resolve(dir);
  const target = { ...t, folder: true };
  await checkWriteTarget(dest, target);
  await ensureDir(path.dirname(dest));
  const tmp = await fsp.mkdtemp(tempPrefixFor(dest)).catch((err) => {
    throw asOutputError(err, dest);
  });
  try {
    await fsp.chmod(tmp, 0o777 & ~process.umask()); // mkdtemp makes it private (0700); the result is an ordinary folder
    await fill(tmp);
    await commitFolder(tmp, dest, target);
  } catch (err) {
    await fsp.rm(tmp, { recursive: true, force: true });
    throw asOutputError(err, dest);
  }
  return dest;
}

async function commitFolder(tmp: string, dest: string, t: WriteTarget): Promise<void> {
  // Checked again: the target may have changed during the (possibly long) fill.
  if ((await checkWriteTarget(dest, t)) === "create") {
    // rename() onto nothing or an empty folder only; if something appeared meanwhile, say what.
    return fsp.rename(tmp, dest).catch(async (err) => {
      await checkWriteTarget(dest, { ...t, overwrite: false });
      throw err;
    });
  }
  const old = tempPathFor(dest);
  await fsp.rename(dest, old);
  try {
    await fsp.rename(tmp, dest);
  } catch (err) {
    await fsp.rename(old, dest);
    throw err;
  }
  await fsp.rm(old, { recursive: true, force: true });
}
