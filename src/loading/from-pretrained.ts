// fromPretrained: a checkpoint directory → a ready model, in one pass: config.json → class → construct (under
// the load's patches) → plan the memory → read the weights through the conversion rules → kernels.
import { existsSync } from "node:fs";
import path from "node:path";
import type { PreTrainedModel } from "./pretrained.js";
import { CheckpointReader, CONFIG_NAME, WEIGHTS_INDEX_NAME, WEIGHTS_NAME, readConfigJson } from "../io/checkpoint.js";
import { readCompanionFiles } from "../io/companions.js";
import { buildModel, causalLMClassFor, familyFor } from "./registry.js";
import { ensureBackend, getBackend } from "../backend/backend.js";
import { kernelPool } from "../backend/pool.js";
import { applyKernelsAfterLoad } from "../hub/kernelize.js";
import { getKernelMapping, useKernelMapping, type KernelMapping } from "../hub/mapping.js";
import { ensureFunctionKernels } from "../hub/functions.js";
import { packWeightsOnLoad, quantizeWeightsOnLoad } from "../nn/storage.js";
import { buildInScope, withPatches } from "../patching/registry.js";
import { conversionRulesFor } from "../conversion/registry.js";
import { storeFusionConfig } from "../fusion/config.js";
import { planLoad } from "./plan.js";
import { fp8Source, keepFp8Layouts, packFp8OnLoad } from "./fp8.js";
import { checkLoadOptions, type FromPretrainedOptions, type ProgressInfo } from "./options.js";
import { resolvePretrained } from "../io/hf-resolve.js";
import { checkSizesAgainstCheckpoint, checkStrict, checkWeightsLoaded, warnIgnoredRemoteCode } from "./checks.js";
import { planMemoryForLoad } from "./memory-plan.js";
import { loadWeights } from "./weights.js";

/**
 * config.json → class → construct (under `options.patches`) → plan the memory → load weights through the
 * conversion rules → model with `loadReport` (incl. its `memoryPlan`), in eval mode. `idOrDir` is a checkpoint
 * folder or a hub model id ("org/name"), found in the Hugging Face cache or downloaded into it (io/hf-resolve.ts).
 */
export async function fromPretrained(idOrDir: string, options: FromPretrainedOptions = {}): Promise<PreTrainedModel> {
  const checked = checkLoadOptions(options);
  const callback = checked.progress_callback;
  const { revision, cacheDir, localFilesOnly } = checked;
  const { dir, name } = await resolvePretrained(idOrDir, { revision, cacheDir, localFilesOnly, onProgress: callback });
  const withProgress = callback ? { ...checked, onProgress: weightProgress(dir, name, checked, callback) } : checked;
  const model = await (checked.patches
    ? withPatches(checked.patches, () => load(dir, withProgress))
    : load(dir, withProgress));
  model.sourceDir = dir;
  callback?.({ status: "ready", name, task: "text-generation", model: name });
  return model;
}

/** The per-tensor byte progress as transformers.js progress objects for the weights file (then the user's onProgress). */
function weightProgress(
  dir: string,
  name: string,
  options: FromPretrainedOptions,
  callback: (info: ProgressInfo) => void,
): FromPretrainedOptions["onProgress"] {
  const file = existsSync(path.join(dir, WEIGHTS_INDEX_NAME)) ? WEIGHTS_INDEX_NAME : WEIGHTS_NAME;
  let started = false;
  return (p) => {
    if (!started) callback({ status: "initiate", name, file });
    started = true;
    const progress = p.bytesTotal ? (p.bytesDone / p.bytesTotal) * 100 : 100;
    callback({ status: "progress", name, file, progress, loaded: p.bytesDone, total: p.bytesTotal });
    if (p.bytesDone >= p.bytesTotal) callback({ status: "done", name, file });
    options.onProgress?.(p);
  };
}

async function load(dir: string, options: Readonly<FromPretrainedOptions>): Promise<PreTrainedModel> {
  await ensureBackend();
  const functionKernels = ensureFunctionKernels(); // installed while the checkpoint is read (never rejects)
  const raw = await readConfigJson(dir);
  const where = path.join(dir, CONFIG_NAME);
  warnIgnoredRemoteCode(raw, where);
  const family = familyFor(raw, where);
  const config = family.configFromDict(raw, where);
  // Headers first: config.json's sizes are checked against them before anything is built.
  const reader = await CheckpointReader.open(dir);
  let model: PreTrainedModel | undefined;
  try {
    checkSizesAgainstCheckpoint(raw, reader, where, undefined);
    const unpatched = causalLMClassFor(family, config).name;
    const plan = await planLoad(raw, config, causalLMClassFor(family, config), options, where, () =>
      buildModel(config, raw, where),
    );
    model = buildInScope(plan.patches, () => buildModel(config, raw, where));
    storeFusionConfig(model.config, plan.fusion);
    checkSizesAgainstCheckpoint(raw, reader, where, model);
    const source = fp8Source(reader, raw, where); // FP8 block-quantized weights read dequantized to bf16
    packFp8OnLoad(model, source, options.weightStorage);
    const registered =
      options.conversions ?? conversionRulesFor([model.constructor.name, unpatched], config.model_type);
    const conversions = [...registered, ...plan.conversions];
    // The kernel mapping is read in the same synchronous step as the patches and the conversions, so one load
    // sees one state of the registries even when another task registers or unregisters while it reads weights.
    const kernelMapping = options.useKernels ? (getKernelMapping() as KernelMapping) : undefined;
    const memoryPlan = planMemoryForLoad(model, reader, raw, conversions, options);
    if (memoryPlan.storage === "int8") quantizeWeightsOnLoad(model);
    // the kernel threads start now and instantiate their modules while the weights are read, not in the first forward
    if (memoryPlan.storage !== "f32" && getBackend() === "wasm") kernelPool();
    const companions = settled(readCompanionFiles(dir)); // read while the weights are
    const report = await loadWeights(model, source, {
      conversions,
      seed: options.seed,
      onProgress: options.onProgress,
      packBf16: memoryPlan.storage === "bf16" || memoryPlan.storage === "fp8", // fp8: BF16 ones only (exact)
      keepFp8: memoryPlan.storage === "fp8",
    });
    keepFp8Layouts(model, source, model.checkpointConversion?.renamed);
    packWeightsOnLoad(model, false);
    quantizeWeightsOnLoad(model, false);
    checkWeightsLoaded(model, report, dir, { warn: !options.strict });
    model.loadReport = checkStrict(dir, model, report, options);
    model.memoryPlan = memoryPlan;
    model.companionFiles = await companions();
    await functionKernels;
    // awaited here so a kernel error still disposes the model below
    const loaded = model.eval();
    const kernelOptions = { ...options, kernelMapping: { ...options.kernelMapping, ...plan.kernelMapping } };
    return await (kernelMapping
      ? useKernelMapping(kernelMapping, () => applyKernelsAfterLoad(loaded, kernelOptions), { inherit: false })
      : loaded);
  } catch (err) {
    model?.dispose();
    throw err;
  } finally {
    await reader.close();
  }
}

/** Starts `promise` now and returns its result (or throws its error) when asked; unasked, its error is dropped. */
function settled<T>(promise: Promise<T>): () => Promise<T> {
  const outcome = promise.then(
    (value) => ({ value }),
    (error: unknown) => ({ error }),
  );
  return async () => {
    const o = await outcome;
    if ("error" in o) throw o.error;
    return o.value;
  };
}
