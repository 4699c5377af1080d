// The statistics behind `fusekit compare`'s speed columns, as pure functions: the median's confidence interval
// against hand computations, the speed verdict on synthetic samples with a known gap (and none), the order
// approaches are timed in, the grouping when memory is short, and choosing approaches by id.
import { describe, expect, it } from "vitest";
import { ArgumentError } from "fusekit";
import { compareSpeed, medianCI, medianRank, minimumRounds, roundOrder, timingGroups } from "../src/compare/stats.js";
import { defaultApproaches, selectApproaches } from "../src/compare/approaches.js";

/** A seeded uniform generator on [0, 1) (mulberry32): the same samples on every run. */
function uniform(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

/** `n` timings around `center`, each off by up to ±`spread` (relative). */
const noisy = (next: () => number, n: number, center: number, spread: number) =>
  Array.from({ length: n }, () => center * (1 + spread * (2 * next() - 1)));

describe("medianCI: distribution-free interval from order statistics", () => {
  it("10 samples at 95%: the 2nd and 9th smallest, coverage 1 - 2·(1 + 10)/2^10", () => {
    // sorted: 1 2 3 4 5 6 7 8 9 10 → P(B ≤ 1) = 11/1024, so k = 2 covers 1 - 22/1024 = 0.978…; k = 3 covers
    // 1 - 2·56/1024 = 0.89 < 0.95
    const e = medianCI([7, 3, 10, 1, 9, 2, 8, 4, 6, 5]);
    expect(e).toEqual({ median: 5.5, low: 2, high: 9, coverage: 1 - 22 / 1024, samples: 10 });
  });

  it("15 samples (the default rounds): the 4th and 12th, coverage 1 - 2·(1 + 15 + 105 + 455)/2^15", () => {
    const xs = Array.from({ length: 15 }, (_, i) => 100 - i * 3); // 100, 97, …, 58
    const e = medianCI(xs);
    expect([e.median, e.low, e.high]).toEqual([79, 67, 91]); // sorted ascending: 58 61 64 [67] … [91] 94 97 100
    expect(e.coverage).toBeCloseTo(1 - 1152 / 32768, 12);
  });

  it("needs 6 samples for 95% ([min, max] of 5 covers only 1 - 2/32 = 93.75%)", () => {
    expect(minimumRounds()).toBe(6);
    expect(medianCI([1, 2, 3, 4, 5])).toMatchObject({ median: 3, low: NaN, high: NaN, coverage: 0 });
    expect(medianCI([1, 2, 3, 4, 5, 6])).toMatchObject({ low: 1, high: 6, coverage: 1 - 2 / 64 });
    expect(medianCI([4])).toMatchObject({ median: 4, coverage: 0, samples: 1 });
  });

  it("stays finite for a thousand samples: k near n/2 - 1.96·√n/2", () => {
    const { k, coverage } = medianRank(1000)!;
    expect(coverage).toBeGreaterThanOrEqual(0.95);
    expect(k).toBeGreaterThan(465);
    expect(k).toBeLessThan(475);
    expect(medianRank(1000, 0.5)!.k).toBeGreaterThan(k); // a lower confidence, a narrower interval
  });
});

describe("compareSpeed: the paired verdict against the original", () => {
  it("a known 20% gap is faster ×1.2, whether the figure is a time or a rate", () => {
    const next = uniform(7);
    const original = noisy(next, 15, 10, 0.05);
    const fused = noisy(next, 15, 10 / 1.2, 0.05);
    const time = compareSpeed(original, fused, "time");
    expect(time.verdict).toBe("faster");
    expect(time.factor).toBeGreaterThan(1.15);
    expect(time.factor).toBeLessThan(1.25);
    expect(time.text).toBe(`faster ×${time.factor.toFixed(2)}`);
    expect(time.relativeTime.high).toBeLessThan(1);
    // the same runs as tokens/s: the same verdict and factor
    const rate = compareSpeed(
      original.map((ms) => 1000 / ms),
      fused.map((ms) => 1000 / ms),
      "rate",
    );
    expect(rate.verdict).toBe("faster");
    expect(rate.factor).toBeCloseTo(time.factor, 10);
  });

  it("a known 25% slowdown is slower ×1.25", () => {
    const next = uniform(3);
    const c = compareSpeed(noisy(next, 20, 10, 0.05), noisy(next, 20, 12.5, 0.05), "time");
    expect(c.verdict).toBe("slower");
    expect(c.factor).toBeGreaterThan(1.2);
    expect(c.factor).toBeLessThan(1.3);
    expect(c.text).toMatch(/^slower ×1\.2\d$/);
  });

  it("two samples of one seeded noise generator: no measurable difference (at most 5% of 200 pairs say otherwise)", () => {
    const first = compareSpeed(...pairFrom(uniform(11)), "time");
    expect(first).toMatchObject({ verdict: "no measurable difference", factor: 1, text: "no measurable difference" });
    expect(first.relativeTime.low).toBeLessThan(1);
    expect(first.relativeTime.high).toBeGreaterThan(1);
    const verdicts = Array.from({ length: 200 }, (_, seed) => compareSpeed(...pairFrom(uniform(seed)), "time").verdict);
    expect(verdicts.filter((v) => v !== "no measurable difference").length).toBeLessThanOrEqual(10);
  });

  it("a real but small gap (3%, the interval excludes 1) is below the 5% effect, so no difference is claimed", () => {
    const next = uniform(5);
    const original = noisy(next, 30, 10, 0.005);
    const c = compareSpeed(original, noisy(next, 30, 10 / 1.03, 0.005), "time");
    expect(c.relativeTime.high).toBeLessThan(1);
    expect(c.verdict).toBe("no measurable difference");
    // …and a smaller minimum effect would call it
    expect(compareSpeed(original, noisy(uniform(5), 30, 10 / 1.03, 0.005), "time", { minEffect: 0.01 }).verdict).toBe(
      "faster",
    );
  });

  it("a gain of 7% whose interval reaches inside the ±5% band is not claimed: the whole interval must clear it", () => {
    // ratios sorted: the 4th is 0.91, the median (8th) 0.935, the 12th 0.97 > 1/1.05 = 0.952
    const ratios = [0.88, 0.89, 0.9, 0.91, 0.92, 0.93, 0.93, 0.935, 0.94, 0.95, 0.96, 0.97, 0.98, 0.99, 1.0];
    const c = compareSpeed(
      ratios.map(() => 10),
      ratios.map((r) => 10 * r),
      "time",
    );
    expect([c.relativeTime.median, c.relativeTime.low, c.relativeTime.high]).toEqual(
      [0.935, 0.91, 0.97].map((x) => expect.closeTo(x, 12)),
    );
    expect(c.verdict).toBe("no measurable difference");
    // the same ratios 10% lower clear it: the interval's slow end 0.873 is under 0.952
    expect(
      compareSpeed(
        ratios.map(() => 10),
        ratios.map((r) => 9 * r),
        "time",
      ).text,
    ).toBe("faster ×1.19");
  });

  it("too few rounds for an interval says so instead of guessing", () => {
    expect(compareSpeed([10, 10, 10], [5, 5, 5], "time")).toMatchObject({ verdict: "too few rounds", factor: 1 });
  });

  it("is symmetric: the relative time one way is the reciprocal of the other (even counts too)", () => {
    const [a, b] = pairFrom(uniform(9), 14);
    const ab = compareSpeed(a, b, "time").relativeTime;
    const ba = compareSpeed(b, a, "time").relativeTime;
    expect(ab.median * ba.median).toBeCloseTo(1, 12);
    expect(ab.low * ba.high).toBeCloseTo(1, 12);
  });

  it("pairs samples by round, so unequal counts are refused", () => {
    expect(() => compareSpeed([1, 2, 3], [1, 2], "time")).toThrow(RangeError);
  });
});

/** Two samples of `n` rounds drawn alternately from one generator: the same distribution. */
function pairFrom(next: () => number, n = 15): [number[], number[]] {
  const a: number[] = [];
  const b: number[] = [];
  for (let i = 0; i < n; i++) {
    a.push(...noisy(next, 1, 10, 0.1));
    b.push(...noisy(next, 1, 10, 0.1));
  }
  return [a, b];
}

describe("roundOrder: interleaved rounds, rotated by one each round", () => {
  it("A B C, B C A, C A B, then again", () => {
    expect([0, 1, 2, 3].map((r) => roundOrder(3, r))).toEqual([
      [0, 1, 2],
      [1, 2, 0],
      [2, 0, 1],
      [0, 1, 2],
    ]);
  });

  it("over `count` rounds each approach runs once in every position", () => {
    const count = 12;
    const rounds = Array.from({ length: count }, (_, r) => roundOrder(count, r));
    for (let position = 0; position < count; position++)
      expect(new Set(rounds.map((order) => order[position])).size).toBe(count);
    for (const order of rounds) expect([...order].sort((x, y) => x - y)).toEqual([...Array(count).keys()]);
  });
});

describe("timingGroups: approaches split when memory holds only a few beside the original", () => {
  it("the fewest groups, sizes within one of each other, order kept", () => {
    expect(timingGroups(3, 5)).toEqual([[0, 1, 2]]);
    expect(timingGroups(4, 3)).toEqual([
      [0, 1],
      [2, 3],
    ]);
    expect(timingGroups(11, 2).map((g) => g.length)).toEqual([2, 2, 2, 2, 2, 1]);
    expect(timingGroups(11, 2).flat()).toEqual([...Array(11).keys()]);
    expect(timingGroups(0, 2)).toEqual([]);
    expect(() => timingGroups(3, 0)).toThrow(RangeError);
  });
});

describe("selectApproaches: the approaches `--approaches` names", () => {
  const ids = defaultApproaches().map((a) => a.id);

  it("all by default; a subset in the bundled order, always with the original first", () => {
    expect(selectApproaches().map((a) => a.id)).toEqual(ids);
    expect(selectApproaches(["fused-kernel", "fused", "fused"]).map((a) => a.id)).toEqual([
      "original",
      "fused",
      "fused-kernel",
    ]);
    expect(selectApproaches(["original"]).map((a) => a.id)).toEqual(["original"]);
  });

  it("the ids are stable and short", () => {
    expect(ids).toEqual([
      "original",
      "fused",
      "fused-unfused",
      "fused-kernel",
      "patched",
      "patched-kernel",
      "gate-up-qkv",
      "gate-up-qkv-kernel",
      "recipe-runtime",
      "recipe-patches",
      "fusion-config",
      "kernel-config",
      "layer-runtime",
      "layer-patched",
      "layer-fusion-config",
      "layer-kernel-config",
    ]);
  });

  it("an unknown id is an ArgumentError naming it and listing the valid ids", () => {
    expect(() => selectApproaches(["fused", "fast"])).toThrow(
      new ArgumentError(`unknown approach id "fast"; valid ids: ${ids.join(", ")}`),
    );
    expect(() => selectApproaches(["a", "b"])).toThrow(/^unknown approach ids "a", "b"; valid ids: original, /);
  });
});
