import { spawn } from "node:child_process";
import { storeWords } from "../src/backend/weight-store.js";
import { rmSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  AutoModelForCausalLM,
  BackendError,
  DynamicCache,
  Mode,
  Rng,
  bf16MatMul,
  kernelThreads,
  kernelize,
  packBf16,
  setBackend,
  setKernelThreads,
  tf,
  type PreTrainedModel,
} from "fusekit/internals";
import { fuseNormMLP } from "fusekit/fusions/norm-mlp";
import { Lateness, kernelPool, setParallelMinMacs, threadsFromEnv } from "../src/backend/pool.js";
import { smallConfig, tmpDir } from "./helpers/models.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

/** Random bf16-exact weights W [m, n] packed, and x [rows, n]. */
function operands(rows: number, n: number, m: number, seed: number) {
  const rng = new Rng(seed);
  const w = Float32Array.from({ length: m * n }, () => 0.1 * rng.normal());
  const x = Float32Array.from({ length: rows * n }, () => rng.normal());
  const bits = new Uint32Array(w.buffer);
  for (let i = 0; i < bits.length; i++) bits[i] &= 0xffff0000;
  return { x, w, packed: packBf16(w).packed };
}

/** y = x · Wᵀ through fusekit's bf16 matmul on `threads` threads, as raw float32 bits. */
function matmulBits(threads: number, rows: number, n: number, m: number, seed: number): Uint32Array {
  setKernelThreads(threads);
  const { x, packed } = operands(rows, n, m, seed);
  const xt = tf.tensor2d(x, [rows, n]);
  const wt = storeWords(packed, [m, n / 2], "bf16");
  const y = bf16MatMul(xt, wt);
  const bits = new Uint32Array((y.dataSync() as Float32Array).slice().buffer);
  tf.dispose([xt, y]);
  wt.release();
  return bits;
}

describe("the bf16 kernels on a worker pool (wasm)", () => {
  beforeAll(async () => {
    await setBackend("wasm");
  });
  afterAll(() => setKernelThreads());

  // decode (1 row), a row count that is not a multiple of 4, a prefill block; m not a multiple of 8 or of the split
  it.each([
    [1, 1024, 3000],
    [3, 256, 1037],
    [9, 512, 776],
    [64, 1024, 512],
  ])("threaded equals single-threaded bit for bit: x [%i, %i] · W [%i, …]ᵀ", (rows, n, m) => {
    const single = matmulBits(1, rows, n, m, rows + m);
    expect(kernelThreads()).toBe(1);
    for (const threads of [2, 3]) {
      const threaded = matmulBits(threads, rows, n, m, rows + m);
      expect(kernelThreads()).toBe(threads);
      expect(threaded).toEqual(single);
    }
    // and both are the product: against float64 on a few outputs
    const { x, w } = operands(rows, n, m, rows + m);
    const y = new Float32Array(single.buffer);
    for (const [r, o] of [
      [0, 0],
      [rows - 1, m - 1],
      [rows >> 1, m >> 1],
    ]) {
      let s = 0;
      for (let i = 0; i < n; i++) s += x[r * n + i] * w[o * n + i];
      expect(Math.abs(y[r * m + o] - s)).toBeLessThan(1e-4 * Math.sqrt(n));
    }
  });

  it("reuses a weight copied into the shared heap and frees nothing it still needs (repeated calls agree)", () => {
    setKernelThreads(2);
    const { x, packed } = operands(2, 512, 1024, 5);
    const xt = tf.tensor2d(x, [2, 512]);
    const wt = storeWords(packed, [1024, 256], "bf16");
    const first = bf16MatMul(xt, wt).dataSync().slice();
    for (let i = 0; i < 3; i++) expect(bf16MatMul(xt, wt).dataSync()).toEqual(first);
    xt.dispose();
    wt.release();
  });

  it("the workers take part: some chunks of repeated matmuls are computed off the main thread", () => {
    setKernelThreads(2);
    const pool = kernelPool()!;
    expect(pool.workersStarted()).toBe(true);
    const { x, packed } = operands(4, 1024, 4096, 6);
    const xt = tf.tensor2d(x, [4, 1024]);
    const wt = storeWords(packed, [4096, 512], "bf16");
    const first = bf16MatMul(xt, wt).dataSync().slice();
    // a worker spins between jobs, so it claims chunks as soon as it is scheduled; bounded, not timed
    for (let i = 0; i < 200 && pool.workerChunks === 0; i++) expect(bf16MatMul(xt, wt).dataSync()).toEqual(first);
    expect(pool.workerChunks).toBeGreaterThan(0);
    xt.dispose();
    wt.release();
  });

  it("back-to-back jobs of different shapes never mix (each result equals the single-threaded one)", () => {
    const shapes: [number, number, number][] = [
      [1, 256, 1000],
      [2, 512, 96],
      [1, 128, 4104],
      [5, 256, 200],
    ];
    const single = shapes.map(([rows, n, m], i) => matmulBits(1, rows, n, m, 40 + i));
    setKernelThreads(2);
    const prevMin = setParallelMinMacs(0); // small jobs too: the fastest turnover between jobs
    try {
      const inputs = shapes.map(([rows, n, m], i) => {
        const { x, packed } = operands(rows, n, m, 40 + i);
        return [tf.tensor2d(x, [rows, n]), storeWords(packed, [m, n / 2], "bf16")] as const;
      });
      for (let k = 0; k < 300; k++) {
        const i = k % shapes.length;
        const y = bf16MatMul(inputs[i][0], inputs[i][1]);
        expect(new Uint32Array((y.dataSync() as Float32Array).slice().buffer)).toEqual(single[i]);
        y.dispose();
      }
      for (const [x, w] of inputs) {
        x.dispose();
        w.release();
      }
    } finally {
      setParallelMinMacs(prevMin);
    }
  });

  it("FUSEKIT_THREADS picks the thread count; 1 turns the pool off; anything else is a BackendError", () => {
    expect(threadsFromEnv({ FUSEKIT_THREADS: "1" })).toBe(1);
    expect(threadsFromEnv({ FUSEKIT_THREADS: "3" })).toBe(3);
    expect(threadsFromEnv({})).toBeGreaterThanOrEqual(1);
    for (const bad of ["0", "two", "1.5", "-2"])
      expect(() => threadsFromEnv({ FUSEKIT_THREADS: bad })).toThrow(BackendError);
    const before = process.env.FUSEKIT_THREADS;
    process.env.FUSEKIT_THREADS = "1";
    try {
      expect(setKernelThreads()).toBe(1);
    } finally {
      if (before === undefined) delete process.env.FUSEKIT_THREADS;
      else process.env.FUSEKIT_THREADS = before;
    }
    expect(() => setKernelThreads(0)).toThrow(BackendError);
  });
});

