// The local kernel hub: repositories are folders with a manifest.json and build modules. The bundled hub
// is the package's top-level hub/ folder; $FUSEKIT_KERNELS_PATH adds more roots (path-delimiter separated).
// This file finds them; lock.ts locks them, verify.ts checks them against a lock, importer.ts runs their builds.
import { existsSync, promises as fsp } from "node:fs";
import path from "node:path";
import { KernelRepositoryError } from "../errors.js";
import { KERNEL_BACKENDS } from "./types.js";
import { readJsonObject } from "../io/json.js";
import { FUSEKIT_ROOT } from "../io/package.js";

export const MANIFEST_NAME = "manifest.json";
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

/** The bundled hub: `<package>/hub` (manifests and sources; compiled builds live under dist/hub). */
export function bundledHubDir(): string {
  return path.join(FUSEKIT_ROOT, "hub");
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

/**
 * A repository given by folder (LocalLayerRepository); bundled when it lies inside the bundled hub. The path
 * is resolved once, here: the trust decision, the manifest, the snapshot and the import all use the real
 * folder, so a symlink flipped afterwards cannot make a "bundled" verdict apply to other code.
 */
export async function repoAt(dir: string): Promise<HubRepo> {
  const abs = path.resolve(dir);
  const real = await fsp.realpath(abs).catch((err: NodeJS.ErrnoException) => {
    throw new KernelRepositoryError(`${abs}: not a kernel repository folder (${err.code ?? err.message})`);
  });
  if (!(await fsp.stat(real)).isDirectory()) throw new KernelRepositoryError(`${abs}: not a kernel repository folder`);
  const hub = await fsp.realpath(bundledHubDir()).catch(() => bundledHubDir());
  return { manifest: await readManifest(real), dir: real, bundled: real.startsWith(hub + path.sep) };
}
