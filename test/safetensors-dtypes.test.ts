// Every safetensors dtype and the writer's reference behaviour. Files are built by hand (test/fixtures/fuzz-helpers.ts, not fusekit's writer) and values checked
// against hand computation and against decoders written here from the formats' bit layouts.
import path from "node:path";
import { promises as fsp } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  AutoModelForCausalLM,
  CheckpointFormatError,
  MAX_HEADER_BYTES,
  SafetensorsFile,
  UnsupportedDtypeError,
  decode,
  e4m3FromFloat32Bits,
  encode,
  floatToFp8,
  fp8Table,
  setBackend,
  writeSafetensors,
  type StorageDtype,
  type TensorToWrite,
} from "fusekit/internals";
import { assemble, referenceFp8, sameValues, validFile, type Entry } from "./fixtures/fuzz-helpers.js";
import { savedSmallModel, tmpDir } from "./helpers/models.js";

const dirs: string[] = [];
const scratch = () => {
  const d = tmpDir("fusekit-dtypes-");
  dirs.push(d);
  return d;
};
afterAll(async () => Promise.all(dirs.map((d) => fsp.rm(d, { recursive: true, force: true }))));

const le = (bytes: number[]) => Uint8Array.from(bytes);
function typed(
  values: number[],
  Ctor:
    | Float64ArrayConstructor
    | Float32ArrayConstructor
    | Int16ArrayConstructor
    | Uint16ArrayConstructor
    | Int32ArrayConstructor
    | Uint32ArrayConstructor
    | Int8ArrayConstructor
    | Uint8ArrayConstructor,
): Uint8Array {
  return new Uint8Array(new Ctor(values).buffer);
}
const big = (values: bigint[], signed: boolean) =>
  new Uint8Array((signed ? BigInt64Array.from(values) : BigUint64Array.from(values)).buffer);

