// The local kernel hub: repositories are folders with a manifest.json and build modules. The bundled hub
// is the package's top-level hub/ folder; $FUSEKIT_KERNELS_PATH adds more roots (path-delimiter separated).
import { createHash } from "node:crypto";
import { existsSync, promises as fsp } from "node:fs";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { kernelEnv } from "./helpers.js";
import { KernelIntegrityError, KernelRepositoryError, KernelSymlinkError } from "../errors.js";
import { KERNEL_BACKENDS, type KernelBuildModule, type KernelLayerClass } from "./types.js";
import { TMP_MARKER, checkWriteTarget, writeFileAtomically, type WriteTarget } from "../io/atomic.js";
import { readJsonObject } from "../io/json.js";
import { FUSEKIT_ROOT } from "../io/package.js";

export const MANIFEST_NAME = "manifest.json";
export const LOCKFILE_NAME = "kernels.lock";
/** The build key for a backend-agnostic build, used when a repo has no build for the active backend. */
export const ANY_BACKEND = "any";

export interface KernelManifest {
  /** `org/name`. */
  id: string;
  /** Integer major version. */
  version: number;
  description?: string;
  /** Layer names the repository exports (may be empty when it exports functions). */
  layers: string[];
  /** Function names the repository exports (function kernels, e.g. "rotary_pos_emb"). */
  functions: string[];
  /** Backend (or "any") → build module file, relative to the repository folder. */
  builds: Record<string, string>;
}

export interface HubRepo {
  manifest: KernelManifest;
  /** Absolute folder of the repository. */
  dir: string;
  /** True for repositories shipped in the package (trusted without a lock). */
  bundled: boolean;
}

const FROM_SOURCE = import.meta.url.endsWith(".ts");

const ROOT = FUSEKIT_ROOT;

/** The bundled hub: `<package>/kernels` (manifests and sources; compiled builds live under dist/kernels). */
export function bundledHubDir(): string {
  return path.join(ROOT, "hub");
}

/** Hub roots in search order: the bundled hub, then each folder in $FUSEKIT_KERNELS_PATH. */
export function hubRoots(): { dir: string; bundled: boolean }[] {
  const extra = (process.env.FUSEKIT_KERNELS_PATH ?? "").split(path.delimiter).filter(Boolean);
  return [{ dir: bundledHubDir(), bundled: true }, ...extra.map((d) => ({ dir: path.resolve(d), bundled: false }))];
}

/** Reads and checks a repository's manifest.json. */
export async function readManifest(dir: string): Promise<KernelManifest> {
  const file = path.join(dir, MANIFEST_NAME);
  const error = (message: string) => new KernelRepositoryError(`cannot read the kernel manifest: ${message}`);
  const m = (await readJsonObject(file, { error })) as Partial<KernelManifest>;
  const bad = (what: string) => new KernelRepositoryError(`${file}: ${what}`);
  if (typeof m !== "object" || m === null) throw bad("the manifest must be a JSON object");
  if (typeof m.id !== "string" || !/^[\w.-]+\/[\w.-]+$/.test(m.id))
    throw bad(`"id" must look like "org/name", got ${JSON.stringify(m.id)}`);
  if (typeof m.version !== "number" || !Number.isInteger(m.version) || m.version < 0) {
    throw bad(`"version" must be a non-negative integer major version, got ${JSON.stringify(m.version)}`);
  }
  const functions = (m as { functions?: unknown }).functions ?? [];
  if (!Array.isArray(functions) || functions.some((f) => typeof f !== "string" || !f))
    throw bad(`"functions" must be a list of function names`);
  const layersOk = Array.isArray(m.layers) && m.layers.every((l) => typeof l === "string" && l);
  if (!layersOk || (m.layers!.length === 0 && functions.length === 0)) {
    throw bad(`"layers" must be a non-empty list of layer names (or empty, when "functions" lists function names)`);
  }
  if (typeof m.builds !== "object" || m.builds === null || Object.keys(m.builds).length === 0) {
    throw bad(`"builds" must map a backend (${KERNEL_BACKENDS.join(", ")}) or "${ANY_BACKEND}" to a module file`);
  }
  for (const [backend, f] of Object.entries(m.builds)) {
    if (backend !== ANY_BACKEND && !(KERNEL_BACKENDS as readonly string[]).includes(backend)) {
      throw bad(`unknown build backend "${backend}" (valid: ${KERNEL_BACKENDS.join(", ")}, ${ANY_BACKEND})`);
    }
    if (typeof f !== "string" || path.isAbsolute(f) || path.normalize(f).startsWith("..")) {
      throw bad(`build "${backend}" must be a file inside the repository, got ${JSON.stringify(f)}`);
    }
  }
  return {
    id: m.id,
    version: m.version,
    description: m.description,
    layers: [...m.layers!],
    functions: [...functions],
    builds: { ...m.builds },
  };
}

