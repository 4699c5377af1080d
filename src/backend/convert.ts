// Checkpoint floats rounded to bf16 as encode() does it — F16 in place (as encode(decode(bytes, "F16"), "BF16")),
// F32 from a staging buffer: on the wasm heap by SIMD kernels (convert.wat); on a JS array (the cpu backend) F16
// through a table over the 65,536 half bit patterns, F32 by encode itself.
import { CONVERT_WASM_BASE64 } from "./convert-wasm.js";
import { heapModule, type WasmBackend } from "./heap.js";
import { decode, encode } from "../tensor/dtypes.js";

interface ConvertExports {
  f16ToBf16(offset: number, count: number): void;
  f32ToBf16(src: number, dst: number, count: number): void;
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

/** Rounds the `count` float32s at byte `src` of the wasm backend's heap to bf16 at byte `dst`. */
export function roundF32ToBf16InHeap(backend: WasmBackend, src: number, dst: number, count: number): void {
  convertExports(backend).f32ToBf16(src, dst, count);
}

/** Rounds the float32s in `src` (4-byte aligned) to bf16 into `dst` (half its length). */
export function roundF32ToBf16(src: Uint8Array, dst: Uint8Array): void {
  dst.set(encode(new Float32Array(src.buffer, src.byteOffset, src.byteLength / 4), "BF16"));
}
