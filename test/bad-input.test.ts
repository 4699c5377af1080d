// Bad input: each malformed file or directory is a named error that says what is
// wrong and where (file and tensor).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { promises as fsp } from "node:fs";
import os from "node:os";
import path from "node:path";
import {
  AutoModelForCausalLM,
  CheckpointFormatError,
  ConfigError,
  MemoryPlanError,
  Qwen3Config,
  StateDictError,
  SafetensorsFile,
  UnknownModelTypeError,
  setBackend,
  type PreTrainedModel,
} from "fusekit";
import { assemble, validFile } from "./fixtures/fuzz-helpers.js";

const f32 = (...v: number[]) => new Uint8Array(new Float32Array(v).buffer);
let work: string;
let n = 0;
const fresh = async () => {
  const d = path.join(work, `case-${n++}`);
  await fsp.mkdir(d);
  return d;
};

/** Writes `bytes` as a safetensors file and returns the error opening it raises. */
async function openError(bytes: Uint8Array): Promise<{ err: CheckpointFormatError; file: string }> {
  const file = path.join(await fresh(), "model.safetensors");
  await fsp.writeFile(file, bytes);
  const err = await SafetensorsFile.open(file).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(CheckpointFormatError);
  return { err: err as CheckpointFormatError, file };
}

const header = (entries: Record<string, unknown>) => JSON.stringify(entries);

describe("bad safetensors files", () => {
  beforeAll(async () => {
    work = await fsp.mkdtemp(path.join(os.tmpdir(), "fusekit-bad-"));
  });

  it("truncated file", async () => {
    const { file: bytes } = validFile([{ name: "w", dtype: "F32", shape: [3], bytes: f32(1, 2, 3) }]);
    const { err, file } = await openError(bytes.subarray(0, bytes.length - 4));
    expect(err.message).toBe(`${file}: tensor "w": data_offsets [0, 12] run past the end of the data region (8 bytes)`);
    expect(err.file).toBe(file);
    expect(err.tensor).toBe("w");
  });

  it("file shorter than the length field", async () => {
    const { err, file } = await openError(new Uint8Array(5));
    expect(err.message).toBe(`${file}: file is 5 bytes, too short for the 8-byte header length`);
  });

  it("header length past the end", async () => {
    const { header: h, data } = validFile([{ name: "w", dtype: "F32", shape: [1], bytes: f32(1) }]);
    const bytes = assemble(h, data, 1000n);
    const { err, file } = await openError(bytes);
    expect(err.message).toBe(`${file}: header length 1000 runs past the end of the ${bytes.length}-byte file`);
  });

  it("header length beyond the 100 MB limit (a huge declared size is refused before allocating)", async () => {
    const { err, file } = await openError(assemble("{}", new Uint8Array(0), 2n ** 64n - 1n));
    expect(err.message).toBe(`${file}: header length 18446744073709551615 exceeds the 100000000-byte limit`);
  });

  it("overlapping offsets", async () => {
    const h = header({
      a: { dtype: "F32", shape: [2], data_offsets: [0, 8] },
      b: { dtype: "F32", shape: [2], data_offsets: [4, 12] },
    });
    const { err, file } = await openError(assemble(h, new Uint8Array(12)));
    expect(err.message).toBe(`${file}: tensor "b": data_offsets [4, 12] overlap the previous tensor (which ends at 8)`);
  });

  it("out-of-range offsets (a 1 TB tensor in a small file)", async () => {
    const h = header({ big: { dtype: "U8", shape: [1e12], data_offsets: [0, 1e12] } });
    const { err, file } = await openError(assemble(h, new Uint8Array(16)));
    expect(err.message).toBe(
      `${file}: tensor "big": data_offsets [0, 1000000000000] run past the end of the data region (16 bytes)`,
    );
  });

  it("reversed offsets", async () => {
    const h = header({ r: { dtype: "U8", shape: [0], data_offsets: [4, 0] } });
    const { err, file } = await openError(assemble(h, new Uint8Array(4)));
    expect(err.message).toBe(`${file}: tensor "r": data_offsets [4, 0] are reversed`);
  });

  it("a gap between tensors", async () => {
    const h = header({ a: { dtype: "F32", shape: [1], data_offsets: [4, 8] } });
    const { err, file } = await openError(assemble(h, new Uint8Array(8)));
    expect(err.message).toBe(`${file}: tensor "a": data_offsets start at 4, leaving a gap after byte 0`);
  });

  it("unknown dtype", async () => {
    const h = header({ q: { dtype: "F8_E9M9", shape: [4], data_offsets: [0, 4] } });
    const { err, file } = await openError(assemble(h, new Uint8Array(4)));
    expect(err.message).toBe(`${file}: tensor "q": unknown dtype "F8_E9M9"`);
  });

  it("byte count / shape mismatch", async () => {
    const h = header({ w: { dtype: "F32", shape: [3], data_offsets: [0, 8] } });
    const { err, file } = await openError(assemble(h, new Uint8Array(8)));
    expect(err.message).toBe(`${file}: tensor "w": holds 8 bytes but shape [3] of F32 needs 12`);
  });

  it("duplicate tensor names (JSON.parse would keep only the last)", async () => {
    const e = '{"dtype":"F32","shape":[1],"data_offsets":[0,4]}';
    const { err, file } = await openError(assemble(`{"w":${e},"w":${e}}`, new Uint8Array(4)));
    expect(err.message).toBe(`${file}: header is invalid: duplicate key "w"`);
  });

  it("deeply nested header JSON", async () => {
    const { err, file } = await openError(
      assemble(`{"w":{"shape":${"[".repeat(1000)}${"]".repeat(1000)}}}`, new Uint8Array(0)),
    );
    expect(err.message).toBe(`${file}: header is invalid: nested deeper than 128 levels`);
  });

  it("header that is not UTF-8", async () => {
    const { err, file } = await openError(
      assemble(Uint8Array.from([0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d]), new Uint8Array(0)),
    );
    expect(err.message).toBe(`${file}: header is not valid UTF-8`);
  });
});

