// wasm and cpu build of the DecoderLayer kernel. A decode step of one sequence with bf16 or int8 weights on
// the wasm backend runs as one job on the kernel pool (src/backend/decoder-layer.ts); every other call —
// prefill, a batch, a padding mask, float32 weights, the cpu backend, one thread — runs the layer's own
// forward (the class's, or a fused chain's replay), so the kernel can be installed on any decoder layer.
import type { Tensor } from "@tensorflow/tfjs-core";
import type { KernelLayerClass } from "../../../src/hub/types.js";
import type { DynamicCache } from "../../../src/cache/dynamic-cache.js";
import { decoderLayerStep, type DecoderLayerLike } from "../../../src/backend/decoder-layer.js";

type Forward = (x: Tensor, pos: [Tensor, Tensor], mask?: Tensor, cache?: DynamicCache) => Tensor;

export function createLayers(): Record<string, KernelLayerClass> {
  class DecoderLayer {
    static hasBackward = false;
    forward(
      this: DecoderLayerLike,
      hiddenStates: Tensor,
      positionEmbeddings: [Tensor, Tensor],
      attentionMask?: Tensor,
      pastKeyValues?: DynamicCache,
    ): Tensor {
      const own = Object.getPrototypeOf(this).forward as Forward;
      return (decoderLayerStep(
        this,
        hiddenStates as never,
        positionEmbeddings as never,
        attentionMask as never,
        pastKeyValues,
      ) ?? own.call(this, hiddenStates, positionEmbeddings, attentionMask, pastKeyValues)) as Tensor;
    }
  }
  return { DecoderLayer };
}
