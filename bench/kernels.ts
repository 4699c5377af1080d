// Micro-bench of the bundled hub kernels: each kernel vs the composed tfjs ops it replaces, µs per call
// (a section of `npm run bench`; model-level numbers are in bench/configs.ts).
import { kernelEnv } from "../src/hub/helpers.js";
import {
  DEFAULT_KERNEL_MAPPING,
  Mode,
  Qwen3Config,
  Qwen3MLP,
  Qwen3RMSNorm,
  SiluAndMul,
  kernelize,
  rmsNorm,
  tf,
  useKernelMapping,
} from "../src/index.js";

export interface KernelMicroRow {
  name: string;
  composedUs: number;
  kernelUs: number;
}

/** Median µs per call over `rounds` rounds of `iters` calls (after a warm-up). */
function timeIt(fn: () => tf.Tensor, iters: number, rounds: number): number {
  for (let i = 0; i < 10; i++) tf.dispose(fn());
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

/** RMSNorm, SiluAndMul and NormMLP kernels vs composed ops at the tiny model's sizes (1 and 32 rows). */
export async function kernelMicroBench({ iters = 200, rounds = 5 } = {}): Promise<KernelMicroRow[]> {
  const backend = tf.getBackend();
  const h = 128;
  const inter = 384;
  const cfg = new Qwen3Config({
    vocab_size: 16,
    hidden_size: h,
    intermediate_size: inter,
    num_hidden_layers: 1,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    head_dim: 32,
  });
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
  const build = new URL(`../hub/fusekit/norm-mlp/${backend === "wasm" ? "wasm" : "cpu"}.js`, import.meta.url).href;
  const fusedForward = (await import(build)).createLayers(kernelEnv(backend)).NormMLP.prototype.forward as (
    x: tf.Tensor,
  ) => tf.Tensor;
  const self = {
    norm_weight: norm.weight,
    eps: 1e-6,
    gate_proj: mlp.gate_proj,
    up_proj: mlp.up_proj,
    down_proj: mlp.down_proj,
  };
  const t = (fn: () => tf.Tensor) => timeIt(fn, iters, rounds);

  const rows: KernelMicroRow[] = [];
  for (const n of [1, 32]) {
    const x = tf.randomNormal([1, n, h], 0, 1, "float32", 1);
    const x2 = tf.randomNormal([1, n, 2 * inter], 0, 1, "float32", 2);
    rows.push({
      name: `RMSNorm [1,${n},${h}]`,
      composedUs: t(() => tf.tidy(() => norm.call(x))),
      kernelUs: t(() => tf.tidy(() => normK.call(x))),
    });
    rows.push({
      name: `SiluAndMul [1,${n},${2 * inter}]`,
      composedUs: t(() => tf.tidy(() => act.call(x2))),
      kernelUs: t(() => tf.tidy(() => actK.call(x2))),
    });
    rows.push({
      name: `NormMLP [1,${n},${h}]→${inter}→${h}`,
      composedUs: t(() => tf.tidy(() => mlp.call(rmsNorm(x, norm.weight.tensor, 1e-6)))),
      kernelUs: t(() => tf.tidy(() => fusedForward.call(self, x))),
    });
    tf.dispose([x, x2]);
  }
  mlp.dispose();
  return rows;
}
