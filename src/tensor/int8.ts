// 8-bit weights on the host, in one place: symmetric, one float32 scale per block of 32 values along a row
// (the input dimension of a Linear weight [out, in]). 32 is llama.cpp's q8_0 block, so fidelity compares like
// with like, and two 16-lane int8 vectors per block in the SIMD kernels. The scale is float32, not q8_0's f16:
// a block is then 9 aligned int32 words (the wasm kernels load the scale with one f32.load, no f16 decode),
// at 1.125 bytes a weight instead of 1.0625.
//
// Layout: int32 [rows, ceil(cols / 32) · 9] of blocks; a block is word 0 = the scale's float32 bits, words 1..8
// = its 32 int8 values (little-endian bytes in order). A row whose length is not a multiple of 32 ends in a
// block padded with zeros (the kernels' activations are padded the same way, so padding adds nothing). Rows go
// in groups of 4 interleaved by block: block b of the group's rows 0..3 are consecutive, so the SIMD matvec,
// which reads 4 rows at a time, reads one sequential stream; the last rows % 4 rows are row-major.
import { WeightStorageError } from "../errors.js";
import { INT8_WASM_BASE64 } from "../backend/int8-wasm.js";

/** Values per block. */
export const INT8_BLOCK = 32;
/** int32 words per block: the scale, then 32 int8. */
export const INT8_BLOCK_WORDS = 9;

/** Blocks a row of `cols` values takes. */
export const int8Blocks = (cols: number) => Math.ceil(cols / INT8_BLOCK);

/** The int32 word where block `b` of row `o` starts, in a [rows, cols] matrix of `nb` blocks a row. */
export function int8BlockWord(o: number, b: number, rows: number, nb: number): number {
  const grouped = rows & ~3;
  return (o < grouped ? (o & ~3) * nb + 4 * b + (o & 3) : o * nb + b) * INT8_BLOCK_WORDS;
}

/** The int32 shape of a [rows, cols] matrix in 8-bit blocks. */
export const int8Shape = (rows: number, cols: number): [number, number] => [rows, int8Blocks(cols) * INT8_BLOCK_WORDS];

/**
 * Quantizes row-major [rows, cols] — float32 values, or bf16 bits (a Uint16Array, widened exactly: no float32
 * copy) — into 8-bit blocks: scale d = max|v| / 127, q = round(v / d) (half away from zero) computed as
 * v · (1/d) in float32, as llama.cpp's q8_0 does, so |v - d·q| ≤ d/2. A block of zeros has scale 0. A
 * non-finite value is a WeightStorageError naming where (`what`). Runs int8.wat's SIMD `i8QuantRows` on a small
 * heap of its own, a few MB of rows at a time: `quantizeInt8Reference`'s bytes (loading a model with
 * weightStorage "int8" quantizes every weight through it).
 */
export function quantizeInt8(
  values: Float32Array | Uint16Array,
  rows: number,
  cols: number,
  what = "weight",
): Int32Array {
  if (values.length !== rows * cols) throw new RangeError(`expected ${rows * cols} values, got ${values.length}`);
  const nb = int8Blocks(cols);
  const out = new Int32Array(rows * nb * INT8_BLOCK_WORDS);
  const size = values.BYTES_PER_ELEMENT;
  const step = Math.max(4, Math.floor(QUANT_CHUNK_VALUES / Math.max(cols, 1)) & ~3); // whole 4-row groups
  const inBytes = Math.ceil((step * cols * size) / 16) * 16;
  const q = quantizer(inBytes + step * nb * INT8_BLOCK_WORDS * 4);
  const bf = size === 2 ? 1 : 0;
  for (let r0 = 0; r0 < rows; r0 += step) {
    const r1 = Math.min(rows, r0 + step);
    const chunk = values.subarray(r0 * cols, r1 * cols);
    (bf ? new Uint16Array(q.memory.buffer, 0, chunk.length) : new Float32Array(q.memory.buffer, 0, chunk.length)).set(
      chunk,
    );
    // the kernel indexes the whole matrix: its bases are shifted back by r0 rows (wrapping is fine in wasm)
    const bad = q.ex.i8QuantRows(-r0 * cols * size, inBytes - r0 * nb * 36, rows, cols, r0, r1, bf);
    if (bad >= 0) {
      const row = values.subarray(bad * cols, (bad + 1) * cols);
      throw nonFinite(row instanceof Uint16Array ? bf16Floats(row) : row, bad, what);
    }
    const words = (r1 - r0) * nb * INT8_BLOCK_WORDS;
    out.set(new Int32Array(q.memory.buffer, inBytes, words), r0 * nb * INT8_BLOCK_WORDS);
  }
  return out;
}

/** bf16 bits as float32 values. */
const bf16Floats = (bits: Uint16Array) => new Float32Array(Uint32Array.from(bits, (b) => b << 16).buffer);

