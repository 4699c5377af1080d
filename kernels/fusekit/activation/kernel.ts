// Shared by the wasm and cpu builds.
import type { Tensor } from "@tensorflow/tfjs-core";
import type { KernelEnv } from "../../../src/hub/types.js";

export const KERNEL_NAME = "FusekitSiluAndMul";

/** out[r, j] = silu(x[r, j]) · x[r, d + j] for rows of length 2d. */
export function siluAndMulRows(x: Float32Array, out: Float32Array, rows: number, d: number): void {
  for (let r = 0; r < rows; r++) {
    const i = r * 2 * d;
    const o = r * d;
    for (let j = 0; j < d; j++) {
      const g = x[i + j];
      out[o + j] = (g / (1 + Math.exp(-g))) * x[i + d + j];
    }
  }
}

export function makeLayers({ tf }: KernelEnv) {
  class SiluAndMul {
    static hasBackward = false;
    forward(x: Tensor): Tensor {
      return tf.engine().runKernel(KERNEL_NAME, { x }, {}) as Tensor;
    }
  }
  return { SiluAndMul };
}
