// cpu build: one kernel call for the whole block on the cpu backend's typed arrays; the matmuls are
// row-times-matrix loops over the [in, out] weights (contiguous inner loop, float64 accumulation). Packed
// bf16 weights (int32 [out, in/2]) are multiplied by src/kernels' cpu bf16 matmul kernel function.
import type { TensorInfo } from "@tensorflow/tfjs-core";
import type { KernelEnv, KernelLayerClass } from "../../../src/hub/types.js";
import { KERNEL_NAME, makeLayers, siluMulInPlace } from "./kernel.js";

/** out[rows, n] = a[rows, k] · w[k, n]. */
function matMulRows(a: Float32Array, w: Float32Array, rows: number, k: number, n: number): Float32Array {
  const out = new Float32Array(rows * n);
  const acc = new Float64Array(n);
  for (let r = 0; r < rows; r++) {
    acc.fill(0);
    for (let i = 0; i < k; i++) {
      const av = a[r * k + i];
      if (av === 0) continue;
      const base = i * n;
      for (let j = 0; j < n; j++) acc[j] += av * w[base + j];
    }
    out.set(acc, r * n);
  }
  return out;
}

export function createLayers(env: KernelEnv): Record<string, KernelLayerClass> {
  const { tf, helpers } = env;
  if (!tf.getKernel(KERNEL_NAME, "cpu")) {
    tf.registerKernel({
      kernelName: KERNEL_NAME,
      backendName: "cpu",
      kernelFunc: ({ inputs, backend, attrs }) => {
        const b = backend as any;
        const { x, normWeight, gate, up, down } = inputs as Record<string, TensorInfo>;
        const vals = (t: TensorInfo) => b.data.get(t.dataId).values as Float32Array;
        const h = x.shape[x.shape.length - 1];
        const eps = (attrs as { eps: number }).eps;
        const xs = vals(x);
        const rows = xs.length / h;
        const normed = new Float32Array(xs.length);
        helpers.rmsNormRows(xs, vals(normWeight), normed, rows, h, eps);
        if (gate.dtype === "int32") {
          // packed bf16: the backend bf16 kernel multiplies; its outputs are freed here once read
          const mm = tf.getKernel(helpers.BF16_MATMUL, "cpu")!.kernelFunc;
          const run = (a: Float32Array, k: number, w: TensorInfo): Float32Array => {
            const xi = b.makeTensorInfo([rows, k], "float32", a) as TensorInfo;
            const y = mm({ inputs: { x: xi, w }, backend, attrs: {} }) as TensorInfo;
            const out = vals(y);
            b.disposeData(xi.dataId);
            b.disposeData(y.dataId);
            return out;
          };
          const inter = gate.shape[0];
          const g = run(normed, h, gate);
          siluMulInPlace(g, run(normed, h, up));
          return b.makeTensorInfo([...x.shape], "float32", run(g, inter, down));
        }
        const inter = gate.shape[1];
        const g = matMulRows(normed, vals(gate), rows, h, inter);
        siluMulInPlace(g, matMulRows(normed, vals(up), rows, h, inter));
        return b.makeTensorInfo([...x.shape], "float32", matMulRows(g, vals(down), rows, inter, h));
      },
    });
  }
  return makeLayers(env);
}
export { createLayouts } from "./layout.js";
