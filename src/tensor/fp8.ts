// FP8 block quantization (the layout of transformers' fine-grained FP8 and the Qwen3-*-FP8 checkpoints):
// E4M3 codes with one float scale per block of a [rows, cols] weight, w = code · scale_inv[block]. The layout
// as plain data (parameters keep it as their checkpoint layout, so it lives below nn/) and the maths, pure
// functions on host arrays; loading/fp8.ts reads and writes checkpoints with them.
import { decode, encode, fp8Table, type StorageDtype } from "./dtypes.js";
import { bf16Bits } from "./bf16.js";

/** The quantization_config this module reads and writes. */
export interface Fp8QuantizationConfig {
  quant_method: "fp8";
  weight_block_size: [number, number];
  activation_scheme?: "dynamic";
  [extra: string]: unknown;
}

/** A weight's FP8 checkpoint layout: its scales as stored (kept for a byte-identical save). */
export interface Fp8BlockLayout {
  config: Fp8QuantizationConfig;
  scaleDtype: StorageDtype;
  scaleShape: [number, number];
  /** The stored scale bytes and their float32 values. */
  scaleBytes: Uint8Array;
  scales: Float32Array;
}

/** Largest finite E4M3 value (torch.finfo(torch.float8_e4m3fn).max). */
export const FP8_E4M3_MAX = 448;

export const blocksOf = (shape: readonly number[], [b0, b1]: readonly number[]): [number, number] => [
  Math.ceil(shape[0] / b0),
  Math.ceil(shape[1] / b1),
];

/** Calls `fn(scale, start, end)` for each block-row segment [start, end) of a row-major [rows, cols] matrix. */
function forEachSegment(
  shape: readonly number[],
  scales: Float32Array,
  block: readonly number[],
  fn: (s: number, start: number, end: number) => void,
): void {
  const [rows, cols] = shape;
  const scaleCols = Math.ceil(cols / block[1]);
  for (let r = 0; r < rows; r++) {
    const scaleRow = Math.floor(r / block[0]) * scaleCols;
    for (let b = 0, c0 = 0; c0 < cols; b++, c0 += block[1])
      fn(scales[scaleRow + b], r * cols + c0, r * cols + Math.min(c0 + block[1], cols));
  }
}

/**
 * The bf16 bits of `fp8` (E4M3 bytes, [rows, cols]) times their block's scale (float32 product, then nearest even),
 * into `out`. A block has one scale, so each of its 256 codes is multiplied and rounded once, into a table its
 * values are looked up in: one pass, no float32 array. Four codes are read, and two results written, per access
 * where the rows allow it (2× faster).
 */
export function dequantizeFp8Into(
  fp8: Uint8Array,
  shape: readonly number[],
  scales: Float32Array,
  block: readonly number[],
  out: Uint16Array,
): void {
  const values = fp8Table("F8_E4M3");
  const [rows, cols] = shape;
  const product = new Float32Array(1); // rounded to float32 first, as storing it in a Float32Array does
  const productBits = new Uint32Array(product.buffer);
  const table = new Uint32Array(256);
  const [scaleRows, scaleCols] = blocksOf(shape, block);
  const words = cols % 4 === 0 && block[1] % 4 === 0 && fp8.byteOffset % 4 === 0 && out.byteOffset % 4 === 0;
  const in32 = words ? new Uint32Array(fp8.buffer, fp8.byteOffset, fp8.length >>> 2) : undefined;
  const out32 = words ? new Uint32Array(out.buffer, out.byteOffset, out.length >>> 1) : undefined;
  for (let br = 0; br < scaleRows; br++) {
    for (let bc = 0; bc < scaleCols; bc++) {
      const s = scales[br * scaleCols + bc];
      for (let code = 0; code < 256; code++) {
        product[0] = values[code] * s;
        table[code] = bf16Bits(productBits[0]);
      }
      const [c0, c1] = [bc * block[1], Math.min(cols, (bc + 1) * block[1])];
      for (let r = br * block[0]; r < Math.min(rows, (br + 1) * block[0]); r++) {
        if (in32 && out32) {
          for (let q = (r * cols + c0) >>> 2; q < (r * cols + c1) >>> 2; q++) {
            const w = in32[q]; // codes 4q .. 4q+3, little-endian
            out32[2 * q] = table[w & 255] | (table[(w >>> 8) & 255] << 16);
            out32[2 * q + 1] = table[(w >>> 16) & 255] | (table[w >>> 24] << 16);
          }
        } else for (let i = r * cols + c0; i < r * cols + c1; i++) out[i] = table[fp8[i]];
      }
    }
  }
}