/**
 * Runs a script with node against the built package (dist/), under `wrapper` (a command and its arguments) when
 * given; resolves with its exit code and output.
 */
function runNode(
  script: string,
  env: Record<string, string>,
  wrapper: string[] = [],
): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const [command, ...args] = [...wrapper, process.execPath, "--input-type=module", "-e", script];
    const child = spawn(command, args, {
      cwd: root,
      env: { ...process.env, ...env },
    });
    let out = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (out += d));
    child.on("exit", (code) => resolve({ code, out }));
  });
}

const SCRIPT = `
import { bf16MatMul, kernelThreads, setBackend, storeWords, tf } from "${path.join(root, "dist/src/internals.js")}";
await setBackend("wasm");
const x = tf.ones([1, 1024]);
const w = storeWords(new Int32Array(4096 * 512).fill(0x3f803f80), [4096, 512], "bf16"); // every bf16 = 1.0
const y = bf16MatMul(x, w).dataSync();
console.log(kernelThreads(), y.length, y[0], y[4095]);
`;

describe("a process using the pool", () => {
  it.each(["2", "1"])(
    "exits on its own (FUSEKIT_THREADS=%s) with the right product",
    async (threads) => {
      const { code, out } = await runNode(SCRIPT, { FUSEKIT_THREADS: threads });
      expect(out.trim()).toBe(`${threads} 4096 1024 1024`);
      expect(code).toBe(0);
    },
    60000,
  );

  it("started with the host's ESM flag, its workers still start and take part, without a warning", async () => {
    const script = `
import { bf16MatMul, setBackend, storeWords, tf } from "${path.join(root, "dist/src/internals.js")}";
import { kernelPool } from "${path.join(root, "dist/src/backend/pool.js")}";
await setBackend("wasm");
const x = tf.ones([1, 1024]);
const w = storeWords(new Int32Array(4096 * 512).fill(0x3f803f80), [4096, 512], "bf16");
const pool = kernelPool();
console.log(pool.workersStarted());
for (let i = 0; i < 20; i++) bf16MatMul(x, w).dataSync();
console.log(pool.workerChunks > 0);
`;
    const { code, out } = await runNode(script, { FUSEKIT_THREADS: "2" });
    expect(out.trim()).toBe("true\ntrue"); // no FUSEKIT_POOL warning on stderr either
    expect(code).toBe(0);
  }, 60000);
});

describe("loading a model", () => {
  it.each([
    ["bf16", "2 true"],
    ["f32", "none"],
  ])(
    "with %s weights on wasm: the pool's threads start while the weights are read (%s)",
    async (storage, expected) => {
      const script = `
import { AutoModelForCausalLM, defaultModelDir, setBackend } from "${path.join(root, "dist/src/index.js")}";
import { startedKernelPool } from "${path.join(root, "dist/src/backend/pool.js")}";
await setBackend("wasm");
const model = await AutoModelForCausalLM.fromPretrained(await defaultModelDir(), { weightStorage: "${storage}" });
const pool = startedKernelPool(); // before any forward
console.log(pool ? pool.threads + " " + pool.workersStarted() : "none");
model.dispose();
`;
      const { code, out } = await runNode(script, { FUSEKIT_THREADS: "2" });
      expect(out.trim()).toBe(expected);
      expect(code).toBe(0);
    },
    60000,
  );
});

