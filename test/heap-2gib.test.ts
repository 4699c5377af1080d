// Past 2 GiB in a wasm memory: byte offsets above 2^31 turn negative under `>> 2`, and typed
// arrays accept negative indexes, so a kernel could silently read the wrong bytes. This file (on its own: the
// heap never shrinks) computes a small model's logits and greedy decode (KV-cache kernels, bf16 kernels,
// XNNPACK) with the memories small, then fills tfjs's heap and the weight store's first arena below 2 GiB with
// ballast so that every later tensor and stored weight lives above it, reloads the model and checks the very
// same numbers.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { rmSync } from "node:fs";
import { AutoModelForCausalLM, DynamicCache, setBackend, tf, type PreTrainedModel } from "fusekit";
import { logitsOf, smallConfig, tmpDir } from "./helpers/models.js";
import { weightStore } from "../src/backend/weight-store.js";

const TWO_GIB = 2 ** 31;
const PROMPT = [[3, 14, 15, 9, 26, 5, 35, 8]];
const STORAGES = ["bf16", "f32"] as const;

interface Backend {
  dataIdMap: { get(id: tf.DataId): { memoryOffset: number } };
}
const offset = (t: tf.Tensor) => (tf.backend() as unknown as Backend).dataIdMap.get(t.dataId).memoryOffset;

async function run(dir: string, weightStorage: (typeof STORAGES)[number]) {
  const model = await AutoModelForCausalLM.fromPretrained(dir, { weightStorage, strict: true });
  try {
    const logits = logitsOf(model, PROMPT);
    return { logits, steps: greedyDecode(model), lowest: lowestWeightOffset(model) };
  } finally {
    model.dispose();
  }
}

/** The last-position logits of a prefill and 11 greedy decode steps through the KV cache (in-place kernels). */
function greedyDecode(model: PreTrainedModel): number[][] {
  const cache = new DynamicCache();
  const steps: number[][] = [];
  let ids = PROMPT;
  try {
    for (let i = 0; i < 12; i++) {
      const { logits } = model.forward({ inputIds: ids, pastKeyValues: cache, useCache: true, logitsToKeep: 1 });
      const row = Array.from(logits.dataSync() as Float32Array);
      logits.dispose();
      steps.push(row);
      ids = [[row.indexOf(Math.max(...row))]];
    }
  } finally {
    cache.dispose();
  }
  return steps;
}

function lowestWeightOffset(model: PreTrainedModel): number {
  return Math.min(...model.parameters().map((p) => (p.packed ? p.packedWeight.at : offset(p.tensor))));
}

/** Blocks of the store's first arena, of `bytes` each, until one lands at or above 2 GiB (freed again). */
function fillArenaBelow2GiB(ballast: number[], bytes: number): void {
  const arena = weightStore().arenas[0];
  for (;;) {
    const at = arena.alloc(bytes)!;
    if (at >= TWO_GIB) return arena.release(at);
    ballast.push(at);
  }
}

/**
 * Allocates float32 tensors of `elements` until some in a row (64 small ones, one large) land at or above
 * 2 GiB (those are freed again):
 * with large, then smaller and smaller sizes, every hole below 2 GiB a later tensor could take gets filled.
 */
function fillBelow2GiB(ballast: tf.Tensor[], elements: number): void {
  const high: tf.Tensor[] = [];
  while (high.length < Math.min(64, Math.max(1, 2 ** 16 / elements))) {
    const t = tf.zeros([elements]);
    if (offset(t) >= TWO_GIB) high.push(t);
    else {
      ballast.push(t);
      tf.dispose(high.splice(0));
    }
  }
  tf.dispose(high);
}

describe("wasm heap past 2 GiB", () => {
  const ballast: tf.Tensor[] = [];
  const arenaBallast: number[] = [];
  let dir: string;
  beforeAll(async () => {
    await setBackend("wasm");
    dir = tmpDir();
    const model = AutoModelForCausalLM.fromConfig(smallConfig({ tie_word_embeddings: true }), { seed: 11 });
    await model.savePretrained(dir, { dtype: "BF16" });
    model.dispose();
  });
  afterAll(() => {
    tf.dispose(ballast);
    for (const at of arenaBallast) weightStore().arenas[0].release(at);
    rmSync(dir, { recursive: true, force: true });
  });

  it("gives exactly the logits and decode scores computed before the ballast, for bf16 and f32 weights", async () => {
    const before = [];
    for (const storage of STORAGES) before.push(await run(dir, storage));
    expect(before[0].lowest).toBeLessThan(TWO_GIB);

    const tensorsBefore = tf.memory().numTensors;
    for (const elements of [2 ** 26, 2 ** 20, 2 ** 14, 2 ** 10, 2 ** 6, 2 ** 2, 1]) fillBelow2GiB(ballast, elements);
    for (const bytes of [2 ** 26, 2 ** 20, 2 ** 14, 2 ** 10, 2 ** 6]) fillArenaBelow2GiB(arenaBallast, bytes);
    expect(tf.memory().numTensors).toBe(tensorsBefore + ballast.length);
    expect((tf.backend() as unknown as { wasm: { HEAPU8: Uint8Array } }).wasm.HEAPU8.length).toBeGreaterThan(TWO_GIB);

    for (const [i, storage] of STORAGES.entries()) {
      const after = await run(dir, storage);
      expect(after.lowest, `${storage}: every weight lives above 2 GiB`).toBeGreaterThanOrEqual(TWO_GIB);
      expect(after.logits, storage).toEqual(before[i].logits);
      expect(after.steps, storage).toEqual(before[i].steps);
    }
    tf.dispose(ballast.splice(0));
    expect(tf.memory().numTensors).toBe(tensorsBefore);
  }, 300_000);
});