/** Values a quantizeInt8 chunk holds (4 MB of float32): the quantizer's heap stays small. */
const QUANT_CHUNK_VALUES = 1 << 20;

interface Quantizer {
  memory: WebAssembly.Memory & { grow(pages: number): number };
  ex: {
    i8QuantRows(src: number, dst: number, rows: number, cols: number, r0: number, r1: number, bf: number): number;
  };
}
let quantizerInstance: Quantizer | undefined;

/** int8.wat on a heap of its own of at least `bytes`. */
function quantizer(bytes: number): Quantizer {
  if (!quantizerInstance) {
    const memory = new WebAssembly.Memory({ initial: 1 }) as Quantizer["memory"];
    const module = new WebAssembly.Module(Buffer.from(INT8_WASM_BASE64, "base64"));
    const ex = new WebAssembly.Instance(module, { env: { memory } }).exports as Quantizer["ex"];
    quantizerInstance = { memory, ex };
  }
  const { memory } = quantizerInstance;
  if (memory.buffer.byteLength < bytes) memory.grow(Math.ceil((bytes - memory.buffer.byteLength) / 65536));
  return quantizerInstance;
}

/** The WeightStorageError for the first non-finite value of row `r` (its values `row`). */
function nonFinite(row: Float32Array, r: number, what: string): WeightStorageError {
  const c = row.findIndex((v) => !Number.isFinite(v));
  return new WeightStorageError(`${what}: int8 storage cannot hold ${row[c]} (row ${r}, column ${c})`);
}

/**
 * Quantizes row-major float32 [rows, cols] into 8-bit blocks: scale d = max|v| / 127, q = round(v / d) (half
 * away from zero) computed as v · (1/d) in float32, as llama.cpp's q8_0 does, so |v - d·q| ≤ d/2. A block of
 * zeros has scale 0. A non-finite value is a WeightStorageError naming where (`what`). Plain JS: the reference
 * `quantizeInt8` (wasm SIMD, the same bytes) is tested against.
 */
export function quantizeInt8Reference(values: Float32Array, rows: number, cols: number, what = "weight"): Int32Array {
  if (values.length !== rows * cols) throw new RangeError(`expected ${rows * cols} values, got ${values.length}`);
  const blocks = int8Blocks(cols);
  const out = new Int32Array(rows * blocks * INT8_BLOCK_WORDS);
  const bytes = new Int8Array(out.buffer);
  const f32 = new Float32Array(out.buffer);
  for (let r = 0; r < rows; r++) {
    for (let b = 0; b < blocks; b++) {
      const start = r * cols + b * INT8_BLOCK;
      const end = Math.min(start + INT8_BLOCK, (r + 1) * cols);
      let amax = 0;
      for (let i = start; i < end; i++) {
        const v = values[i];
        const a = v < 0 ? -v : v;
        if (a > amax || a !== a) amax = a; // a NaN stays (nothing is > NaN): reported below
      }
      if (!(amax <= 3.4028234663852886e38)) throw nonFinite(values.subarray(r * cols, (r + 1) * cols), r, what);
      const word = int8BlockWord(r, b, rows, blocks);
      const d = Math.fround(amax / 127);
      f32[word] = d;
      const id = d ? Math.fround(1 / d) : 0;
      for (let i = start, o = 4 * word + 4; i < end; i++, o++) {
        const s = Math.fround(values[i] * id);
        bytes[o] = s >= 0 ? (s + 0.5) | 0 : -((0.5 - s) | 0); // half away from zero; |s| ≤ 127
      }
    }
  }
  return out;
}

/** The float32 values d·q of 8-bit blocks [rows, blocks · 9], row-major [rows, cols] (exact: each is one product). */
export function dequantizeInt8(blocks: Int32Array, rows: number, cols: number): Float32Array {
  const nb = int8Blocks(cols);
  if (blocks.length !== rows * nb * INT8_BLOCK_WORDS)
    throw new RangeError(
      `expected ${rows * nb * INT8_BLOCK_WORDS} int32 words for [${rows}, ${cols}], got ${blocks.length}`,
    );
  const out = new Float32Array(rows * cols);
  const bytes = new Int8Array(blocks.buffer, blocks.byteOffset, blocks.byteLength);
  const f32 = new Float32Array(blocks.buffer, blocks.byteOffset, blocks.length);
  for (let r = 0; r < rows; r++) {
    for (let b = 0; b < nb; b++) {
      const word = int8BlockWord(r, b, rows, nb);
      const d = f32[word];
      const start = r * cols + b * INT8_BLOCK;
      const end = Math.min(start + INT8_BLOCK, (r + 1) * cols);
      for (let i = start, o = 4 * word + 4; i < end; i++, o++) out[i] = Math.fround(d * bytes[o]);
    }
  }
  return out;
}
