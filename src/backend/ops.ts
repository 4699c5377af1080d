// Ops over packed BF16 weights (int32 [out, in/2], checkpoint layout), used by Linear / Embedding forwards.
import { tf } from "../tensor/tf.js";
import { BackendError } from "../errors.js";
import { BF16_MATMUL, BF16_UNPACK, BF16_UNPACK_T, bf16KernelsAvailable } from "./kernels.js";

export interface Bf16Options {
  /**
   * Up to this many rows, y = x·Wᵀ runs in the SIMD bf16 kernel (weights read once per 4 rows, never widened);
   * above it, on wasm, W is widened chunk by chunk into transient float32 [in, out] tensors for tfjs's
   * XNNPACK matmul. Measured ~3× faster in the kernel for a 64-token prefill of the 0.6B
   * preset (XNNPACK re-packs every widened chunk), so by default it is used for every row count.
   */
  gemmMaxRows: number;
  /** Largest transient float32 weight chunk (elements) when widening for a many-row matmul. */
  chunkElements: number;
}

const options: Bf16Options = { gemmMaxRows: Number.MAX_SAFE_INTEGER, chunkElements: 1 << 24 };

/** Tunes the bf16 ops (returns the previous settings). */
export function setBf16Options(next: Partial<Bf16Options>): Bf16Options {
  const prev = { ...options };
  Object.assign(options, next);
  return prev;
}

export function checkBf16Backend(): void {
  if (!bf16KernelsAvailable()) {
    throw new BackendError(
      `bf16 weight storage has kernels for the wasm and cpu backends only, not "${tf.getBackend()}"`,
    );
  }
}

/** y = x · Wᵀ for x float32 [rows, in] and W packed bf16 [out, in/2]; returns float32 [rows, out]. */
export function bf16MatMul(x: tf.Tensor2D, w: tf.Tensor): tf.Tensor2D {
  checkBf16Backend();
  const [rows, n] = x.shape;
  const m = w.shape[0];
  const kernelOk = tf.getBackend() !== "wasm" || n % 8 === 0;
  if (kernelOk && (rows <= options.gemmMaxRows || tf.getBackend() !== "wasm")) {
    return tf.engine().runKernel(BF16_MATMUL, { x, w }) as tf.Tensor2D;
  }
  // Many rows: widen W into float32 chunks (freed on return, with XNNPACK's packed copy of each).
  return tf.tidy(() => {
    const step = Math.max(1, Math.min(m, Math.floor(options.chunkElements / n)));
    const parts: tf.Tensor[] = [];
    for (let begin = 0; begin < m; begin += step) {
      const wf = tf.engine().runKernel(BF16_UNPACK_T, { w }, { begin, size: Math.min(step, m - begin) }) as tf.Tensor2D;
      parts.push(tf.matMul(x, wf));
      wf.dispose();
    }
    return parts.length === 1 ? parts[0] : tf.concat(parts, 1);
  }) as tf.Tensor2D;
}

/** Embedding lookup in a packed bf16 table [vocab, dim/2]: float32 [...ids.shape, dim]. */
export function bf16Embedding(table: tf.Tensor, ids: tf.Tensor): tf.Tensor {
  checkBf16Backend();
  return tf.tidy(() => {
    const rows = tf.gather(table, tf.reshape(ids, [-1]), 0);
    const wide = tf.engine().runKernel(BF16_UNPACK, { w: rows }) as tf.Tensor;
    return tf.reshape(wide, [...ids.shape, 2 * table.shape[1]!]);
  });
}
