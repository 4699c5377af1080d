import { tf } from "../tensor/tf.js";
import { BackendError, ShapeError } from "../errors.js";
import { copyRowsInPlace, decodeAttention, kvInPlaceAvailable, readRows } from "../backend/kv.js";
import { PoolKV } from "../backend/pool-kv.js";
import type { Arena } from "../backend/weight-store.js";

export interface DynamicCacheOptions {
  /** Rows to preallocate per layer (the buffers still grow by doubling past it). Default: the first update's length, at least 64. */
  maxLength?: number;
}

interface LayerBuffers {
  keys: tf.Tensor4D; // [batch, kvHeads, capacity, headDim]; rows [0, length) are valid
  values: tf.Tensor4D;
  length: number;
}

/**
 * Key/value cache for autoregressive decoding: per layer, keys and values `[batch, kvHeads, seq, headDim]`.
 * Its tensors are kept out of the forward's tf.tidy; `dispose()` frees them.
 *
 * On wasm and cpu each layer's keys / values live in a preallocated buffer (grown by doubling) and a step's
 * new rows are written into it in place — no per-step concat of the whole history. `update` returns the
 * valid rows as new tensors (one copy); `attend` runs a decode step's attention straight on the buffers
 * (no copy at all). Other backends concatenate, as before. A layer the decoder-layer kernel runs keeps its
 * rows in a weight arena instead (`poolLayer`); they move back if a per-op step needs them.
 */
export class DynamicCache {
  private layers: (LayerBuffers | undefined)[] = [];
  private pooled: (PoolKV | undefined)[] = [];
  private backend: string | undefined;

  constructor(readonly options: DynamicCacheOptions = {}) {}

  /** Tokens already cached (layer 0). */
  getSeqLength(layerIdx = 0): number {
    return this.pooled[layerIdx]?.length ?? this.layers[layerIdx]?.length ?? 0;
  }

  /**
   * This layer's rows in `arena` (where its weights are) with room for `rows` rows, moved there from the tfjs
   * buffers (one sequence only) on first use; undefined when the arena has no room (the rows stay where they were).
   */
  poolLayer(layerIdx: number, arena: Arena, kvHeads: number, d: number, rows: number): PoolKV | undefined {
    let kv = this.pooled[layerIdx];
    if (kv && kv.arena !== arena) {
      this.unpool(layerIdx); // another arena: back to tfjs, then into that one
      kv = undefined;
    }
    if (!kv) {
      const layer = this.layers[layerIdx];
      if (layer && (layer.keys.shape[0] !== 1 || layer.keys.shape[1] !== kvHeads || layer.keys.shape[3] !== d))
        return undefined;
      const rowsOf = (buf: tf.Tensor4D) => {
        const rows = readRows(buf, layer!.length); // not through tf.tidy: it would walk the returned array
        const values = rows.dataSync() as Float32Array;
        rows.dispose();
        return values;
      };
      const held = layer && { keys: rowsOf(layer.keys), values: rowsOf(layer.values), length: layer.length };
      const capacity = Math.max(rows, this.options.maxLength ?? 0, layer?.keys.shape[2] ?? 64);
      kv = PoolKV.create(arena, kvHeads, d, capacity, held);
      if (!kv) return undefined;
      if (layer) tf.dispose([layer.keys, layer.values]);
      this.layers[layerIdx] = undefined;
      this.pooled[layerIdx] = kv;
    }
    return kv.reserve(rows) ? kv : undefined;
  }

  /** Appends this step's keys/values for a layer and returns the full cached keys/values. */
  update(keys: tf.Tensor4D, values: tf.Tensor4D, layerIdx: number): [tf.Tensor4D, tf.Tensor4D] {
    const layer = this.append(keys, values, layerIdx);
    if (!this.inPlace()) return [layer.keys.clone(), layer.values.clone()]; // concat mode: the buffers are exact
    return [readRows(layer.keys, layer.length), readRows(layer.values, layer.length)];
  }

