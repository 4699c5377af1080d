// node:fs in the browser build: a file system of mounted read-only folders — checkpoint sources (../source.ts)
// and the package files the bundle embeds (/fusekit) — and of files written in memory anywhere else (/tmp),
// enough for a save → reload round trip of a small model, as the comparison does. It answers the calls
// fusekit makes (stat, open + positioned reads and writes, readFile, readdir, rename, rm, …) with Node's
// error codes. Hand-written: a virtual-fs package (memfs and the like) keeps whole files in memory, where a
// checkpoint's weights must stay behind Range requests until they are read into the wasm heap.
import path from "path-browserify";
import type { SourceFile } from "../source.js";

/** A file written in this page: its bytes in memory, growing as they are written. */
export class MemoryFile implements SourceFile {
  private data: Uint8Array;
  constructor(
    bytes: Uint8Array = new Uint8Array(0),
    public size = bytes.byteLength,
  ) {
    this.data = bytes;
  }
  get bytes(): Uint8Array {
    return this.data.subarray(0, this.size);
  }
  async read(at: number, n: number): Promise<Uint8Array> {
    return this.bytes.slice(at, at + n);
  }
  write(bytes: Uint8Array, at: number): void {
    const end = at + bytes.byteLength;
    if (end > this.data.byteLength) {
      const grown = new Uint8Array(Math.max(end, 2 * this.data.byteLength));
      grown.set(this.bytes);
      this.data = grown;
    }
    this.data.set(bytes, at);
    this.size = Math.max(this.size, end);
  }
}

type Entry = { kind: "file"; file: SourceFile; readOnly: boolean } | { kind: "dir"; readOnly: boolean };
const entries = new Map<string, Entry>([["/", { kind: "dir", readOnly: false }]]);
const readOnlyRoots = new Set<string>();

function norm(p: unknown): string {
  return path.resolve("/", String(p));
}

function fsError(code: string, syscall: string, p: unknown): Error {
  const e = new Error(`${code}: ${syscall} '${String(p)}'`);
  return Object.assign(e, { code, syscall, path: String(p) });
}

function lookup(p: unknown, syscall: string): Entry {
  const e = entries.get(norm(p));
  if (!e) throw fsError("ENOENT", syscall, p);
  return e;
}

function addDirs(dir: string, readOnly: boolean): void {
  for (let d = dir; !entries.has(d); d = path.dirname(d)) entries.set(d, { kind: "dir", readOnly });
}

const inside = (p: string, dir: string) => p === dir || p.startsWith(dir === "/" ? "/" : dir + "/");

/** Throws EROFS for a path inside a mounted (read-only) folder, ENOENT when its folder does not exist. */
function writable(p: unknown, syscall: string): string {
  const abs = norm(p);
  for (const root of readOnlyRoots) if (inside(abs, root)) throw fsError("EROFS", syscall, p);
  const parent = entries.get(path.dirname(abs));
  if (!parent) throw fsError("ENOENT", syscall, p);
  if (parent.kind !== "dir") throw fsError("ENOTDIR", syscall, p);
  return abs;
}

/** Mounts `files` (name → file) read-only as the folder `dir`, replacing whatever was there. */
export function mountFiles(dir: string, files: Iterable<readonly [string, SourceFile]>): string {
  const root = norm(dir);
  for (const key of [...entries.keys()]) if (inside(key, root)) entries.delete(key);
  readOnlyRoots.add(root);
  addDirs(root, true);
  for (const [name, file] of files) {
    const p = path.join(root, name);
    addDirs(path.dirname(p), true);
    entries.set(p, { kind: "file", file, readOnly: true });
  }
  return root;
}

/** A file held in memory (readable synchronously too). */
export function memoryFile(bytes: Uint8Array): SourceFile {
  return new MemoryFile(bytes);
}

export class Stats {
  constructor(private readonly entry: Entry) {}
  get size(): number {
    return this.entry.kind === "file" ? this.entry.file.size : 0;
  }
  readonly mtimeMs = 0;
  get mode(): number {
    return (this.entry.kind === "dir" ? 0o040000 : 0o100000) | (this.entry.readOnly ? 0o444 : 0o644);
  }
  isFile = () => this.entry.kind === "file";
  isDirectory = () => this.entry.kind === "dir";
  isSymbolicLink = () => false;
  isFIFO = () => false;
}

export class Dirent {
  constructor(
    readonly name: string,
    private readonly entry: Entry,
  ) {}
  isFile = () => this.entry.kind === "file";
  isDirectory = () => this.entry.kind === "dir";
  isSymbolicLink = () => false;
}

/** Wasm memories whose buffer a read's target may be a view of (tfjs-wasm's heap): they can grow meanwhile. */
const growable: (() => { buffer: ArrayBufferLike } | undefined)[] = [];

