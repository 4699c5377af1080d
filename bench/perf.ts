// Decode / prefill speed of the original vs the fused + kernelized configurations, on the tiny default model
// (f32 and bf16 weights) and the Qwen3-0.6B-shaped preset (bf16 weights), plus tfjs ops per decode step.
// A script, not a test:
//   npx tsc -p tsconfig.build.json && node dist/bench/perf.js [--backend wasm] [--runs 3] [--tokens 32]
//        [--skip-tiny] [--skip-06b] [--tiny-storage f32,bf16] [--configs original,fused-kernel,patched-kernel]
import {
  AutoModelForCausalLM,
  DynamicCache,
  Mode,
  defaultModelDir,
  ensureModel,
  kernelize,
  setBackend,
  tf,
  type PreTrainedModel,
  type WeightStorage,
} from "../src/index.js";
import { fuseNormMLP } from "../fusions/norm-mlp.js";
import { qwen3NormMLPPatches } from "../patches/norm-mlp.js";
import { qwen3NormMLPConversions } from "../conversions/norm-mlp.js";

const args = process.argv.slice(2);
const opt = (name: string, dflt: string) => (args.includes(`--${name}`) ? args[args.indexOf(`--${name}`) + 1] : dflt);
const flag = (name: string) => args.includes(`--${name}`);
const RUNS = Number(opt("runs", "3"));
const TOKENS = Number(opt("tokens", "32"));
const CONFIGS = opt("configs", "original,fused-kernel,patched-kernel").split(",");

type Model = PreTrainedModel<
  [{ inputIds: number[][]; pastKeyValues?: DynamicCache; useCache?: boolean; logitsToKeep?: number }],
  { logits: tf.Tensor; pastKeyValues?: DynamicCache }
>;

const now = () => performance.now();
/** CPU seconds of this process: the machine is shared, so rates per CPU-second are reported next to wall-clock ones. */
const cpu = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const argmax = (logits: tf.Tensor) => {
  const a = tf.tidy(() => tf.argMax(tf.reshape(logits, [-1])));
  const v = a.dataSync()[0];
  a.dispose();
  return v;
};

/** Greedy run: prefill `prompt` tokens, then `steps` decode steps; returns [prefill, decode, decode per CPU-s] tok/s. */
function run(model: Model, prompt: number, steps: number): [number, number, number] {
  const ids = [Array.from({ length: prompt }, (_, i) => ((i * 7919) % 1000) + 10)];
  const cache = new DynamicCache();
  let t0 = now();
  let out = model.call({ inputIds: ids, pastKeyValues: cache, useCache: true, logitsToKeep: 1 });
  let next = argmax(out.logits);
  out.logits.dispose();
  const prefill = prompt / ((now() - t0) / 1000);
  t0 = now();
  const c0 = cpu();
  for (let s = 0; s < steps; s++) {
    out = model.call({ inputIds: [[next]], pastKeyValues: cache, useCache: true });
    next = argmax(out.logits);
    out.logits.dispose();
  }
  const decode = steps / ((now() - t0) / 1000);
  const decodeCpu = steps / (cpu() - c0);
  cache.dispose();
  return [prefill, decode, decodeCpu];
}

/** ms per decode step of the decoder stack alone (embedding, layers, final norm; no lm_head), after a 64-token prompt. */
function layersMsPerStep(model: Model, steps: number): number {
  const inner = (model as unknown as { model: { call(i: object): { lastHiddenState: tf.Tensor } } }).model;
  const cache = new DynamicCache();
  inner
    .call({ inputIds: [Array.from({ length: 64 }, (_, i) => i + 10)], pastKeyValues: cache, useCache: true })
    .lastHiddenState.dispose();
  const c0 = cpu();
  for (let s = 0; s < steps; s++) {
    const h = inner.call({ inputIds: [[11 + s]], pastKeyValues: cache, useCache: true }).lastHiddenState;
    h.dataSync();
    h.dispose();
  }
  cache.dispose();
  return ((cpu() - c0) * 1000) / steps;
}

/** tfjs kernels dispatched by one decode step at position 64. */
async function opsPerDecodeStep(model: Model): Promise<number> {
  const cache = new DynamicCache();
  const prompt = [Array.from({ length: 64 }, (_, i) => i + 10)];
  model.call({ inputIds: prompt, pastKeyValues: cache, useCache: true, logitsToKeep: 1 }).logits.dispose();
  const info = await tf.profile(() => {
    model.call({ inputIds: [[11]], pastKeyValues: cache, useCache: true }).logits.dispose();
  });
  cache.dispose();
  return info.kernels.length;
}

async function load(dir: string, config: string, weightStorage: WeightStorage): Promise<Model> {
  if (config === "patched-kernel") {
    const m = await AutoModelForCausalLM.fromPretrained(dir, {
      patches: qwen3NormMLPPatches,
      conversions: qwen3NormMLPConversions,
      weightStorage,
    });
    await kernelize(m, { mode: Mode.INFERENCE });
    return m as unknown as Model;
  }
  const m = await AutoModelForCausalLM.fromPretrained(dir, { weightStorage });
  if (config === "fused-kernel") {
    fuseNormMLP(m, { kernel: true });
    await kernelize(m, { mode: Mode.INFERENCE });
  } else if (config === "kernel") {
    await kernelize(m, { mode: Mode.INFERENCE });
  }
  return m as unknown as Model;
}

async function measure(label: string, dir: string, weightStorage: WeightStorage, tokens: number): Promise<void> {
  for (const config of CONFIGS) {
    const model = await load(dir, config, weightStorage);
    run(model, 8, 4); // warm-up
    const pre: number[] = [];
    const dec: number[] = [];
    const decCpu: number[] = [];
    const before = tf.memory().numTensors;
    for (let r = 0; r < RUNS; r++) {
      const [p, d, dc] = run(model, 64, tokens);
      pre.push(p);
      dec.push(d);
      decCpu.push(dc);
    }
    const after = tf.memory().numTensors;
    const ops = await opsPerDecodeStep(model);
    const layerMs = median(Array.from({ length: RUNS }, () => layersMsPerStep(model, tokens)));
    const fmt = (xs: number[]) =>
      `${median(xs).toFixed(1)} (${Math.min(...xs).toFixed(1)}–${Math.max(...xs).toFixed(1)})`;
    console.log(
      `${label.padEnd(10)} ${config.padEnd(15)} prefill64 ${fmt(pre).padEnd(22)} tok/s  decode ${fmt(dec).padEnd(22)} tok/s  per CPU-s ${fmt(decCpu).padEnd(22)}  layers ${layerMs.toFixed(2)} CPU-ms/step  ops/step ${ops}  numTensors ${before}→${after}`,
    );
    model.dispose();
  }
}

await setBackend(opt("backend", "wasm") as "wasm" | "cpu");
console.log(
  `backend ${tf.getBackend()}, ${RUNS} runs, decode ${TOKENS} tokens after a 64-token prompt; median (min–max)`,
);
if (!flag("skip-tiny")) {
  const tiny = await defaultModelDir();
  for (const storage of opt("tiny-storage", "f32,bf16").split(","))
    await measure(`tiny ${storage}`, tiny, storage as WeightStorage, TOKENS * 4);
}
if (!flag("skip-06b")) await measure("0.6B bf16", await ensureModel("qwen3-0.6b"), "bf16", TOKENS);