/** One tensor of every dtype, with the values a reader must produce (hand-computed), or "raw" / "refuse". */
const CASES: { name: string; dtype: StorageDtype; shape: number[]; bytes: Uint8Array; values: number[] | "raw" }[] = [
  {
    name: "f64",
    dtype: "F64",
    shape: [3],
    bytes: typed([1.5, -2.25, 2 ** -30], Float64Array),
    values: [1.5, -2.25, 2 ** -30],
  },
  { name: "f32", dtype: "F32", shape: [2], bytes: typed([0.1, -3], Float32Array), values: [Math.fround(0.1), -3] },
  // F16 0x3c00 = 1, 0xc000 = -2, 0x0001 = 2^-24 (smallest subnormal), 0x7bff = 65504 (largest)
  {
    name: "f16",
    dtype: "F16",
    shape: [4],
    bytes: typed([0x3c00, 0xc000, 0x0001, 0x7bff], Uint16Array),
    values: [1, -2, 2 ** -24, 65504],
  },
  // BF16 0x3f80 = 1, 0xc040 = -3, 0x3e20 = 0.15625
  {
    name: "bf16",
    dtype: "BF16",
    shape: [3],
    bytes: typed([0x3f80, 0xc040, 0x3e20], Uint16Array),
    values: [1, -3, 0.15625],
  },
  { name: "i8", dtype: "I8", shape: [3], bytes: le([0x80, 0x7f, 0xff]), values: [-128, 127, -1] },
  { name: "i16", dtype: "I16", shape: [2], bytes: le([0x00, 0x80, 0x34, 0x12]), values: [-32768, 0x1234] },
  { name: "i32", dtype: "I32", shape: [2], bytes: typed([-(2 ** 31), 7], Int32Array), values: [-(2 ** 31), 7] },
  { name: "i64", dtype: "I64", shape: [2], bytes: big([5n, -7n], true), values: [5, -7] },
  { name: "u8", dtype: "U8", shape: [2], bytes: le([0, 255]), values: [0, 255] },
  { name: "u16", dtype: "U16", shape: [1], bytes: le([0xff, 0xff]), values: [65535] },
  { name: "u32", dtype: "U32", shape: [1], bytes: le([0xff, 0xff, 0xff, 0x7f]), values: [2 ** 31 - 1] },
  { name: "u64", dtype: "U64", shape: [1], bytes: big([123456789n], false), values: [123456789] },
  { name: "bool", dtype: "BOOL", shape: [3], bytes: le([1, 0, 1]), values: [1, 0, 1] },
  // E4M3 (bias 7): 0x38 = 2^(7-7) = 1, 0x7e = 1.75·2^8 = 448 (largest), 0x01 = 1/8·2^-6 = 2^-9, 0xb8 = -1, 0x7f = NaN
  {
    name: "e4m3",
    dtype: "F8_E4M3",
    shape: [6],
    bytes: le([0x00, 0x38, 0x7e, 0x01, 0xb8, 0x7f]),
    values: [0, 1, 448, 2 ** -9, -1, NaN],
  },
  // E5M2 (bias 15): 0x3c = 1, 0x7b = 1.75·2^15 = 57344, 0x7c = +Inf, 0x01 = 1/4·2^-14 = 2^-16, 0xc0 = -2
  {
    name: "e5m2",
    dtype: "F8_E5M2",
    shape: [5],
    bytes: le([0x3c, 0x7b, 0x7c, 0x01, 0xc0]),
    values: [1, 57344, Infinity, 2 ** -16, -2],
  },
  // E4M3FNUZ (bias 8): 0x40 = 1, 0x80 = NaN; E5M2FNUZ (bias 16): 0x40 = 1; E8M0: 0x7f = 2^0, 0x80 = 2
  { name: "e4m3fnuz", dtype: "F8_E4M3FNUZ", shape: [2], bytes: le([0x40, 0x80]), values: [1, NaN] },
  { name: "e5m2fnuz", dtype: "F8_E5M2FNUZ", shape: [1], bytes: le([0x40]), values: [1] },
  { name: "e8m0", dtype: "F8_E8M0", shape: [2], bytes: le([0x7f, 0x80]), values: [1, 2] },
  // No decoder: read as raw bytes only. F4 packs two per byte, F6 four per three bytes.
  { name: "f4", dtype: "F4", shape: [4], bytes: le([0x12, 0x34]), values: "raw" },
  { name: "f6a", dtype: "F6_E2M3", shape: [4], bytes: le([1, 2, 3]), values: "raw" },
  { name: "f6b", dtype: "F6_E3M2", shape: [4], bytes: le([4, 5, 6]), values: "raw" },
  { name: "c64", dtype: "C64", shape: [1], bytes: typed([1, -1], Float32Array), values: "raw" },
];

async function writeFile(bytes: Uint8Array): Promise<string> {
  const file = path.join(scratch(), "all.safetensors");
  await fsp.writeFile(file, bytes);
  return file;
}

