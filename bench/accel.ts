// Measures packed BF16 weight storage on wasm: decode/prefill tokens/s f32 vs bf16 (tiny default model),
// the Qwen3-0.6B-shaped preset with bf16 storage (load + convert, heap, prefill 64, decode), and the
// machine's read bandwidth (JS and inside wasm) for the decode bound.
// Run: npx tsc -p tsconfig.build.json && node dist/bench/accel.js [--runs 5] [--skip-06b] [--only-06b] [--convert]
// (0.6B loads with fromPretrained(dir, { weightStorage: "bf16" }); --convert loads float32 then storeWeightsAs instead.)
import { tf, setBackend, fromPretrained, defaultModelDir, ensureModel, storeWeightsAs, setBf16Options, DynamicCache } from "../src/index.js";
import type { PreTrainedModel } from "../src/index.js";
import { BF16_MATMUL, wasmReadSum } from "../src/accel/kernels.js";

const args = process.argv.slice(2);
const flag = (f: string) => args.includes(f);
const RUNS = Number(args[args.indexOf("--runs") + 1]) || 5;

type Stats = { median: number; min: number; max: number; runs: number[] };
function stats(xs: number[]): Stats {
  const s = [...xs].sort((a, b) => a - b);
  return { median: s[Math.floor(s.length / 2)], min: s[0], max: s[s.length - 1], runs: xs };
}
const fmt = (s: Stats, unit = "") => `median ${s.median.toFixed(2)}${unit} (min ${s.min.toFixed(2)}, max ${s.max.toFixed(2)})`;
const now = () => performance.now();
/** CPU seconds of this process (user + system): the machine is shared, so rates per CPU-second are reported too. */
const cpu = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1e6; };
type Rate = { wall: number; cpu: number };

type Model = PreTrainedModel<[{ inputIds: number[][]; pastKeyValues?: DynamicCache; useCache?: boolean; logitsToKeep?: number }], { logits: tf.Tensor; pastKeyValues?: DynamicCache }>;

/** Greedy decode of `steps` tokens after a prompt of `prompt` tokens; returns [prefill tok/s, decode tok/s]. */
function run(model: Model, prompt: number, steps: number): [Rate, Rate] {
  const ids = [Array.from({ length: prompt }, (_, i) => (i * 7919) % 1000 + 10)];
  const cache = new DynamicCache();
  let t0 = now();
  let c0 = cpu();
  let out = model.call({ inputIds: ids, pastKeyValues: cache, useCache: true, logitsToKeep: 1 });
  let next = (tf.tidy(() => tf.argMax(tf.reshape(out.logits, [-1]))).dataSync()[0]);
  out.logits.dispose();
  const prefill = { wall: prompt / ((now() - t0) / 1000), cpu: prompt / (cpu() - c0) };
  t0 = now();
  c0 = cpu();
  for (let s = 0; s < steps; s++) {
    out = model.call({ inputIds: [[next]], pastKeyValues: cache, useCache: true });
    const a = tf.tidy(() => tf.argMax(tf.reshape(out.logits, [-1])));
    next = a.dataSync()[0];
    a.dispose();
    out.logits.dispose();
  }
  const decode = { wall: steps / ((now() - t0) / 1000), cpu: steps / (cpu() - c0) };
  cache.dispose();
  return [prefill, decode];
}

function heapBytes(): number {
  const b = tf.backend() as unknown as { wasm?: { HEAPU8: Uint8Array } };
  return b.wasm ? b.wasm.HEAPU8.buffer.byteLength : NaN;
}

const fmtRates = (rs: Rate[], unit: string) =>
  `wall ${fmt(stats(rs.map((r) => r.wall)), unit)} | per CPU-s ${fmt(stats(rs.map((r) => r.cpu)), unit)}`;

/** GB/s of `fn` reading `bytes`, by wall and by CPU time. */
function bandwidth(bytes: number, fn: () => void): Rate[] {
  const xs: Rate[] = [];
  for (let r = 0; r < RUNS; r++) {
    const t0 = now();
    const c0 = cpu();
    fn();
    xs.push({ wall: bytes / ((now() - t0) / 1000) / 1e9, cpu: bytes / (cpu() - c0) / 1e9 });
  }
  return xs;
}

async function load(dir: string, bf16: boolean): Promise<{ model: Model; loadS: number; convertS: number }> {
  let t0 = now();
  const model = (await fromPretrained(dir)) as unknown as Model;
  const loadS = (now() - t0) / 1000;
  t0 = now();
  if (bf16) storeWeightsAs(model, "bf16");
  return { model, loadS, convertS: (now() - t0) / 1000 };
}

/** Weight bytes a decode step reads: every Linear / lm_head weight (the embedding lookup reads one row). */
function decodeWeightBytes(model: Model, bytesPerValue: number): number {
  let n = 0;
  for (const [name, p] of model.namedParameters()) if (p.stateShape.length === 2 && !name.includes("norm")) n += p.numel;
  return n * bytesPerValue;
}

