// safetensors: an 8-byte little-endian header length, a JSON header, then the tensors' bytes.
// Validation follows the format's reference implementation: a bounded header, offsets that tile the
// data region exactly (contiguous, in order, inside the file), and byte counts that equal shape × dtype size.
import fs, { constants as fsc, promises as fsp } from "node:fs";
import { CheckpointFormatError, UnsupportedDtypeError } from "../errors.js";
import { parseJsonStrict, preview } from "./json.js";
import {
  RAW_ONLY_DTYPES,
  STORAGE_DTYPES,
  type StorageDtype,
  decode,
  isStorageDtype,
  tensorByteLength,
} from "../tensor/dtypes.js";
import { tempPathFor } from "./atomic.js";

/** The reference implementation's limit on the JSON header. */
export const MAX_HEADER_BYTES = 100_000_000;

/** Tensors up to this size are read synchronously (see `readBytes`). */
const SYNC_READ_BYTES = 1 << 20;

export interface TensorInfo {
  dtype: StorageDtype;
  shape: number[];
  /** Byte range inside the data region (after the header). */
  begin: number;
  end: number;
}

export interface TensorData {
  dtype: StorageDtype;
  shape: number[];
  /** float32 for float dtypes, int32 for integer ones and BOOL. */
  data: Float32Array | Int32Array;
}

/** Parses and validates a header; `fileSize` is the whole file's size. */
export function parseHeader(
  headerBytes: Uint8Array,
  fileSize: number,
  file: string,
): { tensors: Map<string, TensorInfo>; metadata: Record<string, string> } {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(headerBytes);
  } catch {
    throw new CheckpointFormatError("header is not valid UTF-8", file);
  }
  // Strict: a repeated tensor name would otherwise silently resolve to its last entry.
  const parsed = parseJsonStrict(text);
  if (!parsed.ok)
    throw new CheckpointFormatError(
      `header is ${parsed.problem.startsWith("not") ? "" : "invalid: "}${parsed.problem}`,
      file,
    );
  const raw = parsed.value;
  if (typeof raw !== "object" || raw === null || Array.isArray(raw))
    throw new CheckpointFormatError("header is not a JSON object", file);
  const dataSize = fileSize - 8 - headerBytes.byteLength;
  const tensors = new Map<string, TensorInfo>();
  let metadata: Record<string, string> = {};
  for (const [name, entry] of Object.entries(raw as Record<string, unknown>)) {
    if (name === "__metadata__") {
      if (
        typeof entry !== "object" ||
        entry === null ||
        Array.isArray(entry) ||
        Object.values(entry).some((v) => typeof v !== "string")
      ) {
        throw new CheckpointFormatError("__metadata__ must map strings to strings", file);
      }
      metadata = entry as Record<string, string>;
      continue;
    }
    const info = parseEntry(name, entry, file);
    if (info.end > dataSize)
      throw new CheckpointFormatError(
        `data_offsets [${info.begin}, ${info.end}] run past the end of the data region (${dataSize} bytes)`,
        file,
        name,
      );
    tensors.set(name, info);
  }
  checkTiling(tensors, dataSize, file);
  return { tensors, metadata };
}

/** The data region must be tiled exactly: sorted by offset, each tensor starts where the previous ended. */
function checkTiling(tensors: Map<string, TensorInfo>, dataSize: number, file: string): void {
  const sorted = [...tensors.entries()].sort((a, b) => a[1].begin - b[1].begin || a[1].end - b[1].end);
  let cursor = 0;
  for (const [name, info] of sorted) {
    if (info.begin !== cursor) {
      throw new CheckpointFormatError(
        info.begin < cursor
          ? `data_offsets [${info.begin}, ${info.end}] overlap the previous tensor (which ends at ${cursor})`
          : `data_offsets start at ${info.begin}, leaving a gap after byte ${cursor}`,
        file,
        name,
      );
    }
    cursor = info.end;
  }
  // parseHeader has checked every end against dataSize: what can be left is bytes after the last tensor.
  if (cursor !== dataSize)
    throw new CheckpointFormatError(`file has ${dataSize - cursor} trailing bytes after the last tensor`, file);
}

