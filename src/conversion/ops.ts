// Reversible tensor operations for checkpoint conversion (transformers' core_model_loading.py ops).
// They work on host typed arrays in checkpoint layout: exact copies, no tfjs tensors, and only the
// tensors of one conversion group in memory at a time.
import type { StorageDtype } from "../tensor/dtypes.js";
import { ConversionError, ConversionRuleError } from "../errors.js";
import { tf } from "../tensor/tf.js";

/** A checkpoint tensor on the host: values (float32 / int32), shape, and the dtype it is stored as. */
export interface HostTensor {
  data: Float32Array | Int32Array;
  shape: number[];
  dtype: StorageDtype;
}

/** What flows between operations: one entry per source pattern; a list when a pattern matched a module list. */
export type Slot = HostTensor | HostTensor[];

const numel = (shape: readonly number[]) => tf.util.sizeFromShape([...shape]);

function checkDim(dim: number, what: string): number {
  if (!Number.isInteger(dim)) throw new ConversionRuleError(`${what}: dim must be an integer, got ${dim}`);
  return dim;
}

function axis(dim: number, rank: number, op: string): number {
  const d = dim < 0 ? dim + rank : dim;
  if (d < 0 || d >= rank) throw new ConversionError(`${op}: dim ${dim} is out of range for a rank-${rank} tensor`);
  return d;
}

function single(slot: Slot, op: string): HostTensor {
  if (Array.isArray(slot))
    throw new ConversionError(`${op}: got a module list of ${slot.length} tensors; merge it first (MergeModulelist)`);
  return slot;
}

/** Concatenates along `dim`: every other dim must agree. */
export function concatHost(ts: HostTensor[], dim: number, op = "Concatenate"): HostTensor {
  const rank = ts[0].shape.length;
  const d = axis(dim, rank, op);
  for (const t of ts) {
    if (t.shape.length !== rank || t.shape.some((n, i) => i !== d && n !== ts[0].shape[i])) {
      throw new ConversionError(
        `${op}(dim ${dim}): shapes ${ts.map((x) => `[${x.shape}]`).join(", ")} differ outside dim ${d}`,
      );
    }
    if (t.data.constructor !== ts[0].data.constructor)
      throw new ConversionError(`${op}: cannot mix float and integer tensors`);
  }
  const outer = numel(ts[0].shape.slice(0, d));
  const inner = numel(ts[0].shape.slice(d + 1));
  const total = ts.reduce((n, t) => n + t.shape[d], 0);
  const out = new (ts[0].data.constructor as new (n: number) => Float32Array | Int32Array)(outer * total * inner);
  let o = 0;
  for (let i = 0; i < outer; i++) {
    for (const t of ts) {
      const n = t.shape[d] * inner;
      out.set(t.data.subarray(i * n, (i + 1) * n), o);
      o += n;
    }
  }
  const shape = [...ts[0].shape];
  shape[d] = total;
  return { data: out, shape, dtype: ts[0].dtype };
}

/** Splits along `dim` into pieces of the given sizes (they must add up to the dim). */
export function splitHost(t: HostTensor, sizes: number[], dim: number, op = "Chunk"): HostTensor[] {
  const d = axis(dim, t.shape.length, op);
  if (sizes.reduce((a, b) => a + b, 0) !== t.shape[d]) {
    throw new ConversionError(
      `${op}(dim ${dim}): sizes [${sizes}] do not add up to ${t.shape[d]} (shape [${t.shape}])`,
    );
  }
  const outer = numel(t.shape.slice(0, d));
  const inner = numel(t.shape.slice(d + 1));
  const Ctor = t.data.constructor as new (n: number) => Float32Array | Int32Array;
  const outs = sizes.map((s) => new Ctor(outer * s * inner));
  let o = 0;
  for (let i = 0; i < outer; i++) {
    sizes.forEach((s, k) => {
      const n = s * inner;
      outs[k].set(t.data.subarray(o, o + n), i * n);
      o += n;
    });
  }
  return outs.map((data, k) => {
    const shape = [...t.shape];
    shape[d] = sizes[k];
    return { data, shape, dtype: t.dtype };
  });
}

