// The FP8 block-quantized layout a weight was stored in (see src/loading/fp8.ts), as plain data: parameters keep it
// as their checkpoint layout, so it lives below both nn/ and loading/.
import type { StorageDtype } from "../tensor/dtypes.js";

/** The quantization_config this module reads and writes. */
export interface Fp8QuantizationConfig {
  quant_method: "fp8";
  weight_block_size: [number, number];
  activation_scheme?: "dynamic";
  [extra: string]: unknown;
}

/** A weight's FP8 checkpoint layout: its scales as stored (kept for a byte-identical save). */
export interface Fp8BlockLayout {
  config: Fp8QuantizationConfig;
  scaleDtype: StorageDtype;
  scaleShape: [number, number];
  /** The stored scale bytes and their float32 values. */
  scaleBytes: Uint8Array;
  scales: Float32Array;
}