function parseEntry(name: string, entry: unknown, file: string): TensorInfo {
  const fail = (msg: string) => new CheckpointFormatError(msg, file, name);
  if (typeof entry !== "object" || entry === null) throw fail("entry is not an object");
  const { dtype, shape, data_offsets: offsets } = entry as Record<string, unknown>;
  if (typeof dtype !== "string" || !isStorageDtype(dtype)) throw fail(`unknown dtype ${preview(dtype)}`);
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0))
    throw fail(`shape ${preview(shape)} is not a list of non-negative integers`);
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0)) {
    throw fail(`data_offsets ${preview(offsets)} must be two non-negative integers`);
  }
  const [begin, end] = offsets as number[];
  if (end < begin) throw fail(`data_offsets [${begin}, ${end}] are reversed`);
  const expected = tensorByteLength(dtype, shape as number[]);
  if (expected === undefined) throw fail(`shape [${shape}] of ${dtype} does not fill whole bytes`);
  if (end - begin !== expected)
    throw fail(`holds ${end - begin} bytes but shape [${shape}] of ${dtype} needs ${expected}`);
  return { dtype, shape: shape as number[], begin, end };
}

/** An open safetensors file: the header is parsed and validated up front; tensors are read one at a time. */
export class SafetensorsFile {
  private constructor(
    readonly path: string,
    private readonly handle: fsp.FileHandle,
    private readonly dataStart: number,
    readonly tensors: Map<string, TensorInfo>,
    readonly metadata: Record<string, string>,
  ) {}

