// Reading checkpoint bytes straight into their final place, several reads at a time:
// CheckpointReader.readBytesIntoMany against readBytes, its failures, and a BF16 load into packed storage that
// must stay byte-exact even when the wasm heap grows (detaching every view of it) while the reads run; F16
// weights rounded to bf16 where they land, by the SIMD kernel and the table, against decoding and encoding.
import { storedRowMajor } from "../src/backend/weight-store.js";
import path from "node:path";
import { promises as fsp } from "node:fs";
import { afterEach, describe, expect, it } from "vitest";
import {
  AutoModelForCausalLM,
  CheckpointReader,
  CheckpointFormatError,
  decode,
  encode,
  setBackend,
  tf,
  writeSafetensors,
} from "fusekit/internals";
import { roundF16ToBf16, roundF16ToBf16InHeap, roundF32ToBf16, roundF32ToBf16InHeap } from "../src/backend/convert.js";
import { heapOffset, type WasmBackend } from "../src/backend/heap.js";
import { savedFamilyModel, smallConfig, tmpDir } from "./helpers/models.js";

const MIB = 2 ** 20;

/** Deterministic bytes that differ at every offset a misplaced chunk could land on. */
function pattern(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed;
  for (let i = 0; i < n; i++) out[i] = (x = (Math.imul(x, 1103515245) + 12345) >>> 0) >>> 24;
  return out;
}

/** A checkpoint folder with an empty tensor, small ones and one spanning three 16 MiB reads. */
async function checkpoint(): Promise<{ dir: string; bytes: Map<string, Uint8Array> }> {
  const dir = tmpDir();
  const tensors = [
    { name: "empty", dtype: "U8" as const, shape: [0], bytes: new Uint8Array(0) },
    { name: "small", dtype: "BF16" as const, shape: [5], bytes: pattern(10, 1) },
    { name: "big", dtype: "U8" as const, shape: [32 * MIB + 3], bytes: pattern(32 * MIB + 3, 2) },
    { name: "last", dtype: "F32" as const, shape: [7], bytes: pattern(28, 3) },
  ];
  await writeSafetensors(
    path.join(dir, "model.safetensors"),
    tensors.map((t) => ({ ...t, bytes: () => t.bytes })),
  );
  return { dir, bytes: new Map(tensors.map((t) => [t.name, t.bytes])) };
}

describe("CheckpointReader.readBytesIntoMany", () => {
  let reader: CheckpointReader | undefined;
  afterEach(async () => reader?.close());

  it("reads every tensor's bytes exactly into its target and reports each tensor once", async () => {
    const { dir, bytes } = await checkpoint();
    reader = await CheckpointReader.open(dir);
    const targets = new Map(reader.keys().map((k) => [k, new Uint8Array(bytes.get(k)!.byteLength)]));
    const views = new Map(reader.keys().map((k) => [k, 0]));
    const done: string[] = [];
    await reader.readBytesIntoMany(
      reader.keys().map((k) => [k, () => (views.set(k, views.get(k)! + 1), targets.get(k)!)]),
      (k) => done.push(k),
    );
    for (const k of reader.keys()) {
      expect(Buffer.from(targets.get(k)!).equals(Buffer.from(bytes.get(k)!)), k).toBe(true);
      expect(Buffer.from(targets.get(k)!).equals(Buffer.from(await reader.readBytes(k))), k).toBe(true);
    }
    expect([...done].sort()).toEqual(["big", "empty", "last", "small"]);
    expect(views.get("big")).toBeGreaterThanOrEqual(1 + 3); // its size, then a fresh view for each of 3 reads
  });

  it("refuses a target of the wrong size before reading anything", async () => {
    const { dir } = await checkpoint();
    reader = await CheckpointReader.open(dir);
    const small = new Uint8Array(10);
    const done: string[] = [];
    const read = reader.readBytesIntoMany(
      [
        ["small", () => small],
        ["last", () => new Uint8Array(27)],
      ],
      (k) => done.push(k),
    );
    await expect(read).rejects.toThrow(CheckpointFormatError);
    await expect(read).rejects.toThrow(/target holds 27 bytes, the tensor 28/);
    expect(done).toEqual([]);
    expect(small.every((b) => b === 0)).toBe(true);
  });

  it("refuses a view that went empty (a heap that grew detaches its views) instead of reading nothing", async () => {
    const { dir } = await checkpoint();
    reader = await CheckpointReader.open(dir);
    const target = new Uint8Array(28);
    let calls = 0;
    const read = reader.readBytesIntoMany([["last", () => (calls++ === 0 ? target : new Uint8Array(0))]]);
    await expect(read).rejects.toThrow(/target holds 0 bytes, the read 28/);
  });

  it("a file cut short after opening is a CheckpointFormatError; no tensor past the cut is reported done", async () => {
    const { dir, bytes } = await checkpoint();
    reader = await CheckpointReader.open(dir);
    const file = path.join(dir, "model.safetensors");
    const { size } = await fsp.stat(file);
    await fsp.truncate(file, size - 20 * MIB); // cuts into "big"
    const done: string[] = [];
    const read = reader.readBytesIntoMany(
      reader.keys().map((k) => [k, () => new Uint8Array(bytes.get(k)!.byteLength)]),
      (k) => done.push(k),
    );
    await expect(read).rejects.toThrow(/unexpected end of file/);
    expect(done).not.toContain("big");
  });

  it("an error thrown by onRead is the call's error", async () => {
    const { dir, bytes } = await checkpoint();
    reader = await CheckpointReader.open(dir);
    const read = reader.readBytesIntoMany(
      reader.keys().map((k) => [k, () => new Uint8Array(bytes.get(k)!.byteLength)]),
      () => {
        throw new Error("progress display failed");
      },
    );
    await expect(read).rejects.toThrow("progress display failed");
  });
});

