// Fuzzing the safetensors reader and the checkpoint loader with generated and mutated files.
// Every case must end in a correct load (checked against an independent decoder) or a named error
// (instanceof FusekitError): never another exception, never a hang, never an allocation the file cannot
// justify. The run prints the number of cases and an outcome table per category.
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import fc from "fast-check";
import { promises as fsp } from "node:fs";
import os from "node:os";
import path from "node:path";
import { execFileSync } from "node:child_process";
import {
  AutoModelForCausalLM,
  CheckpointFormatError,
  FusekitError,
  MAX_HEADER_BYTES,
  Qwen3Config,
  SafetensorsFile,
  parseHeader,
  setBackend,
  tf,
  type PreTrainedModel,
} from "fusekit/internals";
import { scaled } from "./helpers/scale.js";
import { DTYPE_SIZE, assemble, referenceDecode, sameValues, validFile, type Entry } from "./fixtures/fuzz-helpers.js";

// Mutation testing runs this file once per mutant (test/helpers/scale.ts) and sets FUSEKIT_FUZZ_SEED: the
// same cases every run, so a mutant's verdict repeats.
if (process.env.FUSEKIT_FUZZ_SEED !== undefined) fc.configureGlobal({ seed: Number(process.env.FUSEKIT_FUZZ_SEED) });
const SAFETENSORS_RUNS = scaled(4000); // files read from disk
const HEADER_RUNS = scaled(5500); // headers parsed in memory (cases that hold no whole header are not counted)
const LOADER_RUNS = 2 * scaled(1000); // half single-file, half sharded
/** A case that has not settled by then is a hang (generous: cases take about a millisecond). */
const CASE_TIME_LIMIT_MS = 10_000;

const outcomes = new Map<string, Map<string, number>>();
let cases = 0;
let maxCaseMs = 0;
function record(category: string, outcome: string): void {
  cases++;
  const row = outcomes.get(category) ?? new Map<string, number>();
  row.set(outcome, (row.get(outcome) ?? 0) + 1);
  outcomes.set(category, row);
}

/** Runs one case: a FusekitError is an outcome, anything else (or a hang) fails the property. */
async function settle(category: string, run: () => Promise<void>): Promise<string> {
  const t0 = performance.now();
  let timer: NodeJS.Timeout | undefined;
  const hang = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`case did not settle within ${CASE_TIME_LIMIT_MS} ms (hang)`)),
      CASE_TIME_LIMIT_MS,
    );
  });
  let outcome: string;
  try {
    await Promise.race([run(), hang]);
    outcome = "loaded OK";
  } catch (err) {
    if (!(err instanceof FusekitError)) throw err;
    outcome = err.constructor.name;
  } finally {
    clearTimeout(timer);
  }
  maxCaseMs = Math.max(maxCaseMs, performance.now() - t0);
  record(category, outcome);
  return outcome;
}

/** Records every Buffer allocation (the reader's only way to get memory for file bytes) during `run`. */
async function largestAllocation(run: () => Promise<unknown>): Promise<number> {
  let largest = 0;
  const spies = (["alloc", "allocUnsafe", "allocUnsafeSlow"] as const).map((fn) => {
    const original = Buffer[fn].bind(Buffer) as (n: number, ...rest: unknown[]) => Buffer;
    return vi.spyOn(Buffer, fn).mockImplementation(((n: number, ...rest: unknown[]) => {
      largest = Math.max(largest, n);
      return original(n, ...rest);
    }) as never);
  });
  try {
    await run();
  } finally {
    spies.forEach((s) => s.mockRestore());
  }
  return largest;
}

// ---------- generators ----------

const ALL_DTYPES = Object.keys(DTYPE_SIZE);

/** Special float payloads: NaN, ±Inf, -0, subnormals, in each float encoding. */
function specialBytes(dtype: string, pick: number[]): Uint8Array {
  const pools: Record<string, number[]> = {
    F32: [0x7fc00000, 0x7f800000, 0xff800000, 0x80000000, 0x00000001, 0x7f800001, 0xffffffff],
    BF16: [0x7fc0, 0x7f80, 0xff80, 0x8000, 0x0001, 0x7f81, 0xffff],
    F16: [0x7e00, 0x7c00, 0xfc00, 0x8000, 0x0001, 0x7c01, 0xffff],
  };
  const pool = pools[dtype];
  const size = DTYPE_SIZE[dtype];
  const out = new Uint8Array(pick.length * size);
  const v = new DataView(out.buffer);
  pick.forEach((p, i) =>
    size === 4 ? v.setUint32(4 * i, pool[p % pool.length], true) : v.setUint16(2 * i, pool[p % pool.length], true),
  );
  return out;
}

