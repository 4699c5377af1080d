// Micro-bench of the bundled hub kernels: each kernel vs the composed ops it replaces, and decode tokens/s of
// the tiny default model, original vs kernelized (bundled defaults). A script, not a test:
//   npx tsc -p tsconfig.build.json && node dist/bench/kernels.js [--backend wasm|cpu] [--tokens 48]
import {
  AutoModelForCausalLM,
  DEFAULT_KERNEL_MAPPING,
  DynamicCache,
  Mode,
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
import { Qwen3Config } from "../src/models/qwen3/config.js";

const arg = (name: string, dflt: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : dflt;
};
const backend = arg("backend", "wasm");
const decodeTokens = Number(arg("tokens", "48"));

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

/** Greedy decode of `n` tokens after an 8-token prompt; returns tokens/s of the decode steps. */
function decode(model: PreTrainedModel, n: number): number {
  const cache = new DynamicCache();
  const first = model.forward({ inputIds: [[151643, 9707, 11, 1246, 525, 498, 30, 13]], pastKeyValues: cache, logitsToKeep: 1 });
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

async function main(): Promise<void> {
  await setBackend(backend);
  console.log(`backend ${backend}; node ${process.version}`);
  await micro();
  const model = await AutoModelForCausalLM.fromPretrained(await defaultModelDir());
  decode(model, 8); // warm-up: XNNPACK operators, kernel setup
  const orig: number[] = [];
  const kern: number[] = [];
  for (let r = 0; r < 3; r++) {
    unkernelize(model);
    orig.push(decode(model, decodeTokens));
    await applyKernelsAfterLoad(model, { useKernels: true });
    kern.push(decode(model, decodeTokens));
  }
  const med = (a: number[]) => [...a].sort((x, y) => x - y)[a.length >> 1];
  console.log(`decode tiny default model (${decodeTokens} tokens × 3 rounds, median): original ${med(orig).toFixed(1)} tok/s, kernelized ${med(kern).toFixed(1)} tok/s, ${(med(kern) / med(orig)).toFixed(2)}×`);
  model.dispose();
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
