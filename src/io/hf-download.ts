// Downloads a checkpoint's files from the hub into the Hugging Face cache, in huggingface_hub's layout: the
// bytes go to blobs/{etag} through a `.incomplete` file (resumed with a Range request after a dropped
// connection, renamed into place only once its size — and for LFS files its sha256 — match), the snapshot
// entry is a relative symlink to the blob, and refs/{revision} records the commit. Plain fetch against
// `{endpoint}/{repo}/resolve/{revision}/{file}`; the metadata (commit, etag, size) comes from a HEAD request.
import { createHash, randomBytes } from "node:crypto";
import { createReadStream, createWriteStream, promises as fsp } from "node:fs";
import path from "node:path";
import { Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { HubDownloadError } from "../errors.js";
import { fusekitVersion } from "./package.js";
import { withLockFile } from "./save-lock.js";
import { isCommitSha, shardNames } from "./hf-cache.js";
import { CONFIG_NAME, WEIGHTS_INDEX_NAME, WEIGHTS_NAME } from "./checkpoint.js";
import { GENERATION_CONFIG_NAME, TOKENIZER_FILES } from "./companions.js";

/** transformers.js-like progress: "initiate" → "download" → "progress"… → "done" for each file. */
export interface ProgressInfo {
  status: "initiate" | "download" | "progress" | "done" | "ready";
  /** The model id (or folder) the file belongs to. */
  name: string;
  file?: string;
  /** Percent, 0–100 ("progress" only). */
  progress?: number;
  loaded?: number;
  total?: number;
  task?: string;
  model?: string;
}

export interface DownloadOptions {
  /** The repo's folder in the cache (`<root>/models--org--name`). */
  repoFolder: string;
  revision: string;
  endpoint: string;
  /** Sent as `Authorization: Bearer …`. */
  token?: string;
  onProgress?: (info: ProgressInfo) => void;
  /** Attempts per file after a dropped connection (each resumes where the last stopped). Default 3. */
  attempts?: number;
  /**
   * Milliseconds without a byte (or, before it, without the response's headers) after which a connection counts
   * as stalled: dropped and resumed like a dropped one. Default: $HF_HUB_DOWNLOAD_TIMEOUT seconds (as
   * huggingface_hub reads it), else 10 s.
   */
  idleTimeoutMs?: number;
}

/** huggingface_hub's default read timeout, in seconds. */
const DEFAULT_IDLE_TIMEOUT_S = 10;

function idleTimeoutMs(options: DownloadOptions): number {
  if (options.idleTimeoutMs !== undefined) return options.idleTimeoutMs;
  const s = Number(process.env.HF_HUB_DOWNLOAD_TIMEOUT);
  return (process.env.HF_HUB_DOWNLOAD_TIMEOUT && Number.isFinite(s) && s > 0 ? s : DEFAULT_IDLE_TIMEOUT_S) * 1000;
}

/** Aborts its signal once `ms` pass without a `touch()`: a connection that stalled without closing. */
class IdleTimer {
  readonly controller = new AbortController();
  stalled = false;
  private timer?: NodeJS.Timeout;
  constructor(readonly ms: number) {
    this.touch();
  }
  touch(): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.stalled = true;
      this.controller.abort();
    }, this.ms);
  }
  stop(): void {
    clearTimeout(this.timer);
  }
  get reason(): string {
    return `stalled: no bytes for ${+(this.ms / 1000).toFixed(3)} s (HF_HUB_DOWNLOAD_TIMEOUT)`;
  }
}

/** Optional files fetched when the hub has them (a 404 is not an error). */
const OPTIONAL_FILES = [GENERATION_CONFIG_NAME, ...TOKENIZER_FILES];

interface FileMeta {
  url: string;
  commit?: string;
  etag: string;
  size?: number;
}

/**
 * Fetches what `repoId` at `revision` needs to load (config.json, the weights or the index and its shards, the
 * generation config and tokenizer files the hub has) into the cache; files already in the snapshot are kept.
 * Returns the snapshot folder.
 */