  static async open(path: string): Promise<SafetensorsFile> {
    let handle: fsp.FileHandle;
    try {
      // O_NONBLOCK: opening a FIFO planted under a weight file's name must not block forever.
      handle = await fsp.open(path, fsc.O_RDONLY | fsc.O_NONBLOCK);
    } catch (err) {
      throw new CheckpointFormatError(
        `cannot open: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
        path,
      );
    }
    try {
      const stat = await handle.stat();
      if (!stat.isFile()) throw new CheckpointFormatError("not a regular file", path);
      const { size } = stat;
      if (size < 8)
        throw new CheckpointFormatError(`file is ${size} bytes, too short for the 8-byte header length`, path);
      const lenBuf = Buffer.alloc(8);
      await readExactly(handle, lenBuf, 0, path);
      const headerLen = lenBuf.readBigUInt64LE(0);
      if (headerLen > BigInt(MAX_HEADER_BYTES))
        throw new CheckpointFormatError(`header length ${headerLen} exceeds the ${MAX_HEADER_BYTES}-byte limit`, path);
      if (headerLen > BigInt(size - 8))
        throw new CheckpointFormatError(`header length ${headerLen} runs past the end of the ${size}-byte file`, path);
      const header = Buffer.alloc(Number(headerLen));
      await readExactly(handle, header, 8, path);
      const { tensors, metadata } = parseHeader(header, size, path);
      return new SafetensorsFile(path, handle, 8 + Number(headerLen), tensors, metadata);
    } catch (err) {
      await handle.close();
      throw err;
    }
  }

  keys(): string[] {
    return [...this.tensors.keys()];
  }

  info(name: string): TensorInfo {
    const info = this.tensors.get(name);
    if (!info) throw new CheckpointFormatError("no such tensor", this.path, name);
    return info;
  }

  /** The raw little-endian bytes of one tensor. */
  async readBytes(name: string): Promise<Uint8Array> {
    const info = this.info(name);
    const buf = Buffer.allocUnsafe(info.end - info.begin);
    // A small tensor (a norm's weight) is read synchronously: a thread-pool round trip costs more than the read.
    // (the browser build's file system has no synchronous reads: there every read is asynchronous)
    if (buf.byteLength <= SYNC_READ_BYTES && typeof fs.readSync === "function") this.readBytesIntoSync(name, buf);
    else await readExactly(this.handle, buf, this.dataStart + info.begin, this.path, name);
    return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  /**
   * Bytes `[from, to)` of one tensor read into the view `target()` returns (taken afresh for every system call,
   * so a view of a wasm heap that grew meanwhile is never used), asynchronously — on libuv's thread pool, so
   * several such reads run at once. The memory behind the view must not move until the promise settles.
   */
  async readRangeInto(name: string, from: number, to: number, target: () => Uint8Array): Promise<void> {
    const info = this.info(name);
    if (!(from >= 0 && from <= to && to <= info.end - info.begin))
      throw new CheckpointFormatError(
        `bytes [${from}, ${to}) lie outside the tensor's ${info.end - info.begin}`,
        this.path,
        name,
      );
    await readExactly(this.handle, target, this.dataStart + info.begin + from, this.path, name, to - from);
  }

  /**
   * Throws unless a target of `bytes` bytes holds exactly the tensor's bytes — or, given an offset, bytes of the
   * tensor from there on.
   */
  checkTarget(name: string, bytes: number, offset?: number): void {
    const info = this.info(name);
    const size = info.end - info.begin;
    if (offset === undefined ? bytes !== size : !(offset >= 0 && offset + bytes <= size))
      throw new CheckpointFormatError(
        offset === undefined
          ? `target holds ${bytes} bytes, the tensor ${size}`
          : `bytes [${offset}, ${offset + bytes}) lie outside the tensor's ${size}`,
        this.path,
        name,
      );
  }

  /**
   * One tensor's raw bytes read straight into `target` (e.g. a view of a wasm heap, so the bytes land in their
   * final place with no copy). Synchronous, so the memory behind the view cannot move while it is filled.
   */
  readBytesIntoSync(name: string, target: Uint8Array): void {
    const info = this.info(name);
    this.checkTarget(name, target.byteLength);
    for (let done = 0; done < target.byteLength;) {
      let n: number;
      try {
        n = fs.readSync(this.handle.fd, target, done, target.byteLength - done, this.dataStart + info.begin + done);
      } catch (err) {
        throw new CheckpointFormatError(
          `read failed at byte ${this.dataStart + info.begin + done}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
          this.path,
          name,
        );
      }
      if (n === 0)
        throw new CheckpointFormatError(
          `unexpected end of file at byte ${this.dataStart + info.begin + done}`,
          this.path,
          name,
        );
      done += n;
    }
  }

  /**
   * One tensor decoded to float32 / int32. A dtype fusekit keeps only as raw bytes (F4, F6_*, C64) is an
   * UnsupportedDtypeError here, when the tensor is used — the file and its other tensors stay readable.
   */
  async read(name: string): Promise<TensorData> {
    const info = this.info(name);
    if (RAW_ONLY_DTYPES.has(info.dtype)) {
      throw new UnsupportedDtypeError(
        `dtype ${info.dtype} cannot be decoded into a tensor (read its raw bytes with readBytes)`,
        this.path,
        name,
      );
    }
    const bytes = await this.readBytes(name);
    try {
      return { dtype: info.dtype, shape: info.shape, data: decode(bytes, info.dtype) };
    } catch (err) {
      throw new CheckpointFormatError((err as Error).message, this.path, name);
    }
  }

  async close(): Promise<void> {
    await this.handle.close();
  }
}

/**
 * Fills `buf` — or, given a function, the view it returns, taken afresh for every system call (a view of a wasm
 * heap is emptied when the heap grows) and required to hold exactly `length` bytes — from `position` on.
 */
async function readExactly(
  handle: fsp.FileHandle,
  buf: Uint8Array | (() => Uint8Array),
  position: number,
  file: string,
  tensor?: string,
  length = (buf as Uint8Array).byteLength,
): Promise<void> {
  const view = typeof buf === "function" ? buf : () => buf;
  for (let done = 0; done < length;) {
    const target = view();
    if (target.byteLength !== length)
      throw new CheckpointFormatError(`target holds ${target.byteLength} bytes, the read ${length}`, file, tensor);
    let bytesRead: number;
    try {
      ({ bytesRead } = await handle.read(target, done, length - done, position + done));
    } catch (err) {
      throw new CheckpointFormatError(
        `read failed at byte ${position + done}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
        file,
        tensor,
      );
    }
    if (bytesRead === 0)
      throw new CheckpointFormatError(`unexpected end of file at byte ${position + done}`, file, tensor);
    done += bytesRead;
  }
}

export interface TensorToWrite {
  name: string;
  dtype: StorageDtype;
  shape: readonly number[];
  /** Encoded little-endian bytes, produced only when the writer reaches this tensor. */
  bytes: () => Uint8Array;
}

type TensorHead = Pick<TensorToWrite, "name" | "dtype" | "shape">;

const utf8Compare = (a: string, b: string) => Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"));

/**
 * The reference writer's layout (safetensors/src/tensor.rs `prepare`: "sorting by descending dtype alignment,
 * then by name"): dtypes in descending order of its Dtype enum — 8-byte types first, BOOL last — and names
 * compared byte-wise, so the file does not depend on the order the tensors were given in.
 */
export function layoutOrder<T extends TensorHead>(tensors: readonly T[]): T[] {
  const rank = (d: StorageDtype) => STORAGE_DTYPES.indexOf(d);
  return [...tensors].sort((a, b) => rank(b.dtype) - rank(a.dtype) || utf8Compare(a.name, b.name));
}

/** Checks what the reader would refuse, so the writer can refuse it before writing a byte. */
function validateForWrite(
  tensors: readonly TensorHead[],
  metadata: Record<string, string> | undefined,
  file?: string,
): void {
  const seen = new Set<string>();
  for (const t of tensors) {
    const fail = (msg: string) => new CheckpointFormatError(`cannot write: ${msg}`, file, t.name);
    if (typeof t.name !== "string")
      throw new CheckpointFormatError(`cannot write: tensor name ${preview(t.name)} is not a string`, file);
    if (t.name === "__metadata__") throw fail(`"__metadata__" is reserved for the header's metadata`);
    if (seen.has(t.name)) throw fail("the name is given twice");
    seen.add(t.name);
    if (typeof t.dtype !== "string" || !isStorageDtype(t.dtype))
      throw fail(`unknown dtype ${preview(t.dtype)} (known: ${STORAGE_DTYPES.join(", ")})`);
    if (!Array.isArray(t.shape) || !t.shape.every((d) => Number.isSafeInteger(d) && d >= 0))
      throw fail(`shape ${preview(t.shape)} is not a list of non-negative integers`);
    if (tensorByteLength(t.dtype, t.shape) === undefined)
      throw fail(`shape [${t.shape}] of ${t.dtype} does not fill whole bytes`);
  }
  if (
    metadata !== undefined &&
    (typeof metadata !== "object" || metadata === null || Object.values(metadata).some((v) => typeof v !== "string"))
  ) {
    throw new CheckpointFormatError("cannot write: __metadata__ must map strings to strings", file);
  }
}

/**
 * Validates the tensors and builds the file's first bytes: the 8-byte header length and the JSON header,
 * tensors laid out in `layoutOrder`, padded with spaces to a multiple of 8 as the reference writer does (so
 * the data region is aligned). A header over MAX_HEADER_BYTES — which every reader refuses — is an error.
 */
export function buildHeader(tensors: readonly TensorHead[], metadata?: Record<string, string>, file?: string): Buffer {
  validateForWrite(tensors, metadata, file);
  // No prototype: a tensor named "__proto__" must become a key.
  const header: Record<string, unknown> = Object.create(null);
  if (metadata && Object.keys(metadata).length) header.__metadata__ = metadata;
  let offset = 0;
  for (const t of layoutOrder(tensors)) {
    const n = tensorByteLength(t.dtype, t.shape)!;
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + n] };
    offset += n;
  }
  const json = Buffer.from(JSON.stringify(header), "utf8");
  const padded = Math.ceil(json.byteLength / 8) * 8;
  if (padded > MAX_HEADER_BYTES) {
    throw new CheckpointFormatError(
      `cannot write: the header would be ${padded} bytes, over the ${MAX_HEADER_BYTES}-byte limit readers enforce`,
      file,
    );
  }
  const out = Buffer.alloc(8 + padded, 0x20);
  out.writeBigUInt64LE(BigInt(padded));
  json.copy(out, 8);
  return out;
}

