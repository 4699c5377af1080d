// Unit tests of next-token selection (src/generation/sampling.ts) at its edges: boundaries of the
// multinomial draw, ties, huge logits, and the order of the steps in selectToken. Expected values are
// hand-computed; a scripted Rng makes each draw land exactly where the test needs it.
import { describe, expect, it } from "vitest";
import {
  Rng,
  argmax,
  kthLargest,
  sampleFrom,
  selectToken,
  softmax,
  topKFilter,
  topPFilter,
  type SamplingParams,
} from "fusekit/internals";

/** An Rng whose draws are the given numbers, in order. */
const scripted = (...draws: number[]): Rng => ({ next: () => draws.shift()!, normal: () => 0 }) as unknown as Rng;
const f32 = (xs: number[]) => Float32Array.from(xs);
const GREEDY: SamplingParams = { doSample: false, temperature: 1, topK: 0, topP: 1, repetitionPenalty: 1 };
const SAMPLE: SamplingParams = { ...GREEDY, doSample: true };

describe("sampleFrom: the multinomial draw", () => {
  it("a draw equal to a cumulative boundary goes to the next token (u < cum, not ≤)", () => {
    const probs = Float64Array.from([0.5, 0.25, 0.25]);
    expect(sampleFrom(probs, scripted(0))).toBe(0);
    expect(sampleFrom(probs, scripted(0.4999))).toBe(0);
    expect(sampleFrom(probs, scripted(0.5))).toBe(1);
    expect(sampleFrom(probs, scripted(0.75))).toBe(2);
  });

  it("a draw in the rounding gap above the total goes to the last token with probability > 0", () => {
    // the probabilities sum to 0.9 (as float rounding can leave them below 1); zeros after the last real one
    const probs = Float64Array.from([0.3, 0.6, 0, 0]);
    expect(sampleFrom(probs, scripted(0.95))).toBe(1);
    expect(sampleFrom(Float64Array.from([0, 0.2, 0, 0.7, 0]), scripted(0.99))).toBe(3);
  });

  it("never returns a token of probability 0, even when the draw is 0", () => {
    expect(sampleFrom(Float64Array.from([0, 0, 1]), scripted(0))).toBe(2);
  });
});

describe("softmax and argmax", () => {
  it("softmax subtracts the max: logits of 1000 do not overflow", () => {
    expect(Array.from(softmax(f32([1000, 1000])))).toEqual([0.5, 0.5]);
    const p = softmax(f32([1000, 999, -Infinity]));
    expect(p[0]).toBeCloseTo(1 / (1 + Math.exp(-1)), 14);
    expect(p[1]).toBeCloseTo(1 / (1 + Math.exp(1)), 14);
    expect(p[2]).toBe(0);
  });

  it("argmax takes the first of tied maxima, like torch.argmax", () => {
    expect(argmax(f32([1, 3, 3, 2]))).toBe(1);
    expect(argmax(f32([5, 5]))).toBe(0);
    expect(argmax(f32([-2, -1]))).toBe(1);
  });
});

describe("top-k and top-p at their edges", () => {
  it("kthLargest finds both ends and repeated values", () => {
    const xs = f32([4, -1, 7, 7, 0]);
    expect(kthLargest(xs, 1)).toBe(7);
    expect(kthLargest(xs, 2)).toBe(7);
    expect(kthLargest(xs, 3)).toBe(4);
    expect(kthLargest(xs, 5)).toBe(-1);
    expect(Array.from(xs)).toEqual([4, -1, 7, 7, 0]); // works on a copy
  });

  it("top-k with k = 0 or k ≥ the vocabulary keeps everything; k = 1 keeps the max only", () => {
    for (const k of [0, 3, 4]) {
      const l = f32([1, 2, 3]);
      topKFilter(l, k);
      expect(Array.from(l)).toEqual([1, 2, 3]);
    }
    const l = f32([1, 3, 2]);
    topKFilter(l, 1);
    expect(Array.from(l)).toEqual([-Infinity, 3, -Infinity]);
  });

  it("top-p = 1 keeps everything, and the most likely token survives any p", () => {
    const l = f32([0, Math.log(3)]);
    topPFilter(l, 1);
    expect(Array.from(l)).toEqual([0, Math.fround(Math.log(3))]);
    const one = f32([2]);
    topPFilter(one, 0.5);
    expect(Array.from(one)).toEqual([2]);
  });

  it("top-p drops tied tokens from the highest index first", () => {
    // four equal tokens (0.25 each): p = 0.5 drops the cumulative 0.25 and 0.5 → the two highest indices
    const l = f32([1, 1, 1, 1]);
    topPFilter(l, 0.5);
    expect(Array.from(l).map((x) => x > -Infinity)).toEqual([true, true, false, false]);
  });
});

describe("selectToken: the steps in transformers' order", () => {
  it("greedy applies the repetition penalty before the argmax (and ignores temperature, top-k, top-p)", () => {
    expect(selectToken(f32([2, 1.5]), [0], { ...GREEDY, repetitionPenalty: 2 }, scripted())).toBe(1);
    expect(selectToken(f32([2, 1.5]), [], { ...GREEDY, temperature: 0.1, topK: 1, topP: 0.1 }, scripted())).toBe(0);
  });

  it("sampling draws from softmax(penalised logits / temperature) after top-k and top-p", () => {
    // logits [ln 1, ln 2, ln 3, ln 4] over temperature 1: probabilities 0.1, 0.2, 0.3, 0.4
    const logits = () => f32([1, 2, 3, 4].map(Math.log));
    expect(selectToken(logits(), [], SAMPLE, scripted(0.05))).toBe(0);
    expect(selectToken(logits(), [], SAMPLE, scripted(0.65))).toBe(3);
    // top-k 2 keeps ln 3, ln 4 → 3/7, 4/7: a draw of 0.42 lands on token 2, 0.43 on token 3
    expect(selectToken(logits(), [], { ...SAMPLE, topK: 2 }, scripted(0.42))).toBe(2);
    expect(selectToken(logits(), [], { ...SAMPLE, topK: 2 }, scripted(0.43))).toBe(3);
    // top-p 0.65 drops the tail of cumulative mass ≤ 0.35 (tokens 0 and 1): 3/7 and 4/7 again
    expect(selectToken(logits(), [], { ...SAMPLE, topP: 0.65 }, scripted(0.43))).toBe(3);
    // temperature 0.5 squares the odds: 1, 4, 9, 16 over 30; a draw of 0.2 lands on token 2 (cum 5/30 .. 14/30)
    expect(selectToken(logits(), [], { ...SAMPLE, temperature: 0.5 }, scripted(0.2))).toBe(2);
    // penalty 4 on token 3 (positive logit ln 4 → ln 4 / 4 = ln √2): weights 1, 2, 3, √2
    const w = [1, 2, 3, Math.SQRT2];
    const total = w.reduce((a, b) => a + b, 0);
    expect(
      selectToken(logits(), [3], { ...SAMPLE, repetitionPenalty: 4 }, scripted((6 + 0.5 * Math.SQRT2) / total)),
    ).toBe(3);
    expect(selectToken(logits(), [3], { ...SAMPLE, repetitionPenalty: 4 }, scripted(5.9 / total))).toBe(2);
  });
});
