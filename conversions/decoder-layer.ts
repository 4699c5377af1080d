// Recipe: the checkpoint side of patches/decoder-layer.ts — the merged q/k/v and gate/up weights of
// conversions/gate-up-qkv.ts (concatenated on load, split back on save); the layer's other weights stay.
export {
  gateUpQKVConversions as decoderLayerConversions,
  registerGateUpQKVConversions as registerDecoderLayerConversions,
} from "./gate-up-qkv.js";
