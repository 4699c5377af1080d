// BF16 on the host, in one place: a bf16 is the top half of an f32. Rounding one value (`bf16Bits`, what
// encode(…, "BF16") does), and packing: two bf16 per int32 (element 2k in the low half, 2k+1 in the high
// half), which is exactly the little-endian byte order of a BF16 safetensors tensor. Rounding checkpoint
// floats in the wasm heap is backend/convert.ts's job (it uses these on the cpu backend).

/** The bf16 nearest (ties to even) to the float32 with bits `x`, as its 16 bits; NaN stays NaN. */
export function bf16Bits(x: number): number {
  const isNaN = (x & 0x7f800000) === 0x7f800000 && (x & 0x7fffff) !== 0;
  return (isNaN ? (x >>> 16) | 0x40 : (x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

/** Packs float32 values (row-major, even length) into bf16 pairs by truncation; returns how many lost bits. */
export function packBf16(values: Float32Array): { packed: Int32Array; inexact: number } {
  if (values.length % 2) throw new RangeError(`cannot pack an odd number of values (${values.length}) into bf16 pairs`);
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const packed = new Int32Array(values.length / 2);
  let inexact = 0;
  for (let k = 0; k < packed.length; k++) {
    const lo = bits[2 * k];
    const hi = bits[2 * k + 1];
    if (lo & 0xffff) inexact++;
    if (hi & 0xffff) inexact++;
    packed[k] = (lo >>> 16) | (hi & 0xffff0000);
  }
  return { packed, inexact };
}

/** Widens bf16 pairs back to float32 (exact). */
export function unpackBf16(packed: Int32Array | Uint32Array): Float32Array {
  const out = new Float32Array(packed.length * 2);
  const bits = new Uint32Array(out.buffer);
  for (let k = 0; k < packed.length; k++) {
    const v = packed[k];
    bits[2 * k] = v << 16;
    bits[2 * k + 1] = v & 0xffff0000;
  }
  return out;
}

/**
 * Whether stored bf16 weights of [rows, cols] values are interleaved by 8 rows (the kernel layout, bf16.wat
 * `$row`): each block of 8 rows keeps its bytes, but step k of all 8 rows (8 values, 16 bytes, each) sits together,
 * so a block is read as one sequential stream (~1.8× the row-major rate from memory at decode).
 */
export const bf16Interleaved = (rows: number, cols: number) => rows % 8 === 0 && cols % 8 === 0;

/** Packed row-major bf16 [rows, cols] (int32 pairs) in the kernel layout: interleaved where bf16Interleaved says. */
export function interleaveBf16(packed: Int32Array, rows: number, cols: number): Int32Array {
  if (!bf16Interleaved(rows, cols)) return packed.slice();
  const out = new Int32Array(packed.length);
  const steps = cols / 8;
  for (let r = 0; r < rows; r++) {
    const block = (r & ~7) * (cols / 2) + (r & 7) * 4;
    for (let k = 0, src = r * (cols / 2), dst = block; k < steps; k++, src += 4, dst += 32) {
      for (let j = 0; j < 4; j++) out[dst + j] = packed[src + j];
    }
  }
  return out;
}

/** The inverse of interleaveBf16: row-major packed bf16 from the kernel layout. */
export function deinterleaveBf16(stored: Int32Array, rows: number, cols: number): Int32Array {
  if (!bf16Interleaved(rows, cols)) return stored.slice();
  const out = new Int32Array(stored.length);
  const steps = cols / 8;
  for (let r = 0; r < rows; r++) {
    const block = (r & ~7) * (cols / 2) + (r & 7) * 4;
    for (let k = 0, dst = r * (cols / 2), src = block; k < steps; k++, dst += 4, src += 32) {
      for (let j = 0; j < 4; j++) out[dst + j] = stored[src + j];
    }
  }
  return out;
}