describe("a pool whose workers are late (a busy machine)", () => {
  beforeAll(async () => {
    await setBackend("wasm");
  });

  it("runs jobs alone once a quarter of the last 64 were late, for a second, then tries the workers again", () => {
    const l = new Lateness();
    for (let i = 0; i < 64; i++) l.record(1, i % 4 === 0 ? 0.5 : 0.1, i); // 15 late of 64 (the first is late too)
    expect(l.solo(100)).toBe(false);
    const m = new Lateness();
    for (let i = 0; i < 64; i++) m.record(0.3, i % 4 === 0 ? 2 : 0.01, 1000); // 16 of 64: waited 2 ms after 0.3 ms of work
    expect(m.solo(1000)).toBe(true);
    expect(m.solo(1000 + Lateness.SOLO_MS - 1)).toBe(true);
    expect(m.solo(1000 + Lateness.SOLO_MS)).toBe(false);
    const n = new Lateness();
    for (let i = 0; i < 200; i++) n.record(0.01, 0.15, i); // waits a wake-up long, however short the work: never late
    expect(n.solo(200)).toBe(false);
  });

  it("with a worker that stalls on every chunk (descheduled), goes solo and keeps the single-threaded bits", () => {
    const { x, packed } = operands(1, 1024, 3072, 12);
    const xt = tf.tensor2d(x, [1, 1024]);
    const wt = storeWords(packed, [3072, 512], "bf16");
    setKernelThreads(1);
    const single = bf16MatMul(xt, wt).dataSync().slice();
    setKernelThreads(2);
    const pool = kernelPool();
    expect(pool.workersStarted()).toBe(true);
    pool.stallWorkers(5);
    try {
      // every job the worker joined waited 5 ms for it: once a quarter of 64 were late, the next ran alone (a
      // worker scheduled too late to join a job makes none late, so the count is bounded, not exact)
      for (let i = 0; i < 2000 && pool.lateness.soloJobs === 0; i++)
        expect(bf16MatMul(xt, wt).dataSync()).toEqual(single);
      expect(pool.lateness.soloJobs).toBeGreaterThan(0);
      expect(bf16MatMul(xt, wt).dataSync()).toEqual(single);
    } finally {
      pool.stallWorkers(0);
      xt.dispose();
      wt.release();
      setKernelThreads();
    }
  });
});

describe("models on the pool (wasm, bf16 weights)", () => {
  let dir: string;
  let prevMin: number;
  beforeAll(async () => {
    await setBackend("wasm");
    prevMin = setParallelMinMacs(0); // every matmul of this small model goes to the pool
    const model = AutoModelForCausalLM.fromConfig(
      smallConfig({ hidden_size: 64, intermediate_size: 128, vocab_size: 256, head_dim: 16 }),
      { seed: 4 },
    );
    dir = tmpDir("fusekit-threads-");
    await model.savePretrained(dir, { dtype: "BF16" });
    model.dispose();
  });
  afterAll(() => {
    setParallelMinMacs(prevMin);
    setKernelThreads();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Prefill + 3 greedy decode steps; every logits row. */
  function run(model: PreTrainedModel): Float32Array[] {
    const cache = new DynamicCache();
    const rows: Float32Array[] = [];
    let ids = [[5, 17, 99, 3, 42]];
    for (let s = 0; s < 4; s++) {
      const { logits } = model.forward({ inputIds: ids, pastKeyValues: cache, useCache: true, logitsToKeep: 1 });
      rows.push((logits.dataSync() as Float32Array).slice());
      logits.dispose();
      ids = [[rows[s].indexOf(Math.max(...rows[s]))]];
    }
    cache.dispose();
    return rows;
  }

  it.each(["original", "fused NormMLP + kernelize"])(
    "%s: threaded logits equal single-threaded ones bit for bit",
    async (which) => {
      const model = await AutoModelForCausalLM.fromPretrained(dir, { weightStorage: "bf16" });
      if (which !== "original") {
        fuseNormMLP(model, { kernel: true });
        await kernelize(model, { mode: Mode.INFERENCE });
      }
      setKernelThreads(1);
      const single = run(model);
      setKernelThreads(2);
      const threaded = run(model);
      expect(kernelPool()!.jobs).toBeGreaterThanOrEqual(4 * 2 * 7); // every layer's matmuls ran on the pool
      for (let s = 0; s < single.length; s++)
        expect(new Uint32Array(threaded[s].buffer)).toEqual(new Uint32Array(single[s].buffer));
      model.dispose();
    },
  );
});
