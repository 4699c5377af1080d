// The local kernel hub: repositories are folders with a manifest.json and build modules. The bundled hub
// is the package's top-level kernels/ folder; $FUSEKIT_KERNELS_PATH adds more roots (path-delimiter separated).
import { createHash } from "node:crypto";
import { existsSync, promises as fsp } from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { kernelEnv } from "./helpers.js";
import { KernelIntegrityError, KernelRepositoryError, KernelSymlinkError } from "../errors.js";
import { KERNEL_BACKENDS, type KernelBuildModule, type KernelLayerClass } from "./types.js";
import { TMP_MARKER, tempPathFor, writeTextFile } from "../io/atomic.js";

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
  /** Layer names the repository exports. */
  layers: string[];
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

const HERE = path.dirname(fileURLToPath(import.meta.url));
const FROM_SOURCE = import.meta.url.endsWith(".ts");

function packageRoot(): string {
  for (let dir = HERE; ; dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, "package.json"))) return dir;
    if (path.dirname(dir) === dir) return path.resolve(HERE, "../..");
  }
}
const ROOT = packageRoot();

/** The bundled hub: `<package>/kernels` (manifests and sources; compiled builds live under dist/kernels). */
export function bundledHubDir(): string {
  return path.join(ROOT, "kernels");
}

/** Hub roots in search order: the bundled hub, then each folder in $FUSEKIT_KERNELS_PATH. */
export function hubRoots(): { dir: string; bundled: boolean }[] {
  const extra = (process.env.FUSEKIT_KERNELS_PATH ?? "").split(path.delimiter).filter(Boolean);
  return [{ dir: bundledHubDir(), bundled: true }, ...extra.map((d) => ({ dir: path.resolve(d), bundled: false }))];
}

/** Reads and checks a repository's manifest.json. */
export async function readManifest(dir: string): Promise<KernelManifest> {
  const file = path.join(dir, MANIFEST_NAME);
  let raw: unknown;
  try {
    raw = JSON.parse(await fsp.readFile(file, "utf8"));
  } catch (err) {
    throw new KernelRepositoryError(`${file}: cannot read the kernel manifest (${(err as Error).message})`, { cause: err });
  }
  const m = raw as Partial<KernelManifest>;
  const bad = (what: string) => new KernelRepositoryError(`${file}: ${what}`);
  if (typeof m !== "object" || m === null) throw bad("the manifest must be a JSON object");
  if (typeof m.id !== "string" || !/^[\w.-]+\/[\w.-]+$/.test(m.id)) throw bad(`"id" must look like "org/name", got ${JSON.stringify(m.id)}`);
  if (typeof m.version !== "number" || !Number.isInteger(m.version) || m.version < 0) {
    throw bad(`"version" must be a non-negative integer major version, got ${JSON.stringify(m.version)}`);
  }
  if (!Array.isArray(m.layers) || m.layers.length === 0 || m.layers.some((l) => typeof l !== "string" || !l)) {
    throw bad(`"layers" must be a non-empty list of layer names`);
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
  return { id: m.id, version: m.version, description: m.description, layers: [...m.layers], builds: { ...m.builds } };
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
    if (e.isDirectory() && !e.name.startsWith(".") && e.name !== "node_modules") out.push(...(await scanRoot(path.join(root, e.name), depth + 1)));
  }
  return out;
}

/** Every repository in every hub root, in root order. */
export async function discoverRepos(): Promise<HubRepo[]> {
  const out: HubRepo[] = [];
  for (const root of hubRoots()) {
    for (const dir of await scanRoot(root.dir)) out.push({ manifest: await readManifest(dir), dir, bundled: root.bundled });
  }
  return out;
}

/** The repository `repoId`: the given major version, else the highest; the first root wins a tie. */
export async function findRepo(repoId: string, version?: number): Promise<HubRepo> {
  const all = await discoverRepos();
  const same = all.filter((r) => r.manifest.id === repoId);
  if (same.length === 0) {
    throw new KernelRepositoryError(
      `kernel repository "${repoId}" is not in the hub (searched ${hubRoots().map((r) => r.dir).join(", ")}; ` +
        `found: ${[...new Set(all.map((r) => r.manifest.id))].join(", ") || "none"})`,
    );
  }
  if (version !== undefined) {
    const hit = same.find((r) => r.manifest.version === version);
    if (!hit) {
      throw new KernelRepositoryError(`kernel repository "${repoId}" has no version ${version} (available: ${same.map((r) => r.manifest.version).join(", ")})`);
    }
    return hit;
  }
  return same.reduce((best, r) => (r.manifest.version > best.manifest.version ? r : best));
}

/** A repository given by folder (LocalLayerRepository); bundled when it lies inside the bundled hub. */
export async function repoAt(dir: string): Promise<HubRepo> {
  const abs = path.resolve(dir);
  const real = await fsp.realpath(abs).catch(() => abs);
  const hub = await fsp.realpath(bundledHubDir()).catch(() => bundledHubDir());
  return { manifest: await readManifest(abs), dir: abs, bundled: real.startsWith(hub + path.sep) };
}

/**
 * sha256 of every file of a repository, keyed by relative path (sorted). A symlink is followed only when
 * it stays inside the repository; one leading outside is refused, since it would escape the lock.
 */
