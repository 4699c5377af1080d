// Shared by the wasm and cpu builds: the row math and the layer class (its forward is one runKernel call).
import type { Tensor } from "@tensorflow/tfjs-core";
import type { KernelEnv } from "../../../src/hub/types.js";

export const KERNEL_NAME = "FusekitRMSNorm";

export function makeLayers({ tf }: KernelEnv) {
  /** Replaces RMSNorm.forward: reads `this.weight` and `this.eps` of the module it serves. */
  class RMSNorm {
    static hasBackward = false;
    forward(this: { weight: { tensor: Tensor }; eps: number }, hiddenStates: Tensor): Tensor {
      return tf
        .engine()
        .runKernel(KERNEL_NAME, { x: hiddenStates, weight: this.weight.tensor }, { eps: this.eps }) as Tensor;
    }
  }
  return { RMSNorm };
}