/** Registers a wasm memory (given by a function: it may not exist yet) that reads may target. */
export function registerGrowableMemory(memory: () => { buffer: ArrayBufferLike } | undefined): void {
  growable.push(memory);
}

function growableOwning(buffer: ArrayBufferLike): { buffer: ArrayBufferLike } | undefined {
  for (const get of growable) {
    const memory = get();
    if (memory?.buffer === buffer) return memory;
  }
  return undefined;
}

let nextFd = 3;
const toBytes = (data: unknown) => (typeof data === "string" ? new TextEncoder().encode(data) : (data as Uint8Array));

export class FileHandle {
  readonly fd = nextFd++;
  private position = 0;
  constructor(
    private readonly p: string,
    private readonly entry: Entry,
  ) {}
  private file(syscall: string): SourceFile {
    if (this.entry.kind !== "file") throw fsError("EISDIR", syscall, this.p);
    return this.entry.file;
  }
  async stat(): Promise<Stats> {
    return new Stats(this.entry);
  }
  async read(target: Uint8Array, offset: number, length: number, position: number) {
    const file = this.file("read");
    const n = Math.max(0, Math.min(length, file.size - position));
    if (n === 0) return { bytesRead: 0, buffer: target };
    const [memory, at] = [growableOwning(target.buffer), target.byteOffset + offset];
    const bytes = await file.read(position, n);
    // Node's read lands in the memory itself; here the bytes arrive later, after the heap may have grown
    // (which detaches `target`): they go to the same offset of the memory's buffer as it is now.
    if (target.byteLength === 0 && memory) new Uint8Array(memory.buffer, at, n).set(bytes);
    else target.set(bytes, offset);
    return { bytesRead: n, buffer: target };
  }
  async readFile(): Promise<Uint8Array> {
    const file = this.file("read");
    return file.read(0, file.size);
  }
  async write(data: unknown) {
    const file = this.file("write");
    if (!(file instanceof MemoryFile)) throw fsError("EBADF", "write", this.p);
    const bytes = toBytes(data);
    file.write(bytes, this.position);
    this.position += bytes.byteLength;
    return { bytesWritten: bytes.byteLength };
  }
  async writeFile(data: unknown): Promise<void> {
    await this.write(data);
  }
  async sync(): Promise<void> {}
  async close(): Promise<void> {}
}

function openSync(p: unknown, flags: unknown): FileHandle {
  const f = typeof flags === "string" ? flags : "r";
  if (f === "r") return new FileHandle(norm(p), lookup(p, "open"));
  const abs = writable(p, "open");
  const existing = entries.get(abs);
  if (existing && f.includes("x")) throw fsError("EEXIST", "open", p);
  if (existing?.kind === "dir") throw fsError("EISDIR", "open", p);
  const entry: Entry = { kind: "file", file: new MemoryFile(), readOnly: false };
  entries.set(abs, entry);
  return new FileHandle(abs, entry);
}

function removeTree(abs: string): void {
  for (const key of [...entries.keys()]) if (inside(key, abs)) entries.delete(key);
}