/** Swaps two dims (a copy). */
export function transposeHost(t: HostTensor, dim0: number, dim1: number): HostTensor {
  const rank = t.shape.length;
  let a = axis(dim0, rank, "Transpose");
  let b = axis(dim1, rank, "Transpose");
  if (a === b) return { ...t, data: t.data.slice() };
  if (a > b) [a, b] = [b, a];
  // View the tensor as [A, n0, B, n1, C] and write it as [A, n1, B, n0, C].
  const A = numel(t.shape.slice(0, a));
  const n0 = t.shape[a];
  const B = numel(t.shape.slice(a + 1, b));
  const n1 = t.shape[b];
  const C = numel(t.shape.slice(b + 1));
  const out = new (t.data.constructor as new (n: number) => Float32Array | Int32Array)(t.data.length);
  for (let x = 0; x < A; x++)
    for (let i = 0; i < n0; i++)
      for (let y = 0; y < B; y++)
        for (let j = 0; j < n1; j++) {
          const src = (((x * n0 + i) * B + y) * n1 + j) * C;
          const dst = (((x * n1 + j) * B + y) * n0 + i) * C;
          out.set(t.data.subarray(src, src + C), dst);
        }
  const shape = [...t.shape];
  [shape[a], shape[b]] = [shape[b], shape[a]];
  return { data: out, shape, dtype: t.dtype };
}

/** One step of a WeightConverter; `reverse()` undoes it (used when saving in the original layout). */
export abstract class ConversionOperation {
  /**
   * `targets` is how many tensors the converter must produce; `targetShapes`, when known, the model's
   * shape for each (Chunk without sizes splits into pieces of those sizes, else into equal parts).
   */
  abstract apply(inputs: Slot[], targets: number, targetShapes?: readonly (readonly number[] | undefined)[]): Slot[];
  abstract reverse(): ConversionOperation;
  /** The reverse for these concrete inputs (Concatenate's reverse must know the sizes it joined). */
  reverseFor(_inputs: Slot[]): ConversionOperation {
    return this.reverse();
  }
  abstract toString(): string;
}

/** Many tensors → one, joined along `dim`. Reverse: Chunk. */
export class Concatenate extends ConversionOperation {
  constructor(readonly dim = 0) {
    super();
    checkDim(dim, "Concatenate");
  }
  apply(inputs: Slot[]): Slot[] {
    return [
      concatHost(
        inputs.map((s) => single(s, "Concatenate")),
        this.dim,
      ),
    ];
  }
  reverse(): ConversionOperation {
    return new Chunk(this.dim);
  }
  override reverseFor(inputs: Slot[]): ConversionOperation {
    return new Chunk(
      this.dim,
      inputs.map((s) => {
        const t = single(s, "Concatenate");
        return t.shape[axis(this.dim, t.shape.length, "Concatenate")];
      }),
    );
  }
  toString(): string {
    return `Concatenate(${this.dim})`;
  }
}

/**
 * One tensor → several along `dim`: explicit `sizes`, else the target parameters' sizes along `dim` (a GQA
 * qkv splits into q, k, v of different sizes, as transformers does), else equal parts. Reverse: Concatenate.
 */
