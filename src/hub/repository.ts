// Where a kernel layer comes from: a hub repository by id (optionally a major version), a local folder,
// or a repository pinned by a lockfile. Trust: bundled repositories load freely; any other loads only
// when its files match a lock, or with an explicit `trustRemoteCode: true`.
import path from "node:path";
import { KernelIntegrityError, KernelRepositoryError, UntrustedKernelError } from "../errors.js";
import { findRepo, repoAt, type HubRepo } from "./repos.js";
import { LOCKFILE_NAME, lockEntry, readLockfile } from "./lock.js";
import { snapshotRepo, verifyRepo, type RepoSnapshot } from "./verify.js";
import { loadBuildLayers } from "./importer.js";
import type { KernelLayerClass, LayerRepositoryProtocol } from "./types.js";

export type { LayerRepositoryProtocol } from "./types.js";

export interface TrustOptions {
  /** Load a repository outside the bundled hub without a lock. Its code runs in this process. */
  trustRemoteCode?: boolean;
  /** A kernels.lock to verify an outside repository against (default: $FUSEKIT_KERNELS_LOCK if set). */
  lockfile?: string;
}

async function layerFrom(
  repo: HubRepo,
  layerName: string,
  backend: string,
  what: string,
  snapshot: RepoSnapshot,
): Promise<KernelLayerClass | undefined> {
  if (!repo.manifest.layers.includes(layerName)) {
    throw new KernelRepositoryError(
      `${what} does not export layer "${layerName}" (it exports: ${repo.manifest.layers.join(", ")})`,
    );
  }
  const layers = await loadBuildLayers(repo, backend, snapshot);
  if (!layers) return undefined;
  // Own keys only: a layer named "constructor" must not find Object.
  const layer = Object.hasOwn(layers, layerName) ? layers[layerName] : undefined;
  if (typeof layer !== "function") {
    throw new KernelRepositoryError(`${what}: the ${backend} build's createLayers() returned no layer "${layerName}"`);
  }
  return layer;
}

/**
 * Verifies an outside repository against a lock, or requires trustRemoteCode. Returns the files as read
 * (and verified): an outside repository's build is imported from exactly these bytes.
 */
export async function checkTrust(repo: HubRepo, trust: TrustOptions, what: string): Promise<RepoSnapshot> {
  // The snapshot refuses symlinks leading out of the repo and anything but files and folders, bundled or not.
  if (repo.bundled) return snapshotRepo(repo.dir);
  const lockfile = trust.lockfile ?? process.env.FUSEKIT_KERNELS_LOCK;
  if (lockfile) {
    const entry = lockEntry(await readLockfile(lockfile), repo.manifest.id, repo.manifest.version);
    if (entry) return verifyRepo(repo, entry, lockfile, await snapshotRepo(repo.dir));
  }
  // Refused before any file beyond the manifest is read: an untrusted folder's contents are never walked.
  if (!trust.trustRemoteCode) {
    throw new UntrustedKernelError(
      `${what} at ${repo.dir} is outside the bundled kernel hub and not locked${lockfile ? ` in ${lockfile}` : ""}; ` +
        `lock it (fusekit kernels lock) or pass trustRemoteCode: true to run its code`,
    );
  }
  return snapshotRepo(repo.dir);
}

/** A layer from a hub repository, by id and optional major version (default: the highest available). */
export class LayerRepository implements LayerRepositoryProtocol {
  readonly repoId: string;
  readonly layerName: string;
  readonly version?: number;

  constructor(readonly options: { repoId: string; layerName: string; version?: number } & TrustOptions) {
    if (options.version !== undefined && !Number.isInteger(options.version)) {
      throw new KernelRepositoryError(
        `LayerRepository("${options.repoId}"): version must be an integer major version, got ${options.version}`,
      );
    }
    this.repoId = options.repoId;
    this.layerName = options.layerName;
    this.version = options.version;
  }

  async loadLayer(backend: string): Promise<KernelLayerClass | undefined> {
    const repo = await findRepo(this.repoId, this.version);
    const snapshot = await checkTrust(repo, this.options, this.toString());
    return layerFrom(repo, this.layerName, backend, this.toString(), snapshot);
  }

  toString(): string {
    return `repo "${this.repoId}"${this.version !== undefined ? ` v${this.version}` : ""}`;
  }
}

/** A layer from a repository folder anywhere on disk. */
export class LocalLayerRepository implements LayerRepositoryProtocol {
  readonly path: string;
  readonly layerName: string;

  constructor(readonly options: { path: string; layerName: string } & TrustOptions) {
    this.path = path.resolve(options.path);
    this.layerName = options.layerName;
  }

  async loadLayer(backend: string): Promise<KernelLayerClass | undefined> {
    const repo = await repoAt(this.path);
    const snapshot = await checkTrust(repo, this.options, this.toString());
    return layerFrom(repo, this.layerName, backend, this.toString(), snapshot);
  }

  toString(): string {
    return `local repo ${this.path}`;
  }
}

/** A layer from a hub repository pinned (version + sha256 of every file) by a lockfile; any change is refused. */
export class LockedLayerRepository implements LayerRepositoryProtocol {
  readonly repoId: string;
  readonly layerName: string;
  readonly lockfile: string;

  constructor(options: { repoId: string; layerName: string; lockfile?: string }) {
    this.repoId = options.repoId;
    this.layerName = options.layerName;
    this.lockfile = path.resolve(options.lockfile ?? LOCKFILE_NAME);
  }

  async loadLayer(backend: string): Promise<KernelLayerClass | undefined> {
    const lock = await readLockfile(this.lockfile);
    const entry = lockEntry(lock, this.repoId);
    if (!entry) {
      throw new KernelIntegrityError(
        `kernel repository "${this.repoId}" is not locked in ${this.lockfile} (run fusekit kernels lock)`,
      );
    }
    const repo = await findRepo(this.repoId, entry.version);
    const snapshot = await verifyRepo(repo, entry, this.lockfile);
    return layerFrom(repo, this.layerName, backend, this.toString(), snapshot);
  }

  toString(): string {
    return `locked repo "${this.repoId}" (${this.lockfile})`;
  }
}

export function isLayerRepository(x: unknown): x is LayerRepositoryProtocol {
  return (
    typeof x === "object" &&
    x !== null &&
    typeof (x as LayerRepositoryProtocol).loadLayer === "function" &&
    typeof (x as LayerRepositoryProtocol).layerName === "string"
  );
}
