// kernels.lock: the sha256 of every file of the repositories a project trusts, written atomically.
import { promises as fsp } from "node:fs";
import path from "node:path";
import { KernelIntegrityError } from "../errors.js";
import { TMP_MARKER, checkWriteTarget, writeFileAtomically, type WriteTarget } from "../io/atomic.js";
import { readJsonObject } from "../io/json.js";
import { processAlive } from "../io/save-lock.js";
import { discoverRepos, type HubRepo } from "./repos.js";
import { hashRepo } from "./verify.js";
import type { LockEntry, Lockfile } from "./types.js";

export const LOCKFILE_NAME = "kernels.lock";

/** Reads kernels.lock; a missing or malformed file is a KernelIntegrityError. */
export async function readLockfile(file: string): Promise<Lockfile> {
  const error = (message: string) => new KernelIntegrityError(`cannot read the kernel lockfile: ${message}`);
  const raw = (await readJsonObject(file, { error })) as unknown as Lockfile;
  if (raw?.lockfileVersion !== 1 || !Array.isArray(raw.kernels)) {
    throw new KernelIntegrityError(
      `${file}: not a kernels.lock file (expected {"lockfileVersion": 1, "kernels": [...]})`,
    );
  }
  raw.kernels.forEach((k, i) => checkEntry(k, `${file}: kernels[${i}]`));
  return raw;
}

/** One lock entry's shape: a lockfile is data from disk, so `[null]` or `files: "abc"` is refused by name. */
function checkEntry(k: unknown, where: string): void {
  const bad = (what: string) => new KernelIntegrityError(`${where}: ${what}; not a kernels.lock entry`);
  if (typeof k !== "object" || k === null || Array.isArray(k)) throw bad("must be an object");
  const { repoId, version, files } = k as Partial<LockEntry>;
  if (typeof repoId !== "string" || !repoId) throw bad(`"repoId" must be a non-empty string`);
  if (!Number.isInteger(version) || (version as number) < 0) throw bad(`"version" must be a non-negative integer`);
  if (typeof files !== "object" || files === null || Array.isArray(files))
    throw bad(`"files" must be an object of path → sha256`);
  for (const [f, sha] of Object.entries(files))
    if (typeof sha !== "string" || !/^[0-9a-f]{64}$/.test(sha)) throw bad(`"files"."${f}" must be a sha256 hex digest`);
}

/** The rules for writing a lockfile: only a kernels.lock is replaced (the API replaces it unless told not to). */
export const lockfileTarget = (overwrite = true): WriteTarget => ({
  kind: "kernel lockfile",
  recognise: (file) => readLockfile(file).then(() => true),
  overwrite,
});

/**
 * Locks the given repositories (default: every repo in the hub) into `file`; returns what was written.
 * An existing kernels.lock is replaced (`overwrite: false` refuses); any other file there is never touched.
 */
export async function writeLockfile(
  file: string,
  repos?: HubRepo[],
  options: { overwrite?: boolean } = {},
): Promise<Lockfile> {
  await checkWriteTarget(file, lockfileTarget(options.overwrite)); // before hashing anything
  const list = repos ?? (await discoverRepos());
  const lock: Lockfile = { lockfileVersion: 1, kernels: [] };
  for (const r of list)
    lock.kernels.push({ repoId: r.manifest.id, version: r.manifest.version, files: await hashRepo(r.dir) });
  await removeDeadTemporaries(file);
  // Atomic: a kill midway leaves the previous kernels.lock whole (and a temporary the next lock run removes).
  await writeFileAtomically(file, JSON.stringify(lock, null, 2) + "\n", lockfileTarget(options.overwrite));
  return lock;
}

/** Removes temporaries of `file` left by killed lock writers (their pid, in the name, no longer runs). */
async function removeDeadTemporaries(file: string): Promise<void> {
  const prefix = `.${path.basename(file)}${TMP_MARKER}`;
  const names = await fsp.readdir(path.dirname(file)).catch(() => [] as string[]);
  for (const name of names.filter((n) => n.startsWith(prefix))) {
    const pid = Number(name.slice(prefix.length).split("-")[0]);
    if (Number.isInteger(pid) && pid > 0 && !processAlive(pid))
      await fsp.rm(path.join(path.dirname(file), name), { force: true });
  }
}

/** The lock entry for a repository at a version (any version when omitted), or undefined. */
export function lockEntry(lock: Lockfile, repoId: string, version?: number): LockEntry | undefined {
  return lock.kernels.find((k) => k.repoId === repoId && (version === undefined || k.version === version));
}
