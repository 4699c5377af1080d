// Converts an already-loaded model's Linear / Embedding weights to packed BF16 or 8-bit storage, in place, and back.
import { tf } from "../tensor/tf.js";
import type { Module } from "./module.js";
import type { Parameter } from "./parameter.js";
import { Embedding, Linear } from "./layers.js";
import { PackedParameterError, WeightStorageError } from "../errors.js";
import { BF16_PACK } from "../backend/kernels.js";
import { checkBf16Backend } from "../backend/ops.js";
import { checkInt8Backend } from "../backend/int8-ops.js";
import { storeWords } from "../backend/weight-store.js";
import { dequantizeFp8 } from "../tensor/fp8.js";
import { packBf16 } from "../tensor/bf16.js";

// (FP8 storage is not converted to: it keeps an FP8 checkpoint's weights as loaded; "bf16" / "f32" / "int8" convert from it.)
export type WeightStorage = "bf16" | "f32" | "int8";

export interface StoreWeightsOptions {
  /** Round weights that are not exactly bf16 (to nearest even) instead of refusing. Default false. */
  lossy?: boolean;
}

export interface StoreWeightsReport {
  /** Parameters now in the requested storage (first name of each; tied parameters once). */
  converted: string[];
  /** Parameters left as they were, with the reason. */
  skipped: { name: string; reason: string }[];
  /** Values rounded (bf16: lossy only; int8: every value whose 8-bit value differs). */
  rounded: number;
  /** Backend bytes of the converted parameters before and after. */
  bytesBefore: number;
  bytesAfter: number;
}

/** The weight Parameters of every Linear and Embedding, by first name (tied ones once). */
export function weightParameters(model: Module): [string, Parameter][] {
  const names = new Map<Parameter, string>();
  for (const [name, p] of model.namedParameters()) if (!names.has(p)) names.set(p, name);
  const out = new Map<Parameter, string>();
  for (const [, m] of model.namedModules()) {
    if ((m instanceof Linear || m instanceof Embedding) && names.has(m.weight) && !out.has(m.weight))
      out.set(m.weight, names.get(m.weight)!);
  }
  return [...out].map(([p, n]) => [n, p]);
}

/**
 * Stores the Linear and Embedding (incl. a tied lm_head) weights of `model` as packed BF16 — half the
 * memory of float32, read by SIMD kernels on wasm (plain JS on cpu) — or, with "f32", back as float32.
 *
 * Exact for weights that came from a BF16 checkpoint; any other stored dtype is refused with a
 * WeightStorageError (nothing is converted) unless `lossy` rounds them. Saving afterwards writes the
 * same bytes as the source checkpoint. `param.tensor` of a packed weight throws PackedParameterError.
 *
 * "int8": 8-bit blocks (src/tensor/int8.ts; one float32 scale per 32 values of a row, |error| ≤ half the
 * block's scale), from any stored dtype — always lossy, so asked for explicitly. Saving an int8 model writes
 * the dequantized values in the checkpoint's dtype, with a warning (docs/differences.md).
 */
export function storeWeightsAs(
  model: Module,
  storage: WeightStorage,
  options: StoreWeightsOptions = {},
): StoreWeightsReport {
  if (storage !== "bf16" && storage !== "f32" && storage !== "int8")
    throw new WeightStorageError(`unknown weight storage "${storage}" (use "bf16", "int8" or "f32")`);
  const report: StoreWeightsReport = { converted: [], skipped: [], rounded: 0, bytesBefore: 0, bytesAfter: 0 };
  const params = weightParameters(model);

  if (storage === "f32") return unpackWeights(params, report);
  if (storage === "int8") return quantizeWeights(params, report);

  checkBf16Backend();
  const todo: [string, Parameter][] = [];
  const lossyNeeded: string[] = [];
  for (const [name, p] of params) {
    if (p.packed) report.skipped.push({ name, reason: "already bf16" });
    else if (p.fp8) expandFp8(name, p, report);
    else if (p.layout !== "transpose") report.skipped.push({ name, reason: `layout ${p.layout}` });
    else if (!p.packedShape)
      report.skipped.push({ name, reason: `shape [${p.stateShape}] has an odd number of columns` });
    else {
      if (p.storedDtype !== "BF16") lossyNeeded.push(`${name} (${p.storedDtype})`);
      todo.push([name, p]);
    }
  }
  if (lossyNeeded.length && !options.lossy) {
    throw new WeightStorageError(
      `bf16 storage would round ${lossyNeeded.length} weight(s) not stored as BF16: ${lossyNeeded.slice(0, 5).join(", ")}` +
        `${lossyNeeded.length > 5 ? ", …" : ""}; pass { lossy: true } to round them`,
    );
  }
  for (const [name, p] of todo) {
    const [packed, count] = tf
      .engine()
      .runKernel(BF16_PACK, { w: p.tensor }, { round: options.lossy ? 1 : 0 }) as tf.Tensor[];
    const inexact = count.dataSync()[0];
    count.dispose();
    if (!inexact || options.lossy) p.setPacked(packed); // copied into the weight store
    packed.dispose();
    if (inexact && !options.lossy) {
      // Stored as BF16 but changed since (e.g. setStateTensor with other values): refuse this one.
      throw new PackedParameterError(
        `${name}: ${inexact} values are not exactly bf16 although stored as BF16; pass { lossy: true } to round them` +
          (report.converted.length ? ` (${report.converted.length} earlier weights were converted exactly)` : ""),
      );
    }
    report.rounded += inexact;
    report.bytesBefore += p.numel * 4;
    report.bytesAfter += p.numel * 2;
    report.converted.push(name);
  }
  return report;
}

