// The one place the hub runs a repository's code: a build module, imported after the trust check — the
// bundled hub's from the package (compiled under dist/ in a build), any other from its verified bytes.
import { existsSync, promises as fsp } from "node:fs";
import os from "node:os";
import path from "node:path";
import { kernelEnv } from "./helpers.js";
import { KernelRepositoryError } from "../errors.js";
import type { KernelBuildModule, KernelLayerClass } from "./types.js";
import { FUSEKIT_ROOT } from "../io/package.js";
import { ANY_BACKEND, type HubRepo } from "./repos.js";
import { contentDigest, type RepoSnapshot } from "./verify.js";
import { importModuleFile } from "./import-file.js";

const FROM_SOURCE = import.meta.url.endsWith(".ts");
const ROOT = FUSEKIT_ROOT;

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
async function importBuild(file: string, repo: HubRepo, shown = file): Promise<KernelModule> {
  try {
    return (await importModuleFile(file)) as Partial<KernelBuildModule>;
  } catch (err) {
    // A trusted build that does not parse or throws while loading is still the repository's fault, by name.
    const why = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
    throw new KernelRepositoryError(`kernel repository "${repo.manifest.id}": build ${shown} failed to load: ${why}`, {
      cause: err,
    });
  }
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
    return await importBuild(path.join(dir, rel), repo, path.join(repo.dir, rel));
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
  const mod = fromBytes ? await importFromSnapshot(repo, snapshot, file) : await importBuild(abs, repo);
  return { abs, mod: mod as KernelModule & Record<string, unknown> };
}