describe("a file holding every safetensors dtype (hand-built bytes)", () => {
  const entries: Entry[] = [
    ...CASES,
    { name: "u32-big", dtype: "U32" as StorageDtype, shape: [1], bytes: le([0, 0, 0, 0x80]), values: [] },
  ];

  it("opens; every tensor's raw bytes and decoded values match the hand computation", async () => {
    const f = await SafetensorsFile.open(await writeFile(validFile(entries, { format: "pt" }).file));
    try {
      expect(f.keys().sort()).toEqual(entries.map((e) => e.name).sort());
      for (const c of CASES) {
        expect(f.info(c.name).dtype).toBe(c.dtype);
        expect(Buffer.from(await f.readBytes(c.name)).equals(Buffer.from(c.bytes)), c.name).toBe(true);
        if (c.values === "raw") continue;
        const t = await f.read(c.name);
        expect(sameValues(t.data, c.values), `${c.name}: ${Array.from(t.data)}`).toBe(true);
        expect(t.data instanceof Int32Array).toBe(/^[IU]|BOOL/.test(c.dtype));
      }
    } finally {
      await f.close();
    }
  });

  it("a dtype fusekit cannot use is a named error only when that tensor is read; the others keep working", async () => {
    const f = await SafetensorsFile.open(await writeFile(validFile(entries).file));
    try {
      for (const c of CASES.filter((x) => x.values === "raw")) {
        const err = await f.read(c.name).catch((e) => e);
        expect(err).toBeInstanceOf(UnsupportedDtypeError);
        expect(err).toBeInstanceOf(CheckpointFormatError);
        expect(err.message).toContain(`tensor "${c.name}": dtype ${c.dtype} cannot be decoded`);
      }
      // 2^31 does not fit the int32 a tfjs tensor holds: refused by name, the file stays usable.
      await expect(f.read("u32-big")).rejects.toThrow(
        /tensor "u32-big": U32 value 2147483648 at element 0 does not fit in int32/,
      );
      expect(Array.from((await f.read("i8")).data)).toEqual([-128, 127, -1]);
    } finally {
      await f.close();
    }
  });

  it("writes every tensor back byte-identical, whatever the order it is given in, with __metadata__ intact", async () => {
    const src = await SafetensorsFile.open(
      await writeFile(validFile(entries, { format: "pt", note: 'ünï"code' }).file),
    );
    const raw = await Promise.all(
      src.keys().map(async (k) => ({ name: k, info: src.info(k), bytes: await src.readBytes(k) })),
    );
    const toWrite = (list: typeof raw): TensorToWrite[] =>
      list.map((r) => ({ name: r.name, dtype: r.info.dtype, shape: r.info.shape, bytes: () => r.bytes }));
    const dir = scratch();
    const [a, b] = [path.join(dir, "a.safetensors"), path.join(dir, "b.safetensors")];
    await writeSafetensors(a, toWrite(raw), src.metadata);
    await writeSafetensors(b, toWrite([...raw].reverse()), src.metadata);
    await src.close();
    expect((await fsp.readFile(a)).equals(await fsp.readFile(b))).toBe(true);
    const back = await SafetensorsFile.open(a);
    try {
      expect(back.metadata).toEqual({ format: "pt", note: 'ünï"code' });
      for (const r of raw) {
        expect(back.info(r.name).dtype).toBe(r.info.dtype);
        expect(back.info(r.name).shape).toEqual(r.info.shape);
        expect(Buffer.from(await back.readBytes(r.name)).equals(Buffer.from(r.bytes)), r.name).toBe(true);
      }
    } finally {
      await back.close();
    }
  });

  it("decode → encode gives the same bytes for every decodable dtype (values it can represent)", () => {
    for (const c of CASES) {
      if (c.values === "raw") continue;
      if (c.values.some(Number.isNaN)) continue; // NaN payloads: only the raw-bytes path keeps them (checked below)
      expect(Buffer.from(encode(decode(c.bytes, c.dtype), c.dtype)).equals(Buffer.from(c.bytes)), c.dtype).toBe(true);
    }
  });
});

