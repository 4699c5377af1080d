// tfjs kernels over packed BF16 weights (int32 [m, n/2], two bf16 per element, checkpoint layout [out, in]).
// wasm: a small SIMD module (bf16.wat) that imports the tfjs heap and works on tensors in place.
// cpu: plain JS, the reference the wasm build is tested against.
import { tf } from "../tensor/tf.js";
import { BF16_WASM_BASE64 } from "./bf16-wasm.js";
import { unpackBf16 } from "../tensor/bf16.js";
import { heapModule, heapOffset, type CpuBackend, type WasmBackend } from "./heap.js";
import { poolFor } from "./pool.js";
import { TILED_MIN_ROWS, tiledGemm } from "./gemm.js";
import { registerKernelConfigs } from "./register.js";

export const BF16_MATMUL = "FusekitBf16MatMul"; // {x: f32 [rows, n], w: packed [m, n/2]} → f32 [rows, m]
export const BF16_UNPACK = "FusekitBf16Unpack"; // {w: packed [..., k]} → f32 [..., 2k]
export const BF16_UNPACK_T = "FusekitBf16UnpackT"; // {w: packed [m, n/2]}, {begin, size} → f32 [n, size] (rows begin.. of w, transposed)
export const BF16_PACK = "FusekitBf16Pack"; // {w: f32 [n, m]}, {round} → [packed [m, n/2], int32 [1] inexact count]

interface Bf16Exports {
  gemm(x: number, w: number, y: number, rows: number, n: number, m: number): void;
  pack(src: number, dst: number, n: number, m: number, round: number): number;
  unpack(src: number, dst: number, count: number): void;
  unpackT(src: number, dst: number, n: number, o0: number, k: number): void;
  readsum(p: number, blocks: number): number;
}

// The parts of tfjs-wasm's BackendWasm these kernels use (it is not exported with types).
/** The bf16 module instantiated on this backend's heap. */
const wasmExports = heapModule<Bf16Exports>(BF16_WASM_BASE64);

const ptr = heapOffset;
const size = (shape: readonly number[]) => tf.util.sizeFromShape([...shape]);

/** Checks shared by both builds; returns [rows, n, m]. */
function matmulDims(x: tf.TensorInfo, w: tf.TensorInfo): [number, number, number] {
  if (
    x.shape.length !== 2 ||
    w.shape.length !== 2 ||
    x.dtype !== "float32" ||
    w.dtype !== "int32" ||
    x.shape[1] !== 2 * w.shape[1]
  ) {
    throw new Error(
      `${BF16_MATMUL}: expected x f32 [rows, n] and w int32 [m, n/2], got ${x.dtype} [${x.shape}] and ${w.dtype} [${w.shape}]`,
    );
  }
  return [x.shape[0], x.shape[1], w.shape[0]];
}

function unpackTShape(w: tf.TensorInfo, attrs: tf.NamedAttrMap): [number, number, number] {
  const begin = attrs.begin as number;
  const k = attrs.size as number;
  if (begin < 0 || k < 0 || begin + k > w.shape[0])
    throw new Error(`${BF16_UNPACK_T}: rows [${begin}, ${begin + k}) out of [0, ${w.shape[0]})`);
  return [2 * w.shape[1], begin, k];
}

const wasmKernels: tf.KernelConfig[] = [
  {
    kernelName: BF16_MATMUL,
    backendName: "wasm",
    kernelFunc: ({ inputs, backend }) => {
      const b = backend as unknown as WasmBackend;
      const { x, w } = inputs as { x: tf.TensorInfo; w: tf.TensorInfo };
      const [rows, n, m] = matmulDims(x, w);
      if (n % 8) throw new Error(`${BF16_MATMUL}: the wasm kernel needs n % 8 == 0, got ${n}`);
      const out = b.makeOutput([rows, m], "float32"); // may grow the heap: offsets stay valid, views would not
      const pool = poolFor(rows * n * m); // every core, same bits
      if (rows >= TILED_MIN_ROWS) {
        if (!pool?.gemmTiled(b, x, w, out, rows, n, m)) tiledGemm(b, x, w, out, rows, n, m); // prefill
      } else if (!pool?.gemm(b, x, w, out, rows, n, m)) {
        wasmExports(b).gemm(ptr(b, x), ptr(b, w), ptr(b, out), rows, n, m);
      }
      return out;
    },
  },
  {
    kernelName: BF16_UNPACK,
    backendName: "wasm",
    kernelFunc: ({ inputs, backend }) => {
      const b = backend as unknown as WasmBackend;
      const { w } = inputs as { w: tf.TensorInfo };
      const out = b.makeOutput([...w.shape.slice(0, -1), 2 * w.shape[w.shape.length - 1]], "float32");
      wasmExports(b).unpack(ptr(b, w), ptr(b, out), 2 * size(w.shape));
      return out;
    },
  },
  {
    kernelName: BF16_UNPACK_T,
    backendName: "wasm",
    kernelFunc: ({ inputs, backend, attrs }) => {
      const b = backend as unknown as WasmBackend;
      const { w } = inputs as { w: tf.TensorInfo };
      const [n, begin, k] = unpackTShape(w, attrs!);
      const out = b.makeOutput([n, k], "float32");
      wasmExports(b).unpackT(ptr(b, w), ptr(b, out), n, begin, k);
      return out;
    },
  },
  {
    kernelName: BF16_PACK,
    backendName: "wasm",
    kernelFunc: ({ inputs, backend, attrs }) => {
      const b = backend as unknown as WasmBackend;
      const { w } = inputs as { w: tf.TensorInfo };
      const [n, m] = w.shape;
      const out = b.makeOutput([m, n / 2], "int32");
      const count = b.makeOutput([1], "int32");
      const inexact = wasmExports(b).pack(ptr(b, w), ptr(b, out), n, m, attrs!.round ? 1 : 0);
      new Int32Array(b.wasm.asm.memory.buffer, ptr(b, count), 1)[0] = inexact; // view taken after every allocation
      return [out, count];
    },
  },
];

