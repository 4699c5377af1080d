// The safetensors reader and writer, message by message: each bad header or file names its own problem (not
// just "some CheckpointFormatError"), the tiling check sorts by offset, and reads fail with a named error
// when the file shrinks or closes under them (the gaps a mutation run of src/io/safetensors.ts found:
// docs/testing.md).
import { describe, expect, it } from "vitest";
import fs, { promises as fsp } from "node:fs";
import path from "node:path";
import {
  CheckpointFormatError,
  MAX_HEADER_BYTES,
  SafetensorsFile,
  buildHeader,
  parseHeader,
  writeSafetensors,
} from "fusekit/internals";
import { tmpDir } from "./helpers/tmp.js";

/** A whole file: the 8-byte little-endian length, `header` as JSON, then `dataBytes` (byte i holds i). */
function fileBytes(header: unknown, dataBytes: number): Buffer {
  const json = Buffer.from(typeof header === "string" ? header : JSON.stringify(header), "utf8");
  const out = Buffer.alloc(8 + json.length + dataBytes);
  out.writeBigUInt64LE(BigInt(json.length));
  json.copy(out, 8);
  for (let i = 0; i < dataBytes; i++) out[8 + json.length + i] = i & 0xff;
  return out;
}

/** parseHeader's verdict on `header` followed by `dataBytes` data bytes: the tensor names in order, or the message. */
function verdict(header: unknown, dataBytes: number): string[] | string {
  const bytes = fileBytes(header, dataBytes);
  const n = Number(bytes.readBigUInt64LE(0));
  try {
    return [...parseHeader(bytes.subarray(8, 8 + n), bytes.length, "m.safetensors").tensors.keys()];
  } catch (err) {
    expect(err).toBeInstanceOf(CheckpointFormatError);
    return (err as Error).message;
  }
}

const f32 = (begin: number, end: number, shape = [(end - begin) / 4]) => ({
  dtype: "F32",
  shape,
  data_offsets: [begin, end],
});