const nameArb = fc.oneof(
  fc.constantFrom(
    "a",
    "b",
    "model.embed_tokens.weight",
    "lm_head.weight",
    "__proto__",
    "constructor",
    "w\u00e9ight",
    "日本",
    "",
  ),
  fc.string({ minLength: 0, maxLength: 12 }),
);

const entryArb: fc.Arbitrary<Entry> = fc
  .record({
    name: nameArb,
    dtype: fc.constantFrom(...ALL_DTYPES),
    shape: fc.array(fc.integer({ min: 0, max: 4 }), { minLength: 0, maxLength: 3 }),
    special: fc.boolean(),
    seed: fc.array(fc.nat(), { minLength: 64, maxLength: 64 }),
  })
  .map(({ name, dtype, shape, special, seed }) => {
    const numel = shape.reduce((a, b) => a * b, 1);
    const n = numel * DTYPE_SIZE[dtype];
    let bytes: Uint8Array;
    if (special && (dtype === "F32" || dtype === "BF16" || dtype === "F16")) {
      bytes = specialBytes(
        dtype,
        Array.from({ length: numel }, (_, i) => seed[i % 64] + i),
      );
    } else {
      bytes = Uint8Array.from({ length: n }, (_, i) => (seed[i % 64] * 31 + i * 7) & 0xff);
      // I64 payloads must fit int32 to load: keep the high half a sign extension most of the time.
      if (dtype === "I64" && seed[0] % 4 !== 0)
        for (let i = 0; i < numel; i++) bytes.fill(bytes[8 * i + 3] & 0x80 ? 0xff : 0, 8 * i + 4, 8 * i + 8);
    }
    return { name, dtype, shape, bytes };
  });

/** Unique names so the base file is valid (duplicates are a mutation of their own). */
const entriesArb = fc
  .uniqueArray(entryArb, { minLength: 0, maxLength: 4, selector: (e) => e.name })
  .filter((es) => es.every((e) => e.name !== "__metadata__"));

type Mutation =
  | { kind: "valid" }
  | { kind: "flip"; at: number[]; xor: number[] }
  | { kind: "truncate"; keep: number }
  | { kind: "append"; extra: number[] }
  | { kind: "header-length"; value: bigint }
  | { kind: "offsets"; which: number; how: number; k: number }
  | { kind: "dtype-shape"; which: number; dtype: string; shape: number[] }
  | { kind: "duplicate"; which: number; sameValue: boolean }
  | { kind: "non-utf8"; at: number; seq: number }
  | { kind: "deep-json"; depth: number; where: number }
  | { kind: "random-json"; value: unknown }
  | { kind: "metadata"; value: unknown };

const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.constant({ kind: "valid" as const }),
  fc.record({
    kind: fc.constant("flip" as const),
    at: fc.array(fc.nat(), { minLength: 1, maxLength: 8 }),
    xor: fc.array(fc.integer({ min: 1, max: 255 }), { minLength: 8, maxLength: 8 }),
  }),
  fc.record({ kind: fc.constant("truncate" as const), keep: fc.nat() }),
  fc.record({
    kind: fc.constant("append" as const),
    extra: fc.array(fc.nat({ max: 255 }), { minLength: 1, maxLength: 16 }),
  }),
  fc.record({
    kind: fc.constant("header-length" as const),
    value: fc.oneof(
      fc.constantFrom(2n ** 64n - 1n, 2n ** 63n, 2n ** 53n + 1n, BigInt(MAX_HEADER_BYTES) + 1n, 10n ** 12n, 0n, 1n),
      fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
    ),
  }),
  fc.record({
    kind: fc.constant("offsets" as const),
    which: fc.nat(),
    how: fc.nat({ max: 9 }),
    k: fc.integer({ min: 1, max: 64 }),
  }),
  fc.record({
    kind: fc.constant("dtype-shape" as const),
    which: fc.nat(),
    dtype: fc.constantFrom(...ALL_DTYPES, "F8_E4M3", "float32", "", "bf16"),
    shape: fc.array(fc.oneof(fc.integer({ min: 0, max: 5 }), fc.constantFrom(2 ** 40, 2 ** 53, -1, 1.5)), {
      maxLength: 4,
    }),
  }),
  fc.record({ kind: fc.constant("duplicate" as const), which: fc.nat(), sameValue: fc.boolean() }),
  fc.record({ kind: fc.constant("non-utf8" as const), at: fc.nat(), seq: fc.nat({ max: 5 }) }),
  fc.record({
    kind: fc.constant("deep-json" as const),
    depth: fc.oneof(fc.integer({ min: 120, max: 140 }), fc.integer({ min: 1000, max: 200_000 })),
    where: fc.nat({ max: 2 }),
  }),
  fc.record({ kind: fc.constant("random-json" as const), value: fc.jsonValue({ maxDepth: 4 }) }),
  fc.record({ kind: fc.constant("metadata" as const), value: fc.jsonValue({ maxDepth: 2 }) }),
);

