import type { PreTrainedModel } from "../loading/pretrained.js";
import type { FromPretrainedOptions } from "../loading/options.js";
import type { Estimate, SpeedComparison } from "./stats.js";

export interface Range {
  median: number;
  min: number;
  max: number;
}

/** One way of putting a fused kernel into the model, as the comparison runs it. */
export interface Approach {
  id: string;
  label: string;
  /** Max |Δ logits| allowed vs the original (1e-6 for every bundled approach; they measure 0). */
  tolerance: number;
  /** Recipe files (repo-relative) whose code the user writes for this approach; counted for "lines of user code". */
  recipeFiles: string[];
  /** Code the user writes besides recipe files (e.g. one load option); counted the same way. */
  userCode?: string;
  /** How many fusions the approach applies, for "lines the user writes per fusion" (default 1). */
  fusions?: number;
  /** Builds the model from a fresh load (with the comparison's load options); reports the time of each setup step. */
  setup(dir: string, load?: FromPretrainedOptions): Promise<{ model: PreTrainedModel; steps: Record<string, number> }>;
  /** Applies the approach to an already-loaded plain model, if the approach can; returns whether anything changed. */
  applyToLoaded(model: PreTrainedModel): Promise<boolean>;
  /** Undoes the approach in place, if it can (false when there is no in-place way back). */
  reverse(model: PreTrainedModel): boolean;
  /** Frees whatever setup registered globally (patch mappings, kernels). */
  teardown?(): void;
}

export interface ApproachResult {
  id: string;
  label: string;
  tolerance: number;
  maxAbsDiff: number;
  tokensIdentical: number;
  tokensTotal: number;
  /** Median and confidence interval over the timed rounds (NaN when the approach could not be timed). */
  prefillMs: Estimate;
  decodeTokensPerSecond: Estimate;
  /** Wall-clock ms of the decoder layers alone per decode step (embedding, final norm and lm_head excluded). */
  decoderStackMs: Estimate;
  /** Every timed round's value, in round order (the original's: every group's rounds, one group after another). */
  timings: { prefillMs: number[]; decodeTokensPerSecond: number[]; decoderStackMs: number[] };
  /** Each figure against the original timed in the same rounds; undefined for the original and a crashed row. */
  speed?: { prefill: SpeedComparison; decode: SpeedComparison; decoderStack: SpeedComparison };
  /** The decoder-stack comparison's verdict ("faster ×1.20", "no measurable difference", …); "reference" for the original. */
  speedVerdict: string;
  setupMs: Record<string, number>;
  parameterBytes: number;
  liveTensors: number;
  userCodeLines: number;
  savesOriginalLayout: boolean;
  /** The numeric verdict: within the tolerance with every greedy token equal (speed has its own, above). */
  pass: boolean;
  verdict: string;
  error?: string;
  /** Undefined for the original (nothing to apply). */
  properties?: Properties;
}

/** Properties found by trying them on the model, not declared. */
export interface Properties {
  appliesToLoadedModel: boolean;
  classesPerFusion: number;
  needsWeightConversion: boolean;
  reversibleInPlace: boolean;
  stateDictLayoutUnchanged: boolean;
  /** Saved, then loaded again with no options: is the model fused the same way? Null when nothing differs from the original. */
  survivesSaveReload: boolean | null;
  /** User code lines divided by the fusions they apply (rounded up). */
  linesPerFusion: number;
}

export interface ComparisonResult {
  date: string;
  model: string;
  backend: string;
  weightStorage: string;
  prompt: string;
  promptTokens: number;
  newTokens: number;
  rounds: number;
  warmupRounds: number;
  /** The confidence of every interval, and the smallest speed change a verdict calls a difference (0.05 = 5%). */
  confidence: number;
  minEffect: number;
  /** The approaches timed together, by id, original first: one group when all fit in memory at once. */
  timingGroups: string[][];
  rows: ApproachResult[];
  pass: boolean;
}

/** What every approach is measured against: the original's numbers on the same checkpoint and prompt. */
export interface Reference {
  dir: string;
  load: FromPretrainedOptions;
  ids: number[];
  refLogits: Float32Array;
  refTokens: number[];
  refClasses: Set<unknown>;
  refKeys: string;
  /** The original's class names (for "survives save → reload"). */
  refNames: string;
  newTokens: number;
}