export class Chunk extends ConversionOperation {
  constructor(
    readonly dim = 0,
    readonly sizes?: number[],
  ) {
    super();
    checkDim(dim, "Chunk");
    if (
      sizes !== undefined &&
      (!Array.isArray(sizes) || !sizes.length || sizes.some((s) => !Number.isInteger(s) || s <= 0))
    ) {
      throw new ConversionRuleError(
        `Chunk: sizes must be a non-empty list of positive integers, got ${JSON.stringify(sizes)}`,
      );
    }
  }
  apply(inputs: Slot[], targets: number, targetShapes?: readonly (readonly number[] | undefined)[]): Slot[] {
    if (inputs.length !== 1) throw new ConversionError(`Chunk: expects one input tensor, got ${inputs.length}`);
    const t = single(inputs[0], "Chunk");
    return splitHost(t, this.sizes ?? this.sizesFor(t, targets, targetShapes), this.dim);
  }
  /** The targets' sizes along `dim` when every target's shape is known and they add up; else equal parts. */
  private sizesFor(t: HostTensor, targets: number, shapes?: readonly (readonly number[] | undefined)[]): number[] {
    const d = axis(this.dim, t.shape.length, "Chunk");
    const n = t.shape[d];
    const known = shapes?.length === targets && shapes.every((s) => s?.length === t.shape.length);
    const fromTargets = known ? shapes!.map((s) => s![d]) : [];
    if (known && fromTargets.every((s) => s > 0) && fromTargets.reduce((a, b) => a + b, 0) === n) return fromTargets;
    if (n % targets !== 0) {
      const why = known ? ` (the targets' sizes [${fromTargets}] do not add up to it either)` : "";
      const what = `Chunk(dim ${this.dim}): ${n} does not split into ${targets} equal parts (shape [${t.shape}])`;
      throw new ConversionError(`${what}${why}; give explicit sizes`);
    }
    return Array(targets).fill(n / targets);
  }
  reverse(): ConversionOperation {
    return new Concatenate(this.dim);
  }
  toString(): string {
    return `Chunk(${this.dim}${this.sizes ? `, [${this.sizes}]` : ""})`;
  }
}

/** Swaps two dims of every tensor. Its own reverse. */
export class Transpose extends ConversionOperation {
  constructor(
    readonly dim0 = 0,
    readonly dim1 = 1,
  ) {
    super();
    checkDim(dim0, "Transpose");
    checkDim(dim1, "Transpose");
  }
  apply(inputs: Slot[]): Slot[] {
    const tr = (t: HostTensor) => transposeHost(t, this.dim0, this.dim1);
    return inputs.map((s) => (Array.isArray(s) ? s.map(tr) : tr(s)));
  }
  reverse(): ConversionOperation {
    return new Transpose(this.dim0, this.dim1);
  }
  toString(): string {
    return `Transpose(${this.dim0}, ${this.dim1})`;
  }
}

/** Stacks each module list (e.g. experts.0…N.w1) into one tensor with a new axis at `dim`. Reverse: SplitModulelist. */
export class MergeModulelist extends ConversionOperation {
  constructor(readonly dim = 0) {
    super();
    checkDim(dim, "MergeModulelist");
  }
  apply(inputs: Slot[]): Slot[] {
    return inputs.map((s) => {
      const list = Array.isArray(s) ? s : [s];
      const rank = list[0].shape.length + 1;
      const d = axis(this.dim, rank, "MergeModulelist");
      const withAxis = list.map((t) => ({ ...t, shape: [...t.shape.slice(0, d), 1, ...t.shape.slice(d)] }));
      return concatHost(withAxis, d, "MergeModulelist");
    });
  }
  reverse(): ConversionOperation {
    return new SplitModulelist(this.dim);
  }
  toString(): string {
    return `MergeModulelist(${this.dim})`;
  }
}

/** Unstacks each tensor along `dim` into a module list. Reverse: MergeModulelist. */
export class SplitModulelist extends ConversionOperation {
  constructor(readonly dim = 0) {
    super();
    checkDim(dim, "SplitModulelist");
  }
  apply(inputs: Slot[]): Slot[] {
    return inputs.map((s) => {
      const t = single(s, "SplitModulelist");
      const d = axis(this.dim, t.shape.length, "SplitModulelist");
      return splitHost(t, Array(t.shape[d]).fill(1), d, "SplitModulelist").map((p) => ({
        ...p,
        shape: p.shape.filter((_, i) => i !== d),
      }));
    });
  }
  reverse(): ConversionOperation {
    return new MergeModulelist(this.dim);
  }
  toString(): string {
    return `SplitModulelist(${this.dim})`;
  }
}
