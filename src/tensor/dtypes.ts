/**
 * Storage dtypes of checkpoints and their conversion to and from the float32 / int32 that tfjs computes in.
 * BF16 is the top half of a float32, so decoding is exact; encoding rounds to nearest-even, which is exact
 * for every value that came from a BF16 file (its low half is zero).
 */
import { tf } from "./tf.js";
import { bf16Bits } from "./bf16.js";

/**
 * Every dtype a safetensors file may hold, in the order of the reference implementation's `Dtype` enum
 * (safetensors/src/tensor.rs). The order matters: its writer lays tensors out by this order, descending.
 */
export const STORAGE_DTYPES = [
  "BOOL",
  "F4",
  "F6_E2M3",
  "F6_E3M2",
  "U8",
  "I8",
  "F8_E5M2",
  "F8_E4M3",
  "F8_E8M0",
  "F8_E4M3FNUZ",
  "F8_E5M2FNUZ",
  "I16",
  "U16",
  "F16",
  "BF16",
  "I32",
  "U32",
  "F32",
  "C64",
  "F64",
  "I64",
  "U64",
] as const;
export type StorageDtype = (typeof STORAGE_DTYPES)[number];

/** Bits per element (F4 and F6 pack several elements per byte). */
export const DTYPE_BITS: Record<StorageDtype, number> = {
  BOOL: 8,
  F4: 4,
  F6_E2M3: 6,
  F6_E3M2: 6,
  U8: 8,
  I8: 8,
  F8_E5M2: 8,
  F8_E4M3: 8,
  F8_E8M0: 8,
  F8_E4M3FNUZ: 8,
  F8_E5M2FNUZ: 8,
  I16: 16,
  U16: 16,
  F16: 16,
  BF16: 16,
  I32: 32,
  U32: 32,
  F32: 32,
  C64: 64,
  F64: 64,
  I64: 64,
  U64: 64,
};

/** Bytes per element (fractional for the sub-byte dtypes). */
export const DTYPE_BYTES = Object.fromEntries(STORAGE_DTYPES.map((d) => [d, DTYPE_BITS[d] / 8])) as Record<
  StorageDtype,
  number
>;

/** Bytes a tensor of `shape` takes, or undefined when its bits do not fill whole bytes (F4/F6 of odd sizes). */
export function tensorByteLength(dtype: StorageDtype, shape: readonly number[]): number | undefined {
  const bits = tf.util.sizeFromShape([...shape]) * DTYPE_BITS[dtype];
  return Number.isSafeInteger(bits) && bits % 8 === 0 ? bits / 8 : undefined;
}

/** Dtypes fusekit only carries as raw bytes (no decoder: sub-byte packings and complex numbers). */
export const RAW_ONLY_DTYPES: ReadonlySet<StorageDtype> = new Set(["F4", "F6_E2M3", "F6_E3M2", "C64"]);

const INT_RANGE: Partial<Record<StorageDtype, [number, number]>> = {
  BOOL: [0, 1],
  U8: [0, 255],
  I8: [-128, 127],
  I16: [-32768, 32767],
  U16: [0, 65535],
  I32: [-(2 ** 31), 2 ** 31 - 1],
  // The 64-bit bounds are the largest doubles inside the range (2^63 itself would wrap).
  U32: [0, 2 ** 32 - 1],
  I64: [-(2 ** 63), 2 ** 63 - 1024],
  U64: [0, 2 ** 64 - 2048],
};

/** The dtypes fusekit can decode into a tensor (float ones become float32, integer ones int32). */
export const LOADABLE_DTYPES: ReadonlySet<StorageDtype> = new Set(
  STORAGE_DTYPES.filter((d) => !RAW_ONLY_DTYPES.has(d)),
);

export function isStorageDtype(s: string): s is StorageDtype {
  return (STORAGE_DTYPES as readonly string[]).includes(s);
}

export function isFloatDtype(d: StorageDtype): boolean {
  return d.startsWith("F") || d === "BF16" || d === "C64";
}

/** Integer dtypes (BOOL included): they decode to int32. */
export function isIntegerDtype(d: StorageDtype): boolean {
  return INT_RANGE[d] !== undefined;
}