describe.each(["wasm", "cpu"])("BF16 weights read in place into packed storage on %s", (backend) => {
  it("hold the checkpoint's exact bytes, even when the heap grows while they are read", async () => {
    await setBackend(backend);
    const dir = await savedFamilyModel(
      smallConfig({ vocab_size: 4096, hidden_size: 512, intermediate_size: 1024 }).toDict(),
      {
        dtype: "BF16",
      },
    );
    const reader = await CheckpointReader.open(dir);
    const heap = () => (backend === "wasm" ? (tf.backend() as unknown as HeapOwner).wasm.asm.memory.buffer : undefined);
    let grew = false;
    let ballast: tf.Tensor | undefined;
    const model = await AutoModelForCausalLM.fromPretrained(dir, {
      weightStorage: "bf16",
      onProgress: ({ key }) => {
        if (ballast || !key.endsWith("proj.weight")) return; // the first in-place read done, the others to come
        const before = heap();
        ballast = tf.zeros([16 * MIB]); // 64 MiB more heap: on wasm every view of the old one goes empty
        grew = heap() !== before;
      },
    });
    try {
      if (backend === "wasm") expect(grew).toBe(true);
      expect(await packedBytesMismatches(model, reader, async (key) => reader.readBytes(key))).toEqual([]);
    } finally {
      ballast?.dispose();
      model.dispose();
      await reader.close();
    }
  });

  it("hold the exact bytes of a sharded checkpoint (tensors spread over several files)", async () => {
    await setBackend(backend);
    const source = AutoModelForCausalLM.fromConfig(smallConfig({ vocab_size: 2048, hidden_size: 256 }), { seed: 3 });
    const dir = tmpDir();
    await source.savePretrained(dir, { dtype: "BF16", maxShardSize: 600_000 });
    source.dispose();
    expect((await fsp.readdir(dir)).filter((f) => f.endsWith(".safetensors")).length).toBeGreaterThan(2);
    const reader = await CheckpointReader.open(dir);
    const model = await AutoModelForCausalLM.fromPretrained(dir, { weightStorage: "bf16" });
    try {
      expect(await packedBytesMismatches(model, reader, async (key) => reader.readBytes(key))).toEqual([]);
    } finally {
      model.dispose();
      await reader.close();
    }
  });
});

/**
 * The checkpoint keys whose packed storage differs from `expected(key)`; fails unless every Linear weight (7 per
 * layer, 2 layers), the embedding and lm_head are packed.
 */
