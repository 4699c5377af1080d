/**
 * Storage dtypes of checkpoints and their conversion to and from the float32 / int32 that tfjs computes in.
 * BF16 is the top half of a float32, so decoding is exact; encoding rounds to nearest-even, which is exact
 * for every value that came from a BF16 file (its low half is zero).
 */
export const STORAGE_DTYPES = ["F32", "F16", "BF16", "I32", "I64", "F64", "I8", "U8", "I16", "U16", "BOOL"] as const;
export type StorageDtype = (typeof STORAGE_DTYPES)[number];

export const DTYPE_BYTES: Record<StorageDtype, number> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, U16: 2, I8: 1, U8: 1, BOOL: 1,
};

/** The dtypes fusekit can load into a tensor (float ones become float32, integer ones int32). */
export const LOADABLE_DTYPES: ReadonlySet<StorageDtype> = new Set(["F32", "F16", "BF16", "I32", "I64"]);

export function isStorageDtype(s: string): s is StorageDtype {
  return (STORAGE_DTYPES as readonly string[]).includes(s);
}

export function isFloatDtype(d: StorageDtype): boolean {
  return d === "F32" || d === "F16" || d === "BF16" || d === "F64";
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

/**
 * Decodes `bytes` (little-endian, as safetensors stores them) of `dtype` into a new typed array:
 * Float32Array for float dtypes, Int32Array for integer ones (I64 must fit in 32 bits).
 * Returns undefined for an I64 value out of int32 range so the caller can name the tensor.
 */
export function decode(bytes: Uint8Array, dtype: StorageDtype): Float32Array | Int32Array {
  const n = bytes.byteLength / DTYPE_BYTES[dtype];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
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
    case "I32": {
      const out = new Int32Array(n);
      new Uint8Array(out.buffer).set(bytes);
      return out;
    }
    case "I64": {
      const out = new Int32Array(n);
      for (let i = 0; i < n; i++) {
        const v = view.getBigInt64(8 * i, true);
        if (v > 2147483647n || v < -2147483648n) throw new RangeError(`I64 value ${v} at element ${i} does not fit in int32`);
        out[i] = Number(v);
      }
      return out;
    }
    default:
      throw new RangeError(`dtype ${dtype} cannot be loaded into a tensor`);
  }
}

/** Encodes float32 / int32 values as `dtype` bytes (little-endian). */
export function encode(values: Float32Array | Int32Array, dtype: StorageDtype): Uint8Array {
  const n = values.length;
  const out = new Uint8Array(n * DTYPE_BYTES[dtype]);
  const view = new DataView(out.buffer);
  switch (dtype) {
    case "F32":
    case "I32":
      out.set(new Uint8Array(values.buffer, values.byteOffset, values.byteLength));
      return out;
    case "BF16": {
      const f = values instanceof Float32Array ? values : Float32Array.from(values);
      const bits = new Uint32Array(f.buffer, f.byteOffset, n);
      for (let i = 0; i < n; i++) {
        const x = bits[i];
        const isNaN = (x & 0x7f800000) === 0x7f800000 && (x & 0x7fffff) !== 0;
        // Round to nearest even on the dropped 16 bits; keep NaN a NaN.
        const r = isNaN ? (x >>> 16) | 0x40 : (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
        view.setUint16(2 * i, r & 0xffff, true);
      }
      return out;
    }
    case "F16":
      for (let i = 0; i < n; i++) view.setUint16(2 * i, floatToHalf(values[i]), true);
      return out;
    case "F64":
      for (let i = 0; i < n; i++) view.setFloat64(8 * i, values[i], true);
      return out;
    case "I64":
      for (let i = 0; i < n; i++) view.setBigInt64(8 * i, BigInt(Math.trunc(values[i])), true);
      return out;
    default:
      throw new RangeError(`cannot encode dtype ${dtype}`);
  }
}