// F16 decoding table over the 65,536 half-precision bit patterns: built once, exact.
let f16Table: Float32Array | undefined;
function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}
function f16Lookup(): Float32Array {
  if (!f16Table) {
    f16Table = new Float32Array(65536);
    for (let i = 0; i < 65536; i++) f16Table[i] = halfToFloat(i);
  }
  return f16Table;
}

const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

/** float32 → IEEE half, round to nearest even (handles subnormals, overflow to ±Inf, NaN). */
export function floatToHalf(v: number): number {
  scratchF32[0] = v;
  const x = scratchU32[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    let r = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    if (rem > half || (rem === half && r & 1)) r++;
    return sign | r;
  }
  let r = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && r & 1)) r++;
  return sign | r;
}

// ---- 8-bit floats -------------------------------------------------------------------------------------------
// No maintained npm package decodes the FP8 formats, so they are written here from their definitions:
// E4M3 ("fn": no infinities, S.1111.111 is NaN) and E5M2 (IEEE-like) from the OCP FP8 spec, the "fnuz"
// variants (no negative zero, 0x80 is NaN, bias one higher) from Graphcore's proposal, E8M0 = 2^(bits−127).

type Fp8Dtype = "F8_E4M3" | "F8_E5M2" | "F8_E4M3FNUZ" | "F8_E5M2FNUZ" | "F8_E8M0";
const FP8: Record<Fp8Dtype, { exp: number; mant: number; bias: number; kind: "ieee" | "fn" | "fnuz" | "e8m0" }> = {
  F8_E4M3: { exp: 4, mant: 3, bias: 7, kind: "fn" },
  F8_E5M2: { exp: 5, mant: 2, bias: 15, kind: "ieee" },
  F8_E4M3FNUZ: { exp: 4, mant: 3, bias: 8, kind: "fnuz" },
  F8_E5M2FNUZ: { exp: 5, mant: 2, bias: 16, kind: "fnuz" },
  F8_E8M0: { exp: 8, mant: 0, bias: 127, kind: "e8m0" },
};
const isFp8 = (d: StorageDtype): d is Fp8Dtype => d in FP8;

function fp8Value(dtype: Fp8Dtype, code: number): number {
  const { exp, mant, bias, kind } = FP8[dtype];
  if (kind === "e8m0") return code === 0xff ? NaN : 2 ** (code - bias);
  if (kind === "fnuz" && code === 0x80) return NaN;
  const sign = code & 0x80 ? -1 : 1;
  const e = (code >> mant) & ((1 << exp) - 1);
  const m = code & ((1 << mant) - 1);
  const eMax = (1 << exp) - 1;
  if (kind === "ieee" && e === eMax) return m ? NaN : sign * Infinity;
  if (kind === "fn" && e === eMax && m === (1 << mant) - 1) return NaN;
  if (e === 0) return sign * (m / (1 << mant)) * 2 ** (1 - bias);
  return sign * (1 + m / (1 << mant)) * 2 ** (e - bias);
}

interface Fp8Codec {
  decode: Float32Array;
  /** Non-negative finite codes by increasing value, then the code a value rounds to past the largest one. */
  ladder: { value: number; code: number }[];
  nan: number;
}
const fp8Codecs = new Map<Fp8Dtype, Fp8Codec>();
function fp8Codec(dtype: Fp8Dtype): Fp8Codec {
  let c = fp8Codecs.get(dtype);
  if (c) return c;
  const decode = new Float32Array(256);
  for (let i = 0; i < 256; i++) decode[i] = fp8Value(dtype, i);
  const top = FP8[dtype].kind === "e8m0" ? 256 : 128;
  const ladder = [...Array(top).keys()]
    .filter((i) => Number.isFinite(decode[i]))
    .map((code) => ({ value: decode[code], code }));
  const { kind } = FP8[dtype];
  const last = ladder[ladder.length - 1];
  // Past the largest finite value a value rounds (to nearest even) towards the next step up, which is the
  // infinity code for E5M2 and NaN for the others — as torch's float→float8 casts do.
  const nan = kind === "fnuz" ? 0x80 : kind === "e8m0" ? 0xff : 0x7f;
  const next = kind === "e8m0" ? last.value * 2 : last.value + (last.value - ladder[ladder.length - 2].value);
  ladder.push({ value: next, code: kind === "ieee" ? 0x7c : nan });
  c = { decode, ladder, nan };
  fp8Codecs.set(dtype, c);
  return c;
}