/** Repository folders under a hub root: any folder (up to 3 levels deep) holding a manifest.json. */
async function scanRoot(root: string, depth = 0): Promise<string[]> {
  if (existsSync(path.join(root, MANIFEST_NAME))) return [root];
  if (depth >= 3) return [];
  let entries: import("node:fs").Dirent[];
  try {
    entries = await fsp.readdir(root, { withFileTypes: true });
  } catch {
    return [];
  }
  const out: string[] = [];
  for (const e of entries.sort((a, b) => a.name.localeCompare(b.name))) {
    if (e.isDirectory() && !e.name.startsWith(".") && e.name !== "node_modules")
      out.push(...(await scanRoot(path.join(root, e.name), depth + 1)));
  }
  return out;
}

/**
 * Every repository in every hub root: repository ids in the order they are first found (roots in order),
 * each id's versions in numeric order (1, 2, 10), as huggingface/kernels lists them.
 */
export async function discoverRepos(): Promise<HubRepo[]> {
  const byId = new Map<string, HubRepo[]>();
  for (const root of hubRoots()) {
    for (const dir of await scanRoot(root.dir)) {
      const manifest = await readManifest(dir);
      if (!byId.has(manifest.id)) byId.set(manifest.id, []);
      byId.get(manifest.id)!.push({ manifest, dir, bundled: root.bundled });
    }
  }
  // Array.prototype.sort is stable: for one id and version, the first root still comes first.
  return [...byId.values()].flatMap((list) => list.sort((a, b) => a.manifest.version - b.manifest.version));
}

const warnedOutdated = new Set<string>();

/** The repository `repoId`: the given major version, else the highest; the first root wins a tie. */
export async function findRepo(repoId: string, version?: number): Promise<HubRepo> {
  const all = await discoverRepos();
  const same = all.filter((r) => r.manifest.id === repoId);
  if (same.length === 0) {
    throw new KernelRepositoryError(
      `kernel repository "${repoId}" is not in the hub (searched ${hubRoots()
        .map((r) => r.dir)
        .join(", ")}; ` + `found: ${[...new Set(all.map((r) => r.manifest.id))].join(", ") || "none"})`,
    );
  }
  const newest = same.reduce((best, r) => (r.manifest.version > best.manifest.version ? r : best));
  if (version === undefined) return newest;
  const hit = same.find((r) => r.manifest.version === version);
  if (!hit) {
    const available = [...new Set(same.map((r) => r.manifest.version))].join(", ");
    throw new KernelRepositoryError(
      `kernel repository "${repoId}" has no version ${version} (available: ${available})`,
    );
  }
  if (newest.manifest.version > version && !warnedOutdated.has(`${repoId}\0${version}`)) {
    warnedOutdated.add(`${repoId}\0${version}`);
    const newer = newest.manifest.version;
    process.emitWarning(`kernel repository "${repoId}": version ${version} is pinned, but ${newer} is available`, {
      type: "FusekitKernelWarning",
      code: "FUSEKIT_KERNEL_OUTDATED",
    });
  }
  return hit;
}

