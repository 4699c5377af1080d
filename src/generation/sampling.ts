// Next-token selection on the host, one row of logits at a time, with transformers' semantics and order:
// repetition penalty → temperature → top-k → top-p → softmax → multinomial draw (or argmax when greedy).
// Hand-written: these are a few array passes over one row, and doing them in JS keeps sampling exactly
// reproducible from a seed on every backend (tfjs's multinomial is per-op seeded and backend-specific).
import { Rng } from "../nn/init.js";
import { softmaxInto } from "../tensor/host.js";

export { Rng };

export interface SamplingParams {
  /** false = greedy (argmax after the repetition penalty); true = draw from the filtered distribution. */
  doSample: boolean;
  temperature: number;
  /** Keep the k highest logits (ties with the k-th kept); 0 disables. */
  topK: number;
  /** Keep the smallest set of top tokens whose probability mass exceeds p; 1 disables. */
  topP: number;
  /** > 1 discourages tokens already in the sequence; 1 disables. */
  repetitionPenalty: number;
}

/**
 * transformers' RepetitionPenaltyLogitsProcessor, in place: each distinct token already present has its
 * logit divided by `penalty` when positive, multiplied when negative.
 */
export function applyRepetitionPenalty(logits: Float32Array, previous: Iterable<number>, penalty: number): void {
  if (penalty === 1) return;
  for (const id of new Set(previous)) {
    const s = logits[id];
    logits[id] = s < 0 ? s * penalty : s / penalty;
  }
}

export function applyTemperature(logits: Float32Array, temperature: number): void {
  if (temperature === 1) return;
  for (let i = 0; i < logits.length; i++) logits[i] /= temperature;
}

/** The k-th largest value (1-based) of `values`, by quickselect on a copy. */
export function kthLargest(values: Float32Array, k: number): number {
  const a = Float32Array.from(values);
  const target = a.length - k; // index of the k-th largest in ascending order
  let lo = 0;
  let hi = a.length - 1;
  while (lo < hi) {
    const pivot = a[(lo + hi) >>> 1];
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (a[i] < pivot) i++;
      while (a[j] > pivot) j--;
      if (i <= j) {
        const t = a[i];
        a[i] = a[j];
        a[j] = t;
        i++;
        j--;
      }
    }
    if (target <= j) hi = j;
    else if (target >= i) lo = i;
    else break;
  }
  return a[target];
}

/** transformers' TopKLogitsWarper, in place: logits below the k-th largest become −∞. */
export function topKFilter(logits: Float32Array, k: number): void {
  if (k <= 0 || k >= logits.length) return;
  const threshold = kthLargest(logits, k);
  for (let i = 0; i < logits.length; i++) if (logits[i] < threshold) logits[i] = -Infinity;
}

/**
 * transformers' TopPLogitsWarper, in place: sort ascending, accumulate softmax probabilities, drop the
 * tokens whose cumulative mass is ≤ 1 − p; the most likely token always stays.
 */
export function topPFilter(logits: Float32Array, p: number): void {
  if (p >= 1) return;
  const ids: number[] = [];
  for (let i = 0; i < logits.length; i++) if (logits[i] > -Infinity) ids.push(i);
  ids.sort((a, b) => logits[a] - logits[b] || b - a);
  const probs = softmaxOf(ids.map((i) => logits[i]));
  let cum = 0;
  for (let r = 0; r < ids.length - 1; r++) {
    cum += probs[r];
    if (cum <= 1 - p) logits[ids[r]] = -Infinity;
    else break;
  }
}

function softmaxOf(xs: ArrayLike<number>): Float64Array {
  const out = new Float64Array(xs.length);
  softmaxInto(xs, out);
  return out;
}

/** Softmax in float64 (−∞ logits get probability 0). */
export function softmax(logits: Float32Array): Float64Array {
  return softmaxOf(logits);
}

/** Index of the largest logit; the first one on ties, like torch.argmax. */
export function argmax(logits: Float32Array): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
  return best;
}

/** One multinomial draw from `probs` (which sum to 1) with the seeded generator. */
export function sampleFrom(probs: Float64Array, rng: Rng): number {
  const u = rng.next();
  let cum = 0;
  let last = 0;
  for (let i = 0; i < probs.length; i++) {
    if (probs[i] === 0) continue;
    cum += probs[i];
    last = i;
    if (u < cum) return i;
  }
  return last; // u landed in the rounding gap above the final cumulative sum
}

/** Chooses the next token for one row; `logits` is modified in place. */
export function selectToken(
  logits: Float32Array,
  previous: Iterable<number>,
  params: SamplingParams,
  rng: Rng,
): number {
  applyRepetitionPenalty(logits, previous, params.repetitionPenalty);
  if (!params.doSample) return argmax(logits);
  applyTemperature(logits, params.temperature);
  topKFilter(logits, params.topK);
  topPFilter(logits, params.topP);
  return sampleFrom(softmax(logits), rng);
}