/** One value → its 8-bit float code, round to nearest even (ties go to the even code). */
export function floatToFp8(v: number, dtype: StorageDtype): number {
  if (!isFp8(dtype)) throw new RangeError(`${dtype} is not an 8-bit float dtype`);
  const { ladder, nan } = fp8Codec(dtype);
  const { kind } = FP8[dtype];
  if (Number.isNaN(v)) return nan;
  if (kind === "e8m0" && v <= 0) throw new RangeError(`F8_E8M0 holds only positive powers of two, got ${v}`);
  const negative = v < 0 || Object.is(v, -0);
  const a = Math.abs(v);
  const top = ladder[ladder.length - 1];
  let code: number;
  if (a >= top.value) code = top.code;
  else {
    let lo = 0;
    let hi = ladder.length - 1; // ladder[lo].value <= a < ladder[hi].value
    if (a < ladder[0].value) code = kind === "e8m0" ? ladder[0].code : 0;
    else {
      while (hi - lo > 1) {
        const mid = (lo + hi) >> 1;
        if (ladder[mid].value <= a) lo = mid;
        else hi = mid;
      }
      const dLo = a - ladder[lo].value;
      const dHi = ladder[hi].value - a;
      code = dLo < dHi || (dLo === dHi && (ladder[lo].code & 1) === 0) ? ladder[lo].code : ladder[hi].code;
    }
  }
  if (!negative || kind === "e8m0") return code;
  if (kind === "fnuz") return code === 0 || code === nan ? code : code | 0x80; // no negative zero
  return code | 0x80;
}

/**
 * E4M3 code of a float32 given by its bits — the same result as `floatToFp8(x, "F8_E4M3")`, computed from the
 * bits (about 50× faster than the table search; quantizing a real model's weights calls it ~10^9 times).
 */
export function e4m3FromFloat32Bits(x: number): number {
  const sign = (x >>> 24) & 0x80;
  const a = x & 0x7fffffff;
  if (a >= 0x43f00000) return sign | 0x7f; // ≥ 480 (incl. Inf, NaN): NaN, as torch's cast
  if (a < 0x3c800000) {
    // below 2^-6, the smallest normal: multiples of 2^-9, round half to even
    scratchU32[0] = a;
    const q = scratchF32[0] * 512;
    let r = Math.floor(q);
    const d = q - r;
    if (d > 0.5 || (d === 0.5 && r & 1)) r++;
    return sign | r;
  }
  let code = ((((a >>> 23) - 120) << 3) | ((a >>> 20) & 7)) >>> 0;
  const rem = a & 0xfffff;
  if (rem > 0x80000 || (rem === 0x80000 && code & 1)) code++;
  return sign | code; // 464 < |x| < 480 carries into 0x7f: NaN, as torch
}

/** The float32 value of every code of an 8-bit float dtype (index = the byte). */
export function fp8Table(dtype: StorageDtype): Float32Array {
  if (!isFp8(dtype)) throw new RangeError(`${dtype} is not an 8-bit float dtype`);
  return fp8Codec(dtype).decode;
}

// ---- decode / encode -----------------------------------------------------------------------------------------

function decodeInt(view: DataView, dtype: StorageDtype, n: number): Int32Array {
  const out = new Int32Array(n);
  if (dtype === "I32") {
    new Uint8Array(out.buffer).set(new Uint8Array(view.buffer, view.byteOffset, view.byteLength));
    return out;
  }
  const size = DTYPE_BYTES[dtype];
  for (let i = 0; i < n; i++) {
    let v: number | bigint;
    const at = i * size;
    switch (dtype) {
      case "BOOL":
      case "U8":
        v = view.getUint8(at);
        break;
      case "I8":
        v = view.getInt8(at);
        break;
      case "I16":
        v = view.getInt16(at, true);
        break;
      case "U16":
        v = view.getUint16(at, true);
        break;
      case "U32":
        v = view.getUint32(at, true);
        break;
      case "I64":
        v = view.getBigInt64(at, true);
        break;
      default:
        v = view.getBigUint64(at, true);
    }
    if (dtype === "BOOL" && v !== 0 && v !== 1)
      throw new RangeError(`BOOL byte ${v} at element ${i} is neither 0 nor 1`);
    if (v > 2147483647 || v < -2147483648)
      throw new RangeError(`${dtype} value ${v} at element ${i} does not fit in int32`);
    out[i] = Number(v);
  }
  return out;
}