describe("a checkpoint with tensors of every dtype", () => {
  beforeAll(() => setBackend("cpu"));
  it("loads a model: extra tensors of raw-only dtypes are reported unexpected, not fatal; a U8 norm weight loads as its values", async () => {
    const dir = await savedSmallModel({ num_hidden_layers: 1 });
    const file = path.join(dir, "model.safetensors");
    const src = await SafetensorsFile.open(file);
    const tensors: TensorToWrite[] = [];
    for (const k of src.keys()) {
      const bytes = await src.readBytes(k);
      if (k === "model.norm.weight")
        tensors.push({
          name: k,
          dtype: "U8",
          shape: src.info(k).shape,
          bytes: () => Uint8Array.from({ length: 32 }, (_, i) => i),
        });
      else tensors.push({ name: k, dtype: src.info(k).dtype, shape: src.info(k).shape, bytes: () => bytes });
    }
    await src.close();
    for (const c of CASES.filter((x) => x.values === "raw" || x.dtype === "BOOL"))
      tensors.push({ name: `extra.${c.name}`, dtype: c.dtype, shape: c.shape, bytes: () => c.bytes });
    await writeSafetensors(file, tensors, { format: "pt" });
    const model = await AutoModelForCausalLM.fromPretrained(dir);
    try {
      expect(model.loadReport!.unexpectedKeys.sort()).toEqual([
        "extra.bool",
        "extra.c64",
        "extra.f4",
        "extra.f6a",
        "extra.f6b",
      ]);
      expect(model.loadReport!.missingKeys).toEqual([]);
      const norm = model.namedParameters().find(([k]) => k === "model.norm.weight")![1];
      expect(Array.from(norm.stateData())).toEqual(Array.from({ length: 32 }, (_, i) => i));
      expect(norm.storedDtype).toBe("U8");
      const out = scratch();
      await model.savePretrained(out); // written back as U8, byte-identical
      const saved = await SafetensorsFile.open(path.join(out, "model.safetensors"));
      expect(saved.info("model.norm.weight").dtype).toBe("U8");
      expect(Array.from(await saved.readBytes("model.norm.weight"))).toEqual(Array.from({ length: 32 }, (_, i) => i));
      await saved.close();
    } finally {
      model.dispose();
      dirs.push(dir);
    }
  });
});

describe("8-bit floats against decoders written from the bit layouts", () => {
  const formats: [StorageDtype, number, number, number, "fn" | "ieee" | "fnuz"][] = [
    ["F8_E4M3", 4, 3, 7, "fn"],
    ["F8_E5M2", 5, 2, 15, "ieee"],
    ["F8_E4M3FNUZ", 4, 3, 8, "fnuz"],
    ["F8_E5M2FNUZ", 5, 2, 16, "fnuz"],
  ];
  it.each(formats)(
    "%s: all 256 codes decode as the formula says and encode back to the same code",
    (dtype, e, m, bias, flavour) => {
      const table = fp8Table(dtype);
      for (let code = 0; code < 256; code++) {
        const expected = referenceFp8(code, e, m, bias, flavour);
        expect(
          Object.is(table[code], expected) || (Number.isNaN(table[code]) && Number.isNaN(expected)),
          `${dtype} 0x${code.toString(16)}`,
        ).toBe(true);
        if (Number.isNaN(expected)) continue;
        // fnuz has no -0: 0x80 is NaN, and -0 encodes as +0
        expect(floatToFp8(expected, dtype), `${dtype} 0x${code.toString(16)}`).toBe(code);
      }
    },
  );

  it("E4M3 rounds to nearest even and overflows to NaN past 464, as torch's float8_e4m3fn cast does", () => {
    // 1 + 1/16 is halfway between 1 (0x38, even) and 1.125 (0x39): even. 1 + 3/16 → 1.25 (0x3a).
    expect(floatToFp8(1 + 1 / 16, "F8_E4M3")).toBe(0x38);
    expect(floatToFp8(1 + 3 / 16, "F8_E4M3")).toBe(0x3a);
    expect(floatToFp8(464, "F8_E4M3")).toBe(0x7e); // halfway between 448 (even) and the NaN code
    expect(floatToFp8(470, "F8_E4M3")).toBe(0x7f);
    expect(floatToFp8(-1e9, "F8_E4M3")).toBe(0xff);
    expect(floatToFp8(2 ** -10, "F8_E4M3")).toBe(0x00); // half the smallest subnormal: ties to even (zero)
    expect(floatToFp8(3 * 2 ** -11, "F8_E4M3")).toBe(0x01);
  });

  it("the fast E4M3 encoder (from float32 bits) agrees with the exact table search on 65k float32 patterns and at every tie", () => {
    const bits = new Uint32Array(1);
    const f = new Float32Array(bits.buffer);
    const wrong: string[] = [];
    const check = (u: number) => {
      bits[0] = u >>> 0;
      const fast = e4m3FromFloat32Bits(bits[0]);
      // a NaN input keeps its sign in the fast path (as torch's cast); a JS number NaN has none to keep
      const ok = Number.isNaN(f[0]) ? (fast & 0x7f) === 0x7f : fast === floatToFp8(f[0], "F8_E4M3");
      if (!ok) wrong.push(`0x${bits[0].toString(16)} (${f[0]}): ${fast}`);
    };
    for (let u = 0; u < 2 ** 32; u += 65521) check(u);
    const table = fp8Table("F8_E4M3");
    for (let code = 0; code < 0x7e; code++) {
      const mid = Math.fround((table[code] + table[code + 1]) / 2); // exact: the midpoint of two E4M3 values fits a float32
      bits[0] = 0;
      f[0] = mid;
      for (const d of [-1, 0, 1]) for (const sign of [0, 0x80000000]) check((bits[0] + d) | sign);
    }
    expect(wrong).toEqual([]);
  });

  it("E5M2 rounds past its largest value (57344) to infinity from 61440 on", () => {
    expect(floatToFp8(60000, "F8_E5M2")).toBe(0x7b);
    expect(floatToFp8(61440, "F8_E5M2")).toBe(0x7c);
    expect(floatToFp8(-Infinity, "F8_E5M2")).toBe(0xfc);
  });
});