const BAD_UTF8 = [[0xff], [0xc0, 0xaf], [0xed, 0xa0, 0x80], [0x80], [0xe2, 0x82], [0xf8, 0x88, 0x80, 0x80, 0x80]];

/** Applies a mutation. `mustReject` is set when the result is invalid whatever the random details. */
function mutate(entries: Entry[], m: Mutation): { bytes: Uint8Array; mustReject: boolean } {
  const base = validFile(entries);
  const headerObj = JSON.parse(base.header) as Record<
    string,
    { dtype: unknown; shape: unknown; data_offsets: number[] }
  >;
  const names = Object.keys(headerObj);
  const pick = (i: number) => names[i % names.length];
  const withHeader = (h: unknown, mustReject: boolean) => ({
    bytes: assemble(JSON.stringify(h), base.data),
    mustReject,
  });
  switch (m.kind) {
    case "valid":
      return { bytes: base.file, mustReject: false };
    case "flip": {
      const out = base.file.slice();
      m.at.forEach((a, i) => (out[a % out.length] ^= m.xor[i]));
      return { bytes: out, mustReject: false };
    }
    case "truncate":
      return { bytes: base.file.slice(0, m.keep % base.file.length), mustReject: true };
    case "append":
      return { bytes: Uint8Array.from([...base.file, ...m.extra]), mustReject: true };
    case "header-length": {
      const real = BigInt(base.file.length - 8 - base.data.length);
      return { bytes: assemble(base.header, base.data, m.value), mustReject: m.value !== real };
    }
    case "offsets": {
      if (!names.length) return withHeader({ x: { dtype: "F32", shape: [1], data_offsets: [0, 4] } }, true);
      const e = headerObj[pick(m.which)];
      const [b, end] = e.data_offsets;
      const variants: unknown[] = [
        [b + m.k, end + m.k], // shifted past the data (or onto the next tensor)
        [end, b], // reversed
        [b, end + m.k], // longer than its shape
        [0, 1e12], // a 1 TB tensor
        [b, 2 ** 53 + 2], // beyond safe integers
        [-m.k, end], // negative
        [b + 0.5, end], // fractional
        [String(b), end], // wrong type
        [b], // wrong arity
        [Math.max(0, b - m.k), Math.max(0, end - m.k)], // overlapping the previous tensor
      ];
      e.data_offsets = variants[m.how] as number[];
      const unchanged = JSON.stringify(variants[m.how]) === JSON.stringify([b, end]);
      // Shifts and overlaps can land on another valid tiling (zero-size tensors); the oracle judges those.
      return withHeader(headerObj, m.how >= 1 && m.how <= 8 && !unchanged);
    }
    case "dtype-shape": {
      if (!names.length) return withHeader({}, false);
      const e = headerObj[pick(m.which)];
      e.dtype = m.dtype;
      e.shape = m.shape;
      return withHeader(headerObj, false); // may happen to be consistent again; the oracle checks
    }
    case "duplicate": {
      if (!names.length)
        return {
          bytes: assemble(
            '{"a":{"dtype":"F32","shape":[],"data_offsets":[0,0]},"a":{"dtype":"F32","shape":[],"data_offsets":[0,0]}}',
            new Uint8Array(0),
          ),
          mustReject: true,
        };
      const name = pick(m.which);
      const e = headerObj[name];
      const second = m.sameValue ? e : { ...e, shape: [e.data_offsets[1] - e.data_offsets[0]], dtype: "U8" };
      // JSON.stringify cannot repeat a key, so splice the second entry into the text by hand.
      const text = base.header.slice(0, -1) + `,${JSON.stringify(name)}:${JSON.stringify(second)}}`;
      return { bytes: assemble(text, base.data), mustReject: true };
    }
    case "non-utf8": {
      const h = new TextEncoder().encode(base.header);
      // Inside a string (after an opening quote) so the JSON is otherwise well-formed; else at any byte.
      const quotes = [...h.keys()].filter((i) => h[i] === 0x22);
      const at = quotes.length ? quotes[m.at % quotes.length] + 1 : m.at % (h.length + 1);
      const bad = BAD_UTF8[m.seq];
      return {
        bytes: assemble(Uint8Array.from([...h.slice(0, at), ...bad, ...h.slice(at)]), base.data),
        mustReject: true,
      };
    }
    case "deep-json": {
      const nest = "[".repeat(m.depth) + "]".repeat(m.depth);
      const text =
        m.where === 0
          ? nest
          : m.where === 1
            ? `{"__metadata__":${nest}}`
            : `{"t":{"dtype":"F32","shape":${nest},"data_offsets":[0,0]}}`;
      return { bytes: assemble(text, new Uint8Array(0)), mustReject: true };
    }
    case "random-json":
      return { bytes: assemble(JSON.stringify(m.value), base.data), mustReject: false };
    case "metadata":
      return { bytes: assemble(JSON.stringify({ __metadata__: m.value, ...headerObj }), base.data), mustReject: false };
  }
}