describe("bad checkpoint directories", () => {
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
  let model: PreTrainedModel;
  beforeAll(async () => {
    await setBackend("cpu");
    model = AutoModelForCausalLM.fromConfig(new Qwen3Config(TINY), { seed: 1 });
  });
  afterAll(async () => {
    model.dispose();
    await fsp.rm(work, { recursive: true, force: true });
  });

  async function saved(sharded = false): Promise<string> {
    const dir = await fresh();
    await model.savePretrained(dir, sharded ? { maxShardSize: 300 } : {});
    return dir;
  }
  const loadError = (dir: string) =>
    AutoModelForCausalLM.fromPretrained(dir).then(
      (m) => {
        m.dispose();
        throw new Error("loaded");
      },
      (e: unknown) => e as Error,
    );
  async function editIndex(dir: string, edit: (map: Record<string, string>) => void): Promise<string> {
    const file = path.join(dir, "model.safetensors.index.json");
    const index = JSON.parse(await fsp.readFile(file, "utf8"));
    edit(index.weight_map);
    await fsp.writeFile(file, JSON.stringify(index));
    return file;
  }

  it("missing shard", async () => {
    const dir = await saved(true);
    const shard = "model-00099-of-00099.safetensors";
    const index = await editIndex(dir, (m) => (m["model.norm.weight"] = shard));
    const err = await loadError(dir);
    expect(err).toBeInstanceOf(CheckpointFormatError);
    expect(err.message).toBe(`${index}: shard "${shard}" listed in the index is missing`);
  });

  it("shard path escaping the directory", async () => {
    const dir = await saved(true);
    const index = await editIndex(dir, (m) => (m["model.norm.weight"] = "../../etc/passwd"));
    const err = await loadError(dir);
    expect(err).toBeInstanceOf(CheckpointFormatError);
    expect(err.message).toBe(
      `${index}: shard path "../../etc/passwd" for "model.norm.weight" escapes the checkpoint directory`,
    );
  });

  it("shard that is a directory", async () => {
    const dir = await saved(true);
    await fsp.mkdir(path.join(dir, "sub.safetensors"));
    await editIndex(dir, (m) => (m["model.norm.weight"] = "sub.safetensors"));
    const err = await loadError(dir);
    expect(err).toBeInstanceOf(CheckpointFormatError);
    expect(err.message).toBe(`${path.join(dir, "sub.safetensors")}: not a regular file`);
  });

  it("no weights at all", async () => {
    const dir = await saved();
    await fsp.rm(path.join(dir, "model.safetensors"));
    const err = await loadError(dir);
    expect(err).toBeInstanceOf(CheckpointFormatError);
    expect(err.message).toBe(`${dir}: no model.safetensors or model.safetensors.index.json in the directory`);
  });

  async function editConfig(dir: string, edit: (c: Record<string, unknown>) => void): Promise<string> {
    const file = path.join(dir, "config.json");
    const c = JSON.parse(await fsp.readFile(file, "utf8"));
    edit(c);
    await fsp.writeFile(file, JSON.stringify(c));
    return file;
  }

  it("config.json missing a required field", async () => {
    const dir = await saved();
    const file = await editConfig(dir, (c) => delete c.hidden_size);
    const err = await loadError(dir);
    expect(err).toBeInstanceOf(ConfigError);
    expect(err.message).toBe(`${file}: required field "hidden_size" is missing`);
  });

  it("config.json with a field of the wrong type", async () => {
    const dir = await saved();
    const file = await editConfig(dir, (c) => (c.num_attention_heads = "2"));
    const err = await loadError(dir);
    expect(err).toBeInstanceOf(ConfigError);
    expect(err.message).toBe(`${file}: field "num_attention_heads" must be a number, got "2"`);
  });

  it("unknown model_type", async () => {
    const dir = await saved();
    const file = await editConfig(dir, (c) => (c.model_type = "mistral"));
    const err = await loadError(dir);
    expect(err).toBeInstanceOf(UnknownModelTypeError);
    expect(err.message).toBe(`${file}: model_type "mistral" is not supported (supported: llama, qwen2, qwen3)`);
  });

  it("config.json declaring sizes the checkpoint cannot justify", async () => {
    const dir = await saved();
    const file = await editConfig(dir, (c) => (c.vocab_size = 2 ** 31));
    const err = await loadError(dir);
    expect(err).toBeInstanceOf(ConfigError);
    expect(err.message).toMatch(
      new RegExp(
        `^${file.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}: "vocab_size" is 2147483648, more than the checkpoint's element count \\(\\d+\\) can justify$`,
      ),
    );
  });

  it("config.json with a duplicate key", async () => {
    const dir = await saved();
    const file = path.join(dir, "config.json");
    await fsp.writeFile(file, (await fsp.readFile(file, "utf8")).replace(/^\{/, '{"hidden_size": 4096,'));
    const err = await loadError(dir);
    expect(err).toBeInstanceOf(ConfigError);
    expect(err.message).toBe(`${file}: duplicate key "hidden_size"`);
  });

  it.each([
    ["rope_scaling.factor", { rope_scaling: { rope_type: "linear", factor: "BIG" } }],
    ["rope_theta", { rope_theta: "-BIG" }],
    ["some_extra.deep.0", { some_extra: { deep: ["BIG"] } }],
  ])("config.json with a number beyond float64 (%s) is refused, not saved back as null", async (field, fields) => {
    const dir = await saved();
    const file = await editConfig(dir, (c) => Object.assign(c, fields));
    await fsp.writeFile(file, (await fsp.readFile(file, "utf8")).replace(/"(-?)BIG"/, "$11e400"));
    const err = await loadError(dir);
    expect(err).toBeInstanceOf(ConfigError);
    expect(err.message).toMatch(
      new RegExp(`^.*config\\.json: field "${field.replace(/\./g, "\\.")}" must be a finite number, got -?Infinity$`),
    );
  });

  it("model.safetensors beside an index: model.safetensors loads, as in transformers", async () => {
    const dir = await saved(true); // the index and shards of seed 1
    const other = AutoModelForCausalLM.fromConfig(new Qwen3Config(TINY), { seed: 2 });
    const single = await fresh();
    await other.savePretrained(single);
    await fsp.copyFile(path.join(single, "model.safetensors"), path.join(dir, "model.safetensors"));
    const m = await AutoModelForCausalLM.fromPretrained(dir, { strict: true });
    const want = other.namedParameters();
    expect(m.namedParameters().map(([k, p]) => [k, Array.from(p.stateData())])).toEqual(
      want.map(([k, p]) => [k, Array.from(p.stateData())]),
    );
    m.dispose();
    other.dispose();
  });

  it("a tensor of another shape: StateDictError unless ignoreMismatchedSizes, as in transformers", async () => {
    const dir = await saved();
    // The checkpoint's model has a wider MLP than config.json now says (a real size mismatch, not a sizing lie).
    const wide = AutoModelForCausalLM.fromConfig(new Qwen3Config({ ...TINY, intermediate_size: 16 }), { seed: 1 });
    await wide.savePretrained(dir);
    wide.dispose();
    await editConfig(dir, (c) => (c.intermediate_size = 12));
    const err = await loadError(dir);
    expect(err).toBeInstanceOf(StateDictError);
    expect(err.message).toMatch(
      /^.*: checkpoint tensors do not fit Qwen3ForCausalLM's parameters \(model\.layers\.0\.mlp\.down_proj\.weight: checkpoint \[8,16\], model \[8,12\]; .*\); pass ignoreMismatchedSizes: true/,
    );
    const m = await AutoModelForCausalLM.fromPretrained(dir, { ignoreMismatchedSizes: true });
    expect(m.loadReport!.mismatchedKeys.map((k) => k.key)).toEqual([
      "model.layers.0.mlp.down_proj.weight",
      "model.layers.0.mlp.gate_proj.weight",
      "model.layers.0.mlp.up_proj.weight",
    ]);
    m.dispose();
  });

  it.each([
    [
      "hidden_size 1e9 (was a RangeError)",
      { hidden_size: 1e9, head_dim: 4 },
      /float32 weights, more than the cpu backend can hold/,
    ],
    ["a million layers (was an endless build)", { num_hidden_layers: 1e6 }, /1000000 layers: their modules alone need/],
  ])("fromConfig with %s: MemoryPlanError before building", (_, over, message) => {
    const t0 = Date.now();
    expect(() => AutoModelForCausalLM.fromConfig({ model_type: "qwen3", ...TINY, ...over })).toThrow(message);
    try {
      AutoModelForCausalLM.fromConfig({ model_type: "qwen3", ...TINY, ...over });
    } catch (err) {
      expect(err).toBeInstanceOf(MemoryPlanError);
    }
    expect(Date.now() - t0).toBeLessThan(2_000);
  });

  it.each(["constructor", "__proto__", "toString", "hasOwnProperty"])(
    'architectures ["%s"] finds no Object member: the family\'s causal LM loads',
    async (arch) => {
      const dir = await saved();
      await editConfig(dir, (c) => (c.architectures = [arch]));
      const m = await AutoModelForCausalLM.fromPretrained(dir);
      expect(m.constructor.name).toBe("Qwen3ForCausalLM");
      m.dispose();
    },
  );
});
