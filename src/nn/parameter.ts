import { tf } from "../tensor/tf.js";
import { decode, type StorageDtype } from "../tensor/dtypes.js";
import { type Initializer, Rng, initValues } from "./init.js";
import { PackedParameterError, ShapeError } from "../errors.js";
import { packBf16, unpackBf16 } from "../tensor/bf16.js";
import { dequantizeInt8, int8Shape } from "../tensor/int8.js";
import { quantizeInt8 } from "../backend/int8-quantize.js";
import { dequantizeFp8F32, fp8Encode, type Fp8BlockLayout } from "../tensor/fp8.js";
import { transpose2d } from "../tensor/host.js";
import { storeFp8, storeWords, storedRowMajor, type StoredWeight } from "../backend/weight-store.js";

/**
 * How a parameter's compute tensor relates to its checkpoint ("state") tensor.
 * - "identity": the same.
 * - "transpose": a 2-D state `[a, b]` is kept as `[b, a]`. Linear weights use it: HF stores `[out, in]`,
 *   but tfjs-wasm's fast matmul path needs an untransposed `[in, out]` right operand.
 */
export type Layout = "identity" | "transpose";

const size = (shape: readonly number[]) => tf.util.sizeFromShape([...shape]);

/**
 * A learnable tensor owned by a Module. It knows its checkpoint shape and layout, the dtype it was
 * stored as (so saving writes the same bytes back), and how to initialise itself. Until it is loaded or
 * initialised it holds no tensor, so constructing a large model costs no memory.
 */
