// Where a checkpoint's bytes come from in a browser: a folder served over HTTP (read with Range requests, so
// a weight file is never fetched whole) or files the user picked (File / Blob slices). A source is mounted
// as a read-only folder of the browser's file system (./node/fs.ts), so the loader reads it exactly as it
// reads a local folder in Node: headers first, then each tensor's bytes straight into the wasm heap.
import { CheckpointFormatError } from "../errors.js";

/** One file of a source: its size, and its bytes [position, position + length) on demand. */
export interface SourceFile {
  readonly size: number;
  read(position: number, length: number): Promise<Uint8Array>;
}

/** A checkpoint folder's files by name (flat: a checkpoint folder has no subfolders fusekit reads). */
export type CheckpointSource = Map<string, SourceFile>;

/** The files fusekit may read from a checkpoint folder, beyond the shards an index lists. */
export const CHECKPOINT_FILES = [
  "config.json",
  "generation_config.json",
  "tokenizer.json",
  "tokenizer_config.json",
  "special_tokens_map.json",
  "chat_template.jinja",
  "model.safetensors",
  "model.safetensors.index.json",
];

/** A file behind a URL, read by HTTP Range; its size from a listing, else from a HEAD request (undefined: absent). */
export async function urlFile(url: string, knownSize?: number): Promise<SourceFile | undefined> {
  let size = knownSize;
  if (size === undefined) {
    const head = await fetch(url, { method: "HEAD" });
    if (head.status === 404) return undefined;
    size = Number(head.headers.get("content-length"));
    if (!head.ok || !Number.isSafeInteger(size))
      throw new CheckpointFormatError(`HEAD answered ${head.status} without a usable Content-Length`, url);
  }
  return {
    size,
    async read(position, length) {
      if (length === 0) return new Uint8Array(0);
      const res = await fetch(url, { headers: { Range: `bytes=${position}-${position + length - 1}` } });
      const bytes = new Uint8Array(await res.arrayBuffer());
      // 200 means the server ignored the range: take the slice (correct, only slower)
      const got = res.status === 200 ? bytes.subarray(position, position + length) : bytes;
      if (!(res.status === 206 || res.status === 200) || got.byteLength !== length)
        throw new CheckpointFormatError(
          `range ${position}+${length} answered ${res.status} with ${got.byteLength} bytes`,
          url,
        );
      return got;
    },
  };
}

/** The folder listing `fusekit serve` answers at a checkpoint's URL: name → size of each plain file. */
async function listing(base: string): Promise<Record<string, number> | undefined> {
  const res = await fetch(base, { headers: { accept: "application/json" } }).catch(() => undefined);
  if (!res?.ok || !res.headers.get("content-type")?.startsWith("application/json")) return undefined;
  const json = (await res.json()) as { files?: Record<string, number> };
  return json.files;
}

/**
 * The checkpoint folder at `baseUrl` (e.g. "./model/"). With a listing there (as `fusekit serve` gives), its
 * files; else the known checkpoint files that answer a HEAD request, plus the shards an index lists.
 */
export async function sourceFromUrl(baseUrl: string): Promise<CheckpointSource> {
  const base = baseUrl.endsWith("/") ? baseUrl : baseUrl + "/";
  const listed = await listing(base);
  const source: CheckpointSource = new Map();
  if (listed) {
    for (const [name, size] of Object.entries(listed))
      source.set(name, (await urlFile(base + encodeURIComponent(name), size))!);
    return source;
  }
  const found = await Promise.all(CHECKPOINT_FILES.map(async (name) => [name, await urlFile(base + name)] as const));
  for (const [name, file] of found) if (file) source.set(name, file);
  const index = source.get("model.safetensors.index.json");
  if (index && !source.has("model.safetensors")) {
    const json = JSON.parse(new TextDecoder().decode(await index.read(0, index.size))) as {
      weight_map?: Record<string, unknown>;
    };
    const shards = new Set(Object.values(json.weight_map ?? {}).filter((s): s is string => typeof s === "string"));
    for (const shard of shards) {
      // a name with a slash or dot-dot is left out here: the loader then reports the shard as missing
      if (/[/\\]|^\.\.?$/.test(shard)) continue;
      const file = await urlFile(base + encodeURIComponent(shard));
      if (file) source.set(shard, file);
    }
  }
  return source;
}

/** What a picked file offers (the DOM's File / Blob). */
export interface BlobLike {
  readonly size: number;
  readonly name?: string;
  readonly webkitRelativePath?: string;
  slice(start: number, end: number): { arrayBuffer(): Promise<ArrayBuffer> };
}

/** Files the user picked (an `<input type=file webkitdirectory>`'s list, or any File / Blob by name). */
export function sourceFromFiles(files: Iterable<BlobLike> | Record<string, BlobLike>): CheckpointSource {
  const entries: [string, BlobLike][] =
    Symbol.iterator in files
      ? [...(files as Iterable<BlobLike>)].map((f) => [baseName(f.webkitRelativePath || f.name || ""), f])
      : Object.entries(files);
  const source: CheckpointSource = new Map();
  for (const [name, blob] of entries) {
    if (!name) continue;
    source.set(name, {
      size: blob.size,
      read: async (position, length) => new Uint8Array(await blob.slice(position, position + length).arrayBuffer()),
    });
  }
  return source;
}

function baseName(p: string): string {
  return p.slice(p.lastIndexOf("/") + 1);
}