/** A repository given by folder (LocalLayerRepository); bundled when it lies inside the bundled hub. */
export async function repoAt(dir: string): Promise<HubRepo> {
  const abs = path.resolve(dir);
  const real = await fsp.realpath(abs).catch(() => abs);
  const hub = await fsp.realpath(bundledHubDir()).catch(() => bundledHubDir());
  return { manifest: await readManifest(abs), dir: abs, bundled: real.startsWith(hub + path.sep) };
}

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
      }
      if (isDir) {
        await walk(rel);
      } else {
        const bytes = await fsp.readFile(abs);
        out.set(rel, { bytes, sha256: createHash("sha256").update(bytes).digest("hex") });
      }
    }
  };
  await walk("");
  return out;
}

/** sha256 of every file of a repository, keyed by relative path (sorted); symlinks as in snapshotRepo. */
export async function hashRepo(dir: string): Promise<Record<string, string>> {
  return Object.fromEntries([...(await snapshotRepo(dir))].map(([f, e]) => [f, e.sha256]));
}

export interface LockEntry {
  repoId: string;
  version: number;
  /** Relative path → sha256 hex of every file in the repository. */
  files: Record<string, string>;
}

export interface Lockfile {
  lockfileVersion: 1;
  kernels: LockEntry[];
}

/** Reads kernels.lock; a missing or malformed file is a KernelIntegrityError. */
export async function readLockfile(file: string): Promise<Lockfile> {
  const error = (message: string) => new KernelIntegrityError(`cannot read the kernel lockfile: ${message}`);
  const raw = (await readJsonObject(file, { error })) as unknown as Lockfile;
  if (raw?.lockfileVersion !== 1 || !Array.isArray(raw.kernels)) {
    throw new KernelIntegrityError(
      `${file}: not a kernels.lock file (expected {"lockfileVersion": 1, "kernels": [...]})`,
    );
  }
  return raw;
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

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM"; // exists, owned by someone else
  }
}

/** The lock entry for a repository at a version (any version when omitted), or undefined. */
export function lockEntry(lock: Lockfile, repoId: string, version?: number): LockEntry | undefined {
  return lock.kernels.find((k) => k.repoId === repoId && (version === undefined || k.version === version));
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
    if (!(f in actual)) problems.push(`${f} is missing`);
    else if (actual[f] !== sha)
      problems.push(`${f} has sha256 ${actual[f].slice(0, 12)}…, locked ${sha.slice(0, 12)}…`);
  }
  for (const f of Object.keys(actual)) if (!(f in entry.files)) problems.push(`${f} is not in the lock`);
  if (entry.version !== repo.manifest.version)
    problems.push(`version ${repo.manifest.version} differs from locked ${entry.version}`);
  if (problems.length) {
    throw new KernelIntegrityError(
      `kernel repository "${repo.manifest.id}" at ${repo.dir} does not match ${lockfile}: ${problems.join("; ")}; refused`,
    );
  }
  return snap;
}

/** The file a build entry runs: compiled JS under dist/ for the bundled hub in a build, else the repo's own file. */
function buildFile(repo: HubRepo, file: string): string {
  const own = path.join(repo.dir, file);
  const candidates = [own];
  if (repo.bundled && file.endsWith(".js")) {
    const ts = own.slice(0, -3) + ".ts";
    const compiled = path.join(ROOT, "dist", path.relative(ROOT, repo.dir), file);
    candidates.splice(0, 1, ...(FROM_SOURCE ? [ts, own, compiled] : [compiled, own, ts]));
  }
  const hit = candidates.find((c) => existsSync(c));
  if (!hit)
    throw new KernelRepositoryError(
      `kernel repository "${repo.manifest.id}": build file ${file} not found (looked at ${candidates.join(", ")})`,
    );
  return hit;
}

