// Ops over stored 8-bit block weights (src/tensor/int8.ts, in the weight store), used by Linear / Embedding forwards.
import { tf } from "../tensor/tf.js";
import { BackendError } from "../errors.js";
import { INT8_GATHER, INT8_MATMUL, int8KernelsAvailable } from "./int8-kernels.js";
import type { StoredWeight } from "./weight-store.js";

export function checkInt8Backend(): void {
  if (!int8KernelsAvailable()) {
    throw new BackendError(
      `int8 weight storage has kernels for the wasm and cpu backends only, not "${tf.getBackend()}"`,
    );
  }
}

/** y = x · Wᵀ for x float32 [rows, in] and W stored in 8-bit blocks [out, ceil(in/32)·9]; returns float32 [rows, out]. */
export function int8MatMul(x: tf.Tensor2D, w: StoredWeight): tf.Tensor2D {
  checkInt8Backend();
  return tf.engine().runKernel(INT8_MATMUL, { x }, { w } as unknown as tf.NamedAttrMap) as tf.Tensor2D;
}

/** Embedding lookup in a stored 8-bit table [vocab, ceil(dim/32)·9]: float32 [...ids.shape, dim]. */
export function int8Embedding(table: StoredWeight, ids: tf.Tensor, dim: number): tf.Tensor {
  checkInt8Backend();
  return tf.tidy(() => {
    const flat = tf.cast(tf.reshape(ids, [-1]), "int32");
    const attrs = { w: table, n: dim } as unknown as tf.NamedAttrMap;
    const rows = tf.engine().runKernel(INT8_GATHER, { ids: flat }, attrs) as tf.Tensor;
    return tf.reshape(rows, [...ids.shape, dim]);
  });
}
