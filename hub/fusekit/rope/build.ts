// wasm and cpu build of the rotary_pos_emb function kernel. The backend kernel (src/backend/rope.ts) does
// exactly the composed ops' float32 operations per element, in one dispatch; inputs it does not take (other
// ranks, dtypes or table shapes) get the composed ops, with rotate_half as a concat of the negated halves
// (exact: it only moves and negates values).
import type { Tensor } from "@tensorflow/tfjs-core";
import type { KernelEnv } from "../../../src/hub/types.js";
import { applyRope, ropeKernelAvailable } from "../../../src/backend/rope.js";

export function createFunctions({ tf }: KernelEnv): Record<string, (x: Tensor, cos: Tensor, sin: Tensor) => Tensor> {
  function rotary_pos_emb(x: Tensor, cos: Tensor, sin: Tensor): Tensor {
    const [b, , seq, d] = x.shape;
    const fits = (t: Tensor) => t.rank === 3 && t.shape[0] === b && t.shape[1] === seq && t.shape[2] === d;
    if (x.rank === 4 && x.dtype === "float32" && fits(cos) && fits(sin) && ropeKernelAvailable()) {
      return applyRope(x as never, cos as never, sin as never);
    }
    const [x1, x2] = tf.split(x, 2, -1);
    const rotated = tf.concat([tf.neg(x2), x1], -1);
    return tf.add(tf.mul(x, tf.expandDims(cos, 1)), tf.mul(rotated, tf.expandDims(sin, 1)));
  }
  return { rotary_pos_emb };
}
