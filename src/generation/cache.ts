import { tf } from "../tensor/tf.js";

/**
 * Key/value cache for autoregressive decoding: per layer, keys and values `[batch, kvHeads, seq, headDim]`.
 * Its tensors are kept out of the forward's tf.tidy; `dispose()` frees them.
 */
export class DynamicCache {
  private keys: (tf.Tensor4D | undefined)[] = [];
  private values: (tf.Tensor4D | undefined)[] = [];

  /** Tokens already cached (layer 0). */
  getSeqLength(layerIdx = 0): number {
    return this.keys[layerIdx]?.shape[2] ?? 0;
  }

  /** Appends this step's keys/values for a layer and returns the full cached keys/values. */
  update(keys: tf.Tensor4D, values: tf.Tensor4D, layerIdx: number): [tf.Tensor4D, tf.Tensor4D] {
    const oldK = this.keys[layerIdx];
    const oldV = this.values[layerIdx];
    const k = oldK ? tf.concat([oldK, keys], 2) : keys.clone();
    const v = oldV ? tf.concat([oldV, values], 2) : values.clone();
    this.keys[layerIdx] = tf.keep(k);
    this.values[layerIdx] = tf.keep(v);
    oldK?.dispose();
    oldV?.dispose();
    return [k, v];
  }

  get numLayers(): number {
    return this.keys.length;
  }

  dispose(): void {
    for (const t of [...this.keys, ...this.values]) t?.dispose();
    this.keys = [];
    this.values = [];
  }
}