export const promises = {
  async stat(p: unknown) {
    return new Stats(lookup(p, "stat"));
  },
  async lstat(p: unknown) {
    return new Stats(lookup(p, "lstat"));
  },
  async realpath(p: unknown) {
    lookup(p, "realpath");
    return norm(p);
  },
  async access(p: unknown) {
    lookup(p, "access");
  },
  async open(p: unknown, flags: unknown = "r") {
    return openSync(p, flags);
  },
  async readFile(p: unknown, options?: unknown) {
    const e = lookup(p, "open");
    if (e.kind !== "file") throw fsError("EISDIR", "read", p);
    const bytes = await e.file.read(0, e.file.size);
    const encoding = typeof options === "string" ? options : (options as { encoding?: string })?.encoding;
    return encoding ? new TextDecoder().decode(bytes) : bytes;
  },
  async readdir(p: unknown, options?: { withFileTypes?: boolean }) {
    const dir = norm(p);
    if (lookup(p, "scandir").kind !== "dir") throw fsError("ENOTDIR", "scandir", p);
    const names = [...entries.keys()].filter((k) => k !== dir && path.dirname(k) === dir).map((k) => path.basename(k));
    names.sort();
    return options?.withFileTypes ? names.map((n) => new Dirent(n, entries.get(path.join(dir, n))!)) : names;
  },
  async writeFile(p: unknown, data: unknown, options?: { flag?: string }) {
    await openSync(p, options?.flag ?? "w").write(data);
  },
  async mkdir(p: unknown, options?: { recursive?: boolean }) {
    const abs = norm(p);
    if (entries.has(abs)) {
      if (options?.recursive) return undefined;
      throw fsError("EEXIST", "mkdir", p);
    }
    if (options?.recursive) {
      writable(path.dirname(abs) === abs ? abs : abs, "mkdir"); // inside a mount: EROFS
      addDirs(abs, false);
      return abs;
    }
    entries.set(writable(p, "mkdir"), { kind: "dir", readOnly: false });
    return undefined;
  },
  async mkdtemp(prefix: unknown) {
    const abs = norm(String(prefix) + Math.random().toString(36).slice(2, 8));
    addDirs(path.dirname(abs), false);
    entries.set(writable(abs, "mkdtemp"), { kind: "dir", readOnly: false });
    return abs;
  },
  async rename(from: unknown, to: unknown) {
    const [a, b] = [writable(from, "rename"), writable(to, "rename")];
    if (!entries.has(a)) throw fsError("ENOENT", "rename", from);
    const moved = [...entries].filter(([k]) => inside(k, a));
    removeTree(b);
    for (const [k] of moved) entries.delete(k);
    for (const [k, e] of moved) entries.set(b + k.slice(a.length), e);
  },
  async rm(p: unknown, options?: { recursive?: boolean; force?: boolean }) {
    const abs = norm(p);
    const e = entries.get(abs);
    if (!e) {
      if (options?.force) return;
      throw fsError("ENOENT", "rm", p);
    }
    writable(abs, "rm");
    if (e.kind === "dir" && !options?.recursive) throw fsError("EISDIR", "rm", p);
    removeTree(abs);
  },
  async rmdir(p: unknown) {
    const abs = writable(p, "rmdir");
    if (lookup(p, "rmdir").kind !== "dir") throw fsError("ENOTDIR", "rmdir", p);
    if ([...entries.keys()].some((k) => k !== abs && inside(k, abs))) throw fsError("ENOTEMPTY", "rmdir", p);
    entries.delete(abs);
  },
  async unlink(p: unknown) {
    if (lookup(p, "unlink").kind === "dir") throw fsError("EISDIR", "unlink", p);
    entries.delete(writable(p, "unlink"));
  },
  async link(from: unknown, to: unknown) {
    const e = lookup(from, "link");
    const abs = writable(to, "link");
    if (entries.has(abs)) throw fsError("EEXIST", "link", to);
    entries.set(abs, { ...e, readOnly: false });
  },
  async copyFile(from: unknown, to: unknown) {
    const e = lookup(from, "copyfile");
    if (e.kind !== "file") throw fsError("EISDIR", "copyfile", from);
    const bytes = await e.file.read(0, e.file.size);
    entries.set(writable(to, "copyfile"), { kind: "file", file: new MemoryFile(bytes), readOnly: false });
  },
  async chmod(p: unknown) {
    lookup(p, "chmod");
  },
};

export function existsSync(p: unknown): boolean {
  return entries.has(norm(p));
}

export function statSync(p: unknown): Stats {
  return new Stats(lookup(p, "stat"));
}

/** Only files held in memory read synchronously (a fetched file has no synchronous read). */
export function readFileSync(p: unknown, options?: unknown): Uint8Array | string {
  const e = lookup(p, "open");
  if (e.kind !== "file" || !(e.file instanceof MemoryFile)) throw fsError("ENOTSUP", "read", p);
  const encoding = typeof options === "string" ? options : (options as { encoding?: string })?.encoding;
  return encoding ? new TextDecoder().decode(e.file.bytes) : e.file.bytes.slice();
}

export function rmSync(p: unknown, options?: { recursive?: boolean; force?: boolean }): void {
  const abs = norm(p);
  if (!entries.has(abs)) {
    if (options?.force) return;
    throw fsError("ENOENT", "rm", p);
  }
  writable(abs, "rm");
  removeTree(abs);
}

export function mkdtempSync(prefix: unknown): string {
  const abs = norm(String(prefix) + Math.random().toString(36).slice(2, 8));
  addDirs(path.dirname(abs), false);
  entries.set(writable(abs, "mkdtemp"), { kind: "dir", readOnly: false });
  return abs;
}

/** Streams only serve downloads into the Hugging Face cache, which the browser build has none of. */
export function createReadStream(p: unknown): never {
  throw fsError("ENOTSUP", "open", p);
}
export const createWriteStream = createReadStream;

export const constants = { O_RDONLY: 0, O_NONBLOCK: 0, O_WRONLY: 1, O_CREAT: 0o100, O_EXCL: 0o200, F_OK: 0, R_OK: 4 };

export default { promises, existsSync, statSync, readFileSync, rmSync, mkdtempSync, constants };
