// tfjs kernels over 8-bit block weights (src/tensor/int8.ts: int32 [m, ceil(n/32) · 9], checkpoint layout
// [out, in]). wasm: int8.wat, in place on the tfjs heap (and on every core through the kernel pool); it
// quantizes the activations per block of 32 too, as llama.cpp's q8_0 × q8_0 does. cpu: plain JS over the
// dequantized weights with float32 activations, the reference the wasm build is tested against (they differ
// by the activation rounding: at most Σ_blocks (activation scale / 2) · Σ|w| per output, see test/int8.test.ts).
import { tf } from "../tensor/tf.js";
import { INT8_WASM_BASE64 } from "./int8-wasm.js";
import { INT8_BLOCK, INT8_BLOCK_WORDS, int8BlockWord, int8Blocks } from "../tensor/int8.js";
import { heapModule, heapOffset, type CpuBackend, type WasmBackend } from "./heap.js";
import { poolFor } from "./pool.js";
import { registerKernelConfigs } from "./register.js";
import { ShapeError } from "../errors.js";

export const INT8_MATMUL = "FusekitInt8MatMul"; // {x: f32 [rows, n], w: int8 blocks [m, nb·9]} → f32 [rows, m]
export const INT8_GATHER = "FusekitInt8Gather"; // {w: int8 blocks [m, nb·9], ids: int32 [count]}, {n} → f32 [count, n]

export interface Int8Exports {
  i8QxBytes(rows: number, n: number): number;
  i8Quant(x: number, qx: number, rows: number, n: number): void;
  i8Gemm(x: number, qx: number, w: number, y: number, rows: number, n: number, m: number): void;
  i8GemmCols(qx: number, w: number, y: number, rows: number, n: number, m: number, o0: number, o1: number): void;
  i8Gather(w: number, ids: number, count: number, dst: number, n: number, m: number): void;
}

const wasmExports = heapModule<Int8Exports>(INT8_WASM_BASE64);
const ptr = heapOffset;

/** Checks shared by both builds; returns [rows, n, m]. */
function matmulDims(x: tf.TensorInfo, w: tf.TensorInfo): [number, number, number] {
  const n = x.shape[1];
  if (
    x.shape.length !== 2 ||
    w.shape.length !== 2 ||
    x.dtype !== "float32" ||
    w.dtype !== "int32" ||
    w.shape[1] !== int8Blocks(n) * INT8_BLOCK_WORDS
  ) {
    throw new ShapeError(
      `${INT8_MATMUL}: expected x f32 [rows, n] and w int32 [m, ceil(n/32)·9], got ${x.dtype} [${x.shape}] and ${w.dtype} [${w.shape}]`,
    );
  }
  return [x.shape[0], n, w.shape[0]];
}

/** Checks the gather's inputs; returns [count, n, m]. */
function gatherDims(w: tf.TensorInfo, ids: tf.TensorInfo, attrs: tf.NamedAttrMap): [number, number, number] {
  const n = attrs.n as number;
  if (w.shape.length !== 2 || w.dtype !== "int32" || w.shape[1] !== int8Blocks(n) * INT8_BLOCK_WORDS)
    throw new ShapeError(`${INT8_GATHER}: w int32 [${w.shape}] does not hold rows of ${n} values`);
  if (ids.shape.length !== 1 || ids.dtype !== "int32")
    throw new ShapeError(`${INT8_GATHER}: ids must be int32 [count], got ${ids.dtype} [${ids.shape}]`);
  return [ids.shape[0], n, w.shape[0]];
}

function checkIds(ids: Int32Array, m: number): void {
  for (const id of ids)
    if (!(id >= 0 && id < m)) throw new ShapeError(`${INT8_GATHER}: index ${id} is out of range [0, ${m})`);
}

