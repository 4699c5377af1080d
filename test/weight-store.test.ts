// One copy of every weight: packed weights live in the weight store only (not in tfjs's heap, not copied again by
// the kernel pool on first use), are released with their model, and a stored weight reads back what was stored.
import { beforeAll, describe, expect, it } from "vitest";
import { AutoModelForCausalLM, DynamicCache, setBackend, tf } from "fusekit";
import { interleaveBf16, deinterleaveBf16 } from "../src/tensor/bf16.js";
import {
  ARENA_WEIGHT_BYTES,
  WeightStore,
  storeFp8,
  openedArenas,
  storeWords,
  storedRowMajor,
  weightStore,
} from "../src/backend/weight-store.js";
import { blockedAttention } from "../src/backend/prefill-attention-kernel.js";
import { kernelPool, setActivationBlockBytes, setParallelMinMacs } from "../src/backend/pool.js";
import { bf16MatMul, fp8MatMul, int8MatMul, int8Shape, packBf16, quantizeInt8, Rng } from "fusekit/internals";
import { defaultModelDir } from "../src/presets/presets.js";

describe("the weight store (wasm)", () => {
  let dir: string;
  beforeAll(async () => {
    await setBackend("wasm");
    dir = await defaultModelDir();
  });

  it("holds a bf16 model's packed weights once: tfjs's heap gets none, decoding copies none, dispose gives them back", async () => {
    const store = weightStore();
    const [storeBefore, tfBefore] = [store.used, tf.memory().numBytes];
    const model = await AutoModelForCausalLM.fromPretrained(dir, { weightStorage: "bf16" });
    const packed = model.parameters().filter((p) => p.packed);
    const packedBytes = packed.reduce((n, p) => n + p.numel * 2, 0);
    expect(packed.length).toBe(1 + 4 * 7); // the tied embedding and 7 Linears in each of 4 layers
    // each weight's bytes (rounded up to the store's 64-byte blocks), nothing more
    const blocks = packed.reduce((n, p) => n + Math.ceil((p.numel * 2) / 64) * 64, 0);
    expect(store.used - storeBefore).toBe(blocks);
    // tfjs keeps the norms only: far less than the packed bytes
    const tfWeights = tf.memory().numBytes - tfBefore;
    expect(tfWeights).toBe(
      model
        .parameters()
        .filter((p) => !p.packed)
        .reduce((n, p) => n + p.numel * 4, 0),
    );
    // decoding reads the weights in place: the store grows by activation scratch only, not by a weight copy
    const cache = new DynamicCache();
    for (const ids of [[[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]], [[11]], [[12]]]) {
      const { logits } = model.forward({ inputIds: ids, pastKeyValues: cache, useCache: true, logitsToKeep: 1 });
      logits.dispose();
    }
    cache.dispose();
    expect(store.used - storeBefore - blocks).toBeLessThan(packedBytes / 4);
    model.dispose();
    expect(store.used - storeBefore).toBeLessThan(packedBytes / 4); // the weights are given back
  });

  it("stores rows in the kernel layout and reads them back as they were (interleaved by 8 where it can be)", () => {
    for (const [rows, cols] of [
      [16, 24],
      [13, 24],
      [8, 12],
    ]) {
      const words = Int32Array.from({ length: (rows * cols) / 2 }, (_, i) => (i * 2654435761) | 0);
      const w = storeWords(words, [rows, cols / 2], "bf16");
      expect(storedRowMajor(w)).toEqual(words);
      const interleaved = rows % 8 === 0 && cols % 8 === 0;
      expect(w.words()).toEqual(interleaved ? interleaveBf16(words, rows, cols) : words);
      expect(deinterleaveBf16(interleaveBf16(words, rows, cols), rows, cols)).toEqual(words);
      if (interleaved) {
        // row 1's first 8 values sit right after row 0's first 8: 16 bytes = 4 words in
        expect(Array.from(w.words().subarray(4, 8))).toEqual(Array.from(words.subarray(cols / 2, cols / 2 + 4)));
      }
      w.release();
      expect(() => w.words()).toThrow(/released/);
    }
  });

  it("leaves the top of every arena to activations: weights stop below it, a kernel's scratch still fits", () => {
    const store = new WeightStore(1);
    const row = 2 ** 18; // words: 1 MiB a row
    const big = store.alloc([ARENA_WEIGHT_BYTES / 2 ** 20 - 1, row], "bf16"); // all but 1 MiB of the weights' room
    try {
      expect(() => store.alloc([2, row], "bf16")).toThrow(
        "no room for a bf16 weight of 2.0 MiB: the weight store's 1 arenas (3.75 GiB of weights each) hold 3.75 GiB",
      );
      const small = store.alloc([1, row / 2], "bf16"); // what is left below the reserve still takes weights
      const arena = store.arenas[0];
      const scratch = arena.scratchAt(200 * 2 ** 20); // activations: on into the reserve above them
      expect(scratch! + 200 * 2 ** 20).toBeGreaterThan(ARENA_WEIGHT_BYTES);
      expect(arena.scratchAt(300 * 2 ** 20)).toBeUndefined(); // past the arena's 4 GiB
      small.release();
    } finally {
      big.release();
    }
  });

  it("splits a long prompt's matmul rows in blocks that fit the reserve, with the same bits as one call", () => {
    const rng = new Rng(5);
    const [n, m] = [96, 40];
    const w = Float32Array.from({ length: m * n }, () => 0.1 * rng.normal());
    const bf16 = storeWords(packBf16(w).packed, [m, n / 2], "bf16");
    const int8 = storeWords(quantizeInt8(w, m, n), int8Shape(m, n), "int8");
    // E4M3 codes with no NaN (exponent bits never all ones) and one block scale
    const codes = Uint8Array.from({ length: m * n }, () => Math.floor(rng.next() * 256) & 0xf7);
    const fp8 = storeFp8(codes, [m, n], Float32Array.of(0.01), [128, 128]);
    const minMacs = setParallelMinMacs(0); // on the pool's threads too
    try {
      for (const rows of [7, 37]) {
        // 7 rows: the row-streaming kernel; 37: the tiled GEMM
        const x = tf.tensor2d(
          Float32Array.from({ length: rows * n }, () => rng.normal()),
          [rows, n],
        );
        const whole = [bf16MatMul(x, bf16), int8MatMul(x, int8), fp8MatMul(x, fp8)].map((y) => y.dataSync().slice());
        const prev = setActivationBlockBytes(4 * (2 * n + m) * 4); // a few rows a block
        try {
          const jobs = kernelPool().jobs;
          expect(bf16MatMul(x, bf16).dataSync()).toEqual(whole[0]);
          expect(int8MatMul(x, int8).dataSync()).toEqual(whole[1]);
          expect(fp8MatMul(x, fp8).dataSync()).toEqual(whole[2]);
          expect(kernelPool().jobs - jobs).toBe(3 * Math.ceil(rows / 4)); // blocks of 4 rows, each its own job
        } finally {
          setActivationBlockBytes(prev);
        }
        x.dispose();
      }
    } finally {
      setParallelMinMacs(minMacs);
      bf16.release();
      int8.release();
      fp8.release();
    }
  });

  it("runs prefill attention in one arena (the one holding the fewest weights), call after call", () => {
    const rng = new Rng(9);
    // arenas holding a scratch block (activations) besides their weights
    const withScratch = () => openedArenas().flatMap((a, i) => (a.used > a.held ? [i] : []));
    const before = withScratch();
    for (const s of [160, 400, 240]) {
      const t = (T: number) =>
        tf.tensor4d(
          Float32Array.from({ length: 2 * T * 16 }, () => rng.normal()),
          [1, 2, T, 16],
        );
      const [q, k, v] = [t(s), t(s), t(s)];
      blockedAttention(q, k, v, 0.25).dispose();
      tf.dispose([q, k, v]);
    }
    const added = withScratch().filter((i) => !before.includes(i));
    expect(added.length).toBeLessThanOrEqual(1); // a scratch in a new arena each call would add three
    const held = openedArenas().map((a) => a.held);
    const used = [...before, ...added].filter((i) => held[i] === Math.min(...held));
    expect(used.length).toBeGreaterThan(0); // the calls' arena is one holding the fewest weights
  });
});
