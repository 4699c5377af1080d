// Recipe: fused projections. The MLP's gate and up projections become one `gate_up_proj` (one matmul,
// then a split), and attention's q/k/v become one `qkv_proj`. Pair it with
// conversions/qwen3-gate-up-qkv.ts, which concatenates the checkpoint weights on load and splits them
// back on save. (Outside this repo, import from "fusekit".)
import { construct, Linear, Qwen3Attention, Qwen3MLP, registerPatchMapping, silu, tf } from "../src/index.js";
import type { Qwen3Config } from "../src/index.js";

export class FusedGateUpMLP extends Qwen3MLP {
  gate_up_proj: Linear;

  constructor(config: Qwen3Config) {
    super(config);
    delete (this as { gate_proj?: unknown }).gate_proj;
    delete (this as { up_proj?: unknown }).up_proj;
    this.gate_up_proj = construct(Linear, config.hidden_size, 2 * config.intermediate_size, { std: config.initializer_range });
  }

  forward(x: tf.Tensor): tf.Tensor {
    const [gate, up] = tf.split(this.gate_up_proj.call(x), 2, -1);
    return this.down_proj.call(tf.mul(silu(gate), up));
  }
}

export class FusedQKVAttention extends Qwen3Attention {
  qkv_proj: Linear;

  constructor(config: Qwen3Config, layerIdx: number) {
    super(config, layerIdx);
    for (const name of ["q_proj", "k_proj", "v_proj"]) delete (this as Record<string, unknown>)[name];
    const out = (config.num_attention_heads + 2 * config.num_key_value_heads) * config.head_dim;
    this.qkv_proj = construct(Linear, config.hidden_size, out, { bias: config.attention_bias, std: config.initializer_range });
  }

  protected override project(x: tf.Tensor): [tf.Tensor, tf.Tensor, tf.Tensor] {
    const q = this.numHeads * this.headDim;
    const kv = this.numKeyValueHeads * this.headDim;
    return tf.split(this.qkv_proj.call(x), [q, kv, kv], -1) as [tf.Tensor, tf.Tensor, tf.Tensor];
  }
}

/** The mapping, for scoped use: `fromPretrained(dir, { patches: qwen3GateUpQKVPatches })`. */
export const qwen3GateUpQKVPatches = { Qwen3MLP: FusedGateUpMLP, Qwen3Attention: FusedQKVAttention };

/** Registers both classes globally. */
export function registerQwen3GateUpQKVPatches(options?: { overwrite?: boolean }): void {
  registerPatchMapping(qwen3GateUpQKVPatches, options);
}
