// Timing helpers shared by `fusekit compare` and `npm run bench`: one prefill, one decode run (with the decoder
// stack's share), and the bench's medians of repeated runs with min–max (compare's statistics: stats.ts).
import { tf } from "../tensor/tf.js";
import type { PreTrainedModel } from "../loading/pretrained.js";
import type { Module } from "../nn/module.js";

import type { Range as Stat } from "./types.js";
export type { Stat };

export function stat(xs: number[]): Stat {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return { median: s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2, min: s[0], max: s[s.length - 1] };
}

/** Deterministic token ids for a prompt of length n (inside the vocab, away from special tokens). */
export function promptIds(n: number, vocab: number): number[] {
  return Array.from({ length: n }, (_, i) => (i * 7919 + 13) % Math.min(vocab, 150000));
}

/** Milliseconds of one prefill forward over `ids` (logits of the last position only, read back). */
export function prefillMs(model: PreTrainedModel, ids: number[]): number {
  const t0 = performance.now();
  const { logits } = model.forward({ inputIds: [ids], logitsToKeep: 1 });
  logits.dataSync();
  const ms = performance.now() - t0;
  logits.dispose();
  return ms;
}

/** Prefill throughput: tokens/s of one forward over `n` tokens. */
export function prefillTokensPerSecond(model: PreTrainedModel, n: number): number {
  return (n / prefillMs(model, promptIds(n, (model.config as unknown as { vocab_size: number }).vocab_size))) * 1000;
}

/** Decode throughput: greedy tokens/s over `steps` cached steps after a prompt of `context` tokens (default 8). */
export function decodeTokensPerSecond(model: PreTrainedModel, steps: number, context = 8): number {
  const vocab = (model.config as unknown as { vocab_size: number }).vocab_size;
  const first = model.forward({ inputIds: [promptIds(context, vocab)], useCache: true, logitsToKeep: 1 });
  const cache = first.pastKeyValues!;
  let next = tf.tidy(() => tf.argMax(first.logits, -1).dataSync()[0]);
  first.logits.dispose();
  const t0 = performance.now();
  for (let i = 0; i < steps; i++) {
    const { logits } = model.forward({ inputIds: [[next]], pastKeyValues: cache, logitsToKeep: 1 });
    next = tf.tidy(() => tf.argMax(logits, -1).dataSync()[0]);
    logits.dispose();
  }
  const ms = performance.now() - t0;
  cache.dispose();
  return (steps / ms) * 1000;
}

/**
 * One decode run as `decodeTokensPerSecond`, also timing the decoder layers alone: from the first layer's
 * forward start to the last layer's forward end, per step (wasm and cpu run ops synchronously, so the wall
 * clock between the hooks is the layers' compute). Returns tokens/s and the stack's mean ms per step — a mean,
 * as tokens/s is, so a run's stack time is never more than its step time.
 */
export function decodeWithStackMs(
  model: PreTrainedModel,
  steps: number,
  layers: Module[],
  context?: number,
): { tokensPerSecond: number; stackMs: number } {
  const times: number[] = [];
  let t0 = 0;
  const handles = [
    layers[0].registerForwardPreHook(() => void (t0 = performance.now())),
    layers[layers.length - 1].registerForwardHook(() => void times.push(performance.now() - t0)),
  ];
  try {
    const tokensPerSecond = decodeTokensPerSecond(model, steps, context);
    return { tokensPerSecond, stackMs: times.slice(-steps).reduce((a, b) => a + b, 0) / steps };
  } finally {
    for (const h of handles) h.remove();
  }
}

/** The model's decoder layers, in order (the stack `decodeWithStackMs` times). */
export function decoderLayers(model: PreTrainedModel): Module[] {
  return model
    .getSubmodule("model.layers")
    .namedChildren()
    .map(([, l]) => l);
}

/** One figure: median with min–max, and every run. */
export interface Figure extends Stat {
  runs: number[];
}

/**
 * Runs `fn` up to `n` times (always at least once) and stops early when one more run, as long as the
 * last, would take the figure past `budgetMs`: long figures on a slow machine get fewer runs, and say so.
 */
export function repeatWithin(n: number, budgetMs: number, fn: () => number): Figure {
  const runs: number[] = [];
  const t0 = performance.now();
  while (runs.length < n) {
    const t = performance.now();
    runs.push(fn());
    const now = performance.now();
    if (now - t0 + (now - t) > budgetMs) break;
  }
  return { ...stat(runs), runs };
}
