// The numeric verdict: an approach's logits against the original's, and its greedy tokens.
import type { PreTrainedModel } from "../loading/pretrained.js";
import { generate } from "../generation/generate.js";
import type { Approach, Reference } from "./types.js";

/** The logits of one forward over `ids`, as a host array. */
export function logitsArray(model: PreTrainedModel, ids: number[]): Float32Array {
  const { logits } = model.forward({ inputIds: [ids] });
  const data = logits.dataSync() as Float32Array;
  logits.dispose();
  return data;
}

/** `n` greedy tokens after `ids`. */
export async function greedy(model: PreTrainedModel, ids: number[], n: number): Promise<number[]> {
  const out = await generate(model, [ids], { maxNewTokens: n, doSample: false, eosTokenId: null });
  return out.newTokens[0];
}

/** The largest absolute difference of two equally long arrays (Infinity when their lengths differ). */
export function maxAbs(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) return Infinity;
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** Logits against the reference and greedy tokens: the numeric verdict (pass when within the tolerance). */
export async function checkNumbers(model: PreTrainedModel, approach: Approach, ref: Reference) {
  const maxAbsDiff = maxAbs(logitsArray(model, ref.ids), ref.refLogits);
  const tokens = await greedy(model, ref.ids, ref.newTokens);
  const tokensIdentical = tokens.filter((t, i) => t === ref.refTokens[i]).length;
  const tokensTotal = ref.refTokens.length;
  const tol = approach.tolerance.toExponential(0);
  const pass = maxAbsDiff <= approach.tolerance && tokensIdentical === tokensTotal;
  const verdict = pass
    ? `pass (Δ ${maxAbsDiff === 0 ? "0" : maxAbsDiff.toExponential(1)} ≤ ${tol})`
    : `FAIL (Δ ${maxAbsDiff.toExponential(1)} vs ${tol}, ${tokensIdentical}/${tokensTotal} tokens)`;
  return { maxAbsDiff, tokensIdentical, tokensTotal, pass, verdict };
}
