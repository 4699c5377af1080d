// Micro-bench of the bundled hub kernels: each kernel vs the composed ops it replaces, and decode tokens/s of
// the tiny default model, original vs kernelized (bundled defaults). A script, not a test:
//   npx tsc -p tsconfig.build.json && node dist/bench/kernels.js [--backend wasm|cpu] [--tokens 48]
import os from "node:os";
import { pathToFileURL } from "node:url";
import {
  AutoModelForCausalLM,
  Module,
  DEFAULT_KERNEL_MAPPING,
  DynamicCache,
  Mode,
  Qwen3Config,
  Qwen3MLP,
  Qwen3RMSNorm,
  SiluAndMul,
  applyKernelsAfterLoad,
  defaultModelDir,
  kernelize,
  rmsNorm,
  setBackend,
  tf,
  unkernelize,
  useKernelMapping,
  type PreTrainedModel,
} from "../src/index.js";

const arg = (name: string, dflt: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : dflt;
};
let backend = "wasm";
let decodeTokens = 48;

/** Median µs per call over `rounds` rounds of `iters` calls (after a warm-up). */
function timeIt(fn: () => tf.Tensor, iters = 300, rounds = 7): number {
  for (let i = 0; i < 20; i++) tf.dispose(fn());
  const per: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const t0 = performance.now();
    for (let i = 0; i < iters; i++) {
      const y = fn();
      y.dataSync();
      y.dispose();
    }
    per.push(((performance.now() - t0) * 1000) / iters);
  }
  return per.sort((a, b) => a - b)[rounds >> 1];
}

function row(name: string, composed: number, kernel: number): void {
  console.log(`${name.padEnd(38)} composed ${composed.toFixed(1).padStart(8)} µs   kernel ${kernel.toFixed(1).padStart(8)} µs   ${(composed / kernel).toFixed(2)}×`);
}

async function micro(): Promise<void> {
  const h = 128;
  const inter = 384;
  const cfg = new Qwen3Config({ vocab_size: 16, hidden_size: h, intermediate_size: inter, num_hidden_layers: 1, num_attention_heads: 4, num_key_value_heads: 2, head_dim: 32 });
  const norm = new Qwen3RMSNorm(h, 1e-6);
  const normK = new Qwen3RMSNorm(h, 1e-6);
  normK.weight = norm.weight;
  const mlp = new Qwen3MLP(cfg);
  mlp.initializeWeights(1);
  const act = new SiluAndMul();
  const actK = new SiluAndMul();
  await useKernelMapping(DEFAULT_KERNEL_MAPPING, async () => {
    await kernelize(normK, { mode: Mode.INFERENCE });
    await kernelize(actK, { mode: Mode.INFERENCE });
  });
  const normMLP = (await import(new URL("../kernels/fusekit/norm-mlp/" + (backend === "wasm" ? "wasm.js" : "cpu.js"), import.meta.url).href)).createLayers({ tf, backend }).NormMLP;
  const fusedForward = normMLP.prototype.forward as (x: tf.Tensor) => tf.Tensor;
  const self = { norm_weight: norm.weight, eps: 1e-6, gate_proj: mlp.gate_proj, up_proj: mlp.up_proj, down_proj: mlp.down_proj };

  for (const rows of [1, 32]) {
    const x = tf.randomNormal([1, rows, h], 0, 1, "float32", 1);
    const x2 = tf.randomNormal([1, rows, 2 * inter], 0, 1, "float32", 2);
    row(`RMSNorm [1,${rows},${h}]`, timeIt(() => tf.tidy(() => norm.call(x))), timeIt(() => tf.tidy(() => normK.call(x))));
    row(`SiluAndMul [1,${rows},${2 * inter}]`, timeIt(() => tf.tidy(() => act.call(x2))), timeIt(() => tf.tidy(() => actK.call(x2))));
    row(
      `NormMLP [1,${rows},${h}]→${inter}→${h}`,
      timeIt(() => tf.tidy(() => mlp.call(rmsNorm(x, norm.weight.tensor, 1e-6)))),
      timeIt(() => tf.tidy(() => fusedForward.call(self, x))),
    );
    tf.dispose([x, x2]);
  }
}

/** Stand-in for runtime fusion's FusedModule (src/fusion is another helper's): replays [norm, mlp], tagged per instance. */
class FusedChain extends Module<[tf.Tensor], tf.Tensor> {
  readonly kernelLayerName = "NormMLP";
  constructor(readonly chain: readonly Module[]) {
    super();
  }
  forward(x: tf.Tensor): tf.Tensor {
    return this.chain[1].call(this.chain[0].call(x));
  }
}
class Identity extends Module<[tf.Tensor], tf.Tensor> {
  forward(x: tf.Tensor): tf.Tensor {
    return x;
  }
}
function fuseNormMLP(model: PreTrainedModel): void {
  for (const layer of (model as any).model.layers) {
    layer.mlp = new FusedChain([layer.post_attention_layernorm, layer.mlp]);
    layer.post_attention_layernorm = new Identity();
  }
}