export async function downloadSnapshot(repoId: string, options: DownloadOptions): Promise<string> {
  const client = new HubClient(repoId, options);
  const config = await client.meta(CONFIG_NAME, options.revision);
  const commit = config?.commit ?? (isCommitSha(options.revision) ? options.revision : undefined);
  if (!config) throw new HubDownloadError(`${client.url(CONFIG_NAME, options.revision)}: not found`, 404);
  if (!commit)
    throw new HubDownloadError(`${config.url}: the hub sent no X-Repo-Commit header; cannot place the snapshot`);
  const snapshot = path.join(options.repoFolder, "snapshots", commit);
  await client.fetchFile(snapshot, CONFIG_NAME, config);
  if (!isCommitSha(options.revision)) await writeRef(options.repoFolder, options.revision, commit);
  const index = await client.fetchIfPresent(snapshot, WEIGHTS_INDEX_NAME, commit);
  if (index) {
    for (const shard of await shardNames(index)) await client.fetchRequired(snapshot, shard, commit);
  } else await client.fetchRequired(snapshot, WEIGHTS_NAME, commit);
  for (const name of OPTIONAL_FILES) await client.fetchIfPresent(snapshot, name, commit);
  return snapshot;
}

/** A download waits this long for another one of the same blob (a multi-GB shard can take that long). */
const BLOB_LOCK_TIMEOUT_MS = 60 * 60_000;

/**
 * The lock file of a blob: `<cache>/.locks/models--org--name/{etag}.fusekit.lock`, where huggingface_hub keeps
 * its own (`{etag}.lock`), so nothing extra lands in blobs/.
 */
function blobLock(repoFolder: string, etag: string): string {
  return path.join(path.dirname(repoFolder), ".locks", path.basename(repoFolder), `${etag}.fusekit.lock`);
}

/** A temporary sibling of `file` no other writer (process, or call in this one) uses. */
const tmpName = (file: string) => `${file}.${process.pid}.${randomBytes(4).toString("hex")}.incomplete`;

/** refs/{revision} ← commit, written to a temporary name and renamed (readers never see half a sha). */
async function writeRef(repoFolder: string, revision: string, commit: string): Promise<void> {
  const file = path.join(repoFolder, "refs", revision);
  await fsp.mkdir(path.dirname(file), { recursive: true });
  const tmp = tmpName(file);
  await fsp.writeFile(tmp, commit);
  await fsp.rename(tmp, file);
}

const exists = (p: string) =>
  fsp.stat(p).then(
    () => true,
    () => false,
  );