const wasmKernels: tf.KernelConfig[] = [
  {
    kernelName: INT8_MATMUL,
    backendName: "wasm",
    kernelFunc: ({ inputs, backend }) => {
      const b = backend as unknown as WasmBackend;
      const { x, w } = inputs as { x: tf.TensorInfo; w: tf.TensorInfo };
      const [rows, n, m] = matmulDims(x, w);
      const out = b.makeOutput([rows, m], "float32"); // may grow the heap: offsets stay valid, views would not
      const pool = poolFor(rows * n * m); // every core, same bits
      if (pool?.gemmInt8(b, x, w, out, rows, n, m)) return out;
      const ex = wasmExports(b);
      const qx = b.makeOutput([Math.ceil(ex.i8QxBytes(rows, n) / 4)], "int32");
      try {
        ex.i8Gemm(ptr(b, x), ptr(b, qx), ptr(b, w), ptr(b, out), rows, n, m);
      } finally {
        b.disposeData(qx.dataId);
      }
      return out;
    },
  },
  {
    kernelName: INT8_GATHER,
    backendName: "wasm",
    kernelFunc: ({ inputs, backend, attrs }) => {
      const b = backend as unknown as WasmBackend;
      const { w, ids } = inputs as { w: tf.TensorInfo; ids: tf.TensorInfo };
      const [count, n, m] = gatherDims(w, ids, attrs!);
      checkIds(new Int32Array(b.wasm.asm.memory.buffer, ptr(b, ids), count), m);
      const out = b.makeOutput([count, n], "float32");
      wasmExports(b).i8Gather(ptr(b, w), ptr(b, ids), count, ptr(b, out), n, m);
      return out;
    },
  },
];

/** Row `o` of 8-bit blocks as float32 (d · q, exact), into `dst`. */
function dequantizeRow(words: Int32Array, o: number, m: number, n: number, dst: Float32Array): void {
  const nb = int8Blocks(n);
  const f32 = new Float32Array(words.buffer, words.byteOffset, words.length);
  const bytes = new Int8Array(words.buffer, words.byteOffset, words.byteLength);
  for (let k = 0; k < nb; k++) {
    const word = int8BlockWord(o, k, m, nb);
    const d = f32[word];
    const end = Math.min(INT8_BLOCK, n - k * INT8_BLOCK);
    for (let i = 0; i < end; i++) dst[k * INT8_BLOCK + i] = Math.fround(d * bytes[4 * word + 4 + i]);
  }
}

const cpuKernels: tf.KernelConfig[] = [
  {
    kernelName: INT8_MATMUL,
    backendName: "cpu",
    kernelFunc: ({ inputs, backend }) => {
      const b = backend as unknown as CpuBackend;
      const { x, w } = inputs as { x: tf.TensorInfo; w: tf.TensorInfo };
      const [rows, n, m] = matmulDims(x, w);
      const xv = b.data.get(x.dataId).values as Float32Array;
      const wv = b.data.get(w.dataId).values as Int32Array;
      const row = new Float32Array(n);
      const y = new Float32Array(rows * m);
      for (let o = 0; o < m; o++) {
        dequantizeRow(wv, o, m, n, row);
        for (let r = 0; r < rows; r++) {
          let s = 0;
          for (let i = 0, xi = r * n; i < n; i++) s += xv[xi + i] * row[i];
          y[r * m + o] = s;
        }
      }
      return b.makeTensorInfo([rows, m], "float32", y);
    },
  },
  {
    kernelName: INT8_GATHER,
    backendName: "cpu",
    kernelFunc: ({ inputs, backend, attrs }) => {
      const b = backend as unknown as CpuBackend;
      const { w, ids } = inputs as { w: tf.TensorInfo; ids: tf.TensorInfo };
      const [count, n, m] = gatherDims(w, ids, attrs!);
      const idv = b.data.get(ids.dataId).values as Int32Array;
      checkIds(idv, m);
      const wv = b.data.get(w.dataId).values as Int32Array;
      const out = new Float32Array(count * n);
      for (let c = 0; c < count; c++) dequantizeRow(wv, idv[c], m, n, out.subarray(c * n, (c + 1) * n));
      return b.makeTensorInfo([count, n], "float32", out);
    },
  },
];

/** The 8-bit kernels, both backends (registered by src/backend/registry.ts). */
export const int8Kernels: tf.KernelConfig[] = [...wasmKernels, ...cpuKernels];

/** True when the 8-bit kernels exist for the active backend. */
export function int8KernelsAvailable(backendName = tf.getBackend()): boolean {
  registerKernelConfigs(int8Kernels);
  return tf.getKernel(INT8_MATMUL, backendName) !== undefined;
}
