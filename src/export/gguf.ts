// The GGUF container, as llama.cpp's gguf-py writes it (version 3, little-endian): magic, version, tensor
// count, KV count, the KV pairs, the tensor infos (name, dims innermost first, ggml type, offset into the
// data section), padding to the alignment, then each tensor's bytes padded to the alignment.
// Hand-written: npm has GGUF readers (e.g. @huggingface/gguf) but no maintained writer.
import { promises as fsp } from "node:fs";
import { floatToHalf } from "../tensor/dtypes.js";
import { bf16Bits } from "../tensor/bf16.js";
import { writeFileAtomically, type WriteTarget } from "../io/atomic.js";
import { GgufExportError } from "../errors.js";

export const GGUF_MAGIC = "GGUF";
export const GGUF_VERSION = 3;
export const GGUF_ALIGNMENT = 32;
/** GGML_QNT_VERSION, which llama.cpp's converter writes as general.quantization_version. */
export const GGML_QUANT_VERSION = 2;

/** The ggml tensor types fusekit writes, with their ids (ggml.h). */
export const GGML_TYPE = { F32: 0, F16: 1, Q8_0: 8, BF16: 30 } as const;
export type GgmlType = keyof typeof GGML_TYPE;

/** Values in a q8_0 block, and its bytes: an f16 scale then 32 int8. */
export const Q8_0_BLOCK = 32;
const Q8_0_BLOCK_BYTES = 2 + Q8_0_BLOCK;

/** GGUF metadata value types (gguf.h). */
const VALUE = { UINT32: 4, INT32: 5, FLOAT32: 6, BOOL: 7, STRING: 8, ARRAY: 9 } as const;

/** One metadata pair. Arrays are of strings or int32 (the only arrays the converter writes for these models). */
export type GgufValue =
  | { type: "u32"; value: number }
  | { type: "f32"; value: number }
  | { type: "bool"; value: boolean }
  | { type: "str"; value: string }
  | { type: "str[]"; value: readonly string[] }
  | { type: "i32[]"; value: readonly number[] };
export type GgufMetadata = [key: string, value: GgufValue][];

/** A tensor to write: `shape` in PyTorch order (outermost first); `data` gives its values when the writer reaches it. */
export interface GgufTensor {
  name: string;
  type: GgmlType;
  shape: readonly number[];
  data: () => Float32Array;
}

/** Bytes of `n` values of `type` (rows of a q8_0 tensor are whole blocks). */
export function ggmlBytes(type: GgmlType, n: number): number {
  if (type === "Q8_0") return (n / Q8_0_BLOCK) * Q8_0_BLOCK_BYTES;
  return n * (type === "F32" ? 4 : 2);
}

const pad = (n: number, align = GGUF_ALIGNMENT) => Math.ceil(n / align) * align;

/** Appends little-endian values into growing chunks. */
class ByteWriter {
  private chunks: Uint8Array[] = [];
  private buf = new Uint8Array(1 << 16);
  private view = new DataView(this.buf.buffer);
  private at = 0;
  length = 0;

  private room(n: number): void {
    if (this.at + n <= this.buf.length) return;
    this.chunks.push(this.buf.subarray(0, this.at));
    this.buf = new Uint8Array(Math.max(1 << 16, n));
    this.view = new DataView(this.buf.buffer);
    this.at = 0;
  }
  u32(v: number): void {
    this.room(4);
    this.view.setUint32(this.at, v, true);
    this.at += 4;
    this.length += 4;
  }
  i32(v: number): void {
    this.room(4);
    this.view.setInt32(this.at, v, true);
    this.at += 4;
    this.length += 4;
  }
  u64(v: number): void {
    this.room(8);
    this.view.setBigUint64(this.at, BigInt(v), true);
    this.at += 8;
    this.length += 8;
  }
  f32(v: number): void {
    this.room(4);
    this.view.setFloat32(this.at, v, true);
    this.at += 4;
    this.length += 4;
  }
  bytes(b: Uint8Array): void {
    this.room(b.length);
    this.buf.set(b, this.at);
    this.at += b.length;
    this.length += b.length;
  }
  /** A GGUF string: u64 byte length, then UTF-8 bytes. */
  str(s: string): void {
    const b = Buffer.from(s, "utf8");
    this.u64(b.length);
    this.bytes(b);
  }
  done(): Uint8Array {
    this.chunks.push(this.buf.subarray(0, this.at));
    return Buffer.concat(this.chunks);
  }
}

function writeValue(w: ByteWriter, v: GgufValue): void {
  switch (v.type) {
    case "u32":
      return (w.u32(VALUE.UINT32), w.u32(v.value));
    case "f32":
      return (w.u32(VALUE.FLOAT32), w.f32(v.value));
    case "bool":
      return (w.u32(VALUE.BOOL), w.bytes(Uint8Array.of(v.value ? 1 : 0)));
    case "str":
      return (w.u32(VALUE.STRING), w.str(v.value));
    case "str[]":
      w.u32(VALUE.ARRAY);
      w.u32(VALUE.STRING);
      w.u64(v.value.length);
      for (const s of v.value) w.str(s);
      return;
    case "i32[]":
      w.u32(VALUE.ARRAY);
      w.u32(VALUE.INT32);
      w.u64(v.value.length);
      for (const n of v.value) w.i32(n);
      return;
  }
}