export async function hashRepo(dir: string): Promise<Record<string, string>> {
  const realRoot = await fsp.realpath(dir);
  const out: Record<string, string> = {};
  const walk = async (sub: string) => {
    const entries = await fsp.readdir(path.join(dir, sub), { withFileTypes: true });
    for (const e of entries.sort((a, b) => a.name.localeCompare(b.name))) {
      const rel = sub ? `${sub}/${e.name}` : e.name;
      const abs = path.join(dir, rel);
      let isDir = e.isDirectory();
      if (e.isSymbolicLink()) {
        const target = await fsp.realpath(abs).catch(() => undefined);
        if (!target || (target !== realRoot && !target.startsWith(realRoot + path.sep))) {
          throw new KernelSymlinkError(`${abs}: symlink leads outside the kernel repository ${dir} (to ${target ?? "a missing file"}); refused`);
        }
        isDir = (await fsp.stat(abs)).isDirectory();
      }
      if (isDir) await walk(rel);
      else out[rel] = createHash("sha256").update(await fsp.readFile(abs)).digest("hex");
    }
  };
  await walk("");
  return out;
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
  let raw: Lockfile;
  try {
    raw = JSON.parse(await fsp.readFile(file, "utf8"));
  } catch (err) {
    throw new KernelIntegrityError(`${file}: cannot read the kernel lockfile (${(err as Error).message})`, { cause: err });
  }
  if (raw?.lockfileVersion !== 1 || !Array.isArray(raw.kernels)) {
    throw new KernelIntegrityError(`${file}: not a kernels.lock file (expected {"lockfileVersion": 1, "kernels": [...]})`);
  }
  return raw;
}

/** Locks the given repositories (default: every repo in the hub) into `file`; returns what was written. */
export async function writeLockfile(file: string, repos?: HubRepo[]): Promise<Lockfile> {
  const list = repos ?? (await discoverRepos());
  const lock: Lockfile = { lockfileVersion: 1, kernels: [] };
  for (const r of list) lock.kernels.push({ repoId: r.manifest.id, version: r.manifest.version, files: await hashRepo(r.dir) });
  await removeDeadTemporaries(file);
  // Atomic: written and fsynced under a temporary name, then renamed over the old lock, so a kill midway
  // leaves the previous kernels.lock whole (and a temporary the next lock run removes).
  const tmp = tempPathFor(file);
  try {
    await writeTextFile(tmp, JSON.stringify(lock, null, 2) + "\n");
    await fsp.rename(tmp, file);
  } catch (err) {
    await fsp.rm(tmp, { force: true });
    throw err;
  }
  return lock;
}

/** Removes temporaries of `file` left by killed lock writers (their pid, in the name, no longer runs). */
async function removeDeadTemporaries(file: string): Promise<void> {
  const prefix = `.${path.basename(file)}${TMP_MARKER}`;
  const names = await fsp.readdir(path.dirname(file)).catch(() => [] as string[]);
  for (const name of names.filter((n) => n.startsWith(prefix))) {
    const pid = Number(name.slice(prefix.length).split("-")[0]);
    if (Number.isInteger(pid) && pid > 0 && !processAlive(pid)) await fsp.rm(path.join(path.dirname(file), name), { force: true });
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

/** Throws a KernelIntegrityError unless the repository's files are exactly the locked ones. */
export async function verifyRepo(repo: HubRepo, entry: LockEntry, lockfile: string): Promise<void> {
  const actual = await hashRepo(repo.dir);
  const problems: string[] = [];
  for (const [f, sha] of Object.entries(entry.files)) {
    if (!(f in actual)) problems.push(`${f} is missing`);
    else if (actual[f] !== sha) problems.push(`${f} has sha256 ${actual[f].slice(0, 12)}…, locked ${sha.slice(0, 12)}…`);
  }
  for (const f of Object.keys(actual)) if (!(f in entry.files)) problems.push(`${f} is not in the lock`);
  if (entry.version !== repo.manifest.version) problems.push(`version ${repo.manifest.version} differs from locked ${entry.version}`);
  if (problems.length) {
    throw new KernelIntegrityError(`kernel repository "${repo.manifest.id}" at ${repo.dir} does not match ${lockfile}: ${problems.join("; ")}; refused`);
  }
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
  if (!hit) throw new KernelRepositoryError(`kernel repository "${repo.manifest.id}": build file ${file} not found (looked at ${candidates.join(", ")})`);
  return hit;
}

const layerCache = new Map<string, Promise<Record<string, KernelLayerClass>>>();

/**
 * The layers of a repository's build for `backend` (falling back to its "any" build), or undefined when it
 * has neither. Each build module is imported and instantiated once per backend.
 */
export async function loadBuildLayers(repo: HubRepo, backend: string): Promise<Record<string, KernelLayerClass> | undefined> {
  const file = repo.manifest.builds[backend] ?? repo.manifest.builds[ANY_BACKEND];
  if (file === undefined) return undefined;
  const abs = buildFile(repo, file);
  const key = `${abs}\0${backend}`;
  let pending = layerCache.get(key);
  if (!pending) {
    pending = (async () => {
      const mod = (await import(pathToFileURL(abs).href)) as Partial<KernelBuildModule>;
      if (typeof mod.createLayers !== "function") {
        throw new KernelRepositoryError(`kernel repository "${repo.manifest.id}": ${abs} does not export createLayers(env)`);
      }
      return mod.createLayers(kernelEnv(backend));
    })();
    layerCache.set(key, pending);
    pending.catch(() => layerCache.delete(key));
  }
  return pending;
}
