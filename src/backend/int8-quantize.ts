// The 8-bit quantizer loading runs: int8.wat's SIMD `i8QuantRows` on a small heap of its own (not a backend's),
// a few MB of rows at a time. The block format and the plain JS quantizer it matches byte for byte are
// src/tensor/int8.ts's.
import { INT8_WASM_BASE64 } from "./int8-wasm.js";
import { INT8_BLOCK_WORDS, int8Blocks, nonFinite } from "../tensor/int8.js";

/**
 * Quantizes row-major [rows, cols] — float32 values, or bf16 bits (a Uint16Array, widened exactly: no float32
 * copy) — into 8-bit blocks: scale d = max|v| / 127, q = round(v / d) (half away from zero) computed as
 * v · (1/d) in float32, as llama.cpp's q8_0 does, so |v - d·q| ≤ d/2. A block of zeros has scale 0. A
 * non-finite value is a WeightStorageError naming where (`what`). Runs int8.wat's SIMD `i8QuantRows` on a small
 * heap of its own, a few MB of rows at a time: `quantizeInt8Reference`'s bytes (loading a model with
 * weightStorage "int8" quantizes every weight through it; the plain JS `quantizeInt8Reference` took ~4× as long).
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
