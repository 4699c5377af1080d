import { tf } from "../tensor/tf.js";
import { Module } from "../nn/module.js";
import { silu } from "../nn/layers.js";
import { useKernelForwardFromHub } from "./decorator.js";

/** silu(x[..., :d]) · x[..., d:] — the SwiGLU activation on a concatenated [gate, up] input (as in vLLM / kernels). */
@useKernelForwardFromHub("SiluAndMul")
export class SiluAndMul extends Module<[tf.Tensor], tf.Tensor> {
  forward(x: tf.Tensor): tf.Tensor {
    const [gate, up] = tf.split(x, 2, -1);
    return tf.mul(silu(gate), up);
  }
}
