// NormMLPLayout: the module an n-to-1 KernelConfig key [[RMSNorm, …post_attention_layernorm], [MLP, …mlp]]
// puts in the norm's slot. It owns the norm weight and the MLP's projections under one parent, runs
// mlp(rmsNorm(x)) with the same ops as the two modules (so unkernelized it equals the original exactly),
// and is what the NormMLP layer's forward reads (`this.norm_weight`, `this.eps`, `this.gate_proj`, …).
import type { Tensor } from "@tensorflow/tfjs-core";
import type { KernelLayoutClass, LayoutEnv } from "../../../src/fusion/kernel-config.js";

interface NormLike {
  weight: unknown;
  eps: number;
}
interface MLPLike {
  gate_proj: unknown;
  up_proj: unknown;
  down_proj: unknown;
}
interface Callable {
  call(x: Tensor): Tensor;
}

export function createLayouts({
  tf,
  Module,
  rmsNorm,
  silu,
  WeightRenaming,
}: LayoutEnv): Record<string, KernelLayoutClass> {
  class NormMLPLayout extends Module<[Tensor], Tensor> {
    /** Checkpoint (HF) layout → this layout; save reverses it. */
    static conversionMapping = [
      new WeightRenaming({
        sourcePatterns: "post_attention_layernorm\\.weight$",
        targetPatterns: "post_attention_layernorm.norm_weight",
      }),
      new WeightRenaming({
        sourcePatterns: "mlp\\.((?:gate|up|down)_proj\\.(?:weight|bias))$", // Llama's mlp_bias too
        targetPatterns: "post_attention_layernorm.\\1",
      }),
    ];
    norm_weight: unknown;
    gate_proj: unknown;
    up_proj: unknown;
    down_proj: unknown;
    declare eps: number;

    constructor(norm: NormLike, mlp: MLPLike) {
      super();
      this.norm_weight = norm.weight;
      this.gate_proj = mlp.gate_proj;
      this.up_proj = mlp.up_proj;
      this.down_proj = mlp.down_proj;
      Object.defineProperty(this, "eps", { value: norm.eps, enumerable: false });
    }

    forward(x: Tensor): Tensor {
      const n = rmsNorm(x, (this.norm_weight as { tensor: Tensor }).tensor, this.eps);
      const [gate, up, down] = [this.gate_proj, this.up_proj, this.down_proj] as Callable[];
      return down.call(tf.mul(silu(gate.call(n)), up.call(n)));
    }
  }
  return { NormMLPLayout: NormMLPLayout as unknown as KernelLayoutClass };
}
