// Kernelized models vs the original, on wasm and cpu: the bundled hub's RMSNorm, NormMLP (patched class
// and runtime-fused chain) and SiluAndMul kernels, restore, memory, and the FUSEKIT_DISABLE_KERNELS switch.
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  AutoModelForCausalLM,
  LayerRepository,
  Mode,
  Module,
  Parameter,
  Qwen3Config,
  Qwen3DecoderLayer,
  Qwen3MLP,
  Qwen3RMSNorm,
  SiluAndMul,
  activeKernel,
  clearKernelMapping,
  kernelize,
  registerKernelMapping,
  rmsNorm,
  setBackend,
  tf,
  unkernelize,
  useKernelForwardFromHub,
  type PreTrainedModel,
} from "fusekit";
import { kernelCalls } from "./helpers/float64.js";
import { flatLogitsOf, maxAbsDiff } from "./helpers/models.js";

const config = new Qwen3Config({
  vocab_size: 64,
  hidden_size: 32,
  intermediate_size: 48,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  head_dim: 8,
});
const IDS = [
  [3, 17, 9, 42, 5],
  [8, 1, 60, 2, 33],
];

const repo = (repoId: string, layerName: string) => new LayerRepository({ repoId, layerName });
const onBoth = (r: LayerRepository) => ({ wasm: r, cpu: r });

/** Test-local mirror of the patched recipe's FusedNormMLP: forward(x) = mlp(rmsNorm(x, norm_weight, eps)). */
@useKernelForwardFromHub("NormMLP")
class FusedNormMLP extends Qwen3MLP {
  norm_weight: Parameter;
  eps: number;
  constructor(cfg: Qwen3Config) {
    super(cfg);
    this.norm_weight = new Parameter([cfg.hidden_size], { kind: "ones" });
    this.eps = cfg.rms_norm_eps;
  }
  override forward(x: tf.Tensor): tf.Tensor {
    return super.forward(rmsNorm(x, this.norm_weight.tensor, this.eps));
  }
}

/** Test-local mirror of runtime fusion's FusedModule: replays [norm, mlp] and names its kernel layer per instance. */
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

const layersOf = (model: PreTrainedModel) => [...(model as any).model.layers] as Qwen3DecoderLayer[];

/** Moves each layer's post_attention_layernorm into a FusedNormMLP (what the patch + conversion recipes produce). */
function patchNormMLP(model: PreTrainedModel): void {
  for (const layer of layersOf(model)) {
    const fused = new FusedNormMLP(config);
    for (const name of ["gate_proj", "up_proj", "down_proj"] as const) fused[name] = layer.mlp[name];
    fused.norm_weight.setStateTensor(layer.post_attention_layernorm.weight.tensor);
    (layer as any).mlp = fused;
    (layer as any).post_attention_layernorm = new Identity();
  }
}

/** Replaces each layer's [post_attention_layernorm, mlp] by a FusedChain over the very same modules. */
function fuseChains(model: PreTrainedModel): void {
  for (const layer of layersOf(model)) {
    (layer as any).mlp = new FusedChain([layer.post_attention_layernorm, layer.mlp]);
    (layer as any).post_attention_layernorm = new Identity();
  }
}

it.each(["rmsnorm/rmsnorm", "activation/silu", "norm-mlp/normmlp"])(
  "the embedded SIMD module %s is exactly its .wat assembled by wabt",
  async (name) => {
    const { readFile } = await import("node:fs/promises");
    const wabt = await (await import("wabt")).default();
    const wat = await readFile(new URL(`../hub/fusekit/${name}.wat`, import.meta.url), "utf8");
    const mod = wabt.parseWat(`${name}.wat`, wat);
    mod.validate();
    const generated = await readFile(new URL(`../hub/fusekit/${name}.wasm.ts`, import.meta.url), "utf8");
    const WASM_BASE64 = /"([A-Za-z0-9+/=]+)"/.exec(generated)![1];
    expect(Buffer.from(WASM_BASE64, "base64").equals(Buffer.from(mod.toBinary({}).buffer))).toBe(true);
    mod.destroy();
  },
);

afterEach(() => {
  clearKernelMapping();
  delete process.env.FUSEKIT_DISABLE_KERNELS;
});

