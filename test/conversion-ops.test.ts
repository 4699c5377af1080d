// The reversible conversion ops (src/conversion/ops.ts) on their own: transposes of rank-4 tensors against
// an index-by-index reference, dims counted from the end, and each op's errors naming the op (the gaps a
// mutation run found: docs/testing.md).
import { describe, expect, it } from "vitest";
import {
  Chunk,
  Concatenate,
  ConversionError,
  ConversionRuleError,
  MergeModulelist,
  SplitModulelist,
  Transpose,
  type HostTensor,
} from "fusekit";

const iota = (shape: number[], offset = 0): HostTensor => ({
  data: Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, (_, i) => i + offset),
  shape,
  dtype: "F32",
});

/** Element [i0, i1, …] of a row-major tensor. */
const at = (t: HostTensor, idx: number[]) => t.data[idx.reduce((o, v, k) => o * t.shape[k] + v, 0)];

/** Every index of `shape`, row-major. */
function* indices(shape: number[]): Generator<number[]> {
  const n = shape.reduce((a, b) => a * b, 1);
  for (let flat = 0; flat < n; flat++) {
    const idx: number[] = [];
    let r = flat;
    for (let k = shape.length - 1; k >= 0; k--) {
      idx.unshift(r % shape[k]);
      r = Math.floor(r / shape[k]);
    }
    yield idx;
  }
}

const one = (slots: unknown[]) => slots[0] as HostTensor;

describe("Transpose", () => {
  it.each([
    [1, 3],
    [3, 1],
    [0, 2],
    [-1, 0],
    [2, -3],
  ])("swaps dims %i and %i of a [2, 3, 4, 5] tensor, element by element", (d0, d1) => {
    const t = iota([2, 3, 4, 5]);
    const out = one(new Transpose(d0, d1).apply([t]));
    const [a, b] = [d0, d1].map((d) => (d < 0 ? d + 4 : d));
    const shape = [...t.shape];
    [shape[a], shape[b]] = [shape[b], shape[a]];
    expect(out.shape).toEqual(shape);
    for (const idx of indices(t.shape)) {
      const swapped = [...idx];
      [swapped[a], swapped[b]] = [swapped[b], swapped[a]];
      expect(at(out, swapped)).toBe(at(t, idx));
    }
  });

  it("a transpose of a dim with itself is a copy, not the same buffer; int32 stays int32", () => {
    const t: HostTensor = { data: Int32Array.from([1, 2, 3, 4]), shape: [2, 2], dtype: "I32" };
    const out = one(new Transpose(1, -1).apply([t]));
    expect(out.data).toBeInstanceOf(Int32Array);
    expect(Array.from(out.data)).toEqual([1, 2, 3, 4]);
    out.data[0] = 9;
    expect(t.data[0]).toBe(1);
    expect(one(new Transpose(0, 1).apply([t])).data).toBeInstanceOf(Int32Array);
  });

  it("names itself and its out-of-range dims", () => {
    expect(String(new Transpose(0, 2))).toBe("Transpose(0, 2)");
    expect(() => new Transpose(0, 2).apply([iota([2, 2])])).toThrow(
      new ConversionError("Transpose: dim 2 is out of range for a rank-2 tensor"),
    );
    expect(() => new Transpose(-3, 0).apply([iota([2, 2])])).toThrow(
      /^Transpose: dim -3 is out of range for a rank-2 tensor$/,
    );
    expect(() => new Transpose(0.5, 1)).toThrow(ConversionRuleError);
    expect(() => new Transpose(0.5, 1)).toThrow(/^Transpose: dim must be an integer, got 0.5$/);
    expect(() => new Transpose(0, 1.5)).toThrow(/^Transpose: dim must be an integer, got 1.5$/);
  });
});

