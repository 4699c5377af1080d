// One save at a time per checkpoint folder, across processes. The journal (atomic.ts) makes ONE save atomic,
// but two saves into one folder would still interleave: each removes the other's staged files as leftovers,
// and their journals rename into one folder, so one model's config.json could end beside the other's shards.
// A save therefore holds SAVE_LOCK, a file created with O_EXCL holding the holder's pid, host and start time.
// A lock whose pid is dead on this host is stale (its holder crashed) and is broken; a live holder is waited
// for, up to a bound, and then the save fails with a SaveLockError naming the holder — never a mixed folder.
// withLockFile is the same mechanism for any lock file (hub downloads take one per blob).
import { promises as fsp } from "node:fs";
import os from "node:os";
import path from "node:path";
import { randomBytes } from "node:crypto";
import { SaveLockError } from "../errors.js";

/** The lock file of a folder a save is writing into (removed when the save ends). */
export const SAVE_LOCK = ".fusekit-save.lock";
/** Held for a moment by whoever removes a stale SAVE_LOCK, so two waiters never both break it. */
export const SAVE_LOCK_BREAK = `${SAVE_LOCK}.break`;

/** How long a save waits for another one into the same folder by default (a large model's save takes minutes). */
export const DEFAULT_SAVE_LOCK_TIMEOUT_MS = 10 * 60_000;
/** A lock or break file that never got its contents (its writer died at once) is stale after this long. */
const UNREADABLE_STALE_MS = 10_000;

interface Holder {
  pid: number;
  host: string;
  started: string;
  token: string;
}

/** Whether a process with this pid runs on this host (EPERM: it exists, owned by someone else). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Runs `fn` holding `dir`'s save lock. Waits (polling) while another live process — or another save in this
 * one — holds it, at most `timeoutMs`; breaks a lock whose holder died.
 */
export async function withSaveLock<T>(
  dir: string,
  fn: () => Promise<T>,
  timeoutMs = DEFAULT_SAVE_LOCK_TIMEOUT_MS,
): Promise<T> {
  return withLockFile(path.join(dir, SAVE_LOCK), fn, {
    timeoutMs,
    timeoutError: (who, file) =>
      new SaveLockError(
        `another save into this folder is running (${who}); waited ${+(timeoutMs / 1000).toFixed(1)} s. ` +
          `If no save is running, remove ${file}`,
        path.dirname(file),
      ),
  });
}

/**
 * Runs `fn` holding the lock file `file` (the save lock's mechanism, for any one-at-a-time job: a blob download
 * too). Waits while a live holder has it, at most `timeoutMs`, then throws `timeoutError(holder, file)`; breaks
 * a lock whose holder died on this host. `${file}.break` is held for a moment while breaking one.
 */
export async function withLockFile<T>(
  file: string,
  fn: () => Promise<T>,
  options: { timeoutMs: number; timeoutError: (holder: string, file: string) => Error },
): Promise<T> {
  const token = await acquire(file, options);
  try {
    return await fn();
  } finally {
    await release(file, token);
  }
}

async function acquire(
  file: string,
  { timeoutMs, timeoutError }: { timeoutMs: number; timeoutError: (holder: string, file: string) => Error },
): Promise<string> {
  const me: Holder = {
    pid: process.pid,
    host: os.hostname(),
    started: new Date().toISOString(),
    token: randomBytes(8).toString("hex"),
  };
  const deadline = Date.now() + timeoutMs;
  for (let delay = 5; ; delay = Math.min(delay * 2, 200)) {
    if (await tryCreate(file, JSON.stringify(me))) return me.token;
    const seen = await readHolder(file);
    if (seen === undefined) continue; // released meanwhile
    if (isStale(seen)) {
      await breakStale(file, seen.raw);
      continue;
    }
    if (Date.now() >= deadline) {
      const h = seen.holder;
      throw timeoutError(
        h ? `pid ${h.pid} on ${h.host}, since ${h.started}` : "a holder whose lock file is unreadable",
        file,
      );
    }
    await new Promise((r) => setTimeout(r, delay * (0.5 + Math.random())));
  }
}

/** Creates `file` exclusively with `text`; false when it exists. A failed write removes what it created. */
async function tryCreate(file: string, text: string): Promise<boolean> {
  const h = await fsp.open(file, "wx").catch((err: NodeJS.ErrnoException) => {
    if (err.code === "EEXIST") return undefined;
    throw err;
  });
  if (!h) return false;
  try {
    await h.writeFile(text);
  } catch (err) {
    await h.close().catch(() => {});
    await fsp.rm(file, { force: true });
    throw err;
  }
  await h.close();
  return true;
}

async function readHolder(file: string): Promise<{ raw: string; holder?: Holder; mtimeMs: number } | undefined> {
  try {
    const [raw, st] = await Promise.all([fsp.readFile(file, "utf8"), fsp.stat(file)]);
    let holder: Holder | undefined;
    try {
      const h = JSON.parse(raw) as Partial<Holder>;
      if (Number.isInteger(h.pid) && typeof h.host === "string" && typeof h.token === "string") holder = h as Holder;
    } catch {
      holder = undefined; // being written, or written by something else: judged by its age
    }
    return { raw, holder, mtimeMs: st.mtimeMs };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
}

/** Only a holder on this host can be known dead; one elsewhere (a shared filesystem) is waited for. */
function isStale(seen: { holder?: Holder; mtimeMs: number }): boolean {
  if (!seen.holder) return Date.now() - seen.mtimeMs > UNREADABLE_STALE_MS;
  return seen.holder.host === os.hostname() && !processAlive(seen.holder.pid);
}

/** Removes a stale lock — unless it changed since it was judged stale (another waiter took it over). */
async function breakStale(file: string, staleRaw: string): Promise<void> {
  const breaker = `${file}.break`; // SAVE_LOCK_BREAK for the save lock
  if (!(await tryCreate(breaker, String(process.pid)))) {
    const st = await fsp.stat(breaker).catch(() => undefined);
    // A breaker holds this for microseconds; an old one was left by a crash.
    if (st && Date.now() - st.mtimeMs > UNREADABLE_STALE_MS) await fsp.rm(breaker, { force: true });
    return;
  }
  try {
    const now = await fsp.readFile(file, "utf8").catch(() => undefined);
    if (now === staleRaw) await fsp.rm(file, { force: true });
  } finally {
    await fsp.rm(breaker, { force: true });
  }
}

async function release(file: string, token: string): Promise<void> {
  const seen = await readHolder(file).catch(() => undefined);
  if (seen?.holder?.token === token) await fsp.rm(file, { force: true });
}
