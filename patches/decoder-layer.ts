// Recipe: the decoder layer as the kernel's unit. The layer class is tagged for the hub's "DecoderLayer"
// kernel (one job on the kernel pool per layer at decode), and its q/k/v and gate/up projections are merged
// (patches/gate-up-qkv.ts), so each phase of the kernel reads one weight stream. The keys are class-name
// patterns: the same classes patch Llama, Qwen2 and Qwen3. Pair it with conversions/decoder-layer.ts, then
// `kernelize` the loaded model. (Outside this repo, import from "fusekit".)
import { LlamaDecoderLayer, registerPatchMapping, useKernelForwardFromHub } from "../src/index.js";
import { gateUpQKVPatches } from "./gate-up-qkv.js";

/** A decoder layer the DecoderLayer kernel may run whole; its forward (until kernelized) is the family's own. */
@useKernelForwardFromHub("DecoderLayer")
export class FusedDecoderLayer extends LlamaDecoderLayer {}

/** The mapping, for scoped use: `fromPretrained(dir, { patches: decoderLayerPatches, conversions })`. */
export const decoderLayerPatches = {
  ...gateUpQKVPatches,
  "^(Llama|Qwen2|Qwen3)DecoderLayer$": FusedDecoderLayer,
};

/** Registers the classes globally. */
export function registerDecoderLayerPatches(options?: { overwrite?: boolean }): void {
  registerPatchMapping(decoderLayerPatches, options);
}
