// F16 → bf16 rounding in place, as encode(decode(bytes, "F16"), "BF16") does it: on the wasm heap by a SIMD
// kernel (convert.wat), on a JS array (the cpu backend) through a table over the 65,536 half bit patterns.
import { CONVERT_WASM_BASE64 } from "./convert-wasm.js";
import { heapModule, type WasmBackend } from "./heap.js";
import { decode, encode } from "../tensor/dtypes.js";

interface ConvertExports {
  f16ToBf16(offset: number, count: number): void;
}

const convertExports = heapModule<ConvertExports>(CONVERT_WASM_BASE64);

/** Rounds the `count` F16 values at byte `offset` (even) of the wasm backend's heap to bf16, in place. */
export function roundF16ToBf16InHeap(backend: WasmBackend, offset: number, count: number): void {
  convertExports(backend).f16ToBf16(offset, count);
}

let table: Uint16Array | undefined;

/** Rounds the F16 values in `bytes` (2-byte aligned) to bf16, in place. */
export function roundF16ToBf16(bytes: Uint8Array): void {
  if (!table) {
    const halves = Uint16Array.from({ length: 65536 }, (_, h) => h);
    table = new Uint16Array(encode(decode(new Uint8Array(halves.buffer), "F16"), "BF16").buffer);
  }
  const values = new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2);
  for (let i = 0; i < values.length; i++) values[i] = table[values[i]];
}