type RawHeader = Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;

/**
 * The oracle for a header the reader accepted, from the bytes alone: the header is an object of
 * {dtype, shape, data_offsets} entries whose offsets tile the data region and match shape × dtype size,
 * and the reader reports each entry as written. Returns the header and data region.
 */
function checkAcceptedHeader(
  bytes: Uint8Array,
  tensors: ReadonlyMap<string, { dtype: string; shape: number[]; begin: number; end: number }>,
): { header: RawHeader; names: string[]; data: Uint8Array } {
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  const text = new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(8, 8 + n));
  const header = JSON.parse(text) as RawHeader;
  const names = Object.keys(header).filter((k) => k !== "__metadata__");
  expect(new Set(tensors.keys())).toEqual(new Set(names));
  const data = bytes.subarray(8 + n);
  // Zero-size tensors may share an offset with the next one: order by (begin, end) as the reference does.
  const spans = names.map((k) => header[k].data_offsets).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let cursor = 0;
  for (const [b, e] of spans) {
    expect(b).toBe(cursor);
    cursor = e;
  }
  expect(cursor).toBe(data.length);
  for (const k of names) {
    const {
      dtype,
      shape,
      data_offsets: [b, e],
    } = header[k];
    expect(tensors.get(k)!.dtype).toBe(dtype);
    expect(tensors.get(k)!.shape).toEqual(shape);
    expect([tensors.get(k)!.begin, tensors.get(k)!.end]).toEqual([b, e]);
    expect(e - b).toBe(shape.reduce((x, y) => x * y, 1) * DTYPE_SIZE[dtype]);
  }
  return { header, names, data };
}

/** The oracle for a file the reader accepted: its header (above), and each tensor as the reference decoder reads its bytes. */
async function checkAcceptedFile(bytes: Uint8Array, f: SafetensorsFile): Promise<void> {
  const infos = new Map(f.keys().map((k) => [k, f.info(k)]));
  const { header, names, data } = checkAcceptedHeader(bytes, infos);
  for (const k of names) {
    const {
      dtype,
      data_offsets: [b, e],
    } = header[k];
    const raw = data.subarray(b, e);
    expect(Buffer.from(await f.readBytes(k)).equals(Buffer.from(raw))).toBe(true);
    const expected = referenceDecode(raw, dtype);
    if (expected === undefined) {
      await expect(f.read(k)).rejects.toBeInstanceOf(CheckpointFormatError);
      continue;
    }
    const t = await f.read(k);
    expect(sameValues(t.data, expected)).toBe(true);
    // Decoding gives 4 bytes per element, whatever the stored width.
    expect(t.data.byteLength).toBe(4 * t.data.length);
  }
}

