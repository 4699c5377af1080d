// Reading checkpoint bytes straight into their final place, several reads at a time (issue 13 item 3):
// CheckpointReader.readBytesIntoMany against readBytes, its failures, and a BF16 load into packed storage that
// must stay byte-exact even when the wasm heap grows (detaching every view of it) while the reads run.
import path from "node:path";
import { promises as fsp } from "node:fs";
import { afterEach, describe, expect, it } from "vitest";
import {
  AutoModelForCausalLM,
  CheckpointReader,
  CheckpointFormatError,
  setBackend,
  tf,
  writeSafetensors,
} from "fusekit";
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
      const params = new Map(model.namedParameters());
      let packed = 0;
      for (const key of reader.keys()) {
        const p = params.get(key)!;
        if (!p.packed) continue;
        packed++;
        const stored = new Uint8Array((p.packedTensor.dataSync() as Int32Array).slice().buffer);
        expect(Buffer.from(stored).equals(Buffer.from(await reader.readBytes(key))), key).toBe(true);
      }
      expect(packed).toBe(2 * 7 + 2); // 7 Linear weights per layer, the embedding and lm_head
    } finally {
      ballast?.dispose();
      model.dispose();
      await reader.close();
    }
  });
});

interface HeapOwner {
  wasm: { asm: { memory: { buffer: ArrayBuffer } } };
}
