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

/** The WeightStorageError for the first non-finite value of row `r` (its values `row`). */
export function nonFinite(row: Float32Array, r: number, what: string): WeightStorageError {
  const c = row.findIndex((v) => !Number.isFinite(v));
  return new WeightStorageError(`${what}: int8 storage cannot hold ${row[c]} (row ${r}, column ${c})`);
}

/**
 * Quantizes row-major float32 [rows, cols] into 8-bit blocks: scale d = max|v| / 127, q = round(v / d) (half
 * away from zero) computed as v · (1/d) in float32, as llama.cpp's q8_0 does, so |v - d·q| ≤ d/2. A block of
 * zeros has scale 0. A non-finite value is a WeightStorageError naming where (`what`). Plain JS: the reference
 * backend/int8-quantize.ts's `quantizeInt8` (wasm SIMD, the same bytes) is tested against.
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
