// tfjs kernels over FP8 block weights kept as the checkpoint stores them (src/tensor/fp8.ts), held in the weight
// store (src/backend/weight-store.ts, kind "fp8": E4M3 codes [m, n] four a word, then float32 scales
// [ceil(m/br), ceil(n/bc)] for blocks of br × bc), passed as the `w` attribute. wasm: fp8.wat on the weight in
// place, on every core (src/backend/pool.ts); each weight is widened to fround(value · scale) and summed in
// bf16.wat's row-streaming order. cpu: plain JS over the same widened weights, the reference the wasm build is
// tested against. The gather (embedding rows) is plain JS on both: fround(value · scale) is one rounding either way.
import { tf } from "../tensor/tf.js";
import { fp8Table } from "../tensor/dtypes.js";
import { type CpuBackend, type WasmBackend } from "./heap.js";
import { kernelPool } from "./pool.js";
import { StoredWeight } from "./weight-store.js";
import { registerKernelConfigs } from "./register.js";
import { ShapeError } from "../errors.js";

export const FP8_MATMUL = "FusekitFp8MatMul"; // {x: f32 [rows, n]}, {w: stored fp8 [m, n/4]} → f32 [rows, m]
export const FP8_GATHER = "FusekitFp8Gather"; // {ids: int32 [count]}, {w: stored fp8 [m, n/4]} → f32 [count, n]

/** True when the wasm kernels take an [m, n] weight in blocks of [br, bc]: whole 16-code vectors, blocks too. */
export const fp8KernelShapeOk = (n: number, [, bc]: readonly number[]) => n % 16 === 0 && bc % 16 === 0;

/** The stored FP8 weight in a kernel's attributes (a ShapeError when it is not one); returns it with [m, n]. */
function storedOf(attrs: tf.NamedAttrMap | undefined, kernel: string): [StoredWeight, number, number] {
  const w = (attrs as unknown as { w?: unknown }).w;
  if (!(w instanceof StoredWeight) || w.kind !== "fp8" || !w.scales)
    throw new ShapeError(`${kernel}: the w attribute must be a stored FP8 weight`);
  return [w, w.shape[0], 4 * w.shape[1]];
}

/** Checks shared by both builds; returns [rows, n, m]. */
function matmulDims(x: tf.TensorInfo, n: number, m: number): [number, number, number] {
  if (x.shape.length !== 2 || x.dtype !== "float32" || x.shape[1] !== n)
    throw new ShapeError(`${FP8_MATMUL}: expected x f32 [rows, ${n}], got ${x.dtype} [${x.shape}]`);
  return [x.shape[0], n, m];
}

/** Row `o` of a stored FP8 weight widened to float32, fround(value · scale), into `dst`. */
function widenRow(w: StoredWeight, o: number, n: number, dst: Float32Array): void {
  const values = fp8Table("F8_E4M3");
  const codes = new Uint8Array(w.arena.memory.buffer, w.at + o * n, n);
  const scales = w.scaleValues();
  const [br, bc] = w.scales!.block;
  const srow = Math.floor(o / br) * w.scales!.shape[1];
  for (let i = 0; i < n; i++) dst[i] = Math.fround(values[codes[i]] * scales[srow + Math.floor(i / bc)]);
}

/** Rows `ids` of a stored FP8 weight widened to float32 [count, n]. */
function gatherRows(w: StoredWeight, ids: Int32Array, m: number, n: number): Float32Array {
  if (ids.length !== 0 && !ids.every((id) => id >= 0 && id < m))
    throw new ShapeError(`${FP8_GATHER}: index ${ids.find((id) => !(id >= 0 && id < m))} is out of range [0, ${m})`);
  const out = new Float32Array(ids.length * n);
  ids.forEach((o, c) => widenRow(w, o, n, out.subarray(c * n, (c + 1) * n)));
  return out;
}

function checkIds(ids: tf.TensorInfo): void {
  if (ids.shape.length !== 1 || ids.dtype !== "int32")
    throw new ShapeError(`${FP8_GATHER}: ids must be int32 [count], got ${ids.dtype} [${ids.shape}]`);
}

const wasmKernels: tf.KernelConfig[] = [
  {
    kernelName: FP8_MATMUL,
    backendName: "wasm",
    kernelFunc: ({ inputs, backend, attrs }) => {
      const b = backend as unknown as WasmBackend;
      const { x } = inputs as { x: tf.TensorInfo };
      const [w, m, wn] = storedOf(attrs, FP8_MATMUL);
      const [rows, n] = matmulDims(x, wn, m);
      if (!fp8KernelShapeOk(n, w.scales!.block))
        throw new ShapeError(`${FP8_MATMUL}: the wasm kernel needs n and the block width multiples of 16`);
      const out = b.makeOutput([rows, m], "float32"); // may grow the heap: offsets stay valid, views would not
      kernelPool().gemmFp8(b, x, w, out, rows, n, m); // every core, same bits
      return out;
    },
  },
  {
    kernelName: FP8_GATHER,
    backendName: "wasm",
    kernelFunc: ({ inputs, backend, attrs }) => {
      const b = backend as unknown as WasmBackend;
      const { ids } = inputs as { ids: tf.TensorInfo };
      const [w, m, n] = storedOf(attrs, FP8_GATHER);
      checkIds(ids);
      const rows = gatherRows(w, (b.typedArrayFromHeap(ids) as unknown as Int32Array).slice(), m, n);
      const out = b.makeOutput([ids.shape[0], n], "float32");
      b.typedArrayFromHeap(out).set(rows);
      return out;
    },
  },
];

const cpuKernels: tf.KernelConfig[] = [
  {
    kernelName: FP8_MATMUL,
    backendName: "cpu",
    kernelFunc: ({ inputs, backend, attrs }) => {
      const b = backend as unknown as CpuBackend;
      const { x } = inputs as { x: tf.TensorInfo };
      const [w, m, wn] = storedOf(attrs, FP8_MATMUL);
      const [rows, n] = matmulDims(x, wn, m);
      const xv = b.data.get(x.dataId).values as Float32Array;
      const row = new Float32Array(n);
      const y = new Float32Array(rows * m);
      for (let o = 0; o < m; o++) {
        widenRow(w, o, n, row);
        for (let r = 0; r < rows; r++) {
          let sum = 0;
          for (let i = 0, xi = r * n; i < n; i++) sum += xv[xi + i] * row[i];
          y[r * m + o] = sum;
        }
      }
      return b.makeTensorInfo([rows, m], "float32", y);
    },
  },
  {
    kernelName: FP8_GATHER,
    backendName: "cpu",
    kernelFunc: ({ inputs, backend, attrs }) => {
      const b = backend as unknown as CpuBackend;
      const { ids } = inputs as { ids: tf.TensorInfo };
      const [w, m, n] = storedOf(attrs, FP8_GATHER);
      checkIds(ids);
      const rows = gatherRows(w, b.data.get(ids.dataId).values as Int32Array, m, n);
      return b.makeTensorInfo([ids.shape[0], n], "float32", rows);
    },
  },
];

/** The FP8 kernels, both backends (registered by src/backend/registry.ts). */
export const fp8Kernels: tf.KernelConfig[] = [...wasmKernels, ...cpuKernels];

/** True when the FP8 kernels exist for the active backend. */
export function fp8KernelsAvailable(backendName = tf.getBackend()): boolean {
  registerKernelConfigs(fp8Kernels);
  return tf.getKernel(FP8_MATMUL, backendName) !== undefined;
}