describe("parseHeader names each problem", () => {
  it("the header as a whole: invalid JSON, a JSON error of its own, not an object, bad __metadata__", () => {
    expect(verdict("{", 0)).toMatch(/^m\.safetensors: header is not valid JSON \(/);
    expect(verdict('{"a": {}, "a": {}}', 0)).toBe('m.safetensors: header is invalid: duplicate key "a"');
    for (const h of ["[]", "null", "3", '"x"'])
      expect(verdict(h, 0)).toBe("m.safetensors: header is not a JSON object");
    expect(verdict({ __metadata__: { a: 1 } }, 0)).toBe("m.safetensors: __metadata__ must map strings to strings");
    expect(verdict({ __metadata__: { a: "1" } }, 0)).toEqual([]);
  });

  it("an entry: not an object, its dtype, shape and data_offsets, each with its own message", () => {
    const entry = (e: unknown) => verdict({ t: e }, 4);
    const at = 'm.safetensors: tensor "t": ';
    expect(entry(5)).toBe(`${at}entry is not an object`);
    expect(entry("F32")).toBe(`${at}entry is not an object`);
    expect(entry({ ...f32(0, 4), dtype: ["F32"] })).toBe(`${at}unknown dtype ["F32"]`);
    for (const shape of [[-1], [1.5], "1", [2 ** 53]])
      expect(entry(f32(0, 4, shape as number[]))).toBe(
        `${at}shape ${JSON.stringify(shape)} is not a list of non-negative integers`,
      );
    for (const offsets of ["0,4", [0], [0, 4, 8], [-4, 0], [0, -4], [0.5, 4], [0, 2 ** 53]])
      expect(entry({ ...f32(0, 4), data_offsets: offsets })).toBe(
        `${at}data_offsets ${JSON.stringify(offsets)} must be two non-negative integers`,
      );
    expect(verdict({ t: { dtype: "F4", shape: [3], data_offsets: [0, 2] } }, 2)).toBe(
      `${at}shape [3] of F4 does not fill whole bytes`,
    );
    // The second tensor holds bytes 4..10: 6 bytes, where one float32 needs 4.
    expect(verdict({ a: f32(0, 4), t: f32(4, 10, [1]) }, 10)).toBe(`${at}holds 6 bytes but shape [1] of F32 needs 4`);
  });

  it("tiling: entries in any header order; a zero-size tensor sorts before the one starting at its offset", () => {
    expect(verdict({ c: f32(8, 12), b: f32(4, 8), a: f32(0, 4) }, 12)).toEqual(["c", "b", "a"]);
    for (const header of [
      { full: f32(4, 8), empty: f32(4, 4, [0]), first: f32(0, 4) },
      { empty: f32(4, 4, [0]), full: f32(4, 8), first: f32(0, 4) },
      { first: f32(0, 4), full: f32(4, 8), empty: f32(4, 4, [0]) },
    ])
      expect(verdict(header, 8)).toEqual(Object.keys(header));
    expect(verdict({ a: f32(0, 8), b: f32(4, 8) }, 8)).toBe(
      'm.safetensors: tensor "b": data_offsets [4, 8] overlap the previous tensor (which ends at 8)',
    );
    expect(verdict({ a: f32(0, 4), b: f32(8, 12) }, 12)).toBe(
      'm.safetensors: tensor "b": data_offsets start at 8, leaving a gap after byte 4',
    );
    expect(verdict({ a: f32(0, 4) }, 7)).toBe("m.safetensors: file has 3 trailing bytes after the last tensor");
    expect(verdict({ a: f32(0, 8) }, 4)).toBe(
      'm.safetensors: tensor "a": data_offsets [0, 8] run past the end of the data region (4 bytes)',
    );
  });
});

describe("SafetensorsFile", () => {
  const write = (name: string, bytes: Uint8Array) => {
    const file = path.join(tmpDir(), name);
    fs.writeFileSync(file, bytes);
    return file;
  };
  const openError = (file: string) =>
    SafetensorsFile.open(file).then(
      () => "opened",
      (e: Error) => e.message,
    );

  it("open: a missing file, the header length's bounds (exactly 8 bytes, exactly the limit)", async () => {
    const dir = tmpDir();
    expect(await openError(path.join(dir, "none.safetensors"))).toBe(
      `${path.join(dir, "none.safetensors")}: cannot open: ENOENT`,
    );
    const eight = write("8.safetensors", Buffer.alloc(8)); // length 0: long enough, with an empty header
    expect(await openError(eight)).toMatch(/: header is not valid JSON/);
    const seven = write("7.safetensors", Buffer.alloc(7));
    expect(await openError(seven)).toBe(`${seven}: file is 7 bytes, too short for the 8-byte header length`);
    const atLimit = Buffer.alloc(16);
    atLimit.writeBigUInt64LE(BigInt(MAX_HEADER_BYTES));
    const limit = write("limit.safetensors", atLimit);
    expect(await openError(limit)).toBe(
      `${limit}: header length ${MAX_HEADER_BYTES} runs past the end of the 16-byte file`,
    );
    atLimit.writeBigUInt64LE(BigInt(MAX_HEADER_BYTES + 1));
    const over = write("over.safetensors", atLimit);
    expect(await openError(over)).toBe(
      `${over}: header length ${MAX_HEADER_BYTES + 1} exceeds the ${MAX_HEADER_BYTES}-byte limit`,
    );
  });

  it("reads fail with a named error on an unknown tensor, a wrong-size target, a shrunk file, a closed file", async () => {
    const header = { a: f32(0, 4), b: f32(4, 20) };
    const bytes = fileBytes(header, 20);
    const dataStart = bytes.length - 20;
    const file = write("t.safetensors", bytes);
    const st = await SafetensorsFile.open(file);
    try {
      expect([...(await st.readBytes("b"))]).toEqual([...Array(16).keys()].map((i) => 4 + i));
      await expect(st.read("nope")).rejects.toThrow(`${file}: tensor "nope": no such tensor`);
      expect(() => st.readBytesIntoSync("b", new Uint8Array(4))).toThrow(
        `${file}: tensor "b": target holds 4 bytes, the tensor 16`,
      );
      // The file loses its last 6 bytes after opening: "b" is read part way (10 bytes), then the file ends.
      await fsp.truncate(file, bytes.length - 6);
      const eof = `${file}: tensor "b": unexpected end of file at byte ${dataStart + 14}`;
      await expect(st.readBytes("b")).rejects.toThrow(eof);
      expect(() => st.readBytesIntoSync("b", new Uint8Array(16))).toThrow(eof);
    } finally {
      await st.close();
    }
    const closed = `${file}: tensor "b": read failed at byte ${dataStart + 4}: `; // "b" starts 4 bytes in
    // A closed handle's fd is -1: the synchronous read refuses it before the system does (readBytes reads a
    // tensor this small synchronously too).
    await expect(st.readBytes("b")).rejects.toThrow(`${closed}ERR_OUT_OF_RANGE`);
    expect(() => st.readBytesIntoSync("b", new Uint8Array(16))).toThrow(`${closed}ERR_OUT_OF_RANGE`);
  });
});

describe("the writer names what it refuses", () => {
  const refusal = (tensors: unknown[], metadata?: unknown) => {
    try {
      buildHeader(tensors as never, metadata as never, "w.safetensors");
      return "accepted";
    } catch (err) {
      expect(err).toBeInstanceOf(CheckpointFormatError);
      return (err as Error).message;
    }
  };

  it("a name that is no string, a bad shape, an unknown dtype (listing the known ones), bad metadata", () => {
    const t = { name: "t", dtype: "F32", shape: [1] };
    expect(refusal([{ ...t, name: 7 }])).toBe("w.safetensors: cannot write: tensor name 7 is not a string");
    expect(refusal([{ ...t, shape: [-1] }])).toBe(
      'w.safetensors: tensor "t": cannot write: shape [-1] is not a list of non-negative integers',
    );
    expect(refusal([{ ...t, dtype: "F33" }])).toMatch(/unknown dtype "F33" \(known: BOOL, (\w+, )+U64\)$/);
    expect(refusal([t], { a: 1 })).toBe("w.safetensors: cannot write: __metadata__ must map strings to strings");
    expect(refusal([t], { a: "1" })).toBe("accepted");
  });

  it("a failure to start writing surfaces as itself, not as the cleanup's error", async () => {
    const target = path.join(tmpDir(), "no-such-dir", "x.safetensors");
    const bytes = () => new Uint8Array(4);
    const err = await writeSafetensors(target, [{ name: "t", dtype: "F32", shape: [1], bytes }]).catch((e) => e);
    expect([err.code, err.syscall]).toEqual(["ENOENT", "open"]);
  });
});