const cpuKernels: tf.KernelConfig[] = [
  {
    kernelName: BF16_MATMUL,
    backendName: "cpu",
    kernelFunc: ({ inputs, backend }) => {
      const b = backend as unknown as CpuBackend;
      const { x, w } = inputs as { x: tf.TensorInfo; w: tf.TensorInfo };
      const [rows, n, m] = matmulDims(x, w);
      const xv = b.data.get(x.dataId).values as Float32Array;
      const wv = unpackBf16(b.data.get(w.dataId).values as Int32Array); // [m, n]
      const y = new Float32Array(rows * m);
      for (let r = 0; r < rows; r++) {
        for (let o = 0; o < m; o++) {
          let s = 0;
          for (let i = 0, xi = r * n, wi = o * n; i < n; i++) s += xv[xi + i] * wv[wi + i];
          y[r * m + o] = s;
        }
      }
      return b.makeTensorInfo([rows, m], "float32", y);
    },
  },
  {
    kernelName: BF16_UNPACK,
    backendName: "cpu",
    kernelFunc: ({ inputs, backend }) => {
      const b = backend as unknown as CpuBackend;
      const { w } = inputs as { w: tf.TensorInfo };
      const shape = [...w.shape.slice(0, -1), 2 * w.shape[w.shape.length - 1]];
      return b.makeTensorInfo(shape, "float32", unpackBf16(b.data.get(w.dataId).values as Int32Array));
    },
  },
  {
    kernelName: BF16_UNPACK_T,
    backendName: "cpu",
    kernelFunc: ({ inputs, backend, attrs }) => {
      const b = backend as unknown as CpuBackend;
      const { w } = inputs as { w: tf.TensorInfo };
      const [n, begin, k] = unpackTShape(w, attrs!);
      const all = unpackBf16(
        (b.data.get(w.dataId).values as Int32Array).subarray(begin * (n / 2), (begin + k) * (n / 2)),
      );
      const out = new Float32Array(n * k);
      for (let o = 0; o < k; o++) for (let i = 0; i < n; i++) out[i * k + o] = all[o * n + i];
      return b.makeTensorInfo([n, k], "float32", out);
    },
  },
  {
    kernelName: BF16_PACK,
    backendName: "cpu",
    kernelFunc: ({ inputs, backend, attrs }) => {
      const b = backend as unknown as CpuBackend;
      const { w } = inputs as { w: tf.TensorInfo };
      const [n, m] = w.shape;
      const src = new Uint32Array((b.data.get(w.dataId).values as Float32Array).slice().buffer);
      const packed = new Uint16Array(m * n);
      let inexact = 0;
      for (let o = 0; o < m; o++) {
        for (let i = 0; i < n; i++) {
          let bits = src[i * m + o];
          if (bits & 0xffff) {
            inexact++;
            if (attrs!.round) {
              const nan = (bits & 0x7f800000) === 0x7f800000 && (bits & 0x7fffff) !== 0;
              bits = nan ? bits | 0x400000 : (bits + 0x7fff + ((bits >>> 16) & 1)) >>> 0;
            }
          }
          packed[o * n + i] = bits >>> 16;
        }
      }
      return [
        b.makeTensorInfo([m, n / 2], "int32", new Int32Array(packed.buffer)),
        b.makeTensorInfo([1], "int32", Int32Array.of(inexact)),
      ];
    },
  },
];

/** The bf16 kernels, both backends (registered by src/backend/registry.ts). */
export const bf16Kernels: tf.KernelConfig[] = [...wasmKernels, ...cpuKernels];

/** True when the bf16 kernels exist for the active backend. */
export function bf16KernelsAvailable(backendName = tf.getBackend()): boolean {
  registerKernelConfigs(bf16Kernels);
  return tf.getKernel(BF16_MATMUL, backendName) !== undefined;
}

/** Sums a float32 wasm tensor with a plain SIMD streaming read (bench/machine.ts measures heap read bandwidth with it). */
export function wasmReadSum(t: tf.Tensor): number {
  const b = tf.backend() as unknown as WasmBackend;
  if (tf.getBackend() !== "wasm" || t.dtype !== "float32" || t.size % 16)
    throw new Error("wasmReadSum needs a float32 wasm tensor of 16k elements");
  return wasmExports(b).readsum(ptr(b, t), t.size / 16);
}
