// Backend-agnostic build. NormQKVLayout takes the attention's slot for an n-to-1 KernelConfig key
// [[Attention, …self_attn], [RMSNorm, …input_layernorm]]: it owns the input norm's weight and one merged
// `qkv_proj` Linear (q, k, v concatenated on the output dim: one matmul instead of three), keeps o_proj and
// the q/k norms under their own names, and runs the attention on the normalised input. The NormQKV layer
// normalises with the bundled RMSNorm backend kernel when it is registered, else with the composed ops.
import type { Tensor } from "@tensorflow/tfjs-core";
import type { KernelEnv, KernelLayerClass } from "../../../src/hub/types.js";
import type { KernelLayoutClass, LayoutEnv } from "../../../src/fusion/kernel-config.js";

const RMS_KERNEL = "FusekitRMSNorm";

interface LinearLike {
  inFeatures: number;
  outFeatures: number;
  bias?: unknown;
  call(x: Tensor): Tensor;
}
interface AttentionLike {
  q_proj?: LinearLike;
  k_proj?: LinearLike;
  v_proj?: LinearLike;
  o_proj: unknown;
  q_norm: unknown;
  k_norm: unknown;
  call(...args: unknown[]): Tensor;
}
interface NormQKVModule {
  attn: AttentionLike;
  norm_weight: { tensor: Tensor };
  eps: number;
}

export function createLayers({ tf }: KernelEnv): Record<string, KernelLayerClass> {
  class NormQKV {
    forward(
      this: NormQKVModule,
      x: Tensor,
      positionEmbeddings: unknown,
      attentionMask: unknown,
      pastKeyValues: unknown,
    ): Tensor {
      const w = this.norm_weight.tensor;
      const n = tf.getKernel(RMS_KERNEL, tf.getBackend())
        ? (tf.engine().runKernel(RMS_KERNEL, { x, weight: w }, { eps: this.eps }) as Tensor)
        : tf.mul(w, tf.mul(x, tf.rsqrt(tf.add(tf.mean(tf.square(x), -1, true), this.eps))));
      return this.attn.call(n, positionEmbeddings, attentionMask, pastKeyValues);
    }
  }
  return { NormQKV };
}

export function createLayouts(env: LayoutEnv): Record<string, KernelLayoutClass> {
  const { tf, Module, Linear, rmsNorm, WeightRenaming, WeightConverter, Concatenate } = env;
  class NormQKVLayout extends Module {
    static conversionMapping = [
      new WeightRenaming({ sourcePatterns: "input_layernorm\\.weight$", targetPatterns: "self_attn.norm_weight" }),
      new WeightConverter({
        sourcePatterns: [
          "self_attn\\.q_proj\\.(weight|bias)$",
          "self_attn\\.k_proj\\.(weight|bias)$",
          "self_attn\\.v_proj\\.(weight|bias)$",
        ],
        targetPatterns: "self_attn.qkv_proj.\\1",
        operations: [new Concatenate(0)],
      }),
    ];
    norm_weight: unknown;
    qkv_proj: InstanceType<typeof Linear>;
    o_proj: unknown;
    q_norm: unknown;
    k_norm: unknown;
    declare attn: AttentionLike;
    declare eps: number;

    constructor(attn: AttentionLike, norm: { weight: unknown; eps: number }) {
      super();
      const [q, k, v] = [attn.q_proj!, attn.k_proj!, attn.v_proj!];
      const sizes = [q.outFeatures, k.outFeatures, v.outFeatures];
      this.norm_weight = norm.weight;
      this.qkv_proj = new Linear(q.inFeatures, sizes[0] + sizes[1] + sizes[2], { bias: q.bias !== undefined });
      this.o_proj = attn.o_proj;
      this.q_norm = attn.q_norm;
      this.k_norm = attn.k_norm;
      Object.defineProperty(this, "attn", { value: attn, enumerable: false });
      Object.defineProperty(this, "eps", { value: norm.eps, enumerable: false });
      delete attn.q_proj;
      delete attn.k_proj;
      delete attn.v_proj;
      // The attention asks its `project` for q, k, v: one matmul, split by output sizes.
      const project = (x: Tensor) => tf.split(this.qkv_proj.call(x), sizes, -1);
      Object.defineProperty(attn, "project", { value: project, enumerable: false, configurable: true });
    }

    forward(x: Tensor, positionEmbeddings: unknown, attentionMask: unknown, pastKeyValues: unknown): Tensor {
      return this.attn.call(
        rmsNorm(x, (this.norm_weight as { tensor: Tensor }).tensor, this.eps),
        positionEmbeddings,
        attentionMask,
        pastKeyValues,
      );
    }
  }
  return { NormQKVLayout: NormQKVLayout as unknown as KernelLayoutClass };
}
