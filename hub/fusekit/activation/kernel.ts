// Shared by the wasm and cpu builds.
import type { Tensor, TensorInfo } from "@tensorflow/tfjs-core";
import type { KernelEnv } from "../../../src/hub/types.js";

export const KERNEL_NAME = "FusekitSiluAndMul";

/**
 * out[r, j] = (x[r, j] · sig[r, j]) · x[r, d + j] for rows of length 2d, each product rounded to float32: with sig
 * the backend's own Sigmoid of the gate half, the unfused mul(mul(gate, sigmoid(gate)), up), bit for bit.
 */
export function siluAndMulRows(x: Float32Array, sig: Float32Array, out: Float32Array, rows: number, d: number): void {
  for (let r = 0; r < rows; r++) {
    const i = r * 2 * d;
    const o = r * d;
    for (let j = 0; j < d; j++) out[o + j] = Math.fround(x[i + j] * sig[o + j]) * x[i + d + j];
  }
}

/** The backend's own Sigmoid of x[..., :d] (via its Slice kernel), [..., d]; the caller frees it. */
export function gateSigmoid(tf: KernelEnv["tf"], backend: object, x: TensorInfo, d: number): TensorInfo {
  const run = (name: string, inputs: object, attrs: object) =>
    tf.getKernel(name, tf.getBackend())!.kernelFunc({ inputs, backend, attrs } as never) as TensorInfo;
  const gate = run("Slice", { x }, { begin: x.shape.map(() => 0), size: [...x.shape.slice(0, -1), d] });
  const sig = run("Sigmoid", { x: gate }, {});
  (backend as { disposeData(id: object): void }).disposeData(gate.dataId);
  return sig;
}

export function makeLayers({ tf }: KernelEnv) {
  class SiluAndMul {
    static hasBackward = false;
    forward(x: Tensor): Tensor {
      return tf.engine().runKernel(KERNEL_NAME, { x }, {}) as Tensor;
    }
  }
  return { SiluAndMul };
}