/** FP8 storage → packed bf16: what loading the FP8 checkpoint in bf16 gives (each product rounded to bf16). */
function expandFp8(name: string, p: Parameter, report: StoreWeightsReport): void {
  report.bytesBefore += storedBytes(p);
  const layout = p.checkpointLayout!;
  const bf16 = dequantizeFp8(p.fp8Codes(), p.stateShape, layout.scales, layout.config.weight_block_size);
  p.setPacked(storeWords(packBf16(bf16).packed, p.packedShape!, "bf16"));
  report.bytesAfter += p.numel * 2;
  report.converted.push(name);
}

/** Backend bytes of a parameter's current storage. */
function storedBytes(p: Parameter): number {
  if (p.packed) return p.numel * 2;
  if (p.quantized) return p.int8Shape![0] * p.int8Shape![1] * 4;
  if (p.fp8) return p.fp8Weight.bytes;
  return p.numel * 4;
}

/** storeWeightsAs(…, "f32"): every weight in another storage, back to float32 (exact). */
function unpackWeights(params: [string, Parameter][], report: StoreWeightsReport): StoreWeightsReport {
  for (const [name, p] of params) {
    if (!p.packed && !p.quantized && !p.fp8) continue;
    report.bytesBefore += storedBytes(p);
    p.unpack();
    report.bytesAfter += p.numel * 4;
    report.converted.push(name);
  }
  return report;
}

/** storeWeightsAs(…, "int8"): every 2-D transposed weight, from whatever storage it is in. */
function quantizeWeights(params: [string, Parameter][], report: StoreWeightsReport): StoreWeightsReport {
  checkInt8Backend();
  for (const [name, p] of params) {
    if (p.quantized) report.skipped.push({ name, reason: "already int8" });
    else if (p.layout !== "transpose" || !p.int8Shape) report.skipped.push({ name, reason: `layout ${p.layout}` });
    else {
      const before = p.stateData() as Float32Array;
      report.bytesBefore += storedBytes(p);
      p.quantize(before.slice(), name);
      const after = p.stateData() as Float32Array;
      for (let i = 0; i < before.length; i++) if (after[i] !== before[i]) report.rounded++;
      report.bytesAfter += storedBytes(p);
      report.converted.push(name);
    }
  }
  return report;
}

/**
 * Marks the Linear / Embedding weights of a not-yet-loaded model so that checkpoint tensors are quantized into
 * 8-bit storage as they are read, one at a time (no float32 copy of the model ever lives in the backend).
 */
export function quantizeWeightsOnLoad(model: Module, on = true): void {
  if (on) checkInt8Backend();
  for (const [, p] of weightParameters(model)) if (p.layout === "transpose" && p.int8Shape) p.quantizeOnLoad = on;
}

/** The Linear / Embedding weights bf16 storage packs (transposed layout, an even number of columns). */
export function packableWeights(model: Module): [string, Parameter][] {
  return weightParameters(model).filter(([, p]) => p.layout === "transpose" && p.packedShape !== undefined);
}

/**
 * Marks the Linear / Embedding weights of a not-yet-loaded model so that BF16 checkpoint tensors are loaded
 * straight into packed bf16 storage (no float32 copy ever lives in the backend). Other dtypes load as float32.
 */
export function packWeightsOnLoad(model: Module, on = true): void {
  if (on) checkBf16Backend();
  for (const [, p] of weightParameters(model)) if (p.layout === "transpose") p.packOnLoad = on;
}