/** float32 values of `fp8` (E4M3 bytes, [rows, cols]) times their block's scale, rounded to bf16. */
export function dequantizeFp8(
  fp8: Uint8Array,
  shape: readonly number[],
  scales: Float32Array,
  block: readonly number[],
): Float32Array {
  const bf16 = new Uint16Array(shape[0] * shape[1]);
  dequantizeFp8Into(fp8, shape, scales, block, bf16);
  const out = new Uint32Array(bf16.length);
  for (let i = 0; i < bf16.length; i++) out[i] = bf16[i] << 16;
  return new Float32Array(out.buffer);
}

/**
 * float32 values of `fp8` (E4M3 bytes, [rows, cols]): each fround(code · scale), the product before any rounding
 * to bf16 — what FP8 storage (nn/parameter.ts) and its kernels compute with.
 */
export function dequantizeFp8F32(
  fp8: Uint8Array,
  shape: readonly number[],
  scales: Float32Array,
  block: readonly number[],
): Float32Array {
  const values = fp8Table("F8_E4M3");
  const out = new Float32Array(shape[0] * shape[1]);
  forEachSegment(shape, scales, block, (s, start, end) => {
    for (let i = start; i < end; i++) out[i] = values[fp8[i]] * s; // stored as float32: rounded once
  });
  return out;
}

/** E4M3 codes of `values / scale` per block (saturated to ±448, rounded to nearest even). */
export function quantizeWithScales(
  values: Float32Array,
  shape: readonly number[],
  scales: Float32Array,
  block: readonly number[],
): Uint8Array {
  const scaled = new Float32Array(values.length);
  forEachSegment(shape, scales, block, (s, start, end) => {
    for (let i = start; i < end; i++) scaled[i] = Math.max(-FP8_E4M3_MAX, Math.min(FP8_E4M3_MAX, values[i] / s));
  });
  return encode(scaled, "F8_E4M3");
}

/**
 * Fresh per-block scales, as transformers' Fp8Quantize computes them: scale = 448 / max|w| (1 for an all-zero
 * block), stored as its inverse. Returns the stored inverses, rounded through `dtype`.
 */
export function freshScales(
  values: Float32Array,
  shape: readonly number[],
  block: readonly number[],
  dtype: StorageDtype,
): Float32Array {
  const [rows, cols] = shape;
  const [scaleRows, scaleCols] = blocksOf(shape, block);
  const amax = new Float32Array(scaleRows * scaleCols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const i = Math.floor(r / block[0]) * scaleCols + Math.floor(c / block[1]);
      amax[i] = Math.max(amax[i], Math.abs(values[r * cols + c]));
    }
  }
  const inv = amax.map((m) => (m > 0 ? 1 / Math.fround(FP8_E4M3_MAX / m) : 1));
  return decode(encode(inv, dtype), dtype) as Float32Array;
}

/**
 * The FP8 bytes and scale bytes that store `values` in `layout`. With the recorded scales when they give
 * back exactly `values` — as the bf16 expansion or as the float32 one (the weight is as loaded: the save is
 * byte-identical) — else with fresh scales.
 */
export function fp8Encode(
  values: Float32Array,
  shape: readonly number[],
  layout: Fp8BlockLayout,
): { weight: Uint8Array; scaleBytes: Uint8Array } {
  const block = layout.config.weight_block_size;
  const weight = quantizeWithScales(values, shape, layout.scales, block);
  const given = Buffer.from(values.buffer, values.byteOffset, values.byteLength);
  const same = (back: Float32Array) => Buffer.from(back.buffer).equals(given);
  if (
    same(dequantizeFp8(weight, shape, layout.scales, block)) ||
    same(dequantizeFp8F32(weight, shape, layout.scales, block))
  )
    return { weight, scaleBytes: layout.scaleBytes };
  const scales = freshScales(values, shape, block, layout.scaleDtype);
  return { weight: quantizeWithScales(values, shape, scales, block), scaleBytes: encode(scales, layout.scaleDtype) };
}
