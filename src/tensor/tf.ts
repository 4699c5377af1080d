// The single import point of tfjs-core, so every file shares one engine (and one set of kernels).
import * as tf from "@tensorflow/tfjs-core";
export { tf };
export type Tensor = tf.Tensor;