let work: string;
beforeAll(async () => {
  await setBackend("cpu");
  work = await fsp.mkdtemp(path.join(os.tmpdir(), "fusekit-fuzz-"));
});
afterAll(async () => {
  await fsp.rm(work, { recursive: true, force: true });
  const kinds = [...new Set([...outcomes.values()].flatMap((r) => [...r.keys()]))].sort();
  const rows = [...outcomes.entries()]
    .sort()
    .map(([cat, r]) => [
      cat,
      ...kinds.map((k) => String(r.get(k) ?? 0)),
      String([...r.values()].reduce((a, b) => a + b, 0)),
    ]);
  const table = [["category", ...kinds, "total"], ...rows];
  const widths = table[0].map((_, i) => Math.max(...table.map((r) => r[i].length)));
  const lines = table.map((r) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join("  "));
  console.log(`fuzz: ${cases} cases, slowest case ${maxCaseMs.toFixed(0)} ms\n${lines.join("\n")}`);
});

describe("fuzz: safetensors reader", () => {
  it(`reads ${SAFETENSORS_RUNS} generated/mutated files from disk: a correct load or a named error, allocations bounded by the file size`, async () => {
    const file = path.join(work, "case.safetensors");
    await fc.assert(
      fc.asyncProperty(entriesArb, mutationArb, async (entries, m) => {
        const { bytes, mustReject } = mutate(entries, m);
        await fsp.writeFile(file, bytes);
        let opened: SafetensorsFile | undefined;
        const largest = await largestAllocation(async () => {
          const outcome = await settle(`file: ${m.kind}`, async () => {
            opened = await SafetensorsFile.open(file);
          });
          if (mustReject) expect(outcome).not.toBe("loaded OK");
          if (m.kind === "valid") expect(outcome).toBe("loaded OK");
          if (opened) {
            // Accepted: any error from here on (including a named one) is a failure of the reader.
            try {
              await checkAcceptedFile(bytes, opened);
            } finally {
              await opened.close();
            }
          }
        });
        expect(largest).toBeLessThanOrEqual(Math.max(bytes.length, 8));
      }),
      { numRuns: SAFETENSORS_RUNS },
    );
  });

  it(`parses ${HEADER_RUNS} generated/mutated headers in memory with the same verdicts`, async () => {
    await fc.assert(
      fc.asyncProperty(entriesArb, mutationArb, async (entries, m) => {
        const { bytes, mustReject } = mutate(entries, m);
        // parseHeader takes a header, not a file: a case with no whole header in it is not a case here
        // (the file reader's length checks are tested above). fc.pre does not count it as a run.
        fc.pre(bytes.length >= 8 && new DataView(bytes.buffer).getBigUint64(0, true) <= BigInt(bytes.length - 8));
        const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
        let tensors: Map<string, { dtype: string; shape: number[]; begin: number; end: number }> | undefined;
        const outcome = await settle(`header: ${m.kind}`, async () => {
          tensors = parseHeader(bytes.subarray(8, 8 + n), bytes.length, "mem").tensors;
        });
        if (mustReject) expect(outcome).not.toBe("loaded OK");
        if (m.kind === "valid") expect(outcome).toBe("loaded OK");
        if (tensors) checkAcceptedHeader(bytes, tensors);
      }),
      { numRuns: HEADER_RUNS },
    );
  });
});

// ---------- the loader: checkpoint directories around a tiny model ----------

const TINY = {
  vocab_size: 16,
  hidden_size: 8,
  intermediate_size: 12,
  num_hidden_layers: 1,
  num_attention_heads: 2,
  num_key_value_heads: 1,
  head_dim: 4,
  tie_word_embeddings: true,
};

type DirFiles = Map<string, Uint8Array>;
interface LoaderMutation {
  kind: string;
  apply: (files: DirFiles) => { files: DirFiles; mustReject: boolean; extra?: (dir: string) => Promise<void> };
}

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

function setJson(files: DirFiles, name: string, edit: (v: Record<string, unknown>) => unknown): void {
  files.set(name, enc(JSON.stringify(edit(JSON.parse(dec(files.get(name)!))))));
}

const wrongValues: unknown[] = ["8", true, null, [8], { v: 8 }, -8, 0, 2.5, 2 ** 31, 1e308, ""];
const CONFIG_FIELDS = [
  "model_type",
  "vocab_size",
  "hidden_size",
  "intermediate_size",
  "num_hidden_layers",
  "num_attention_heads",
  "num_key_value_heads",
  "head_dim",
  "rms_norm_eps",
  "rope_theta",
  "tie_word_embeddings",
  "architectures",
  "hidden_act",
  "torch_dtype",
  "eos_token_id",
  "rope_scaling",
  "sliding_window",
];