const layerCache = new Map<string, Promise<Record<string, KernelLayerClass>>>();

/**
 * The layers of a repository's build for `backend` (falling back to its "any" build), or undefined when it
 * has neither. A repository outside the bundled hub is imported from `snapshot` — the bytes that were
 * verified (or trusted) — through a private temporary copy, never from its folder, so a file swapped after
 * the check cannot run. Each build is imported and instantiated once per backend and content.
 */
export async function loadBuildLayers(
  repo: HubRepo,
  backend: string,
  snapshot?: RepoSnapshot,
): Promise<Record<string, KernelLayerClass> | undefined> {
  const file = repo.manifest.builds[backend] ?? repo.manifest.builds[ANY_BACKEND];
  if (file === undefined) return undefined;
  const fromBytes = !repo.bundled && snapshot !== undefined;
  const abs = fromBytes ? path.join(repo.dir, file) : buildFile(repo, file);
  const key = `${abs}\0${backend}\0${fromBytes ? contentDigest(snapshot) : ""}`;
  let pending = layerCache.get(key);
  if (!pending) {
    pending = (async () => {
      const { mod } = (await importBuildModule(repo, backend, snapshot))!;
      if (typeof mod.createLayers !== "function") {
        throw new KernelRepositoryError(
          `kernel repository "${repo.manifest.id}": ${abs} does not export createLayers(env)`,
        );
      }
      return mod.createLayers(kernelEnv(backend));
    })();
    layerCache.set(key, pending);
    pending.catch(() => layerCache.delete(key));
  }
  return pending;
}

/** The one place fusekit loads code at run time: a kernel build module, after checkTrust. */
type KernelModule = Partial<KernelBuildModule>;
async function importBuild(file: string): Promise<KernelModule> {
  return (await import(pathToFileURL(file).href)) as Partial<KernelBuildModule>;
}

function contentDigest(snapshot: RepoSnapshot): string {
  const h = createHash("sha256");
  for (const [f, e] of snapshot) h.update(`${f}\0${e.sha256}\n`);
  return h.digest("hex");
}

/** Writes the snapshot into a fresh private (0700) temporary folder, imports the build from it, removes it. */
async function importFromSnapshot(repo: HubRepo, snapshot: RepoSnapshot, file: string): Promise<KernelModule> {
  const rel = path.posix.normalize(file.replace(/\\/g, "/"));
  if (!snapshot.has(rel)) {
    throw new KernelRepositoryError(`kernel repository "${repo.manifest.id}": no build file ${file} in ${repo.dir}`);
  }
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), "fusekit-kernel-"));
  try {
    for (const [f, { bytes }] of snapshot) {
      await fsp.mkdir(path.dirname(path.join(dir, f)), { recursive: true, mode: 0o700 });
      await fsp.writeFile(path.join(dir, f), bytes, { mode: 0o600, flag: "wx" });
    }
    return await importBuild(path.join(dir, rel));
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
}

/**
 * A repository's build module for `backend` (else its "any" build), or undefined when it has neither. The
 * one place the hub runs a repository's code: callers check trust (bundled, locked or trustRemoteCode) first
 * and pass the snapshot checkTrust returned, so an outside repository runs from exactly the verified bytes.
 */
export async function importBuildModule(
  repo: HubRepo,
  backend: string,
  snapshot?: RepoSnapshot,
): Promise<{ abs: string; mod: KernelModule & Record<string, unknown> } | undefined> {
  const file = repo.manifest.builds[backend] ?? repo.manifest.builds[ANY_BACKEND];
  if (file === undefined) return undefined;
  const fromBytes = !repo.bundled && snapshot !== undefined;
  const abs = fromBytes ? path.join(repo.dir, file) : buildFile(repo, file);
  const mod = fromBytes ? await importFromSnapshot(repo, snapshot, file) : await importBuild(abs);
  return { abs, mod: mod as KernelModule & Record<string, unknown> };
}