async function packedBytesMismatches(
  model: Awaited<ReturnType<typeof AutoModelForCausalLM.fromPretrained>>,
  reader: CheckpointReader,
  expected: (key: string) => Promise<Uint8Array>,
): Promise<string[]> {
  const params = new Map(model.namedParameters());
  const wrong: string[] = [];
  let packed = 0;
  for (const key of reader.keys()) {
    const p = params.get(key)!;
    if (!p.packed) continue;
    packed++;
    const stored = new Uint8Array(storedRowMajor(p.packedWeight).buffer);
    if (!Buffer.from(stored).equals(Buffer.from(await expected(key)))) wrong.push(key);
  }
  expect(packed).toBe(2 * 7 + 2);
  return wrong;
}

interface HeapOwner {
  wasm: { asm: { memory: { buffer: ArrayBuffer } } };
}

describe("F16 → bf16 rounding in place", () => {
  /** Every half bit pattern, shifted by `skew` values (so the kernel's 8-wide body and its tail both see each). */
  const everyHalf = (skew: number) => Uint16Array.from({ length: 65536 + skew }, (_, i) => (i - skew) & 0xffff);
  const reference = (halves: Uint16Array) =>
    new Uint16Array(encode(decode(new Uint8Array(halves.buffer.slice(0)), "F16"), "BF16").buffer);

  it("hand-checked values: ties to even, subnormals, the largest half, ±inf, ±0 and NaNs", () => {
    const cases: [number, number][] = [
      [0x3c00, 0x3f80], // 1
      [0x3c04, 0x3f80], // 1 + 2^-8: halfway between 1 and 1 + 2^-7 → even (1)
      [0x3c0c, 0x3f82], // 1 + 3·2^-8: halfway between 1 + 2^-7 and 1 + 2^-6 → even (1 + 2^-6)
      [0x3c05, 0x3f81], // 1 + 5·2^-10: above halfway → up
      [0x0001, 0x3380], // 2^-24, the smallest subnormal: 2^-24 is normal in bf16
      [0x0003, 0x3440], // 3·2^-24 = 1.5·2^-23
      [0x7bff, 0x4780], // 65504 rounds up to 65536
      [0xc000, 0xc000], // -2
      [0x8000, 0x8000], // -0
      [0x7c00, 0x7f80], // +inf
      [0xfc00, 0xff80], // -inf
      [0x7e00, 0x7fc0], // NaN → the canonical NaN
      [0xfe01, 0x7fc0], // a negative NaN with a payload → the canonical NaN
    ];
    const halves = Uint16Array.from(cases, ([h]) => h);
    roundF16ToBf16(new Uint8Array(halves.buffer));
    expect(Array.from(halves)).toEqual(cases.map(([, b]) => b));
    expect(Array.from(reference(Uint16Array.from(cases, ([h]) => h)))).toEqual(cases.map(([, b]) => b));
  });

  it("the SIMD kernel agrees with decoding and encoding on all 65,536 halves, in its body and its tail", async () => {
    await setBackend("wasm");
    const b = tf.backend() as unknown as WasmBackend;
    for (const skew of [0, 3]) {
      const halves = everyHalf(skew);
      const heap = new Int32Array(Math.ceil(halves.length / 2));
      new Uint16Array(heap.buffer).set(halves);
      const t = tf.tensor(heap);
      try {
        roundF16ToBf16InHeap(b, heapOffset(b, t), halves.length);
        const got = new Uint16Array((t.dataSync() as Int32Array).slice().buffer, 0, halves.length);
        const want = reference(halves);
        const wrong = [...got.keys()].filter((i) => got[i] !== want[i]).slice(0, 5);
        expect(wrong.map((i) => [halves[i], got[i], want[i]])).toEqual([]);
      } finally {
        t.dispose();
      }
    }
  });
});

describe.each(["wasm", "cpu"])("an F16 checkpoint loaded into packed bf16 storage on %s", (backend) => {
  it("holds each weight rounded exactly as decoding and encoding would round it", async () => {
    await setBackend(backend);
    const dir = await savedFamilyModel(smallConfig({ vocab_size: 512, hidden_size: 64 }).toDict(), { dtype: "F16" });
    const reader = await CheckpointReader.open(dir);
    const model = await AutoModelForCausalLM.fromPretrained(dir, { weightStorage: "bf16" });
    try {
      const rounded = async (key: string) => encode(decode(await reader.readBytes(key), "F16"), "BF16");
      expect(await packedBytesMismatches(model, reader, rounded)).toEqual([]);
      const stored = new Set(model.namedParameters().flatMap(([, p]) => (p.packed ? [p.storedDtype] : [])));
      expect([...stored]).toEqual(["F16"]);
    } finally {
      model.dispose();
      await reader.close();
    }
  });
});

