// The single import point of tfjs-core, so every file shares one engine (and one set of kernels).
import * as tf from "@tensorflow/tfjs-core";

// fusekit chooses the backend itself (tfjs-node when it loads): tfjs's "install tfjs-node" banner, which
// the cpu backend prints into stderr on first use, is noise here.
tf.env().set("PROD", true);

export { tf };
export type Tensor = tf.Tensor;