describe.each(["wasm", "cpu"] as const)("kernelized models on %s", (backend) => {
  beforeAll(async () => {
    await setBackend(backend);
  });

  it("RMSNorm kernel: logits within 5e-7, every Qwen3RMSNorm swapped, and unkernelize runs the original again", async () => {
    const model = AutoModelForCausalLM.fromConfig(config, { seed: 3 });
    const reference = flatLogitsOf(model, IDS);
    registerKernelMapping({ RMSNorm: onBoth(repo("fusekit/rmsnorm", "RMSNorm")) });
    await kernelize(model, { mode: Mode.INFERENCE });

    const norms = model.namedModules().filter(([, m]) => m instanceof Qwen3RMSNorm);
    expect(norms.length).toBe(2 * 4 + 1); // per layer: input, post-attention, q, k; plus the final norm
    for (const [, m] of norms) expect(activeKernel(m)).toBe('RMSNorm from repo "fusekit/rmsnorm"');
    expect(Object.prototype.hasOwnProperty.call(Qwen3RMSNorm.prototype, "forward")).toBe(false); // class untouched

    let originalCalls = 0;
    const original = Qwen3RMSNorm.prototype.forward;
    Object.defineProperty(Qwen3RMSNorm.prototype, "forward", {
      configurable: true,
      writable: true,
      value(this: Qwen3RMSNorm, x: tf.Tensor) {
        originalCalls++;
        return original.call(this, x);
      },
    });
    try {
      const { result: kernelized, calls } = kernelCalls(() => flatLogitsOf(model, IDS));
      expect(originalCalls).toBe(0);
      expect(calls("FusekitRMSNorm")).toBe(norms.length); // the kernel, not the same ops, produced them
      expect(maxAbsDiff(kernelized, reference)).toBeLessThan(5e-7); // measured 1.0e-7 (wasm), 3.0e-8 (cpu)

      unkernelize(model);
      expect(activeKernel(norms[0][1])).toBeUndefined();
      const restored = flatLogitsOf(model, IDS);
      expect(originalCalls).toBe(norms.length);
      expect(maxAbsDiff(restored, reference)).toBe(0);
    } finally {
      Object.defineProperty(Qwen3RMSNorm.prototype, "forward", { configurable: true, writable: true, value: original });
      delete (Qwen3RMSNorm.prototype as any).forward;
    }
    model.dispose();
  });

  it("NormMLP kernel on a patched FusedNormMLP model: logits within 4e-7, memory flat", async () => {
    const model = AutoModelForCausalLM.fromConfig(config, { seed: 5 });
    const reference = flatLogitsOf(model, IDS);
    patchNormMLP(model);
    expect(maxAbsDiff(flatLogitsOf(model, IDS), reference)).toBe(0); // the patch itself is exact
    registerKernelMapping({ NormMLP: onBoth(repo("fusekit/norm-mlp", "NormMLP")) });
    await kernelize(model, { mode: Mode.INFERENCE });
    for (const layer of layersOf(model)) expect(activeKernel(layer.mlp)).toBe('NormMLP from repo "fusekit/norm-mlp"');
    const { result: kernelized, calls } = kernelCalls(() => flatLogitsOf(model, IDS));
    expect(calls("FusekitNormMLP")).toBe(layersOf(model).length);
    expect(maxAbsDiff(kernelized, reference)).toBeLessThan(4e-7); // measured 8.9e-8 (wasm), 3.0e-8 (cpu)

    const before = tf.memory().numTensors;
    for (let i = 0; i < 5; i++) flatLogitsOf(model, IDS);
    expect(tf.memory().numTensors).toBe(before);
    model.dispose();
  });

  it("NormMLP kernel on a runtime-fused [norm, mlp] chain: logits within 3e-7, restore on unkernelize", async () => {
    const model = AutoModelForCausalLM.fromConfig(config, { seed: 7 });
    const reference = flatLogitsOf(model, IDS);
    fuseChains(model);
    registerKernelMapping({ NormMLP: onBoth(repo("fusekit/norm-mlp", "NormMLP")) });
    await kernelize(model, { mode: Mode.INFERENCE });
    const fused = layersOf(model).map((l) => l.mlp as unknown as FusedChain);
    for (const f of fused) {
      expect(activeKernel(f)).toBe('NormMLP from repo "fusekit/norm-mlp"');
      expect(Object.prototype.hasOwnProperty.call(f, "forward")).toBe(true);
    }
    let chainCalls = 0;
    const hook = fused[0].chain[1].registerForwardHook(() => void chainCalls++);
    const { result: kernelized, calls } = kernelCalls(() => flatLogitsOf(model, IDS));
    expect(calls("FusekitNormMLP")).toBe(fused.length);
    expect(maxAbsDiff(kernelized, reference)).toBeLessThan(3e-7); // measured 6.0e-8 (wasm), 3.0e-8 (cpu)
    expect(chainCalls).toBe(0); // the kernel reads the chain's weights, it does not run the chain
    unkernelize(model);
    expect(Object.prototype.hasOwnProperty.call(fused[0], "forward")).toBe(false);
    expect(maxAbsDiff(flatLogitsOf(model, IDS), reference)).toBe(0);
    expect(chainCalls).toBe(1);
    hook.remove();
    model.dispose();
  });

  it("NormMLP kernel matches the composed ops for decode- and prefill-sized inputs (SIMD and JS paths), memory flat", async () => {
    registerKernelMapping({ NormMLP: onBoth(repo("fusekit/norm-mlp", "NormMLP")) });
    if (backend === "wasm") {
      const { simdAvailable } = await import("../hub/fusekit/norm-mlp/wasm.js");
      expect(simdAvailable(tf.backend())).toBe(true);
    }
    // hidden 32 / intermediate 48 take the SIMD path on wasm; 30 / 46 (not multiples of 4) the JS loops
    const odd = new Qwen3Config({ ...config.toDict(), hidden_size: 30, intermediate_size: 46 } as any);
    for (const cfg of [config, odd]) {
      const fused = new FusedNormMLP(cfg);
      fused.initializeWeights(13);
      const w = tf.randomUniform([cfg.hidden_size], 0.5, 1.5, "float32", 14);
      fused.norm_weight.setStateTensor(w);
      w.dispose();
      for (const rows of [
        [1, 1],
        [2, 30],
      ]) {
        const x = tf.randomNormal([...rows, cfg.hidden_size], 0, 1, "float32", 17);
        unkernelize(fused);
        const expected = fused.call(x).dataSync() as Float32Array;
        await kernelize(fused, { mode: Mode.INFERENCE });
        const before = tf.memory().numTensors;
        const y = fused.call(x);
        expect(y.shape).toEqual(x.shape);
        expect(maxAbsDiff(y.dataSync() as Float32Array, expected)).toBeLessThan(1e-8); // measured 2.3e-9
        y.dispose();
        expect(tf.memory().numTensors).toBe(before);
        x.dispose();
      }
      fused.dispose();
    }
  });

  it("RMSNorm kernel matches the composed ops on rows of every length (SIMD multiple-of-4 path and the JS path)", async () => {
    registerKernelMapping({ RMSNorm: onBoth(repo("fusekit/rmsnorm", "RMSNorm")) });
    if (backend === "wasm") {
      const { simdAvailable } = await import("../hub/fusekit/rmsnorm/wasm.js");
      expect(simdAvailable(tf.backend())).toBe(true); // Node's wasm has SIMD: the [3,7,64] and [1,1,4] cases run it
    }
    for (const [shape, eps] of [
      [[3, 7, 64], 1e-6],
      [[2, 5, 6], 1e-5],
      [[1, 1, 4], 1e-6],
    ] as const) {
      const n = new Qwen3RMSNorm(shape[2], eps);
      const w = tf.randomUniform([shape[2]], 0.5, 1.5, "float32", 4);
      n.weight.setStateTensor(w);
      const x = tf.randomNormal([...shape], 0, 3, "float32", 5);
      const expected = n.call(x).dataSync() as Float32Array;
      await kernelize(n, { mode: Mode.INFERENCE });
      expect(activeKernel(n)).toBeDefined();
      const y = n.call(x);
      expect(maxAbsDiff(y.dataSync() as Float32Array, expected)).toBeLessThan(3e-6); // measured 7.2e-7 (|y| up to ~10)
      tf.dispose([w, x, y]);
      n.dispose();
    }
  });

  it("SiluAndMul kernel matches the composed ops within 2.5e-7 relative (d = 8: SIMD on wasm; d = 7: JS), extremes included", async () => {
    registerKernelMapping({ SiluAndMul: onBoth(repo("fusekit/activation", "SiluAndMul")) });
    for (const shape of [
      [3, 5, 16],
      [3, 5, 14],
    ]) {
      const m = new SiluAndMul();
      // the first 4 gate values are extremes (exp clamps in the SIMD module)
      const x = tf.tidy(() =>
        tf.concat(
          [
            tf.add(tf.fill([...shape.slice(0, -1), 4], 0), tf.tensor1d([-120, -30, 40, 95])),
            tf.randomNormal([...shape.slice(0, -1), shape[2] - 4], 0, 3, "float32", 11),
          ],
          -1,
        ),
      );
      const expected = m.call(x).dataSync() as Float32Array;
      // kernelize walks modules; a lone layer is its own root
      await kernelize(m, { mode: Mode.INFERENCE });
      expect(activeKernel(m)).toBe('SiluAndMul from repo "fusekit/activation"');
      const y = m.call(x);
      expect(y.shape).toEqual([...shape.slice(0, -1), shape[2] / 2]);
      const got = y.dataSync() as Float32Array;
      // measured at most 6.0e-8 · max(1, |expected|)
      for (let i = 0; i < got.length; i++)
        expect(Math.abs(got[i] - expected[i])).toBeLessThanOrEqual(2.5e-7 * Math.max(1, Math.abs(expected[i])));
      tf.dispose([x, y]);
    }
  });

  it("kernelize with another mode restores; FUSEKIT_DISABLE_KERNELS=1 turns every swap off", async () => {
    const model = AutoModelForCausalLM.fromConfig(config, { seed: 9 });
    registerKernelMapping({ RMSNorm: onBoth(repo("fusekit/rmsnorm", "RMSNorm")) });
    const norm = layersOf(model)[0].input_layernorm;
    await kernelize(model, { mode: Mode.INFERENCE });
    expect(activeKernel(norm)).toBeDefined();
    // The hub kernel has no backward, so TRAINING falls back to the original forward (one warning).
    await kernelize(model, { mode: Mode.TRAINING });
    expect(activeKernel(norm)).toBeUndefined();
    expect(Object.prototype.hasOwnProperty.call(norm, "forward")).toBe(false);
    await kernelize(model, { mode: Mode.INFERENCE });
    expect(activeKernel(norm)).toBeDefined();
    process.env.FUSEKIT_DISABLE_KERNELS = "1";
    await kernelize(model, { mode: Mode.INFERENCE });
    expect(activeKernel(norm)).toBeUndefined();
    model.dispose();
  });
});