describe("F32 → bf16 rounding", () => {
  /** Special float32 bit patterns, then random ones: ties, NaNs of both signs and payloads, ±inf, subnormals. */
  function float32Bits(): Uint32Array {
    const special = [
      0x3f800000, 0x3f808000, 0x3f818000, 0x3f808001, 0x3f80ffff, 0x7f7fffff, 0xff7fffff, 0x7f800000, 0xff800000,
      0x7fc00000, 0xffc00001, 0x7f800001, 0xff812345, 0x00000001, 0x80008000, 0x00018000, 0x00000000, 0x80000000,
    ];
    let x = 12345;
    const random = Array.from({ length: 200_003 }, () => (x = (Math.imul(x, 1664525) + 1013904223) >>> 0));
    return Uint32Array.from([...special, ...random]);
  }

  it("hand-checked values: ties to even, the largest float32, NaNs kept quiet with their sign", () => {
    const bits = Uint32Array.from([0x3f808000, 0x3f818000, 0x3f808001, 0x7f7fffff, 0xff812345, 0x7f800001]);
    const out = new Uint8Array(bits.length * 2);
    roundF32ToBf16(new Uint8Array(bits.buffer), out);
    // 1 + 2^-8 tie → 1 (even); 1 + 3·2^-8 tie → 1 + 2^-6; just above the tie → up; max → inf; NaNs quiet
    expect(Array.from(new Uint16Array(out.buffer))).toEqual([0x3f80, 0x3f82, 0x3f81, 0x7f80, 0xffc1, 0x7fc0]);
  });

  it("the SIMD kernel agrees with encode on special and 200,000 random float32s, in its body and its tail", async () => {
    await setBackend("wasm");
    const b = tf.backend() as unknown as WasmBackend;
    const bits = float32Bits();
    const src = tf.tensor(Int32Array.from(bits, (v) => v | 0));
    const dst = tf.zeros([Math.ceil(bits.length / 2)], "int32");
    try {
      roundF32ToBf16InHeap(b, heapOffset(b, src), heapOffset(b, dst), bits.length);
      const got = new Uint16Array((dst.dataSync() as Int32Array).slice().buffer, 0, bits.length);
      const want = new Uint16Array(encode(new Float32Array(bits.buffer), "BF16").buffer);
      const wrong = [...got.keys()].filter((i) => got[i] !== want[i]).slice(0, 5);
      expect(wrong.map((i) => [bits[i].toString(16), got[i].toString(16), want[i].toString(16)])).toEqual([]);
    } finally {
      src.dispose();
      dst.dispose();
    }
  });
});

describe.each(["wasm", "cpu"])("an F32 checkpoint loaded into packed bf16 storage on %s", (backend) => {
  it("holds each weight rounded as encode would round it, tensors over 16 MiB included", async () => {
    await setBackend(backend);
    const config = smallConfig({ vocab_size: 4100, hidden_size: 1024, intermediate_size: 64 }).toDict();
    const dir = await savedFamilyModel(config, { dtype: "F32" });
    const reader = await CheckpointReader.open(dir);
    expect(
      reader.infos.get("model.embed_tokens.weight")!.end - reader.infos.get("model.embed_tokens.weight")!.begin,
    ).toBeGreaterThan(16 * MIB);
    const progressed = new Set<string>();
    const model = await AutoModelForCausalLM.fromPretrained(dir, {
      weightStorage: "bf16",
      onProgress: ({ key }) => progressed.add(key),
    });
    try {
      const rounded = async (key: string) => encode(decode(await reader.readBytes(key), "F32"), "BF16");
      expect(await packedBytesMismatches(model, reader, rounded)).toEqual([]);
      expect(new Set(model.namedParameters().flatMap(([, p]) => (p.packed ? [p.storedDtype] : [])))).toEqual(
        new Set(["F32"]),
      );
      expect([...progressed].sort()).toEqual(reader.keys().sort());
    } finally {
      model.dispose();
      await reader.close();
    }
  });
});
