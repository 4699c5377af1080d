// What a load checks about a checkpoint and its result: code it will not run, sizes a hostile config.json
// declares, and weights that did not load (strict or not).
import { tf } from "../tensor/tf.js";
import type { CheckpointReader } from "../io/checkpoint.js";
import type { Module } from "../nn/module.js";
import { describe } from "../nn/module.js";
import type { LoadReport } from "./types.js";
import type { PreTrainedModel } from "./pretrained.js";
import { ConfigError, NoWeightsLoadedError, StateDictError } from "../errors.js";

/**
 * fusekit never runs code from a checkpoint directory: `auto_map` (transformers' pointer to modeling_*.py
 * files shipped with the weights) and `trust_remote_code` are ignored, with a warning, and the built-in
 * implementation of `model_type` is used. A warning, not an error: many ordinary checkpoints carry an
 * auto_map although their model_type is a standard one.
 */
export function warnIgnoredRemoteCode(raw: Record<string, unknown>, where: string): void {
  const fields = ["auto_map", "trust_remote_code"].filter(
    (k) => raw[k] !== undefined && raw[k] !== false && raw[k] !== null,
  );
  if (!fields.length) return;
  const target = raw.auto_map === undefined ? "" : ` (auto_map: ${JSON.stringify(raw.auto_map).slice(0, 200)})`;
  process.emitWarning(
    `${where}: ${fields.map((f) => `"${f}"`).join(" and ")} ignored${target}: fusekit never runs code from a checkpoint directory; ` +
      `it builds its own implementation of model_type ${JSON.stringify(raw.model_type)}`,
    { type: "FusekitRemoteCodeWarning", code: "FUSEKIT_REMOTE_CODE_IGNORED" },
  );
}
/**
 * Strict loads refuse any missing, unexpected or mis-shaped key. Any load refuses a mis-shaped one unless
 * `ignoreMismatchedSizes` (as transformers): such a parameter would silently keep its random values.
 */
export function checkStrict(
  dir: string,
  model: PreTrainedModel,
  report: LoadReport,
  { strict, ignoreMismatchedSizes }: { strict?: boolean; ignoreMismatchedSizes?: boolean },
): LoadReport {
  if (report.mismatchedKeys.length && !strict && !ignoreMismatchedSizes) {
    const list = report.mismatchedKeys.map((m) => `${m.key}: checkpoint [${m.got}], model [${m.expected}]`);
    throw new StateDictError(
      `${dir}: checkpoint tensors do not fit ${model.constructor.name}'s parameters (${list.join("; ")}); ` +
        `pass ignoreMismatchedSizes: true to load the rest and keep those parameters randomly initialised`,
    );
  }
  const bad =
    report.missingKeys.length ||
    report.unexpectedKeys.length ||
    report.mismatchedKeys.length ||
    report.conversionErrors.length;
  if (strict && bad) {
    const errors = report.conversionErrors.map((e) => e.message).join("; ");
    throw new StateDictError(
      `${dir}: checkpoint does not fit ${model.constructor.name}: ${describe(report)}${errors ? `; conversion errors: ${errors}` : ""}`,
    );
  }
  return report;
}
/**
 * A hostile config.json must not make the loader allocate what the checkpoint cannot justify (a vocab_size
 * of 1e308, 2^31 layers). Before building: every size-like field is at most the checkpoint's element count
 * and the layer count at most its tensor count. After building (parameters are still unallocated): the
 * model's float32 bytes are at most 4× the checkpoint's data bytes (BF16 → float32 doubles them; the rest
 * leaves room for parameters a partial checkpoint does not provide) plus 64 MiB.
 */
export function checkSizesAgainstCheckpoint(
  raw: Record<string, unknown>,
  reader: CheckpointReader,
  where: string,
  model: PreTrainedModel | undefined,
): void {
  let elements = 0;
  for (const info of reader.infos.values()) elements += tf.util.sizeFromShape(info.shape);
  if (!model) {
    for (const [k, v] of Object.entries(raw)) {
      if (typeof v !== "number" || !/_size$|_dim$|^num_/.test(k)) continue;
      const limit = k === "num_hidden_layers" ? reader.keys().length : elements;
      if (v > limit)
        throw new ConfigError(
          `${where}: "${k}" is ${v}, more than the checkpoint's ${k === "num_hidden_layers" ? "tensor" : "element"} count (${limit}) can justify`,
        );
    }
    return;
  }
  let declared = 0;
  for (const [, p] of model.namedParameters()) declared += p.numel * 4;
  const limit = 4 * reader.totalBytes + 64 * 2 ** 20;
  if (declared > limit)
    throw new ConfigError(
      `${where}: the model it declares needs ${declared} bytes of weights, more than its ${reader.totalBytes}-byte checkpoint can justify`,
    );
}
/**
 * As transformers' from_pretrained: a load that gave the model no weight at all is an error (a conversion
 * mapping or checkpoint that matches nothing); otherwise every parameter left at its random initial value
 * is named in one loud warning, strict or not.
 */
export function checkWeightsLoaded(model: Module, report: LoadReport, dir: string, { warn = true } = {}): void {
  const total = model.namedParameters().length;
  const fresh = report.missingKeys;
  if (!fresh.length) return;
  const name = model.constructor.name;
  const errors = report.conversionErrors.map((e) => e.message).join("; ");
  const hints = errors ? `; conversion errors: ${errors}` : "";
  if (fresh.length === total) {
    const unexpected = report.unexpectedKeys.slice(0, 5).join(", ") + (report.unexpectedKeys.length > 5 ? ", …" : "");
    throw new NoWeightsLoadedError(
      `${dir}: no weight of ${name} was loaded from the checkpoint ` +
        `(all ${total} parameters would stay randomly initialised); ` +
        `unexpected checkpoint keys: ${unexpected || "none"}` +
        `${hints} — check the conversion rules and patches in effect`,
    );
  }
  if (!warn) return;
  const shown = fresh.slice(0, 10).join(", ") + (fresh.length > 10 ? `, … (${fresh.length - 10} more)` : "");
  process.emitWarning(
    `Some weights of ${name} were not initialized from the model checkpoint at ${dir} and are newly initialized: ` +
      `${fresh.length} of ${total} parameters: ${shown}${hints} (full list: model.loadReport.missingKeys)`,
    { type: "FusekitLoadWarning", code: "FUSEKIT_NEWLY_INITIALIZED" },
  );
}
