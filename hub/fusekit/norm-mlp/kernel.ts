// Shared by the wasm and cpu builds: the row math and the layer class.
import type { Tensor } from "@tensorflow/tfjs-core";
import type { KernelEnv } from "../../../src/hub/types.js";

export const KERNEL_NAME = "FusekitNormMLP";

/**
 * gate[i] = (gate[i] · sig[i]) · up[i], in place, each product rounded to float32: with sig the backend's own
 * Sigmoid of gate, the unfused mul(mul(gate, sigmoid(gate)), up), bit for bit.
 */
export function siluMulInPlace(gate: Float32Array, sig: Float32Array, up: Float32Array): void {
  for (let i = 0; i < gate.length; i++) gate[i] = Math.fround(gate[i] * sig[i]) * up[i];
}

/** A stored weight (fusekit's weight store) as the kernel sees it: its int32 shape. */
export interface StoredLike {
  shape: readonly number[];
}
/** A Parameter as the kernel sees it: float32 `[in, out]`, or stored packed bf16 `[out, in/2]` when `packed`. */
export interface Weight {
  tensor: Tensor;
  packed?: boolean;
  packedWeight?: StoredLike;
  quantized?: boolean;
  fp8?: boolean;
}
export interface LinearLike {
  weight: Weight;
  bias?: unknown;
  call(x: Tensor): Tensor;
}
export interface MLPLike {
  gate_proj: LinearLike;
  up_proj: LinearLike;
  down_proj: LinearLike;
}
/** FusedNormMLP (patch mapping) or a runtime FusedModule whose chain is [RMSNorm, MLP]. */
export type NormMLPModule = MLPLike & { norm_weight?: Weight; eps?: number; chain?: readonly unknown[] };

export function makeLayers({ tf, helpers }: KernelEnv) {
  /**
   * Replaces forward(x) = mlp(rmsNorm(x)) of a SwiGLU MLP (bias-free in the kernel; biased ones compose). The norm weight and eps come
   * from `this.norm_weight` / `this.eps`, or from `this.chain[0]` for a runtime-fused [norm, mlp] chain.
   * Float32 weights go in as `[in, out]` tensors; packed bf16 weights (weightStorage "bf16", held in fusekit's
   * weight store) as the attributes gate / up / down, which the backend kernel multiplies with src/backend' bf16
   * matmul. Mixed storage,
   * or packed weights whose input width the wasm bf16 matmul cannot take (not a multiple of 8), run the
   * composed ops through the modules' own Linear forwards (the original computation).
   */
  class NormMLP {
    static hasBackward = false;
    forward(this: NormMLPModule, x: Tensor): Tensor {
      const chain = this.chain;
      const norm = (chain ? chain[0] : undefined) as { weight: Weight; eps: number } | undefined;
      const mlp = (chain ? chain[chain.length - 1] : this) as MLPLike;
      const normWeight = norm ? norm.weight.tensor : this.norm_weight!.tensor;
      const eps = norm ? norm.eps : this.eps!;
      const linears = [mlp.gate_proj, mlp.up_proj, mlp.down_proj];
      const packed = linears.filter((l) => l.weight.packed).length;
      const h = x.shape[x.shape.length - 1];
      // 8-bit weights (int8, or FP8 kept as stored) have no kernel here: the modules' own Linear forwards run them
      const quantized = linears.some((l) => l.weight.quantized || l.weight.fp8);
      const inter = quantized
        ? 0
        : mlp.down_proj.weight.packed
          ? 2 * mlp.down_proj.weight.packedWeight!.shape[1]!
          : mlp.down_proj.weight.tensor.shape[0];
      const bf16Ok =
        packed === 3 &&
        (tf.getBackend() !== "wasm" || (h % 8 === 0 && inter % 8 === 0)) &&
        tf.getKernel(helpers.BF16_MATMUL, tf.getBackend()) !== undefined;
      // The kernel computes a bias-free MLP; one with biases (Llama's mlp_bias) runs the composed ops.
      const biased = linears.some((l) => l.bias !== undefined);
      if (biased || quantized || (packed > 0 && !bf16Ok)) {
        return tf.tidy(() => {
          const n = tf.mul(normWeight, tf.mul(x, tf.rsqrt(tf.add(tf.mean(tf.square(x), -1, true), eps))));
          const g = mlp.gate_proj.call(n);
          return mlp.down_proj.call(tf.mul(tf.mul(g, tf.sigmoid(g)), mlp.up_proj.call(n)));
        });
      }
      if (packed) {
        const stored = { gate: mlp.gate_proj, up: mlp.up_proj, down: mlp.down_proj };
        const attrs = {
          eps,
          ...Object.fromEntries(Object.entries(stored).map(([k, l]) => [k, l.weight.packedWeight])),
        };
        return tf.engine().runKernel(KERNEL_NAME, { x, normWeight }, attrs as never) as Tensor;
      }
      const w = (l: LinearLike) => l.weight.tensor;
      const inputs = { x, normWeight, gate: w(mlp.gate_proj), up: w(mlp.up_proj), down: w(mlp.down_proj) };
      return tf.engine().runKernel(KERNEL_NAME, inputs, { eps }) as Tensor;
    }
  }
  return { NormMLP };
}
