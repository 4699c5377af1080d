// tfjs kernels over 8-bit block weights (src/tensor/int8.ts: int32 [m, ceil(n/32) · 9], [out, in]) held in the
// weight store (src/backend/weight-store.ts), passed as the `w` attribute. wasm: int8.wat on the weight in place,
// on every core (src/backend/pool.ts); it
// quantizes the activations per block of 32 too, as llama.cpp's q8_0 × q8_0 does. cpu: plain JS over the
// dequantized weights with float32 activations, the reference the wasm build is tested against (they differ
// by the activation rounding: at most Σ_blocks (activation scale / 2) · Σ|w| per output, see test/int8.test.ts).
import { tf } from "../tensor/tf.js";
import { INT8_BLOCK, INT8_BLOCK_WORDS, int8BlockWord, int8Blocks } from "../tensor/int8.js";
import { type CpuBackend, type WasmBackend } from "./heap.js";
import { kernelPool } from "./pool.js";
import { StoredWeight } from "./weight-store.js";
import { registerKernelConfigs } from "./register.js";
import { ShapeError } from "../errors.js";

export const INT8_MATMUL = "FusekitInt8MatMul"; // {x: f32 [rows, n]}, {w: stored int8 blocks [m, nb·9]} → f32 [rows, m]
export const INT8_GATHER = "FusekitInt8Gather"; // {ids: int32 [count]}, {w: stored int8 blocks [m, nb·9], n} → f32 [count, n]

export interface Int8Exports {
  i8QxBytes(rows: number, n: number): number;
  i8Quant(x: number, qx: number, rows: number, n: number): void;
  i8Gemm(x: number, qx: number, w: number, y: number, rows: number, n: number, m: number): void;
  i8GemmCols(qx: number, w: number, y: number, rows: number, n: number, m: number, o0: number, o1: number): void;
  i8Gather(w: number, ids: number, count: number, dst: number, n: number, m: number): void;
}

/** The stored 8-bit weight in a kernel's attributes (a ShapeError when it is not one). */
function storedOf(attrs: tf.NamedAttrMap | undefined, kernel: string): StoredWeight {
  const w = (attrs as unknown as { w?: unknown }).w;
  if (!(w instanceof StoredWeight) || w.kind !== "int8")
    throw new ShapeError(`${kernel}: the w attribute must be a stored 8-bit weight`);
  return w;
}

/** Checks shared by both builds; returns [rows, n, m]. */
function matmulDims(x: tf.TensorInfo, w: StoredWeight): [number, number, number] {
  const n = x.shape[1];
  if (x.shape.length !== 2 || x.dtype !== "float32" || w.shape[1] !== int8Blocks(n) * INT8_BLOCK_WORDS) {
    throw new ShapeError(
      `${INT8_MATMUL}: expected x f32 [rows, n] for w [${w.shape}] (int32 [m, ceil(n/32)·9]), got ${x.dtype} [${x.shape}]`,
    );
  }
  return [x.shape[0], n, w.shape[0]];
}

/** Checks the gather's inputs; returns [count, n, m]. */
function gatherDims(w: StoredWeight, ids: tf.TensorInfo, attrs: tf.NamedAttrMap): [number, number, number] {
  const n = attrs.n as number;
  if (w.shape[1] !== int8Blocks(n) * INT8_BLOCK_WORDS)
    throw new ShapeError(`${INT8_GATHER}: w [${w.shape}] does not hold rows of ${n} values`);
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
    kernelFunc: ({ inputs, backend, attrs }) => {
      const b = backend as unknown as WasmBackend;
      const { x } = inputs as { x: tf.TensorInfo };
      const w = storedOf(attrs, INT8_MATMUL);
      const [rows, n, m] = matmulDims(x, w);
      const out = b.makeOutput([rows, m], "float32"); // may grow the heap: offsets stay valid, views would not
      kernelPool().gemmInt8(b, x, w, out, rows, n, m); // every core, same bits
      return out;
    },
  },
  {
    kernelName: INT8_GATHER,
    backendName: "wasm",
    kernelFunc: ({ inputs, backend, attrs }) => {
      const b = backend as unknown as WasmBackend;
      const { ids } = inputs as { ids: tf.TensorInfo };
      const w = storedOf(attrs, INT8_GATHER);
      const [count, n, m] = gatherDims(w, ids, attrs!);
      const rows = gatherRows(w, b.typedArrayFromHeap(ids) as unknown as Int32Array, count, n, m);
      const out = b.makeOutput([count, n], "float32");
      b.typedArrayFromHeap(out).set(rows);
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

/** Rows `ids` of a stored 8-bit weight as float32 [count, n] (exact, as int8.wat's gather computes them). */
function gatherRows(w: StoredWeight, ids: Int32Array, count: number, n: number, m: number): Float32Array {
  checkIds(ids, m);
  const words = w.words();
  const out = new Float32Array(count * n);
  for (let c = 0; c < count; c++) dequantizeRow(words, ids[c], m, n, out.subarray(c * n, (c + 1) * n));
  return out;
}

const cpuKernels: tf.KernelConfig[] = [
  {
    kernelName: INT8_MATMUL,
    backendName: "cpu",
    kernelFunc: ({ inputs, backend, attrs }) => {
      const b = backend as unknown as CpuBackend;
      const { x } = inputs as { x: tf.TensorInfo };
      const w = storedOf(attrs, INT8_MATMUL);
      const [rows, n, m] = matmulDims(x, w);
      const xv = b.data.get(x.dataId).values as Float32Array;
      const wv = w.words();
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
      const { ids } = inputs as { ids: tf.TensorInfo };
      const w = storedOf(attrs, INT8_GATHER);
      const [count, n, m] = gatherDims(w, ids, attrs!);
      const rows = gatherRows(w, b.data.get(ids.dataId).values as Int32Array, count, n, m);
      return b.makeTensorInfo([count, n], "float32", rows);
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
