// Reading a forward's inputs: token ids, the padding mask, default positions and the additive causal
// mask — the same for every family.
import { tf } from "../tensor/tf.js";
import { expectShape } from "./module.js";
import { ShapeError } from "../errors.js";

const MASKED = -3.4028234663852886e38; // float32 min, as transformers' eager attention uses

/** `inputIds` as an int32 `[batch, seq]` tensor (a new one when given arrays). */
export function toIds(ids: tf.Tensor | number[][]): tf.Tensor2D {
  if (Array.isArray(ids)) {
    if (!ids.length || !Array.isArray(ids[0]) || ids.some((r) => r.length !== ids[0].length)) {
      throw new ShapeError("inputIds: expected a non-empty rectangular number[][] ([batch, seq])");
    }
    return tf.tensor2d(ids, [ids.length, ids[0].length], "int32");
  }
  expectShape(ids, [undefined, undefined], "inputIds");
  if (ids.dtype !== "int32") throw new ShapeError(`inputIds: expected an int32 tensor, got ${ids.dtype}`);
  return ids as tf.Tensor2D;
}

/** The attention mask as host rows `[b][past+s]`, or undefined when every token is attended. */
export function readMask(mask: tf.Tensor | number[][] | undefined, b: number, total: number): number[][] | undefined {
  if (mask === undefined) return undefined;
  const rows = Array.isArray(mask) ? mask : (mask.arraySync() as number[][]);
  if (rows.length !== b || rows.some((r) => !Array.isArray(r) || r.length !== total)) {
    throw new ShapeError(`attentionMask: expected shape [${b}, ${total}] (batch, past + new tokens)`);
  }
  return rows.every((r) => r.every((x) => x === 1)) ? undefined : rows;
}

export function defaultPositions(mask: number[][] | undefined, b: number, past: number, s: number): number[][] {
  return Array.from({ length: b }, (_, bi) => {
    if (!mask) return Array.from({ length: s }, (_, t) => past + t);
    // position = number of attended tokens before this one (padding gets position 1, as transformers' generate)
    const row = mask[bi];
    const out: number[] = [];
    let count = 0;
    for (let j = 0; j < past + s; j++) {
      if (j >= past) out.push(row[j] ? count : 1);
      count += row[j] ? 1 : 0;
    }
    return out;
  });
}

/** Additive `[b, 1, s, past+s]` mask: causal plus padding; undefined when nothing is masked. */
export function buildCausalMask(
  mask: number[][] | undefined,
  b: number,
  s: number,
  past: number,
): tf.Tensor | undefined {
  if (!mask && s === 1) return undefined;
  const total = past + s;
  const data = new Float32Array(b * s * total);
  for (let bi = 0; bi < b; bi++) {
    for (let i = 0; i < s; i++) {
      const base = (bi * s + i) * total;
      for (let j = 0; j < total; j++) {
        if (j > past + i || (mask && !mask[bi][j])) data[base + j] = MASKED;
      }
    }
  }
  return tf.tensor4d(data, [b, 1, s, total]);
}