/** Everything before the data section: header, metadata, tensor infos, padding. Also each tensor's data offset. */
export function ggufHeader(
  metadata: GgufMetadata,
  tensors: readonly GgufTensor[],
): { bytes: Uint8Array; offsets: number[] } {
  const w = new ByteWriter();
  w.bytes(Buffer.from(GGUF_MAGIC, "latin1"));
  w.u32(GGUF_VERSION);
  w.u64(tensors.length);
  w.u64(metadata.length);
  for (const [key, value] of metadata) {
    w.str(key);
    writeValue(w, value);
  }
  const offsets: number[] = [];
  let offset = 0;
  for (const t of tensors) {
    w.str(t.name);
    w.u32(t.shape.length);
    for (const d of [...t.shape].reverse()) w.u64(d); // ggml order: innermost dimension first
    w.u32(GGML_TYPE[t.type]);
    w.u64(offset);
    offsets.push(offset);
    offset += pad(
      ggmlBytes(
        t.type,
        t.shape.reduce((a, b) => a * b, 1),
      ),
    );
  }
  w.bytes(new Uint8Array(pad(w.length) - w.length));
  return { bytes: w.done(), offsets };
}

/**
 * q8_0 as ggml's quantize_row_q8_0_ref (and gguf-py's bit-exact copy) computes it, in float32: per block of 32,
 * d = max|x| / 127, q = round-half-away(x · (1/d)), d stored as f16 (round to nearest even).
 */
export function quantizeQ8_0(values: Float32Array): Uint8Array {
  if (values.length % Q8_0_BLOCK)
    throw new GgufExportError(`q8_0 needs a multiple of ${Q8_0_BLOCK} values, got ${values.length}`);
  const blocks = values.length / Q8_0_BLOCK;
  const out = new Uint8Array(blocks * Q8_0_BLOCK_BYTES);
  const view = new DataView(out.buffer);
  const q = new Int8Array(out.buffer);
  const f = Math.fround;
  for (let b = 0; b < blocks; b++) {
    const x0 = b * Q8_0_BLOCK;
    let amax = 0;
    for (let j = 0; j < Q8_0_BLOCK; j++) amax = Math.max(amax, Math.abs(values[x0 + j]));
    const d = f(amax / 127);
    const id = d === 0 ? 0 : f(1 / d);
    const o = b * Q8_0_BLOCK_BYTES;
    view.setUint16(o, floatToHalf(d), true);
    for (let j = 0; j < Q8_0_BLOCK; j++) {
      const v = f(values[x0 + j] * id);
      const a = Math.abs(v);
      const r = Math.floor(a) + (a - Math.floor(a) >= 0.5 ? 1 : 0); // roundf: halves away from zero
      q[o + 2 + j] = v < 0 ? -r : r;
    }
  }
  return out;
}

/** A tensor's values as `type` bytes. */
export function encodeGgml(values: Float32Array, type: GgmlType): Uint8Array {
  switch (type) {
    case "F32":
      return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
    case "Q8_0":
      return quantizeQ8_0(values);
    case "F16":
    case "BF16": {
      const out = new Uint16Array(values.length);
      if (type === "F16") for (let i = 0; i < values.length; i++) out[i] = floatToHalf(values[i]);
      else {
        const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
        for (let i = 0; i < values.length; i++) out[i] = bf16Bits(bits[i]);
      }
      return new Uint8Array(out.buffer);
    }
  }
}

/** Whether `file` starts like a GGUF file (what `--force` may replace). */
export async function isGgufFile(file: string): Promise<boolean> {
  const h = await fsp.open(file, "r");
  try {
    const b = Buffer.alloc(4);
    await h.read(b, 0, 4, 0);
    return b.toString("latin1") === GGUF_MAGIC;
  } finally {
    await h.close();
  }
}

/** Where a GGUF file may be written: a new path, or (with `overwrite`) a GGUF file already there. */
export const ggufTarget = (overwrite = false): WriteTarget => ({ kind: "GGUF file", recognise: isGgufFile, overwrite });

/**
 * Writes a GGUF file atomically (a temporary sibling, renamed into place). Tensor data is produced and written
 * one tensor at a time, so a model's GGUF is never whole in memory.
 */
export async function writeGgufFile(
  file: string,
  metadata: GgufMetadata,
  tensors: readonly GgufTensor[],
  options: { overwrite?: boolean } = {},
): Promise<void> {
  const names = new Set<string>();
  for (const t of tensors) {
    if (names.has(t.name)) throw new GgufExportError(`two tensors are named "${t.name}"`);
    names.add(t.name);
  }
  const { bytes: header, offsets } = ggufHeader(metadata, tensors);
  await writeFileAtomically(
    file,
    async (tmp) => {
      const h = await fsp.open(tmp, "w");
      try {
        const write = async (b: Uint8Array) => {
          // write() may take fewer bytes than given (large buffers): go on from where it stopped.
          for (let done = 0; done < b.length;) done += (await h.write(b, done, b.length - done)).bytesWritten;
        };
        await write(header);
        let at = 0;
        for (const [i, t] of tensors.entries()) {
          if (offsets[i] > at) await write(new Uint8Array(offsets[i] - at));
          const bytes = encodeGgml(t.data(), t.type);
          const expected = ggmlBytes(
            t.type,
            t.shape.reduce((a, b) => a * b, 1),
          );
          if (bytes.length !== expected)
            throw new GgufExportError(`tensor "${t.name}" has ${bytes.length} bytes, its shape needs ${expected}`);
          await write(bytes);
          at = offsets[i] + bytes.length;
        }
        if (pad(at) > at) await write(new Uint8Array(pad(at) - at));
        await h.sync();
      } finally {
        await h.close();
      }
    },
    ggufTarget(options.overwrite),
  );
}
