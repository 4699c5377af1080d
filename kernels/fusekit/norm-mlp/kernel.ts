// Shared by the wasm and cpu builds: the row math and the layer class.
import type { Tensor } from "@tensorflow/tfjs-core";
import type { KernelEnv } from "../../../src/kernels/types.js";

export const KERNEL_NAME = "FusekitNormMLP";

/** out[r] = w · x[r] / sqrt(mean(x[r]²) + eps) (sums in float64). */
export function rmsNormRows(x: Float32Array, w: Float32Array, out: Float32Array, rows: number, h: number, eps: number): void {
  for (let r = 0, o = 0; r < rows; r++, o += h) {
    let ss = 0;
    for (let i = 0; i < h; i++) ss += x[o + i] * x[o + i];
    const inv = 1 / Math.sqrt(ss / h + eps);
    for (let i = 0; i < h; i++) out[o + i] = w[i] * (x[o + i] * inv);
  }
}

/** gate[i] = silu(gate[i]) · up[i], in place. */
export function siluMulInPlace(gate: Float32Array, up: Float32Array): void {
  for (let i = 0; i < gate.length; i++) {
    const g = gate[i];
    gate[i] = (g / (1 + Math.exp(-g))) * up[i];
  }
}

export interface Weight {
  tensor: Tensor;
}
export interface MLPLike {
  gate_proj: { weight: Weight };
  up_proj: { weight: Weight };
  down_proj: { weight: Weight };
}
/** FusedNormMLP (patch mapping) or a runtime FusedModule whose chain is [RMSNorm, MLP]. */
export type NormMLPModule = MLPLike & { norm_weight?: Weight; eps?: number; chain?: readonly unknown[] };

export function makeLayers({ tf }: KernelEnv) {
  /**
   * Replaces forward(x) = mlp(rmsNorm(x)) of a bias-free SwiGLU MLP (Qwen3's). The norm weight and eps come
   * from `this.norm_weight` / `this.eps`, or from `this.chain[0]` for a runtime-fused [norm, mlp] chain.
   */
  class NormMLP {
    static hasBackward = false;
    forward(this: NormMLPModule, x: Tensor): Tensor {
      const chain = this.chain;
      const norm = (chain ? chain[0] : undefined) as { weight: Weight; eps: number } | undefined;
      const mlp = (chain ? chain[chain.length - 1] : this) as MLPLike;
      const normWeight = norm ? norm.weight.tensor : this.norm_weight!.tensor;
      const eps = norm ? norm.eps : this.eps!;
      const inputs = { x, normWeight, gate: mlp.gate_proj.weight.tensor, up: mlp.up_proj.weight.tensor, down: mlp.down_proj.weight.tensor };
      return tf.engine().runKernel(KERNEL_NAME, inputs, { eps }) as Tensor;
    }
  }
  return { NormMLP };
}