export class Parameter {
  /** The live tensor, in compute layout; kept out of every tf.tidy. */
  private value: tf.Tensor | undefined;
  /**
   * When set, the value lives only here: bf16 pairs, int32 `[rows, cols/2]` in the weight store, in the kernel
   * layout (src/tensor/bf16.ts: rows interleaved by 8 where they can be).
   */
  private packedValue: StoredWeight | undefined;
  /** When set, the value lives only here: 8-bit blocks (src/tensor/int8.ts), int32 `[rows, blocks · 9]`, in the weight store. */
  private int8Value: StoredWeight | undefined;
  /**
   * When set, the value lives only here: an FP8 checkpoint's E4M3 codes as stored (int32 `[rows, cols/4]`, four a
   * word, checkpoint layout) with its float32 block scales after them, in the weight store; `checkpointLayout`
   * holds the same scales as the checkpoint stored them. Each value is fround(code · scale).
   */
  private fp8Value: StoredWeight | undefined;
  /** The dtype the weights were stored as in the checkpoint they came from (saving writes this back). */
  storedDtype: StorageDtype = "F32";
  /** Set when the checkpoint stored this weight FP8 block-quantized: saving writes that layout back (loading/fp8.ts). */
  checkpointLayout?: Fp8BlockLayout;
  /** Load BF16 checkpoint data straight into packed bf16 storage (set by `packWeightsOnLoad`). */
  packOnLoad = false;
  /** Quantize checkpoint data into 8-bit storage as it is loaded (set by `quantizeWeightsOnLoad`). */
  quantizeOnLoad = false;

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
    return (
      this.value !== undefined ||
      this.packedValue !== undefined ||
      this.int8Value !== undefined ||
      this.fp8Value !== undefined
    );
  }

  /** The live compute tensor; initialises with `init` (seed 0) if nothing was loaded. Throws when packed. */
  get tensor(): tf.Tensor {
    if (this.packedValue) {
      throw new PackedParameterError(
        `parameter of shape [${this.stateShape}] is stored packed as bf16 and has no float32 tensor; ` +
          `read it with stateData()/stateTensor(), or convert back with storeWeightsAs(model, "f32")`,
      );
    }
    if (this.int8Value) {
      throw new PackedParameterError(
        `parameter of shape [${this.stateShape}] is stored as 8-bit blocks and has no float32 tensor; ` +
          `read it with stateData()/stateTensor(), or convert back with storeWeightsAs(model, "f32")`,
      );
    }
    if (this.fp8Value) {
      throw new PackedParameterError(
        `parameter of shape [${this.stateShape}] is stored as FP8 blocks and has no float32 tensor; ` +
          `read it with stateData()/stateTensor(), or convert back with storeWeightsAs(model, "f32")`,
      );
    }
    if (!this.value) this.initialize(new Rng(0));
    return this.value!;
  }

  /** True when the value is kept as an FP8 checkpoint stored it (see `fp8Weight`). */
  get fp8(): boolean {
    return this.fp8Value !== undefined;
  }

  /** The FP8 storage: codes int32 `[stateShape[0], stateShape[1] / 4]` and block scales, in the weight store. */
  get fp8Weight(): StoredWeight {
    if (!this.fp8Value) throw new PackedParameterError(`parameter of shape [${this.stateShape}] is not stored as FP8`);
    return this.fp8Value;
  }

  /**
   * Keeps stored FP8 codes and scales `w` (ownership passes to the parameter) as the value, `layout` being the
   * checkpoint's record of the same scales (saving writes it back); other storage is freed.
   */
  setFp8(w: StoredWeight, layout: Fp8BlockLayout): void {
    const [rows, cols] = this.stateShape;
    const block = layout.config.weight_block_size;
    const s = w.scales;
    if (
      this.stateShape.length !== 2 ||
      cols % 4 ||
      w.kind !== "fp8" ||
      w.shape[0] !== rows ||
      w.shape[1] !== cols / 4 ||
      !s ||
      s.block[0] !== block[0] ||
      s.block[1] !== block[1] ||
      s.shape[0] !== layout.scaleShape[0] ||
      s.shape[1] !== layout.scaleShape[1]
    )
      throw new ShapeError(
        `stored ${w.kind} [${w.shape}] (scales [${s?.shape ?? "none"}]) does not fit an FP8 parameter of shape ` +
          `[${this.stateShape}] in blocks [${block}]`,
      );
    this.freeStorage(w);
    this.fp8Value = w;
    this.checkpointLayout = layout;
  }

  /** The FP8 codes as stored (checkpoint order; a new array). */
  fp8Codes(): Uint8Array {
    const words = this.fp8Weight.words();
    return new Uint8Array(words.buffer, words.byteOffset, words.byteLength).slice();
  }

  /** True when the value is stored as 8-bit blocks (see `int8Tensor`). */
  get quantized(): boolean {
    return this.int8Value !== undefined;
  }

  /** The 8-bit storage: int32 `[stateShape[0], ceil(stateShape[1] / 32) · 9]` (src/tensor/int8.ts), in the weight store. */
  get int8Weight(): StoredWeight {
    if (!this.int8Value)
      throw new PackedParameterError(`parameter of shape [${this.stateShape}] is not stored as 8-bit`);
    return this.int8Value;
  }

  /** The 8-bit shape of a 2-D float32 parameter; undefined for any other. */
  get int8Shape(): [number, number] | undefined {
    return this.stateShape.length === 2 && this.dtype === "float32"
      ? int8Shape(this.stateShape[0], this.stateShape[1])
      : undefined;
  }

  /**
   * Stores the value as 8-bit blocks: an int32 tensor (copied into the weight store; the caller keeps it) or a
   * stored weight (ownership passes to the parameter). Other storage is freed.
   */
  setInt8(t: tf.Tensor | StoredWeight): void {
    const shape = this.int8Shape;
    const words = t instanceof tf.Tensor ? this.checkWords(t, shape, "8-bit") : undefined;
    const stored = words ? storeWords(words, shape!, "int8") : (t as StoredWeight);
    if (!words) this.checkStored(stored, shape, "int8");
    this.freeStorage(stored);
    this.int8Value = stored;
  }

  /** Quantizes checkpoint-layout values (float32, or bf16 bits) into 8-bit storage (lossy: |error| ≤ half a block's scale). */
  quantize(data: Float32Array | Uint16Array, what = "weight"): void {
    const [rows, cols] = this.stateShape;
    this.setInt8Words(quantizeInt8(data, rows, cols, what));
  }

  private setInt8Words(words: Int32Array): void {
    const stored = storeWords(words, this.int8Shape!, "int8");
    this.freeStorage(stored);
    this.int8Value = stored;
  }

  /** An int32 tensor's words after checking it is `shape`; a ShapeError otherwise. */
  private checkWords(t: tf.Tensor, shape: readonly number[] | undefined, what: string): Int32Array {
    if (!shape || t.dtype !== "int32" || t.shape.length !== 2 || t.shape[0] !== shape[0] || t.shape[1] !== shape[1]) {
      throw new ShapeError(
        `${what} value for shape [${this.stateShape}] must be int32 [${shape ?? "not storable"}], got ${t.dtype} [${t.shape}]`,
      );
    }
    return t.dataSync() as Int32Array;
  }

  private checkStored(w: StoredWeight, shape: readonly number[] | undefined, kind: string): void {
    if (!shape || w.kind !== kind || w.shape[0] !== shape[0] || w.shape[1] !== shape[1])
      throw new ShapeError(
        `stored ${w.kind} [${w.shape}] does not fit a ${kind} parameter of shape [${this.stateShape}]`,
      );
  }

  /** Frees every storage but `keep`. */
  private freeStorage(keep?: StoredWeight): void {
    this.value?.dispose();
    this.value = undefined;
    if (this.packedValue !== keep) this.packedValue?.release();
    this.packedValue = undefined;
    if (this.int8Value !== keep) this.int8Value?.release();
    this.int8Value = undefined;
    if (this.fp8Value !== keep) this.fp8Value?.release();
    this.fp8Value = undefined;
  }

  /** True when the value is stored packed as bf16 (see `packedTensor`). */
  get packed(): boolean {
    return this.packedValue !== undefined;
  }

  /** The packed bf16 storage: int32 `[stateShape[0], stateShape[1] / 2]` (`[out, in]` for Linear), in the weight store. */
  get packedWeight(): StoredWeight {
    if (!this.packedValue) throw new PackedParameterError(`parameter of shape [${this.stateShape}] is not packed`);
    return this.packedValue;
  }

  /** The packed shape a 2-D float32 parameter would have; undefined when it cannot be packed (odd columns). */
  get packedShape(): [number, number] | undefined {
    const [rows, cols] = this.stateShape;
    return this.stateShape.length === 2 && this.dtype === "float32" && cols % 2 === 0 ? [rows, cols / 2] : undefined;
  }

  /**
   * Stores the value as packed bf16: an int32 tensor in checkpoint layout (copied into the weight store; the
   * caller keeps it) or a stored weight already in the kernel layout (ownership passes to the parameter).
   * Other storage is freed.
   */
  setPacked(t: tf.Tensor | StoredWeight): void {
    const shape = this.packedShape;
    const words = t instanceof tf.Tensor ? this.checkWords(t, shape, "packed") : undefined;
    const stored = words ? storeWords(words, shape!, "bf16") : (t as StoredWeight);
    if (!words) this.checkStored(stored, shape, "bf16");
    this.freeStorage(stored);
    this.packedValue = stored;
  }

  /** Replaces packed bf16, 8-bit or FP8 storage by a float32 compute tensor holding the same (exact) values. */
  unpack(): void {
    if (!this.packedValue && !this.int8Value && !this.fp8Value) return;
    const data = this.stateData() as Float32Array;
    this.freeStorage();
    this.setStateData(data);
  }

  get numel(): number {
    return size(this.stateShape);
  }

  /** Sets the value from checkpoint-layout data (the array is consumed; do not reuse it). */
  setStateData(data: Float32Array | Int32Array, storedDtype: StorageDtype = this.storedDtype): void {
    if (data.length !== this.numel) {
      throw new ShapeError(`expected ${this.numel} values for shape [${this.stateShape}], got ${data.length}`);
    }
    if (this.int8Value || (this.quantizeOnLoad && this.int8Shape)) {
      this.quantize(data instanceof Float32Array ? data : Float32Array.from(data), `parameter [${this.stateShape}]`);
      this.storedDtype = storedDtype;
      return;
    }
    if (this.fp8Value) {
      // Stays FP8: the layout's scales when they give these values back, else fresh ones (fp8Encode).
      const layout = this.checkpointLayout!;
      const { weight, scaleBytes } = fp8Encode(
        data instanceof Float32Array ? data : Float32Array.from(data),
        this.stateShape,
        layout,
      );
      const scales =
        scaleBytes === layout.scaleBytes ? layout.scales : (decode(scaleBytes, layout.scaleDtype) as Float32Array);
      const block = layout.config.weight_block_size;
      this.setFp8(storeFp8(weight, this.stateShape, scales, block), { ...layout, scaleBytes, scales });
      this.storedDtype = storedDtype;
      return;
    }
    if (this.packedValue || (this.packOnLoad && storedDtype === "BF16" && this.packedShape)) {
      // Stays (or becomes) packed: the checkpoint layout is the packed layout, so no transpose.
      const { packed, inexact } = packBf16(data instanceof Float32Array ? data : Float32Array.from(data));
      if (inexact)
        throw new PackedParameterError(
          `${inexact} of ${data.length} values for a bf16-packed parameter of shape [${this.stateShape}] are not exactly bf16`,
        );
      const stored = storeWords(packed, this.packedShape!, "bf16");
      this.freeStorage(stored);
      this.packedValue = stored;
      this.storedDtype = storedDtype;
      return;
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
    if (this.packedValue || this.int8Value || this.fp8Value)
      return this.setStateData(Float32Array.from(t.dataSync()), storedDtype);
    const next = tf.tidy(() => tf.cast(this.layout === "transpose" ? tf.transpose(t) : tf.clone(t), this.dtype));
    this.replace(tf.keep(next));
    this.storedDtype = storedDtype;
  }

  /** The values in checkpoint layout, as a new typed array. */
  stateData(): Float32Array | Int32Array {
    if (this.packedValue) return unpackBf16(storedRowMajor(this.packedValue));
    if (this.int8Value) return dequantizeInt8(storedRowMajor(this.int8Value), this.stateShape[0], this.stateShape[1]);
    if (this.fp8Value) {
      const layout = this.checkpointLayout!;
      return dequantizeFp8F32(this.fp8Codes(), this.stateShape, layout.scales, layout.config.weight_block_size);
    }
    const v = this.tensor.dataSync() as Float32Array | Int32Array;
    return this.layout === "transpose" ? transpose2d(v, this.computeShape[0], this.computeShape[1]) : v.slice();
  }

  /** A new tensor in checkpoint layout; the caller owns (and disposes) it. */
  stateTensor(): tf.Tensor {
    return tf.tensor(this.stateData(), [...this.stateShape], this.dtype);
  }

  initialize(rng: Rng): void {
    this.freeStorage();
    this.replace(tf.tensor(initValues(this.init, this.numel, rng), this.computeShape, this.dtype));
    // layout "transpose" of random values is still random values of the same distribution; ones/zeros are symmetric.
  }

  private replace(t: tf.Tensor): void {
    if (this.value && this.value !== t) this.value.dispose();
    this.value = tf.keep(t);
  }

  dispose(): void {
    this.freeStorage();
  }
}
