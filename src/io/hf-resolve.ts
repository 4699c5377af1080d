// What `fromPretrained(x)` loads from: a folder that exists is always a folder (a local "org/name" wins, as in
// transformers); a `models--org--name` cache folder resolves to its revision's snapshot; anything else shaped
// like a hub id is looked up in the Hugging Face cache first and downloaded only when that is allowed.
import { promises as fsp } from "node:fs";
import path from "node:path";
import { ArgumentError, HubDownloadError, ModelNotFoundError } from "../errors.js";
import {
  DEFAULT_REVISION,
  checkRevision,
  hubCacheDir,
  hubEndpoint,
  hubOffline,
  isRepoId,
  lookupSnapshot,
  missingFiles,
  repoFolderName,
  repoIdOfFolder,
  type SnapshotLookup,
} from "./hf-cache.js";
import { downloadSnapshot, type ProgressInfo } from "./hf-download.js";

export interface ResolveOptions {
  /** Branch, tag or commit sha (default "main"). */
  revision?: string;
  /** The hub cache root (default: $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub). */
  cacheDir?: string;
  /** Never download (as does $HF_HUB_OFFLINE=1). */
  localFilesOnly?: boolean;
  onProgress?: (info: ProgressInfo) => void;
}

export interface ResolvedModel {
  /** The checkpoint folder to read. */
  dir: string;
  /** What the user passed (the model id for hub ids). */
  name: string;
  /** Set when `dir` is a snapshot of the hub cache. */
  repoId?: string;
}

/** Resolves a checkpoint folder or hub model id to the folder to load (see the file comment). */
export async function resolvePretrained(idOrDir: string, options: ResolveOptions = {}): Promise<ResolvedModel> {
  if (typeof idOrDir !== "string" || idOrDir === "")
    throw new ArgumentError(
      `fromPretrained: expected a checkpoint folder or a hub model id ("org/name"), got ${ArgumentError.describe(idOrDir)}`,
    );
  const revision = options.revision ?? DEFAULT_REVISION;
  const bad = checkRevision(revision);
  if (bad) throw new ArgumentError(`revision ${ArgumentError.describe(revision)} ${bad}`);
  const stat = await fsp.stat(idOrDir).catch(() => undefined);
  if (stat) {
    const repoId = repoIdOfFolder(idOrDir);
    if (stat.isDirectory() && repoId && !(await isFile(path.join(idOrDir, "config.json"))))
      return fromCacheFolder(idOrDir, repoId, revision);
    return { dir: idOrDir, name: idOrDir };
  }
  if (!isRepoId(idOrDir)) return { dir: idOrDir, name: idOrDir }; // reading it names the missing folder
  const repoFolder = path.join(options.cacheDir ?? hubCacheDir(), repoFolderName(idOrDir));
  const lookup = await lookupSnapshot(repoFolder, revision);
  const missing = lookup.snapshot ? await missingFiles(lookup.snapshot) : undefined;
  if (lookup.snapshot && missing?.length === 0) return { dir: lookup.snapshot, name: idOrDir, repoId: idOrDir };
  const where = { id: idOrDir, revision, lookup, local: path.resolve(idOrDir) };
  const off = options.localFilesOnly ? "localFilesOnly is set" : hubOffline() ? "HF_HUB_OFFLINE is set" : undefined;
  if (off) throw notFound(where, `${notCachedReason(lookup, missing)}, and downloads are off (${off})`);
  try {
    const dir = await downloadSnapshot(idOrDir, {
      repoFolder,
      revision,
      endpoint: hubEndpoint(),
      token: process.env.HF_TOKEN || undefined,
      onProgress: options.onProgress,
    });
    return { dir, name: idOrDir, repoId: idOrDir };
  } catch (err) {
    if (!(err instanceof HubDownloadError) || lookup.snapshot) throw err;
    if (err.status === 401 || err.status === 404)
      throw notFound(where, `${notCachedReason(lookup, missing)}, and ${err.message}`);
    // e.g. no network: say what the cache lacked and how to fill it, not only that the hub was unreachable
    const hint = notFound(where, notCachedReason(lookup, missing)).message;
    throw new HubDownloadError(`${err.message}; and ${hint}`, err.status);
  }
}

/** A `models--org--name` folder itself: its revision's snapshot, read as it is (no download). */
async function fromCacheFolder(repoFolder: string, repoId: string, revision: string): Promise<ResolvedModel> {
  const lookup = await lookupSnapshot(repoFolder, revision);
  const missing = lookup.snapshot ? await missingFiles(lookup.snapshot) : undefined;
  if (lookup.snapshot && missing?.length === 0) return { dir: lookup.snapshot, name: repoFolder, repoId };
  throw notFound({ id: repoId, revision, lookup }, notCachedReason(lookup, missing));
}

function notCachedReason(lookup: SnapshotLookup, missing: string[] | undefined): string {
  if (!lookup.sha) return `the cache has no ${lookup.refFile ? `refs file ${lookup.refFile}` : "such snapshot"}`;
  if (!missing) return `the cache has no snapshot ${lookup.snapshot}`;
  return `snapshot ${lookup.snapshot} lacks ${missing.join(", ")}`;
}

function notFound(
  where: { id: string; revision: string; lookup: SnapshotLookup; local?: string },
  reason: string,
): ModelNotFoundError {
  const { id, revision, lookup, local } = where;
  const searched = [local, lookup.refFile, lookup.snapshot ?? path.join(lookup.repoFolder, "snapshots")].filter(
    (p): p is string => p !== undefined,
  );
  const rev = revision === DEFAULT_REVISION ? "" : ` --revision ${revision}`;
  return new ModelNotFoundError(
    `${id}: ${local ? "no such folder, and " : ""}revision "${revision}" is not in the Hugging Face cache: ${reason}. ` +
      `Searched: ${searched.join(", ")}. Get it with \`hf download ${id}${rev}\` (or \`huggingface-cli download ${id}${rev}\`), ` +
      `point HF_HUB_CACHE / HF_HOME at the cache that holds it, or pass the checkpoint folder itself`,
    searched,
  );
}

const isFile = (p: string) =>
  fsp.stat(p).then(
    (s) => s.isFile(),
    () => false,
  );
