// Ops over FP8 block weights kept as stored (in the weight store; src/backend/fp8-kernels.ts), used by Linear /
// Embedding forwards.
import { tf } from "../tensor/tf.js";
import { BackendError } from "../errors.js";
import { FP8_GATHER, FP8_MATMUL, fp8KernelsAvailable } from "./fp8-kernels.js";
import type { StoredWeight } from "./weight-store.js";

export function checkFp8Backend(): void {
  if (!fp8KernelsAvailable()) {
    throw new BackendError(
      `fp8 weight storage has kernels for the wasm and cpu backends only, not "${tf.getBackend()}"`,
    );
  }
}

/** y = x · Wᵀ for x float32 [rows, in] and W stored FP8 [out, in]; returns float32 [rows, out]. */
export function fp8MatMul(x: tf.Tensor2D, w: StoredWeight): tf.Tensor2D {
  checkFp8Backend();
  return tf.engine().runKernel(FP8_MATMUL, { x }, { w } as unknown as tf.NamedAttrMap) as tf.Tensor2D;
}

/** Embedding lookup in a stored FP8 table [vocab, dim]: float32 [...ids.shape, dim]. */
export function fp8Embedding(table: StoredWeight, ids: tf.Tensor): tf.Tensor {
  checkFp8Backend();
  return tf.tidy(() => {
    const flat = tf.cast(tf.reshape(ids, [-1]), "int32");
    const rows = tf.engine().runKernel(FP8_GATHER, { ids: flat }, { w: table } as unknown as tf.NamedAttrMap);
    return tf.reshape(rows as tf.Tensor, [...ids.shape, 4 * table.shape[1]]);
  });
}