const PROMPT = [151643, 9707, 11, 1246, 525, 498, 30, 13];

/** Greedy decode of `n` tokens after an 8-token prompt; returns tokens/s of the decode steps. */
function decode(model: PreTrainedModel, n: number): number {
  const cache = new DynamicCache();
  const first = model.forward({ inputIds: [PROMPT], pastKeyValues: cache, logitsToKeep: 1 });
  let next = tf.tidy(() => tf.argMax(tf.reshape(first.logits, [-1]))).dataSync()[0];
  first.logits.dispose();
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const { logits } = model.forward({ inputIds: [[next]], pastKeyValues: cache, logitsToKeep: 1 });
    next = tf.tidy(() => tf.argMax(tf.reshape(logits, [-1]))).dataSync()[0];
    logits.dispose();
  }
  const secs = (performance.now() - t0) / 1000;
  cache.dispose();
  return n / secs;
}

/** Decoder stack only (embedding + layers + final norm, no lm_head): steps/s of one-token forwards with a cache. */
function stack(model: PreTrainedModel, n: number): number {
  const inner = (model as any).model as Module;
  const cache = new DynamicCache();
  inner.call({ inputIds: [PROMPT], pastKeyValues: cache }).lastHiddenState.dispose();
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const { lastHiddenState } = inner.call({ inputIds: [[PROMPT[i % PROMPT.length]]], pastKeyValues: cache });
    lastHiddenState.dataSync();
    lastHiddenState.dispose();
  }
  const secs = (performance.now() - t0) / 1000;
  cache.dispose();
  return n / secs;
}

/** Kernels launched by one decode step. */
async function kernelsPerStep(model: PreTrainedModel): Promise<number> {
  const cache = new DynamicCache();
  model.forward({ inputIds: [PROMPT], pastKeyValues: cache, logitsToKeep: 1 }).logits.dispose();
  const info = await tf.profile(() => model.forward({ inputIds: [[PROMPT[0]]], pastKeyValues: cache, logitsToKeep: 1 }).logits);
  cache.dispose();
  return info.kernels.length;
}

const med = (a: number[]) => [...a].sort((x, y) => x - y)[a.length >> 1];

async function compare(label: string, model: PreTrainedModel, measure: (m: PreTrainedModel) => number): Promise<void> {
  const orig: number[] = [];
  const kern: number[] = [];
  for (let r = 0; r < 5; r++) {
    unkernelize(model);
    orig.push(measure(model));
    await applyKernelsAfterLoad(model, { useKernels: true });
    kern.push(measure(model));
  }
  console.log(`${label.padEnd(58)} original ${med(orig).toFixed(1).padStart(7)}/s   kernelized ${med(kern).toFixed(1).padStart(7)}/s   ${(med(kern) / med(orig)).toFixed(2)}×`);
}

/** Runs the whole kernels bench on one backend, printing a table to stdout. */
export async function runKernelsBench(options: { backend?: string; tokens?: number } = {}): Promise<void> {
  backend = options.backend ?? "wasm";
  decodeTokens = options.tokens ?? 48;
  await setBackend(backend);
  console.log(`backend ${backend}; node ${process.version}; load average ${os.loadavg().map((l) => l.toFixed(1)).join(" ")} on ${os.cpus().length} cores`);
  await micro();
  const dir = await defaultModelDir();
  for (const fused of [false, true]) {
    const model = await AutoModelForCausalLM.fromPretrained(dir);
    if (fused) fuseNormMLP(model);
    const what = fused ? "fused [post_attention_layernorm, mlp] → RMSNorm + NormMLP kernels" : "plain model → RMSNorm kernels";
    unkernelize(model);
    decode(model, 4);
    const opsBefore = await kernelsPerStep(model);
    await applyKernelsAfterLoad(model, { useKernels: true });
    decode(model, 4);
    const opsAfter = await kernelsPerStep(model);
    console.log(`\n${what}: ${opsBefore} → ${opsAfter} tfjs kernels per decode step`);
    await compare(`  decode tokens/s (${decodeTokens} tokens, median of 5)`, model, (m) => decode(m, decodeTokens));
    await compare(`  decoder stack only, no lm_head (steps/s)`, model, (m) => stack(m, decodeTokens));
    model.dispose();
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  runKernelsBench({ backend: arg("backend", "wasm"), tokens: Number(arg("tokens", "48")) }).catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