describe("Concatenate and Chunk", () => {
  it("concatenates along an inner dim (several outer rows) and chunks back", () => {
    const [a, b] = [iota([2, 1, 3]), iota([2, 2, 3], 100)];
    const cat = one(new Concatenate(1).apply([a, b]));
    expect(cat.shape).toEqual([2, 3, 3]);
    for (const idx of indices(cat.shape)) {
      const [i, j, k] = idx;
      expect(at(cat, idx)).toBe(j < 1 ? at(a, [i, j, k]) : at(b, [i, j - 1, k]));
    }
    const back = new Concatenate(1).reverseFor([a, b]).apply([cat], 2) as HostTensor[];
    expect(back.map((t) => t.shape)).toEqual([
      [2, 1, 3],
      [2, 2, 3],
    ]);
    expect(Array.from(back[1].data)).toEqual(Array.from(b.data));
  });

  it("refuses shapes that differ outside the dim, mixed float/int, module lists and wrong dims, naming the op", () => {
    expect(() => new Concatenate(0).apply([iota([1, 2]), iota([1, 3])])).toThrow(
      /^Concatenate\(dim 0\): shapes \[1,2\], \[1,3\] differ outside dim 0$/,
    );
    expect(() => new Concatenate(0).apply([iota([1, 2]), iota([2])])).toThrow(ConversionError);
    const ints: HostTensor = { data: new Int32Array(2), shape: [1, 2], dtype: "I32" };
    expect(() => new Concatenate(0).apply([iota([1, 2]), ints])).toThrow(
      /^Concatenate: cannot mix float and integer tensors$/,
    );
    expect(() => new Concatenate(0).apply([[iota([1])], iota([1])])).toThrow(
      /^Concatenate: got a module list of 1 tensors/,
    );
    expect(() => new Concatenate(0).reverseFor([[iota([1])]])).toThrow(/^Concatenate: got a module list/);
    expect(() => new Concatenate(2).reverseFor([iota([1, 2])])).toThrow(/^Concatenate: dim 2 is out of range/);
    expect(() => new Concatenate(1.5)).toThrow(/^Concatenate: dim must be an integer/);
  });

  it("Chunk checks its sizes, its input count and its input, naming itself", () => {
    for (const bad of [[], [2, 0], [1.5], [-1]])
      expect(() => new Chunk(0, bad), JSON.stringify(bad)).toThrow(ConversionRuleError);
    expect(() => new Chunk(0, "2" as never)).toThrow(
      /^Chunk: sizes must be a non-empty list of positive integers, got "2"$/,
    );
    expect(() => new Chunk(0.5)).toThrow(/^Chunk: dim must be an integer/);
    expect(() => new Chunk(0).apply([iota([4]), iota([4])], 2)).toThrow(
      new ConversionError("Chunk: expects one input tensor, got 2"),
    );
    expect(() => new Chunk(0).apply([[iota([4])]], 2)).toThrow(/^Chunk: got a module list/);
    expect(() => new Chunk(1).apply([iota([4])], 2)).toThrow(/^Chunk: dim 1 is out of range/);
    expect(String(new Chunk(1))).toBe("Chunk(1)");
    expect(String(new Chunk(0, [2, 1]))).toBe("Chunk(0, [2,1])");
    expect((new Chunk(0, [1, 3]).apply([iota([4])], 2) as HostTensor[]).map((t) => Array.from(t.data))).toEqual([
      [0],
      [1, 2, 3],
    ]);
  });
});

describe("MergeModulelist and SplitModulelist", () => {
  it("name themselves in their errors and descriptions", () => {
    expect(() => new MergeModulelist(2).apply([[iota([2]), iota([2])]])).toThrow(
      /^MergeModulelist: dim 2 is out of range for a rank-2 tensor$/,
    );
    expect(() => new MergeModulelist(0).apply([[iota([2]), iota([3])]])).toThrow(/^MergeModulelist\(dim 0\): shapes/);
    expect(() => new MergeModulelist(0.5)).toThrow(/^MergeModulelist: dim must be an integer/);
    expect(() => new SplitModulelist(1).apply([iota([2])])).toThrow(/^SplitModulelist: dim 1 is out of range/);
    expect(() => new SplitModulelist(0).apply([[iota([2])]])).toThrow(/^SplitModulelist: got a module list/);
    expect(() => new SplitModulelist(0.5)).toThrow(/^SplitModulelist: dim must be an integer/);
    expect(String(new SplitModulelist(1))).toBe("SplitModulelist(1)");
    expect(String(new MergeModulelist(0).reverse())).toBe("SplitModulelist(0)");
  });
});