/**
 * Writes a safetensors file at `path` as the reference writer lays it out (see `layoutOrder`), streaming one
 * tensor's bytes at a time. Everything that can be checked up front is checked before the first byte; the
 * bytes go to a temporary sibling that is renamed onto `path` only when complete, so a failure (an unknown
 * dtype, a tensor producing the wrong byte count, a full disk) leaves no partial file and `path` untouched.
 */
export async function writeSafetensors(
  path: string,
  tensors: TensorToWrite[],
  metadata?: Record<string, string>,
): Promise<void> {
  const header = buildHeader(tensors, metadata, path);
  const tmp = tempPathFor(path);
  try {
    await writeData(tmp, "wx", header, tensors, path);
    await fsp.rename(tmp, path);
  } catch (err) {
    await fsp.rm(tmp, { force: true });
    throw err;
  }
}

/**
 * Writes the file straight to `stagedPath`, a temporary name whose commit (rename) and cleanup on failure
 * belong to the caller — savePretrained's journaled multi-file commit (io/atomic.ts).
 */
export async function writeSafetensorsStaged(
  stagedPath: string,
  tensors: TensorToWrite[],
  metadata?: Record<string, string>,
): Promise<void> {
  await writeData(stagedPath, "w", buildHeader(tensors, metadata, stagedPath), tensors, stagedPath);
}

async function writeData(
  file: string,
  flags: string,
  header: Buffer,
  tensors: TensorToWrite[],
  shownAs: string,
): Promise<void> {
  const handle = await fsp.open(file, flags);
  try {
    await handle.write(header);
    for (const t of layoutOrder(tensors)) {
      const bytes = t.bytes();
      const expected = tensorByteLength(t.dtype, t.shape)!;
      if (bytes.byteLength !== expected)
        throw new CheckpointFormatError(`writer got ${bytes.byteLength} bytes, expected ${expected}`, shownAs, t.name);
      await handle.write(bytes);
    }
    await handle.sync();
  } finally {
    await handle.close();
  }
}