function loaderMutationArb(sharded: boolean): fc.Arbitrary<LoaderMutation> {
  const shardNames = (files: DirFiles) => [...files.keys()].filter((n) => n.endsWith(".safetensors")).sort();
  return fc.oneof(
    fc.constant<LoaderMutation>({ kind: "valid", apply: (files) => ({ files, mustReject: false }) }),
    fc
      .record({
        which: fc.nat(),
        pick: fc.array(fc.nat(), { minLength: 64, maxLength: 64 }),
        dtype: fc.constantFrom("F32", "BF16", "F16"),
      })
      .map(({ which, pick, dtype }): LoaderMutation => ({
        kind: "nan-inf payload",
        apply: (files) => {
          // Rewrite one shard with the same tensors but NaN/±Inf/-0/subnormal values in the chosen float dtype.
          const name = shardNames(files)[which % shardNames(files).length];
          const bytes = files.get(name)!;
          const n = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
          const header = JSON.parse(dec(bytes.subarray(8, 8 + n))) as Record<string, { shape: number[] }>;
          const entries = Object.entries(header)
            .filter(([k]) => k !== "__metadata__")
            .map(([k, v], j) => ({
              name: k,
              dtype,
              shape: v.shape,
              bytes: specialBytes(
                dtype,
                Array.from({ length: v.shape.reduce((a, b) => a * b, 1) }, (_, i) => pick[(i + j) % 64] + i),
              ),
            }));
          files.set(name, validFile(entries).file);
          return { files, mustReject: false };
        },
      })),
    fc
      .record({ field: fc.constantFrom(...CONFIG_FIELDS), value: fc.constantFrom(...wrongValues, "__delete__") })
      .map(({ field, value }): LoaderMutation => ({
        kind: value === "__delete__" ? "config: field missing" : "config: wrong type/value",
        apply: (files) => {
          setJson(files, "config.json", (c) => {
            if (value === "__delete__") delete c[field];
            else c[field] = value;
            return c;
          });
          return { files, mustReject: false };
        },
      })),
    fc
      .record({
        arch: fc.constantFrom("constructor", "__proto__", "toString", "valueOf", "hasOwnProperty"),
        path: fc.constantFrom("rope_scaling.factor", "rope_theta", "extra.deep", "hidden_size"),
        how: fc.nat({ max: 1 }),
      })
      .map(({ arch, path: field, how }): LoaderMutation => ({
        // Names that reach Object's members load as the family's model; numbers past float64 (1e400 parses as
        // Infinity) are refused, wherever they sit.
        kind: how ? "config: non-finite number" : "config: architecture named like an Object member",
        apply: (files) => {
          if (!how) {
            setJson(files, "config.json", (c) => ({ ...c, architectures: [arch] }));
            return { files, mustReject: false };
          }
          setJson(files, "config.json", (c) => {
            const [head, tail] = field.split(".");
            if (head === "rope_scaling") c.rope_scaling = { rope_type: "linear", factor: "__BIG__" };
            else c[head] = tail ? { [tail]: ["__BIG__"] } : "__BIG__";
            return c;
          });
          files.set("config.json", enc(dec(files.get("config.json")!).replace('"__BIG__"', "1e400")));
          return { files, mustReject: true };
        },
      })),
    fc
      .record({ how: fc.nat({ max: 6 }), depth: fc.integer({ min: 129, max: 50_000 }) })
      .map(({ how, depth }): LoaderMutation => ({
        kind: "config: malformed json",
        apply: (files) => {
          const text = dec(files.get("config.json")!);
          const variants = [
            () => enc(text.replace(/^\{/, `{"extra_field":${"[".repeat(depth)}${"]".repeat(depth)},`)),
            () => enc(text.replace(/^\{/, '{"hidden_size":1024,')), // a duplicate key
            () => Uint8Array.from([...enc(text.slice(0, 10)), 0xff, 0xfe, ...enc(text.slice(10))]),
            () => enc(text.slice(0, text.length >> 1)),
            () => enc("[1,2,3]"),
            () => enc('"qwen3"'),
            () => enc(""),
          ];
          files.set("config.json", variants[how]());
          return { files, mustReject: true };
        },
      })),
    fc
      .record({
        at: fc.array(fc.nat(), { minLength: 1, maxLength: 6 }),
        xor: fc.integer({ min: 1, max: 255 }),
        which: fc.nat(),
        cut: fc.oneof(fc.constant(null), fc.nat()),
      })
      .map(({ at, xor, which, cut }): LoaderMutation => ({
        kind: cut === null ? "weights: flipped bytes" : "weights: truncated",
        apply: (files) => {
          const name = shardNames(files)[which % shardNames(files).length];
          const b = files.get(name)!.slice();
          // Flips land in the header or the first bytes of data, where they matter most.
          at.forEach((a) => (b[a % Math.min(b.length, 600)] ^= xor));
          files.set(name, cut === null ? b : files.get(name)!.slice(0, cut % files.get(name)!.length));
          return { files, mustReject: cut !== null };
        },
      })),
    fc.record({ which: fc.nat(), delta: fc.integer({ min: 1, max: 3 }) }).map(({ which, delta }): LoaderMutation => ({
      kind: "weights: shape mismatch",
      apply: (files) => {
        // A valid file whose tensor has a different shape than the model's parameter: a load that reports it.
        const name = shardNames(files)[which % shardNames(files).length];
        const bytes = files.get(name)!;
        const n = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
        const header = JSON.parse(dec(bytes.subarray(8, 8 + n))) as Record<string, { shape: number[] }>;
        const entries = Object.entries(header)
          .filter(([k]) => k !== "__metadata__")
          .map(([k, v], j) => {
            const shape = j === 0 ? [...v.shape.slice(0, -1), (v.shape.at(-1) ?? 1) + delta] : v.shape;
            return {
              name: k,
              dtype: "F32",
              shape,
              bytes: new Uint8Array(shape.reduce((a, b) => a * b, 1) * 4).fill(0x3f),
            };
          });
        files.set(name, validFile(entries).file);
        return { files, mustReject: false };
      },
    })),
    fc.record({ how: fc.nat({ max: sharded ? 12 : 3 }), which: fc.nat() }).map(({ how, which }): LoaderMutation => ({
      kind: "shard index",
      apply: (files) => {
        if (!sharded) {
          // A single-file checkpoint gains a hostile index: model.safetensors wins, as in transformers (which
          // looks for it first), so the index is never read and the checkpoint loads.
          const variants = [
            { weight_map: { "model.norm.weight": "../outside.safetensors" } },
            { weight_map: [] },
            { weight_map: { x: "missing.safetensors" } },
            { nope: 1 },
          ];
          files.set("model.safetensors.index.json", enc(JSON.stringify(variants[how])));
          return { files, mustReject: false };
        }
        let mustReject = true;
        let extra: ((dir: string) => Promise<void>) | undefined;
        setJson(files, "model.safetensors.index.json", (idx) => {
          const map = idx.weight_map as Record<string, string>;
          const key = Object.keys(map)[which % Object.keys(map).length];
          const escape = [
            "../outside.safetensors",
            "/etc/passwd",
            "sub/../../x.safetensors",
            "..",
            ".",
            "",
            "a\u0000b",
          ];
          if (how < escape.length) map[key] = escape[how];
          else if (how === 7) map[key] = "missing-00009.safetensors";
          else if (how === 8) (map as Record<string, unknown>)[key] = { file: "x" };
          else if (how === 9) {
            map[key] = "subdir";
            extra = (dir) => fsp.mkdir(path.join(dir, "subdir"));
          } else if (how === 10) {
            map[key] = "fifo.safetensors";
            extra = async (dir) => void execFileSync("mkfifo", [path.join(dir, "fifo.safetensors")]);
          } else if (how === 11) {
            // The tensor exists but in another shard than the index says.
            const other = [...new Set(Object.values(map))].find((s) => s !== map[key]);
            if (other) map[key] = other;
            else mustReject = false;
          } else idx.weight_map = null;
          return idx;
        });
        return { files, mustReject, extra };
      },
    })),
  );
}

describe("fuzz: checkpoint loader (fromPretrained)", () => {
  const bases: Record<string, DirFiles> = {};
  let reference: PreTrainedModel;
  beforeAll(async () => {
    reference = AutoModelForCausalLM.fromConfig(new Qwen3Config(TINY), { seed: 3 });
    for (const [name, opts] of [
      ["single", {}],
      ["sharded", { maxShardSize: 300 }],
    ] as const) {
      const dir = path.join(work, `base-${name}`);
      await reference.savePretrained(dir, opts);
      const files: DirFiles = new Map();
      for (const f of await fsp.readdir(dir)) files.set(f, new Uint8Array(await fsp.readFile(path.join(dir, f))));
      bases[name] = files;
    }
    expect(bases.sharded.has("model.safetensors.index.json")).toBe(true);
  });
  afterAll(() => reference.dispose());

  it.each(["single", "sharded"])(
    `loads ${LOADER_RUNS / 2} mutated %s checkpoints: a correct load or a named error, no tensor leaked`,
    async (layout) => {
      let n = 0;
      await fc.assert(
        fc.asyncProperty(loaderMutationArb(layout === "sharded"), async (m) => {
          const dir = path.join(work, `case-${layout}-${n++}`);
          const { files, mustReject, extra } = m.apply(new Map([...bases[layout]].map(([k, v]) => [k, v.slice()])));
          await fsp.mkdir(dir);
          for (const [name, bytes] of files) await fsp.writeFile(path.join(dir, name), bytes);
          await extra?.(dir);
          const before = tf.memory().numTensors;
          let model: PreTrainedModel | undefined;
          const outcome = await settle(`loader ${layout}: ${m.kind}`, async () => {
            model = await AutoModelForCausalLM.fromPretrained(dir);
          });
          if (mustReject) expect(outcome).not.toBe("loaded OK");
          // Untouched, or only NaN/±Inf/-0/subnormal values: every parameter loads, nothing to report.
          if (m.kind === "valid" || m.kind === "nan-inf payload") {
            expect(outcome).toBe("loaded OK");
            const { missingKeys, unexpectedKeys, mismatchedKeys, conversionErrors } = model!.loadReport!;
            expect({ missingKeys, unexpectedKeys, mismatchedKeys, conversionErrors }).toEqual({
              missingKeys: [],
              unexpectedKeys: [],
              mismatchedKeys: [],
              conversionErrors: [],
            });
          }
          if (model) {
            try {
              await checkLoadedModel(model, dir);
            } finally {
              model.dispose();
            }
          }
          expect(tf.memory().numTensors).toBe(before);
          await fsp.rm(dir, { recursive: true, force: true });
        }),
        { numRuns: LOADER_RUNS / 2 },
      );
    },
  );
});

/**
 * Oracle for a loaded model: every key reported missing is absent from the checkpoint's files, and every
 * parameter the report does not call missing / mismatched holds exactly the values the reference decoder
 * reads from them (NaN and Inf included).
 */
async function checkLoadedModel(model: PreTrainedModel, dir: string): Promise<void> {
  const names = await fsp.readdir(dir);
  const tensors = new Map<string, { dtype: string; shape: number[]; raw: Uint8Array }>();
  // The loader's choice: model.safetensors when present (an index beside it is not read), else the index.
  const indexed = !names.includes("model.safetensors") && names.includes("model.safetensors.index.json");
  const files = indexed
    ? [
        ...new Set(
          Object.values(
            JSON.parse(await fsp.readFile(path.join(dir, "model.safetensors.index.json"), "utf8")).weight_map as Record<
              string,
              string
            >,
          ),
        ),
      ]
    : ["model.safetensors"];
  for (const f of files) {
    const bytes = new Uint8Array(await fsp.readFile(path.join(dir, f)));
    const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    const header = JSON.parse(dec(bytes.subarray(8, 8 + n))) as Record<
      string,
      { dtype: string; shape: number[]; data_offsets: [number, number] }
    >;
    for (const [k, v] of Object.entries(header))
      if (k !== "__metadata__")
        tensors.set(k, { ...v, raw: bytes.subarray(8 + n + v.data_offsets[0], 8 + n + v.data_offsets[1]) });
  }
  const report = model.loadReport!;
  const skipped = new Set([...report.missingKeys, ...report.mismatchedKeys.map((m) => m.key)]);
  for (const m of report.mismatchedKeys) expect(tensors.get(m.key)?.shape).toEqual(m.got);
  // A key reported missing is really absent from the files (a mis-shaped one is reported as mismatched too).
  const mismatched = new Set(report.mismatchedKeys.map((m) => m.key));
  for (const key of report.missingKeys)
    expect(tensors.has(key) && !mismatched.has(key), `${key} reported missing but in the checkpoint`).toBe(false);
  let compared = 0;
  for (const [key, p] of model.namedParameters()) {
    if (skipped.has(key)) continue;
    const t = tensors.get(key);
    expect(t, `${key} loaded but not in the checkpoint`).toBeDefined();
    expect(sameValues(p.stateData(), referenceDecode(t!.raw, t!.dtype)!)).toBe(true);
    compared++;
  }
  expect(compared + skipped.size).toBe(model.namedParameters().length);
}
