import { tf } from "../tensor/tf.js";
import type { StorageDtype } from "../tensor/dtypes.js";
import { type Initializer, Rng, initValues } from "./init.js";
import { ShapeError } from "../errors.js";

/**
 * How a parameter's compute tensor relates to its checkpoint ("state") tensor.
 * - "identity": the same.
 * - "transpose": a 2-D state `[a, b]` is kept as `[b, a]`. Linear weights use it: HF stores `[out, in]`,
 *   but tfjs-wasm's fast matmul path needs an untransposed `[in, out]` right operand.
 */
export type Layout = "identity" | "transpose";

const size = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

/** Transposes a row-major `[rows, cols]` matrix in blocks (cache-friendly for large embeddings). */
export function transpose2d<T extends Float32Array | Int32Array>(src: T, rows: number, cols: number): T {
  const out = new (src.constructor as new (n: number) => T)(src.length);
  const B = 64;
  for (let r0 = 0; r0 < rows; r0 += B) {
    const r1 = Math.min(r0 + B, rows);
    for (let c0 = 0; c0 < cols; c0 += B) {
      const c1 = Math.min(c0 + B, cols);
      for (let r = r0; r < r1; r++) for (let c = c0; c < c1; c++) out[c * rows + r] = src[r * cols + c];
    }
  }
  return out;
}

/**
 * A learnable tensor owned by a Module. It knows its checkpoint shape and layout, the dtype it was
 * stored as (so saving writes the same bytes back), and how to initialise itself. Until it is loaded or
 * initialised it holds no tensor, so constructing a large model costs no memory.
 */
export class Parameter {
  /** The live tensor, in compute layout; kept out of every tf.tidy. */
  private value: tf.Tensor | undefined;
  /** The dtype the weights were stored as in the checkpoint they came from (saving writes this back). */
  storedDtype: StorageDtype = "F32";

  constructor(
    /** Shape as stored in a checkpoint (HF layout). */
    readonly stateShape: readonly number[],
    readonly init: Initializer,
    readonly layout: Layout = "identity",
    readonly dtype: "float32" | "int32" = "float32",
  ) {
    if (layout === "transpose" && stateShape.length !== 2) {
      throw new ShapeError(`a transposed parameter must be 2-D, got shape [${stateShape}]`);
    }
  }

  get computeShape(): number[] {
    return this.layout === "transpose" ? [this.stateShape[1], this.stateShape[0]] : [...this.stateShape];
  }

  get isMaterialized(): boolean {
    return this.value !== undefined;
  }

  /** The live compute tensor; initialises with `init` (seed 0) if nothing was loaded. */
  get tensor(): tf.Tensor {
    if (!this.value) this.initialize(new Rng(0));
    return this.value!;
  }

  get numel(): number {
    return size(this.stateShape);
  }

  /** Sets the value from checkpoint-layout data (the array is consumed; do not reuse it). */
  setStateData(data: Float32Array | Int32Array, storedDtype: StorageDtype = this.storedDtype): void {
    if (data.length !== this.numel) {
      throw new ShapeError(`expected ${this.numel} values for shape [${this.stateShape}], got ${data.length}`);
    }
    const compute = this.layout === "transpose" ? transpose2d(data, this.stateShape[0], this.stateShape[1]) : data;
    this.replace(tf.tensor(compute, this.computeShape, this.dtype));
    this.storedDtype = storedDtype;
  }

  /** Sets the value from a checkpoint-layout tensor (copied; the caller keeps ownership of `t`). */
  setStateTensor(t: tf.Tensor, storedDtype: StorageDtype = this.storedDtype): void {
    if (t.shape.length !== this.stateShape.length || t.shape.some((d, i) => d !== this.stateShape[i])) {
      throw new ShapeError(`expected shape [${this.stateShape}], got [${t.shape}]`);
    }
    const next = tf.tidy(() => tf.cast(this.layout === "transpose" ? tf.transpose(t) : tf.clone(t), this.dtype));
    this.replace(tf.keep(next));
    this.storedDtype = storedDtype;
  }

  /** The values in checkpoint layout, as a new typed array. */
  stateData(): Float32Array | Int32Array {
    const v = this.tensor.dataSync() as Float32Array | Int32Array;
    return this.layout === "transpose" ? transpose2d(v, this.computeShape[0], this.computeShape[1]) : v.slice();
  }

  /** A new tensor in checkpoint layout; the caller owns (and disposes) it. */
  stateTensor(): tf.Tensor {
    return tf.tensor(this.stateData(), [...this.stateShape], this.dtype);
  }

  initialize(rng: Rng): void {
    this.replace(tf.tensor(initValues(this.init, this.numel, rng), this.computeShape, this.dtype));
    // layout "transpose" of random values is still random values of the same distribution; ones/zeros are symmetric.
  }

  private replace(t: tf.Tensor): void {
    if (this.value && this.value !== t) this.value.dispose();
    this.value = tf.keep(t);
  }

  dispose(): void {
    this.value?.dispose();
    this.value = undefined;
  }
}
