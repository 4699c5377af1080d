// Shared by the wasm and cpu builds: the row math and the layer class (its forward is one runKernel call).
import type { Tensor } from "@tensorflow/tfjs-core";
import type { KernelEnv } from "../../../src/hub/types.js";

export const KERNEL_NAME = "FusekitRMSNorm";

/** out[r] = w · x[r] / sqrt(mean(x[r]²) + eps) for `rows` rows of length `h` (sums in float64). */
export function rmsNormRows(x: Float32Array, w: Float32Array, out: Float32Array, rows: number, h: number, eps: number): void {
  for (let r = 0, o = 0; r < rows; r++, o += h) {
    let ss = 0;
    for (let i = 0; i < h; i++) ss += x[o + i] * x[o + i];
    const inv = 1 / Math.sqrt(ss / h + eps);
    for (let i = 0; i < h; i++) out[o + i] = w[i] * (x[o + i] * inv);
  }
}

export function makeLayers({ tf }: KernelEnv) {
  /** Replaces RMSNorm.forward: reads `this.weight` and `this.eps` of the module it serves. */
  class RMSNorm {
    static hasBackward = false;
    forward(this: { weight: { tensor: Tensor }; eps: number }, hiddenStates: Tensor): Tensor {
      return tf.engine().runKernel(KERNEL_NAME, { x: hiddenStates, weight: this.weight.tensor }, { eps: this.eps }) as Tensor;
    }
  }
  return { RMSNorm };
}
