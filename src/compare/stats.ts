// The statistics behind the comparison's speed columns, as pure functions (no tfjs, no clock):
//
// - every speed figure is the median of its timed rounds with a distribution-free confidence interval from
//   order statistics (the interval [x(k), x(n+1-k)] covers the true median with probability
//   1 - 2·P(Binomial(n, ½) < k), whatever the distribution of the timings: no normality assumed, and timings
//   are skewed and heavy-tailed);
// - an approach is compared with the original *per round* (both timed in the same round, so drift and load
//   hit both): its time ÷ the original's time, one ratio per round, and the same interval for the median ratio;
// - the verdict says "faster" or "slower" only when that whole interval lies at least MIN_EFFECT away from 1
//   (95% sure the change is at least 5%, not only that there is one), so neither a small systematic
//   difference (allocator state, memory layout) nor a lucky run of the original's — which every row's ratio
//   shares — is called a gain; otherwise "no measurable difference".

/** The confidence every interval is stated at. */
export const CONFIDENCE = 0.95;

/** The smallest speed change a verdict claims: 5%, i.e. ×1.05 faster or slower, with the interval beyond it. */
export const MIN_EFFECT = 0.05;

/** A median with its confidence interval. */
export interface Estimate {
  median: number;
  /** The interval's ends; NaN when the samples are too few for any interval at the asked confidence. */
  low: number;
  high: number;
  /** The interval's exact coverage (at least the confidence asked for), or 0 when there is no interval. */
  coverage: number;
  /** How many samples it is drawn from. */
  samples: number;
}

/** ln P(Binomial(n, ½) = i), summed in logs so that n in the thousands does not underflow. */
function logHalfBinomial(n: number): number[] {
  const out = [-n * Math.LN2];
  for (let i = 1; i <= n; i++) out.push(out[i - 1] + Math.log(n - i + 1) - Math.log(i));
  return out;
}

/**
 * The order-statistic rank k of the narrowest interval [x(k), x(n+1-k)] (1-based, sorted ascending) whose
 * coverage 1 - 2·P(B ≤ k-1), B ~ Binomial(n, ½), is at least `confidence`; undefined when even [min, max]
 * covers less (n < 6 at 95%).
 */
export function medianRank(n: number, confidence = CONFIDENCE): { k: number; coverage: number } | undefined {
  const logP = logHalfBinomial(n);
  let best: { k: number; coverage: number } | undefined;
  let below = 0; // P(B ≤ k-1)
  for (let k = 1; 2 * k <= n + 1; k++) {
    below += Math.exp(logP[k - 1]);
    const coverage = 1 - 2 * below;
    if (coverage < confidence) break;
    best = { k, coverage };
  }
  return best;
}

/** The median of `xs` with its distribution-free confidence interval (see the top of this file). */
export function medianCI(xs: readonly number[], confidence = CONFIDENCE): Estimate {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  if (n === 0) return { median: NaN, low: NaN, high: NaN, coverage: 0, samples: 0 };
  const mid = n >> 1;
  const median = n % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
  const rank = medianRank(n, confidence);
  if (!rank) return { median, low: NaN, high: NaN, coverage: 0, samples: n };
  return { median, low: s[rank.k - 1], high: s[n - rank.k], coverage: rank.coverage, samples: n };
}

/** Whether larger values of a figure mean faster (tokens/s) or slower (ms). */
export type Direction = "time" | "rate";

export type SpeedVerdict = "faster" | "slower" | "no measurable difference" | "too few rounds";

/** An approach's speed against the original's, from samples paired by round. */
export interface SpeedComparison {
  /**
   * The approach's time ÷ the original's per round (for a rate: the original's rate ÷ the approach's), its
   * median and interval: 0.5 = it takes half the original's time, i.e. runs twice as fast.
   */
  relativeTime: Estimate;
  verdict: SpeedVerdict;
  /** How many times as fast ("faster") or as slow ("slower") as the original; 1 otherwise. */
  factor: number;
  /** The verdict as shown: "faster ×1.20", "slower ×1.25", "no measurable difference", "too few rounds". */
  text: string;
}

/**
 * The paired comparison of `row` with `reference` (sample i of each timed in round i). The median and the
 * interval are taken of log ratios and mapped back, so the result is the same whichever way the ratio is
 * taken (time or speed; for an even count the median is the geometric mean of the middle two).
 */
export function compareSpeed(
  reference: readonly number[],
  row: readonly number[],
  direction: Direction,
  { confidence = CONFIDENCE, minEffect = MIN_EFFECT } = {},
): SpeedComparison {
  if (reference.length !== row.length)
    throw new RangeError(`compareSpeed: ${reference.length} reference samples vs ${row.length}: pair them by round`);
  const logs = row.map((x, i) => (direction === "time" ? Math.log(x / reference[i]) : Math.log(reference[i] / x)));
  const e = medianCI(logs, confidence);
  const relativeTime = { ...e, median: Math.exp(e.median), low: Math.exp(e.low), high: Math.exp(e.high) };
  const limit = Math.log1p(minEffect);
  if (e.coverage === 0) return { relativeTime, verdict: "too few rounds", factor: 1, text: "too few rounds" };
  if (e.high < -limit) {
    const factor = 1 / relativeTime.median;
    return { relativeTime, verdict: "faster", factor, text: `faster ×${factor.toFixed(2)}` };
  }
  if (e.low > limit) {
    const factor = relativeTime.median;
    return { relativeTime, verdict: "slower", factor, text: `slower ×${factor.toFixed(2)}` };
  }
  return { relativeTime, verdict: "no measurable difference", factor: 1, text: "no measurable difference" };
}

/** The fewest rounds that give an interval at `confidence` (6 at 95%). */
export function minimumRounds(confidence = CONFIDENCE): number {
  let n = 1;
  while (!medianRank(n, confidence)) n++;
  return n;
}

/**
 * The order approaches are timed in during round `round`: all `count` of them, rotated by one place each
 * round (A B C, B C A, C A B, …), so over `count` rounds each one runs once in each position.
 */
export function roundOrder(count: number, round: number): number[] {
  return Array.from({ length: count }, (_, i) => (i + round) % count);
}

/**
 * Splits approaches 0 … count-1 into the fewest groups of at most `perGroup` (sizes differing by at most one,
 * order kept): each group is loaded beside the original and timed with it, when not all fit in memory at once.
 */
export function timingGroups(count: number, perGroup: number): number[][] {
  if (!Number.isInteger(perGroup) || perGroup < 1) throw new RangeError(`timingGroups: perGroup ${perGroup} < 1`);
  const groups = Math.ceil(count / perGroup);
  const out: number[][] = [];
  for (let g = 0, start = 0; g < groups; g++) {
    const size = Math.floor(count / groups) + (g < count % groups ? 1 : 0);
    out.push(Array.from({ length: size }, (_, i) => start + i));
    start += size;
  }
  return out;
}