  /**
   * A decode step's attention (one new token per row, no padding mask) against this layer's cache, after
   * appending its keys/values: softmax(q kᵀ · scale) v as `[batch, 1, heads · headDim]`, read straight from
   * the buffers. Undefined when this backend keeps no buffers (the caller then uses `update`).
   */
  attend(
    queries: tf.Tensor4D,
    keys: tf.Tensor4D,
    values: tf.Tensor4D,
    layerIdx: number,
    scale: number,
  ): tf.Tensor3D | undefined {
    const d = queries.shape[3];
    if (!kvInPlaceAvailable() || queries.shape[2] !== 1 || (tf.getBackend() === "wasm" && d % 4 !== 0))
      return undefined;
    const layer = this.append(keys, values, layerIdx);
    return decodeAttention(queries, layer.keys, layer.values, layer.length, scale);
  }

  get numLayers(): number {
    return Math.max(this.layers.length, this.pooled.length);
  }

  dispose(): void {
    for (const l of this.layers) if (l) tf.dispose([l.keys, l.values]);
    for (const kv of this.pooled) kv?.release();
    this.layers = [];
    this.pooled = [];
    this.backend = undefined;
  }

  /** Moves a pooled layer's rows back into tfjs buffers (a per-op step is about to use them). */
  private unpool(layerIdx: number): void {
    const kv = this.pooled[layerIdx];
    if (!kv) return;
    const { keys, values, length } = kv.read();
    const shape: [number, number, number, number] = [1, kv.kvHeads, length, kv.d];
    const capacity = Math.max(kv.capacity, 64);
    const buffer = (rows: Float32Array) =>
      tf.tidy(() => {
        const full = tf.zeros([1, kv.kvHeads, capacity, kv.d]) as tf.Tensor4D;
        const part = tf.tensor4d(rows, shape);
        copyRowsInPlace(full, part, 0, length);
        return full;
      });
    this.layers[layerIdx] = { keys: tf.keep(buffer(keys)), values: tf.keep(buffer(values)), length };
    kv.release();
    this.pooled[layerIdx] = undefined;
  }

  private inPlace(): boolean {
    this.backend ??= tf.getBackend();
    if (this.backend !== tf.getBackend())
      throw new BackendError(
        `DynamicCache: filled on "${this.backend}", now used on "${tf.getBackend()}"; use a new cache`,
      );
    return kvInPlaceAvailable();
  }

  /** Writes keys/values ([b, kv, s, d]) after the layer's valid rows; returns the layer. */
  private append(keys: tf.Tensor4D, values: tf.Tensor4D, layerIdx: number): LayerBuffers {
    this.unpool(layerIdx);
    let layer = this.layers[layerIdx];
    if (!this.inPlace()) {
      // concat mode: the "buffers" are exactly the valid rows
      const k = layer ? tf.concat([layer.keys, keys], 2) : keys.clone();
      const v = layer ? tf.concat([layer.values, values], 2) : values.clone();
      if (layer) tf.dispose([layer.keys, layer.values]);
      layer = { keys: tf.keep(k), values: tf.keep(v), length: k.shape[2] };
      this.layers[layerIdx] = layer;
      return layer;
    }
    const [b, kv, s, d] = keys.shape;
    const needed = (layer?.length ?? 0) + s;
    if (layer) {
      const [lb, lkv, , ld] = layer.keys.shape;
      if (lb !== b || lkv !== kv || ld !== d) {
        throw new ShapeError(
          `DynamicCache layer ${layerIdx}: cached [${lb}, ${lkv}, *, ${ld}], got keys [${keys.shape}]`,
        );
      }
    }
    if (!layer || needed > layer.keys.shape[2]) {
      const capacity = Math.max(needed, this.options.maxLength ?? 0, layer ? 2 * layer.keys.shape[2] : 64);
      const grown: LayerBuffers = {
        keys: tf.keep(tf.zeros([b, kv, capacity, d])) as tf.Tensor4D,
        values: tf.keep(tf.zeros([b, kv, capacity, d])) as tf.Tensor4D,
        length: layer?.length ?? 0,
      };
      if (layer) {
        copyRowsInPlace(grown.keys, layer.keys, 0, layer.length);
        copyRowsInPlace(grown.values, layer.values, 0, layer.length);
        tf.dispose([layer.keys, layer.values]);
      }
      layer = grown;
      this.layers[layerIdx] = layer;
    }
    copyRowsInPlace(layer.keys, keys, layer.length, s);
    copyRowsInPlace(layer.values, values, layer.length, s);
    layer.length += s;
    return layer;
  }
}
