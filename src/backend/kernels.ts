// tfjs kernels over packed BF16 weights (int32 [m, n/2], two bf16 per element, [out, in]) held in the weight
// store (src/backend/weight-store.ts) in the kernel layout, passed as the `w` attribute.
// wasm: the arena module's SIMD matmul on the weight in place, on every core (src/backend/pool.ts).
// cpu: plain JS, the reference the wasm build is tested against. Packing f32 into bf16 runs on the tfjs heap (bf16.wat).
import { tf } from "../tensor/tf.js";
import { BF16_WASM_BASE64 } from "./bf16-wasm.js";
import { unpackBf16 } from "../tensor/bf16.js";
import { heapModule, heapOffset, type CpuBackend, type WasmBackend } from "./heap.js";
import { kernelPool } from "./pool.js";
import { bf16Rows, StoredWeight } from "./weight-store.js";
import { TILED_MIN_ROWS } from "./gemm.js";
import { registerKernelConfigs } from "./register.js";

export const BF16_MATMUL = "FusekitBf16MatMul"; // {x: f32 [rows, n]}, {w: stored bf16 [m, n/2]} → f32 [rows, m]
export const BF16_UNPACK = "FusekitBf16Unpack"; // {w: packed [..., k]} → f32 [..., 2k]
export const BF16_PACK = "FusekitBf16Pack"; // {w: f32 [n, m]}, {round} → [packed [m, n/2], int32 [1] inexact count]

interface Bf16Exports {
  pack(src: number, dst: number, n: number, m: number, round: number): number;
  unpack(src: number, dst: number, count: number): void;
  readsum(p: number, blocks: number): number;
}

// The parts of tfjs-wasm's BackendWasm these kernels use (it is not exported with types).
/** The bf16 module instantiated on this backend's heap. */
const wasmExports = heapModule<Bf16Exports>(BF16_WASM_BASE64);

const ptr = heapOffset;
const size = (shape: readonly number[]) => tf.util.sizeFromShape([...shape]);

/** The stored weight in a kernel's attributes. */
const storedOf = (attrs: tf.NamedAttrMap | undefined) => (attrs as unknown as { w: StoredWeight }).w;

/** Checks shared by both builds; returns [rows, n, m]. */
function matmulDims(x: tf.TensorInfo, w: StoredWeight): [number, number, number] {
  if (!(w instanceof StoredWeight) || w.kind !== "bf16")
    throw new Error(`${BF16_MATMUL}: the w attribute must be a stored bf16 weight`);
  if (x.shape.length !== 2 || x.dtype !== "float32" || x.shape[1] !== 2 * w.shape[1]) {
    throw new Error(
      `${BF16_MATMUL}: expected x f32 [rows, ${2 * w.shape[1]}] for w [${w.shape}], got ${x.dtype} [${x.shape}]`,
    );
  }
  return [x.shape[0], x.shape[1], w.shape[0]];
}

const wasmKernels: tf.KernelConfig[] = [
  {
    kernelName: BF16_MATMUL,
    backendName: "wasm",
    kernelFunc: ({ inputs, backend, attrs }) => {
      const b = backend as unknown as WasmBackend;
      const { x } = inputs as { x: tf.TensorInfo };
      const w = storedOf(attrs);
      const [rows, n, m] = matmulDims(x, w);
      if (n % 8) throw new Error(`${BF16_MATMUL}: the wasm kernel needs n % 8 == 0, got ${n}`);
      const out = b.makeOutput([rows, m], "float32"); // may grow the heap: offsets stay valid, views would not
      const pool = kernelPool(); // every core, same bits
      if (rows >= TILED_MIN_ROWS)
        pool.gemmTiled(b, x, w, out, rows, n, m); // prefill
      else pool.gemm(b, x, w, out, rows, n, m);
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
    kernelFunc: ({ inputs, backend, attrs }) => {
      const b = backend as unknown as CpuBackend;
      const { x } = inputs as { x: tf.TensorInfo };
      const w = storedOf(attrs);
      const [rows, n, m] = matmulDims(x, w);
      const xv = b.data.get(x.dataId).values as Float32Array;
      const row = new Float32Array(n);
      const y = new Float32Array(rows * m);
      for (let o = 0; o < m; o++) {
        bf16Rows(w, [o], n, row); // one weight row at a time: no widened copy of the whole weight
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
