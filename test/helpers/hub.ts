// A Hugging Face cache built by hand in a temp folder (refs/, snapshots/ of symlinks, blobs/ by hash), and a
// loopback stand-in for the hub's resolve endpoint, so hub-id loading is tested without any network.
import { createHash } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";

export const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");
/** A git-blob-like 40-hex etag, as the hub sends for small (non-LFS) files. */
export const gitEtag = (b: Uint8Array) => createHash("sha1").update(b).digest("hex");
/** A fake commit sha from a label. */
export const commitSha = (label: string) => createHash("sha1").update(`commit ${label}`).digest("hex");

/** Every regular file of a checkpoint folder, by name. */
export function folderFiles(dir: string): Map<string, Buffer> {
  return new Map(readdirSync(dir).map((n) => [n, readFileSync(path.join(dir, n))]));
}

/**
 * Lays `files` out as huggingface_hub does under `root`: blobs/{sha256 or git etag}, snapshots/{sha}/{name} as
 * relative symlinks to them, and refs/{ref} ← sha for each ref. Returns the repo folder.
 */
export function writeCachedModel(
  root: string,
  repoId: string,
  files: Map<string, Uint8Array>,
  { sha = commitSha(repoId), refs = ["main"] }: { sha?: string; refs?: string[] } = {},
): string {
  const repo = path.join(root, `models--${repoId.split("/").join("--")}`);
  const snapshot = path.join(repo, "snapshots", sha);
  mkdirSync(path.join(repo, "blobs"), { recursive: true });
  mkdirSync(snapshot, { recursive: true });
  for (const [name, bytes] of files) {
    const etag = name.endsWith(".safetensors") ? sha256(bytes) : gitEtag(bytes);
    writeFileSync(path.join(repo, "blobs", etag), bytes);
    symlinkSync(path.join("..", "..", "blobs", etag), path.join(snapshot, name));
  }
  for (const ref of refs) {
    mkdirSync(path.dirname(path.join(repo, "refs", ref)), { recursive: true });
    writeFileSync(path.join(repo, "refs", ref), sha);
  }
  return repo;
}

export interface HubRequest {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
}

export interface FakeHub {
  endpoint: string;
  requests: HubRequest[];
  /** Drop the connection after `afterBytes` bytes of `file`'s body on its next `times` GETs. */
  dropNext(file: string, afterBytes: number, times: number): void;
  /** Send `afterBytes` bytes of `file`'s body on its next `times` GETs, then nothing, never closing (a stall). */
  stallNext(file: string, afterBytes: number, times: number): void;
  /** Serve these bytes for `file`'s body while announcing the real size and etag (a corrupt transfer). */
  corrupt(file: string, bytes: Buffer): void;
  close(): Promise<void>;
}

/**
 * Serves `repos` (repo id → files) at `/{repo}/resolve/{revision}/{file}` on 127.0.0.1 (an ephemeral port):
 * HEAD and GET with X-Repo-Commit, ETag (sha256 for safetensors, X-Linked-Etag/-Size as the hub sends for LFS
 * files), Content-Length, and Range requests. Any revision "main" or the commit sha resolves.
 */
export async function startFakeHub(
  repos: Record<string, Map<string, Buffer>>,
  sha = commitSha("hub"),
): Promise<FakeHub> {
  const requests: HubRequest[] = [];
  const drops = new Map<string, { after: number; times: number }>();
  const stalls = new Map<string, { after: number; times: number }>();
  const corrupted = new Map<string, Buffer>();
  const server = http.createServer((req, res) => {
    requests.push({ method: req.method!, url: req.url!, headers: req.headers });
    const m = /^\/(.+?)\/resolve\/([^/]+)\/(.+)$/.exec(decodeURI(req.url!));
    const bytes = m && (m[2] === "main" || m[2] === sha) ? repos[m[1]]?.get(m[3]) : undefined;
    if (!m || !bytes) {
      res.writeHead(m && repos[m[1]] ? 404 : 401, { "x-error-code": "EntryNotFound" }).end();
      return;
    }
    const file = m[3];
    const lfs = file.endsWith(".safetensors");
    const etag = lfs ? sha256(bytes) : gitEtag(bytes);
    const headers: Record<string, string> = { "x-repo-commit": sha, etag: `"${etag}"`, "accept-ranges": "bytes" };
    if (lfs) Object.assign(headers, { "x-linked-etag": `"${etag}"`, "x-linked-size": String(bytes.length) });
    if (req.method === "HEAD") {
      res.writeHead(200, { ...headers, "content-length": String(bytes.length) }).end();
      return;
    }
    const body = corrupted.get(file) ?? bytes;
    const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? "");
    const from = range ? Number(range[1]) : 0;
    const part = body.subarray(from);
    res.writeHead(range ? 206 : 200, {
      ...headers,
      "content-length": String(part.length),
      ...(range ? { "content-range": `bytes ${from}-${body.length - 1}/${body.length}` } : {}),
    });
    const drop = drops.get(file);
    if (drop && drop.times > 0) {
      drop.times--;
      // the connection dies mid-file, once the client has had time to take the first bytes
      res.write(part.subarray(0, drop.after), () => setTimeout(() => res.destroy(), 100));
      return;
    }
    const stall = stalls.get(file);
    if (stall && stall.times > 0) {
      stall.times--;
      res.write(part.subarray(0, stall.after)); // and then silence, the connection left open
      return;
    }
    res.end(part);
  });
  server.keepAliveTimeout = 1;
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    requests,
    dropNext: (file, after, times) => drops.set(file, { after, times }),
    stallNext: (file, after, times) => stalls.set(file, { after, times }),
    corrupt: (file, bytes) => corrupted.set(file, bytes),
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
