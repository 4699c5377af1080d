// Recipe: fused projections. The MLP's gate and up projections become one `gate_up_proj` (one matmul,
// then a split), and attention's q/k/v become one `qkv_proj`. The keys are class-name patterns, so the
// same classes patch Llama, Qwen2 and Qwen3 (each keeps its family's biases and q/k norms). Pair it with
// conversions/gate-up-qkv.ts, which concatenates the checkpoint weights on load and splits them
// back on save. (Outside this repo, import from "fusekit".)
import {
  construct,
  inRowBlocks,
  Linear,
  LlamaAttention,
  LlamaMLP,
  registerPatchMapping,
  silu,
  tf,
} from "../src/index.js";
import type { DecoderConfig, DecoderFamily } from "../src/index.js";

export class FusedGateUpMLP extends LlamaMLP {
  gate_up_proj: Linear;

  constructor(config: DecoderConfig & { mlp_bias?: boolean }) {
    super(config);
    delete (this as { gate_proj?: unknown }).gate_proj;
    delete (this as { up_proj?: unknown }).up_proj;
    const bias = config.mlp_bias ?? false;
    this.gate_up_proj = construct(Linear, config.hidden_size, 2 * config.intermediate_size, {
      bias,
      std: config.initializer_range,
    });
  }

  forward(x: tf.Tensor): tf.Tensor {
    return inRowBlocks(x, (rows) => {
      const [gate, up] = tf.split(this.gate_up_proj.call(rows), 2, -1);
      return this.down_proj.call(tf.mul(silu(gate), up));
    });
  }
}

export class FusedQKVAttention extends LlamaAttention {
  qkv_proj: Linear;

  constructor(config: DecoderConfig, layerIdx: number, family: DecoderFamily) {
    super(config, layerIdx, family);
    for (const name of ["q_proj", "k_proj", "v_proj"]) delete (this as Record<string, unknown>)[name];
    const out = (config.num_attention_heads + 2 * config.num_key_value_heads) * config.head_dim;
    const bias = family.projectionBias(config).qkv;
    this.qkv_proj = construct(Linear, config.hidden_size, out, { bias, std: config.initializer_range });
  }

  protected override project(x: tf.Tensor): [tf.Tensor, tf.Tensor, tf.Tensor] {
    const q = this.numHeads * this.headDim;
    const kv = this.numKeyValueHeads * this.headDim;
    return tf.split(this.qkv_proj.call(x), [q, kv, kv], -1) as [tf.Tensor, tf.Tensor, tf.Tensor];
  }
}

/** The mapping, for scoped use: `fromPretrained(dir, { patches: gateUpQKVPatches })`. */
export const gateUpQKVPatches = {
  "^(Llama|Qwen2|Qwen3)MLP$": FusedGateUpMLP,
  "^(Llama|Qwen2|Qwen3)Attention$": FusedQKVAttention,
};

/** Registers both classes globally. */
export function registerGateUpQKVPatches(options?: { overwrite?: boolean }): void {
  registerPatchMapping(gateUpQKVPatches, options);
}

/** Earlier names, from when the recipe covered Qwen3 only (kept for one release). */
export const qwen3GateUpQKVPatches = gateUpQKVPatches;
export const registerQwen3GateUpQKVPatches = registerGateUpQKVPatches;
