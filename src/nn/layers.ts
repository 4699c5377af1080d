import { tf } from "../tensor/tf.js";
import { Module } from "./module.js";
import { Parameter } from "./parameter.js";
import { bf16Embedding, bf16MatMul } from "../backend/ops.js";
import { int8Embedding, int8MatMul } from "../backend/int8-ops.js";
import { fp8Embedding, fp8MatMul } from "../backend/fp8-ops.js";

/** Applies `fn` to `x` flattened to 2-D `[rows, lastDim]` and restores the leading dims (wasm's fast matmul is 2-D only). */
export function as2d(x: tf.Tensor, fn: (x2d: tf.Tensor2D) => tf.Tensor): tf.Tensor {
  const lead = x.shape.slice(0, -1);
  const y = fn(x.rank === 2 ? (x as tf.Tensor2D) : tf.reshape(x, [-1, x.shape[x.rank - 1]]));
  return x.rank === 2 ? y : tf.reshape(y, [...lead, y.shape[y.rank - 1]]);
}

let blockRows = 512;

/**
 * Rows per block of `inRowBlocks` (512, llama.cpp's default micro-batch); returns the previous value. A test
 * hook: smaller blocks give the same bits.
 */
export function setRowBlock(rows: number): number {
  if (!Number.isSafeInteger(rows) || rows < 1)
    throw new RangeError(`row block must be a positive integer, got ${rows}`);
  const prev = blockRows;
  blockRows = rows;
  return prev;
}

/**
 * `fn(x)` for a function that computes every row of `x` (all dims but the last) alone, run on blocks of at most
 * 512 rows, as few as can be and of equal height, so that a long prompt's intermediates stay that tall (an MLP
 * holds its gate, up, SiLU and their product at once: four times the rows × the intermediate size). `fn` gets
 * each block as a 2-D `[rows, width]` tensor. Each row is computed as in one call, so the bits are the same.
 */
export function inRowBlocks(x: tf.Tensor, fn: (x: tf.Tensor) => tf.Tensor): tf.Tensor {
  const width = x.shape[x.rank - 1];
  const rows = x.size / width;
  if (rows <= blockRows) return fn(x);
  // blocks of equal height (±1): no short last block, which a kernel chosen by row count could treat otherwise
  const count = Math.ceil(rows / blockRows);
  const flat = tf.reshape(x, [rows, width]);
  const blocks: tf.Tensor[] = [];
  for (let b = 0, r0 = 0; b < count; b++) {
    const n = Math.floor(rows / count) + (b < rows % count ? 1 : 0);
    blocks.push(tf.tidy(() => fn(tf.slice(flat, [r0, 0], [n, width]))));
    r0 += n;
  }
  const y = tf.concat(blocks, 0) as tf.Tensor2D;
  const out = tf.reshape(y, [...x.shape.slice(0, -1), y.shape[1]]);
  tf.dispose([flat, y, ...blocks]);
  return out;
}

/** y = x W^T + b, with W stored HF-style as `[out, in]` in checkpoints and `[in, out]` in memory. */
export class Linear extends Module<[tf.Tensor], tf.Tensor> {
  weight: Parameter;
  bias?: Parameter;

  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
    { bias = false, std = 0.02 } = {},
  ) {
    super();
    this.weight = new Parameter([outFeatures, inFeatures], { kind: "normal", std }, "transpose");
    if (bias) this.bias = new Parameter([outFeatures], { kind: "zeros" });
  }

  forward(x: tf.Tensor): tf.Tensor {
    return as2d(x, (x2d) => {
      const w = this.weight;
      const y = w.packed
        ? bf16MatMul(x2d, w.packedWeight)
        : w.quantized
          ? int8MatMul(x2d, w.int8Weight)
          : w.fp8
            ? fp8MatMul(x2d, w.fp8Weight)
            : tf.matMul(x2d, w.tensor as tf.Tensor2D);
      return this.bias ? tf.add(y, this.bias.tensor) : y;
    });
  }
}

/**
 * Token embedding. The table is kept transposed (`[dim, vocab]`, checkpoint `[vocab, dim]`) so that a
 * tied lm_head can share it as a Linear weight in the fast `[in, out]` layout; a lookup gathers columns.
 */
export class Embedding extends Module<[tf.Tensor], tf.Tensor> {
  weight: Parameter;

  constructor(
    readonly numEmbeddings: number,
    readonly embeddingDim: number,
    { std = 0.02 } = {},
  ) {
    super();
    this.weight = new Parameter([numEmbeddings, embeddingDim], { kind: "normal", std }, "transpose");
  }

  forward(ids: tf.Tensor): tf.Tensor {
    if (this.weight.packed) return bf16Embedding(this.weight.packedWeight, ids);
    if (this.weight.quantized) return int8Embedding(this.weight.int8Weight, ids, this.embeddingDim);
    if (this.weight.fp8) return fp8Embedding(this.weight.fp8Weight, ids);
    const cols = tf.gather(this.weight.tensor, tf.reshape(ids, [-1]), 1);
    return tf.reshape(tf.transpose(cols), [...ids.shape, this.embeddingDim]);
  }
}

/** Root-mean-square norm in float32: w · x / sqrt(mean(x²) + eps), exactly as transformers' Qwen3RMSNorm. */
export function rmsNorm(x: tf.Tensor, weight: tf.Tensor, eps: number): tf.Tensor {
  const variance = tf.mean(tf.square(x), -1, true);
  return tf.mul(weight, tf.mul(x, tf.rsqrt(tf.add(variance, eps))));
}

export class RMSNorm extends Module<[tf.Tensor], tf.Tensor> {
  weight: Parameter;

  constructor(
    readonly hiddenSize: number,
    readonly eps = 1e-6,
  ) {
    super();
    this.weight = new Parameter([hiddenSize], { kind: "ones" });
  }

  forward(hiddenStates: tf.Tensor): tf.Tensor {
    return rmsNorm(hiddenStates, this.weight.tensor, this.eps);
  }
}

/** SiLU (swish): x · sigmoid(x). */
export function silu(x: tf.Tensor): tf.Tensor {
  return tf.mul(x, tf.sigmoid(x));
}

export const ACT2FN: Record<string, (x: tf.Tensor) => tf.Tensor> = { silu, swish: silu };