/**
 * Decodes `bytes` (little-endian, as safetensors stores them) of `dtype` into a new typed array:
 * Float32Array for float dtypes (F64 rounds to the nearest float32, as a float32 model holds it), Int32Array
 * for integer ones and BOOL (values must fit in int32). Throws RangeError for a value that does not fit and
 * for the raw-only dtypes (RAW_ONLY_DTYPES).
 */
export function decode(bytes: Uint8Array, dtype: StorageDtype): Float32Array | Int32Array {
  const n = bytes.byteLength / DTYPE_BYTES[dtype];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (isIntegerDtype(dtype)) return decodeInt(view, dtype, n);
  if (isFp8(dtype)) {
    const table = fp8Codec(dtype).decode;
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = table[bytes[i]];
    return out;
  }
  switch (dtype) {
    case "F32": {
      const out = new Float32Array(n);
      new Uint8Array(out.buffer).set(bytes);
      return out;
    }
    case "BF16": {
      const out = new Float32Array(n);
      const bits = new Uint32Array(out.buffer);
      for (let i = 0; i < n; i++) bits[i] = view.getUint16(2 * i, true) << 16;
      return out;
    }
    case "F16": {
      const table = f16Lookup();
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = table[view.getUint16(2 * i, true)];
      return out;
    }
    case "F64": {
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = view.getFloat64(8 * i, true);
      return out;
    }
    default:
      throw new RangeError(`dtype ${dtype} has no decoder in fusekit (it is kept as raw bytes only)`);
  }
}

function encodeInt(values: Float32Array | Int32Array, dtype: StorageDtype, view: DataView): void {
  const [min, max] = INT_RANGE[dtype]!;
  const size = DTYPE_BYTES[dtype];
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (!Number.isInteger(v) || v < min || v > max)
      throw new RangeError(`value ${v} at element ${i} does not fit in ${dtype}`);
    const at = i * size;
    switch (dtype) {
      case "BOOL":
      case "U8":
        view.setUint8(at, v);
        break;
      case "I8":
        view.setInt8(at, v);
        break;
      case "I16":
        view.setInt16(at, v, true);
        break;
      case "U16":
        view.setUint16(at, v, true);
        break;
      case "I32":
        view.setInt32(at, v, true);
        break;
      case "U32":
        view.setUint32(at, v, true);
        break;
      case "I64":
        view.setBigInt64(at, BigInt(v), true);
        break;
      default:
        view.setBigUint64(at, BigInt(v), true);
    }
  }
}

/** Encodes float32 / int32 values as `dtype` bytes (little-endian); integers out of the dtype's range throw. */
export function encode(values: Float32Array | Int32Array, dtype: StorageDtype): Uint8Array {
  const n = values.length;
  const out = new Uint8Array(n * DTYPE_BYTES[dtype]);
  const view = new DataView(out.buffer);
  if (isIntegerDtype(dtype)) {
    encodeInt(values, dtype, view);
    return out;
  }
  if (dtype === "F8_E4M3") {
    const f = values instanceof Float32Array ? values : Float32Array.from(values);
    const bits = new Uint32Array(f.buffer, f.byteOffset, n);
    for (let i = 0; i < n; i++) out[i] = e4m3FromFloat32Bits(bits[i]);
    return out;
  }
  if (isFp8(dtype)) {
    for (let i = 0; i < n; i++) out[i] = floatToFp8(values[i], dtype);
    return out;
  }
  switch (dtype) {
    case "F32": {
      const f = values instanceof Float32Array ? values : Float32Array.from(values);
      out.set(new Uint8Array(f.buffer, f.byteOffset, f.byteLength));
      return out;
    }
    case "BF16": {
      const f = values instanceof Float32Array ? values : Float32Array.from(values);
      const bits = new Uint32Array(f.buffer, f.byteOffset, n);
      for (let i = 0; i < n; i++) view.setUint16(2 * i, bf16Bits(bits[i]), true);
      return out;
    }
    case "F16":
      for (let i = 0; i < n; i++) view.setUint16(2 * i, floatToHalf(values[i]), true);
      return out;
    case "F64":
      for (let i = 0; i < n; i++) view.setFloat64(8 * i, values[i], true);
      return out;
    default:
      throw new RangeError(`cannot encode dtype ${dtype} (fusekit keeps it as raw bytes only)`);
  }
}
