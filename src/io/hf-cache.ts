// The Hugging Face hub cache as huggingface_hub lays it out, read without any network:
//   <root>/models--{org}--{name}/refs/{revision}      a commit sha
//   <root>/models--{org}--{name}/snapshots/{sha}/…    the files (usually symlinks to ../../blobs/{etag})
//   <root>/models--{org}--{name}/blobs/{etag}         the bytes
// Pure helpers: the root from the environment, a repo's folder, a revision's snapshot, what a snapshot lacks.
import { promises as fsp } from "node:fs";
import os from "node:os";
import path from "node:path";
import { readJsonObject } from "./json.js";
import { CONFIG_NAME, WEIGHTS_INDEX_NAME, WEIGHTS_NAME } from "./checkpoint.js";

export const DEFAULT_REVISION = "main";
export const DEFAULT_ENDPOINT = "https://huggingface.co";

type Env = Record<string, string | undefined>;

/**
 * The hub cache root, as huggingface_hub picks it: $HF_HUB_CACHE, else $HF_HOME/hub, else
 * $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub (and the legacy $HUGGINGFACE_HUB_CACHE).
 */
export function hubCacheDir(env: Env = process.env): string {
  const set = (v: string | undefined) => (v ? v : undefined);
  const explicit = set(env.HF_HUB_CACHE) ?? set(env.HUGGINGFACE_HUB_CACHE);
  if (explicit) return expandHome(explicit);
  const home =
    set(env.HF_HOME) ?? path.join(set(env.XDG_CACHE_HOME) ?? path.join(os.homedir(), ".cache"), "huggingface");
  return path.join(expandHome(home), "hub");
}

const expandHome = (p: string) => (p === "~" || p.startsWith("~/") ? path.join(os.homedir(), p.slice(1)) : p);

/** huggingface_hub's truthy environment values ("1", "true", "yes", "on", any case). */
export const envFlag = (v: string | undefined) => ["1", "true", "yes", "on"].includes((v ?? "").trim().toLowerCase());

/** Whether downloads are off for the whole process ($HF_HUB_OFFLINE, as huggingface_hub reads it). */
export const hubOffline = (env: Env = process.env) => envFlag(env.HF_HUB_OFFLINE);

/** The hub's address: $HF_ENDPOINT without a trailing slash, else huggingface.co. */
export const hubEndpoint = (env: Env = process.env) => (env.HF_ENDPOINT || DEFAULT_ENDPOINT).replace(/\/+$/, "");

/**
 * Whether `s` can be a hub model id ("org/name" or "name"), by huggingface_hub's validate_repo_id: word
 * characters, "-" and "." in one or two segments, at most 96 characters, no "--" or "..", no leading or
 * trailing "-" / ".".
 */
export function isRepoId(s: string): boolean {
  return (
    s.length <= 96 &&
    /^(?:[\w.-]+\/)?[\w.-]+$/.test(s) &&
    !s.includes("--") &&
    !s.includes("..") &&
    s.split("/").every((part) => !/^[-.]|[-.]$/.test(part))
  );
}

/** A revision that is a full commit sha selects its snapshot directly (no refs/ lookup). */
export const isCommitSha = (revision: string) => /^[0-9a-f]{40}$/.test(revision);

/** `org/name` → `models--org--name`, the repo's folder in the cache. */
export const repoFolderName = (repoId: string) => `models--${repoId.split("/").join("--")}`;

/** `models--org--name` → `org/name` (undefined when the name is not a model repo folder). */
export function repoIdOfFolder(folder: string): string | undefined {
  const m = /^models--(.+)$/.exec(path.basename(folder));
  return m ? m[1].split("--").join("/") : undefined;
}

/** A revision name usable as a path under refs/: no "..", no absolute path, no empty segment. */
export function checkRevision(revision: string): string | undefined {
  if (typeof revision !== "string" || revision === "") return "must be a non-empty string";
  if (revision.split("/").some((s) => s === "" || s === "." || s === "..") || revision.includes("\\"))
    return "must not contain empty, '.' or '..' path segments";
  return undefined;
}

/** Where a revision's commit sha and snapshot live; `sha` is undefined when refs/{revision} is missing. */
export interface SnapshotLookup {
  repoFolder: string;
  /** The refs file read (undefined for a commit-sha revision). */
  refFile?: string;
  sha?: string;
  /** snapshots/{sha}, when the sha is known (it may not exist). */
  snapshot?: string;
}

/** Reads refs/{revision} (a commit sha, as huggingface_hub writes it) or takes a sha revision as is. */
export async function lookupSnapshot(repoFolder: string, revision = DEFAULT_REVISION): Promise<SnapshotLookup> {
  if (isCommitSha(revision))
    return { repoFolder, sha: revision, snapshot: path.join(repoFolder, "snapshots", revision) };
  const refFile = path.join(repoFolder, "refs", revision);
  const text = await fsp.readFile(refFile, "utf8").catch(() => undefined);
  const sha = text?.trim();
  if (!sha || !/^[0-9a-f]{40}$/.test(sha)) return { repoFolder, refFile };
  return { repoFolder, refFile, sha, snapshot: path.join(repoFolder, "snapshots", sha) };
}

/**
 * The files a snapshot still needs before it can be loaded: config.json, and model.safetensors or the index
 * plus every shard it lists (a dangling blob symlink counts as missing). Empty when the snapshot is complete.
 */
export async function missingFiles(snapshot: string): Promise<string[]> {
  const has = (name: string) =>
    fsp.stat(path.join(snapshot, name)).then(
      (s) => s.isFile(),
      () => false,
    );
  const missing = (await has(CONFIG_NAME)) ? [] : [CONFIG_NAME];
  if (await has(WEIGHTS_INDEX_NAME)) {
    for (const shard of await shardNames(path.join(snapshot, WEIGHTS_INDEX_NAME)))
      if (!(await has(shard))) missing.push(shard);
  } else if (!(await has(WEIGHTS_NAME))) missing.push(WEIGHTS_NAME);
  return missing;
}

/** The shard files a model.safetensors.index.json lists (a malformed index lists none; loading reports it). */
export async function shardNames(indexFile: string): Promise<string[]> {
  const index = await readJsonObject(indexFile).catch(() => undefined);
  const map = index?.weight_map;
  if (typeof map !== "object" || map === null) return [];
  return [...new Set(Object.values(map).filter((v): v is string => typeof v === "string"))];
}