async function main() {
  await setBackend("wasm");
  console.log(`runs per figure: ${RUNS}; backend ${tf.getBackend()}; rates: median (min, max) by wall clock and per CPU-second`);
  const big = new Float32Array(128 * 1024 * 1024); // 512 MB
  big.fill(1);
  const jsBw = bandwidth(big.byteLength, () => {
    let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (let i = 0; i < big.length; i += 4) { s0 += big[i]; s1 += big[i + 1]; s2 += big[i + 2]; s3 += big[i + 3]; }
    if (s0 + s1 + s2 + s3 < 0) console.log("");
  });
  console.log(`read bandwidth, JS sum over a 512 MB Float32Array: ${fmtRates(jsBw, " GB/s")}`);
  const heapT = tf.tensor1d(big);
  const wasmBw = bandwidth(big.byteLength, () => void wasmReadSum(heapT));
  console.log(`read bandwidth, wasm SIMD sum over 512 MB of heap: ${fmtRates(wasmBw, " GB/s")}`);
  heapT.dispose();
  const w = tf.zeros([256 * 1024, 512], "int32"); // 512 MB of bf16, [262144, 1024]
  const x = tf.ones([1, 1024]);
  const kernelBw = bandwidth(512 * 2 ** 20, () => (tf.engine().runKernel(BF16_MATMUL, { x, w }) as tf.Tensor).dispose());
  console.log(`bf16 matvec kernel, 1 row × 512 MB weight:        ${fmtRates(kernelBw, " GB/s")}`);
  w.dispose();
  x.dispose();
  const bw = stats(wasmBw.map((r) => r.cpu)).median * 1e9;

  if (!flag("--only-06b")) {
    const dir = await defaultModelDir();
    for (const bf16 of [false, true]) {
      const { model } = await load(dir, bf16);
      run(model, 8, 8); // warm-up
      const pre: Rate[] = [], dec: Rate[] = [];
      for (let r = 0; r < RUNS; r++) {
        const [p, d] = run(model, 64, 64);
        pre.push(p);
        dec.push(d);
      }
      const before = tf.memory().numTensors;
      run(model, 8, 8);
      console.log(`tiny ${bf16 ? "bf16" : "f32 "}: prefill 64: ${fmtRates(pre, " tok/s")}`);
      console.log(`           decode:     ${fmtRates(dec, " tok/s")}   (numTensors ${before} → ${tf.memory().numTensors} after another run)`);
      console.log(`           decode bound at the wasm read bandwidth: ${(bw / decodeWeightBytes(model, bf16 ? 2 : 4)).toFixed(0)} tok/s`);
      model.dispose();
    }
  }

  if (!flag("--skip-06b")) {
    const dir = await ensureModel("qwen3-0.6b");
    let model: Model, loadS: number, convertS = 0;
    if (flag("--convert")) ({ model, loadS, convertS } = await load(dir, true));
    else {
      const t0 = now();
      model = (await fromPretrained(dir, { weightStorage: "bf16" })) as unknown as Model;
      loadS = (now() - t0) / 1000;
    }
    console.log(`0.6B (${flag("--convert") ? "fromPretrained + storeWeightsAs" : "fromPretrained weightStorage bf16"}): load ${loadS.toFixed(1)} s, convert ${convertS.toFixed(1)} s, heap ${(heapBytes() / 2 ** 30).toFixed(2)} GiB, rss ${(process.memoryUsage().rss / 2 ** 30).toFixed(2)} GiB (file 1.19 GB)`);
    for (const g of [Number.MAX_SAFE_INTEGER, 8]) { // 8: prefill widens for XNNPACK, decode (1 row) stays on the kernel
      setBf16Options({ gemmMaxRows: g });
      run(model, 8, 2); // warm-up
      const pre: Rate[] = [], dec: Rate[] = [];
      for (let r = 0; r < Math.min(RUNS, 3); r++) {
        const [p, d] = run(model, 64, 16);
        pre.push(p);
        dec.push(d);
      }
      console.log(`0.6B bf16, prefill via ${g > 8 ? "the bf16 SIMD kernel" : "widening + XNNPACK"}: prefill 64: ${fmtRates(pre, " tok/s")}`);
      console.log(`           decode: ${fmtRates(dec, " tok/s")}; heap ${(heapBytes() / 2 ** 30).toFixed(2)} GiB`);
    }
    console.log(`0.6B decode bound at the wasm read bandwidth: ${(bw / decodeWeightBytes(model, 2)).toFixed(1)} tok/s (${(decodeWeightBytes(model, 2) / 1e9).toFixed(2)} GB of bf16 weights per token)`);
    model.dispose();
  }
}

await main();
