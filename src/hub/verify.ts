// A repository's files read once (a snapshot) and checked against its lock entry: verifying and importing
// from the same bytes means a file swapped on disk afterwards never runs unverified.
import { createHash } from "node:crypto";
import { constants as fsConstants, promises as fsp } from "node:fs";
import path from "node:path";
import { KernelIntegrityError, KernelRepositoryError, KernelSymlinkError } from "../errors.js";
import type { HubRepo } from "./repos.js";
import type { LockEntry } from "./types.js";

/** A repository's files as read once: relative path (sorted, "/"-separated) → bytes and sha256 hex. */
export type RepoSnapshot = Map<string, { bytes: Buffer; sha256: string }>;

/**
 * Reads every file of a repository once, with its sha256. A symlink is followed only when it stays inside
 * the repository; one leading outside is refused, since it would escape the lock. Verifying and importing
 * from this one read means a file swapped on disk afterwards never runs unverified.
 */
export async function snapshotRepo(dir: string): Promise<RepoSnapshot> {
  const realRoot = await fsp.realpath(dir);
  const out: RepoSnapshot = new Map();
  const walk = async (sub: string) => {
    const entries = await fsp.readdir(path.join(dir, sub), { withFileTypes: true });
    for (const e of entries.sort((a, b) => a.name.localeCompare(b.name))) {
      const rel = sub ? `${sub}/${e.name}` : e.name;
      const abs = path.join(dir, rel);
      let isDir = e.isDirectory();
      if (e.isSymbolicLink()) {
        const target = await fsp.realpath(abs).catch(() => undefined);
        if (!target || (target !== realRoot && !target.startsWith(realRoot + path.sep))) {
          throw new KernelSymlinkError(
            `${abs}: symlink leads outside the kernel repository ${dir} (to ${target ?? "a missing file"}); refused`,
          );
        }
        isDir = (await fsp.stat(abs)).isDirectory();
      } else if (!isDir && !e.isFile()) throw notPlain(abs, dir);
      if (isDir) {
        await walk(rel);
      } else {
        const bytes = await readPlainFile(abs, dir);
        out.set(rel, { bytes, sha256: createHash("sha256").update(bytes).digest("hex") });
      }
    }
  };
  await walk("");
  return out;
}

const notPlain = (file: string, dir: string) =>
  new KernelRepositoryError(
    `${file}: not a regular file or folder (a FIFO, socket or device?) in kernel repository ${dir}; refused`,
  );

/**
 * Reads a file that must be a regular one. Opened non-blocking and checked on the open handle, so a FIFO
 * (or a file swapped for one after the directory was listed) is refused instead of blocking forever.
 */
async function readPlainFile(file: string, dir: string): Promise<Buffer> {
  const h = await fsp.open(file, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
  try {
    if (!(await h.stat()).isFile()) throw notPlain(file, dir);
    return await h.readFile();
  } finally {
    await h.close();
  }
}

/** sha256 of every file of a repository, keyed by relative path (sorted); symlinks as in snapshotRepo. */
export async function hashRepo(dir: string): Promise<Record<string, string>> {
  return Object.fromEntries([...(await snapshotRepo(dir))].map(([f, e]) => [f, e.sha256]));
}
/**
 * Throws a KernelIntegrityError unless the repository's files are exactly the locked ones: those of
 * `snapshot` when given (the bytes that will be imported), else read now. Returns the snapshot it checked.
 */
export async function verifyRepo(
  repo: HubRepo,
  entry: LockEntry,
  lockfile: string,
  snapshot?: RepoSnapshot,
): Promise<RepoSnapshot> {
  const snap = snapshot ?? (await snapshotRepo(repo.dir));
  const actual = Object.fromEntries([...snap].map(([f, e]) => [f, e.sha256]));
  const problems: string[] = [];
  for (const [f, sha] of Object.entries(entry.files)) {
    if (!Object.hasOwn(actual, f)) problems.push(`${f} is missing`);
    else if (actual[f] !== sha)
      problems.push(`${f} has sha256 ${actual[f].slice(0, 12)}…, locked ${sha.slice(0, 12)}…`);
  }
  for (const f of Object.keys(actual)) if (!Object.hasOwn(entry.files, f)) problems.push(`${f} is not in the lock`);
  if (entry.version !== repo.manifest.version)
    problems.push(`version ${repo.manifest.version} differs from locked ${entry.version}`);
  if (problems.length) {
    throw new KernelIntegrityError(
      `kernel repository "${repo.manifest.id}" at ${repo.dir} does not match ${lockfile}: ${problems.join("; ")}; refused`,
    );
  }
  return snap;
}

/** One digest of a snapshot's contents (its file names and their sha256s). */
export function contentDigest(snapshot: RepoSnapshot): string {
  const h = createHash("sha256");
  for (const [f, e] of snapshot) h.update(`${f}\0${e.sha256}\n`);
  return h.digest("hex");
}