describe("the writer behaves as safetensors' serialize_file", () => {
  const t = (name: string, dtype: StorageDtype, n = 1): TensorToWrite => ({
    name,
    dtype,
    shape: [n],
    bytes: () =>
      new Uint8Array(n * ({ F64: 8, U64: 8, I64: 8, F32: 4, F16: 2, BF16: 2 } as Record<string, number>)[dtype] || n),
  });
  const header = async (file: string) => {
    const raw = await fsp.readFile(file);
    const n = Number(raw.readBigUInt64LE(0));
    expect(n % 8).toBe(0);
    return { n, json: JSON.parse(raw.subarray(8, 8 + n).toString()) as Record<string, { data_offsets: number[] }> };
  };

  // safetensors/src/tensor.rs, prepare(): "Make sure we're sorting by descending dtype alignment / Then by name",
  // with dtypes ordered as its Dtype enum (BOOL < U8 < I8 < F8_* < I16 < U16 < F16 < BF16 < I32 < U32 < F32 < F64 < I64 < U64).
  it("lays tensors out 'sorting by descending dtype alignment, then by name', independent of the given order", async () => {
    const tensors = [
      t("z", "BOOL"),
      t("b", "F16"),
      t("a", "F16"),
      t("c", "I64"),
      t("d", "F32"),
      t("e", "F64"),
      t("f", "U64"),
      t("g", "I8"),
      t("h", "F8_E4M3"),
      t("i", "BF16"),
      t("j", "U8"),
    ];
    const dir = scratch();
    const files = [path.join(dir, "1.safetensors"), path.join(dir, "2.safetensors")];
    await writeSafetensors(files[0], tensors);
    await writeSafetensors(files[1], [...tensors].reverse());
    expect((await fsp.readFile(files[0])).equals(await fsp.readFile(files[1]))).toBe(true);
    const { json } = await header(files[0]);
    const order = Object.entries(json)
      .sort((x, y) => x[1].data_offsets[0] - y[1].data_offsets[0])
      .map(([k]) => k);
    expect(order).toEqual(["f", "c", "e", "d", "i", "a", "b", "h", "g", "j", "z"]);
    // the JSON text lists them in that order too, as serde serializes the reference's Metadata
    expect(Object.keys(json)).toEqual(order);
  });

  it("names compare byte-wise (UTF-8), as Rust's String ordering does", async () => {
    // U+FF5E (3 UTF-8 bytes starting 0xEF) sorts before U+1F600 (4 bytes starting 0xF0), though UTF-16 orders them the other way
    const file = path.join(scratch(), "n.safetensors");
    await writeSafetensors(file, [t("\u{1F600}", "F32"), t("\uFF5E", "F32"), t("a", "F32")]);
    expect(Object.keys((await header(file)).json)).toEqual(["a", "\uFF5E", "\u{1F600}"]);
  });

  /** Runs a write that must fail, and checks it wrote nothing: the old file is untouched, no temporary is left. */
  async function refusedWithoutTrace(write: (file: string) => Promise<void>, message: RegExp): Promise<void> {
    const dir = scratch();
    const file = path.join(dir, "model.safetensors");
    await fsp.writeFile(file, "previous contents");
    await expect(write(file)).rejects.toThrow(message);
    expect(await fsp.readdir(dir)).toEqual(["model.safetensors"]);
    expect(await fsp.readFile(file, "utf8")).toBe("previous contents");
  }

  it("refuses a header over 100 MB (the reader's limit, tensor.rs MAX_HEADER_SIZE) before writing anything", async () => {
    await refusedWithoutTrace(
      (f) => writeSafetensors(f, [t("x", "F32")], { big: "a".repeat(MAX_HEADER_BYTES) }),
      /header would be \d+ bytes, over the 100000000-byte limit/,
    );
  });

  it("an unknown dtype is refused before the first byte: no partial file", async () => {
    let produced = 0;
    const tensors = [
      { ...t("ok", "F32"), bytes: () => (produced++, new Uint8Array(4)) },
      { ...t("bad", "F32"), dtype: "F8_E9M9" as StorageDtype },
    ];
    await refusedWithoutTrace(
      (f) => writeSafetensors(f, tensors),
      /tensor "bad": cannot write: unknown dtype "F8_E9M9"/,
    );
    expect(produced).toBe(0);
  });

  it("a tensor producing the wrong byte count (or throwing) midway leaves no partial file", async () => {
    await refusedWithoutTrace(
      (f) => writeSafetensors(f, [t("a", "F64"), { ...t("b", "F32"), bytes: () => new Uint8Array(3) }]),
      /tensor "b": writer got 3 bytes, expected 4/,
    );
    await refusedWithoutTrace(
      (f) =>
        writeSafetensors(f, [
          t("a", "F64"),
          {
            ...t("b", "F32"),
            bytes: () => {
              throw new RangeError("boom");
            },
          },
        ]),
      /boom/,
    );
  });

  it("refuses names the reader could not tell apart: duplicates and __metadata__", async () => {
    await refusedWithoutTrace(
      (f) => writeSafetensors(f, [t("a", "F32"), t("a", "F16")]),
      /tensor "a": cannot write: the name is given twice/,
    );
    await refusedWithoutTrace((f) => writeSafetensors(f, [t("__metadata__", "F32")]), /reserved/);
    await refusedWithoutTrace((f) => writeSafetensors(f, [t("odd", "F4", 3)]), /does not fill whole bytes/);
  });

  it("hand-built file and fusekit's writer agree on the layout of a sorted input", async () => {
    const bytes = [new Uint8Array(new Float64Array([1]).buffer), new Uint8Array(new Float32Array([2]).buffer)];
    const text = JSON.stringify({
      a: { dtype: "F64", shape: [1], data_offsets: [0, 8] },
      b: { dtype: "F32", shape: [1], data_offsets: [8, 12] },
    });
    const expected = assemble(
      text.padEnd(Math.ceil(text.length / 8) * 8, " "),
      Uint8Array.from([...bytes[0], ...bytes[1]]),
    );
    const file = path.join(scratch(), "h.safetensors");
    await writeSafetensors(file, [
      { name: "b", dtype: "F32", shape: [1], bytes: () => bytes[1] },
      { name: "a", dtype: "F64", shape: [1], bytes: () => bytes[0] },
    ]);
    expect((await fsp.readFile(file)).equals(Buffer.from(expected))).toBe(true);
  });
});