/** `"abc"` / `W/"abc"` → `abc`. */
const normalizeEtag = (etag: string) => etag.replace(/^W\//, "").replace(/^"|"$/g, "");

class HubClient {
  private readonly headers: Record<string, string>;
  constructor(
    private readonly repoId: string,
    private readonly options: DownloadOptions,
  ) {
    this.headers = { "user-agent": `fusekit/${fusekitVersion()}` };
    if (options.token) this.headers.authorization = `Bearer ${options.token}`;
  }

  url(file: string, revision: string): string {
    const enc = (s: string) => s.split("/").map(encodeURIComponent).join("/");
    return `${this.options.endpoint}/${this.repoId}/resolve/${encodeURIComponent(revision)}/${enc(file)}`;
  }

  /** The file's metadata from a HEAD request, undefined on 404. Follows same-host redirects (renamed repos) only. */
  async meta(file: string, revision: string): Promise<FileMeta | undefined> {
    let url = this.url(file, revision);
    for (let hop = 0; hop < 5; hop++) {
      const idle = new IdleTimer(idleTimeoutMs(this.options));
      const res = await this.request(
        url,
        { method: "HEAD", redirect: "manual" },
        { "accept-encoding": "identity" },
        idle,
      );
      idle.stop();
      const h = (name: string) => res.headers.get(name) ?? undefined;
      const location = h("location");
      if (res.status >= 300 && res.status < 400 && location?.startsWith("/") && !h("x-linked-etag")) {
        url = new URL(location, url).toString();
        continue;
      }
      if (res.status === 404) return undefined;
      if (!res.ok && !(res.status >= 300 && res.status < 400)) throw this.httpError(url, res.status);
      const etag = h("x-linked-etag") ?? h("etag");
      if (!etag) throw new HubDownloadError(`${url}: the hub sent no ETag; cannot name the blob`);
      const size = Number(h("x-linked-size") ?? h("content-length"));
      return {
        url,
        commit: h("x-repo-commit"),
        etag: normalizeEtag(etag),
        size: Number.isFinite(size) ? size : undefined,
      };
    }
    throw new HubDownloadError(`${url}: too many redirects`);
  }

  /** Fetches `file` at `commit` unless the snapshot has it; returns its path, or undefined when the hub has none. */
  async fetchIfPresent(snapshot: string, file: string, commit: string): Promise<string | undefined> {
    const target = path.join(snapshot, file);
    if (await exists(target)) return target;
    const meta = await this.meta(file, commit);
    return meta && this.fetchFile(snapshot, file, meta);
  }

  async fetchRequired(snapshot: string, file: string, commit: string): Promise<string> {
    const target = await this.fetchIfPresent(snapshot, file, commit);
    if (!target) throw new HubDownloadError(`${this.url(file, commit)}: not found (the checkpoint needs it)`, 404);
    return target;
  }

  /**
   * The blob for `meta` (downloaded unless the cache has it), linked into the snapshot as `file` — holding the
   * blob's lock, so two downloads of it (other processes, or this one) never write one `.incomplete` file.
   */
  async fetchFile(snapshot: string, file: string, meta: FileMeta): Promise<string> {
    const target = path.join(snapshot, file);
    if (await exists(target)) return target;
    const lock = blobLock(this.options.repoFolder, meta.etag);
    await fsp.mkdir(path.dirname(lock), { recursive: true });
    return withLockFile(lock, () => this.fetchLocked(target, file, meta), {
      timeoutMs: BLOB_LOCK_TIMEOUT_MS,
      timeoutError: (holder) =>
        new HubDownloadError(
          `${meta.url}: another download of this file is running (${holder}); waited ` +
            `${BLOB_LOCK_TIMEOUT_MS / 60_000} min. If none is running, remove ${lock}`,
        ),
    });
  }

  private async fetchLocked(target: string, file: string, meta: FileMeta): Promise<string> {
    if (await exists(target)) return target; // the download we waited for linked it
    const blob = path.join(this.options.repoFolder, "blobs", meta.etag);
    const report = (info: Omit<ProgressInfo, "name" | "file">) =>
      this.options.onProgress?.({ ...info, name: this.repoId, file });
    report({ status: "initiate" });
    if (!(await exists(blob))) {
      report({ status: "download" });
      await this.downloadBlob(meta, blob, (loaded, total) =>
        report({ status: "progress", loaded, total, progress: total ? (loaded / total) * 100 : 0 }),
      );
    }
    await linkIntoSnapshot(blob, target);
    report({ status: "done" });
    return target;
  }

  /** Downloads into `blob.incomplete`, resuming after a dropped connection, then checks and renames it. */
  private async downloadBlob(meta: FileMeta, blob: string, progress: (loaded: number, total: number) => void) {
    await fsp.mkdir(path.dirname(blob), { recursive: true });
    const partial = `${blob}.incomplete`;
    const attempts = this.options.attempts ?? 3;
    let lastError: unknown;
    for (let attempt = 0; attempt < attempts; attempt++) {
      const have = (await fsp.stat(partial).catch(() => undefined))?.size ?? 0;
      if (meta.size !== undefined && have === meta.size) break;
      try {
        await this.getInto(meta, partial, have, progress);
        lastError = undefined;
        break;
      } catch (err) {
        if (err instanceof HubDownloadError) throw err; // an HTTP answer, not a dropped connection
        lastError = err;
      }
    }
    const have = (await fsp.stat(partial).catch(() => undefined))?.size ?? 0;
    if (lastError !== undefined)
      throw new HubDownloadError(
        `${meta.url}: the connection dropped after ${have}${meta.size === undefined ? "" : ` of ${meta.size}`} bytes, ${attempts} times (${(lastError as Error).message}); the partial file ${partial} is resumed by the next download`,
      );
    await verifyBlob(meta, partial, have);
    await fsp.rename(partial, blob);
  }

  /** `getBody` under an idle timer: a stall ends the attempt as a dropped connection would (and is resumed). */
  private async getInto(meta: FileMeta, partial: string, have: number, progress: (l: number, t: number) => void) {
    const idle = new IdleTimer(idleTimeoutMs(this.options));
    try {
      await this.getBody(meta, partial, have, progress, idle);
    } catch (err) {
      if (idle.stalled && !(err instanceof HubDownloadError)) throw new Error(idle.reason, { cause: err });
      throw err;
    } finally {
      idle.stop();
    }
  }

  /** One GET, appended to `partial` from byte `have` (a Range request; a server that ignores it restarts the file). */
  private async getBody(
    meta: FileMeta,
    partial: string,
    have: number,
    progress: (l: number, t: number) => void,
    idle: IdleTimer,
  ) {
    // identity: the bytes on disk are the bytes the size, the sha256 and a Range request refer to
    const range: Record<string, string> = have ? { range: `bytes=${have}-` } : {};
    const res = await this.request(
      meta.url,
      { method: "GET", redirect: "follow" },
      { "accept-encoding": "identity", ...range },
      idle,
    );
    if (res.status === 416) {
      await fsp.rm(partial, { force: true }); // our partial file is longer than the blob: start over
      throw new Error("range not satisfiable; restarting");
    }
    if (!res.ok || !res.body) throw this.httpError(meta.url, res.status);
    const resumed = res.status === 206;
    let loaded = resumed ? have : 0;
    const total = meta.size ?? (Number(res.headers.get("content-length")) || 0) + loaded;
    const counter = new Transform({
      transform(chunk: Buffer, _enc, done) {
        idle.touch();
        loaded += chunk.length;
        progress(loaded, total);
        done(null, chunk);
      },
    });
    const out = createWriteStream(partial, { flags: resumed ? "a" : "w" });
    const closed = new Promise<void>((resolve) => out.once("close", () => resolve()));
    try {
      await pipeline(Readable.fromWeb(res.body as never), counter, out);
    } finally {
      await closed; // no write of this attempt may land after the next one measured the file
    }
  }

  private async request(
    url: string,
    init: RequestInit,
    extra: Record<string, string>,
    idle: IdleTimer,
  ): Promise<Response> {
    try {
      return await fetch(url, { ...init, headers: { ...this.headers, ...extra }, signal: idle.controller.signal });
    } catch (err) {
      if (idle.stalled) throw new HubDownloadError(`${url}: the hub did not answer (${idle.reason})`);
      throw new HubDownloadError(`${url}: cannot reach the hub (${describeFetchError(err)})`);
    }
  }

  private httpError(url: string, status: number): HubDownloadError {
    const hint =
      status === 401 || status === 403
        ? ": the repository is private or gated, or does not exist (set HF_TOKEN to a token that may read it)"
        : status === 404
          ? ": not found"
          : "";
    return new HubDownloadError(`${url}: HTTP ${status}${hint}`, status);
  }
}

/** fetch's "fetch failed" hides the reason in `cause` (ECONNREFUSED, ENOTFOUND …). */
function describeFetchError(err: unknown): string {
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  return cause?.code ?? cause?.message ?? (err as Error).message;
}

/** The downloaded bytes must be exactly what the hub announced: its size, and for LFS files (64-hex etag) its sha256. */
async function verifyBlob(meta: FileMeta, partial: string, size: number): Promise<void> {
  const fail = async (what: string) => {
    await fsp.rm(partial, { force: true });
    return new HubDownloadError(`${meta.url}: ${what}; the download was discarded`);
  };
  if (meta.size !== undefined && size !== meta.size)
    throw await fail(`got ${size} bytes, the hub announced ${meta.size}`);
  if (!/^[0-9a-f]{64}$/.test(meta.etag)) return;
  const hash = createHash("sha256");
  await pipeline(createReadStream(partial), hash);
  const digest = hash.digest("hex");
  if (digest !== meta.etag) throw await fail(`sha256 ${digest} differs from the hub's ${meta.etag}`);
}

/** snapshots/{sha}/{file} → a relative symlink to the blob (a copy where symlinks are not allowed), made atomically. */
async function linkIntoSnapshot(blob: string, target: string): Promise<void> {
  await fsp.mkdir(path.dirname(target), { recursive: true });
  const tmp = tmpName(target);
  try {
    await fsp.symlink(path.relative(path.dirname(target), blob), tmp);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EPERM") throw err;
    await fsp.copyFile(blob, tmp);
  }
  await fsp.rename(tmp, target);
}
