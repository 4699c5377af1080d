// The browser build's file system (src/browser/node/fs.ts), run in Node: mounted checkpoint sources read
// as folders (sizes, positioned reads, listings), writes refused inside a mount with EROFS and kept in
// memory elsewhere (the comparison's save → reload), and Node's error codes where Node gives them.
import { describe, expect, it } from "vitest";
import { existsSync, memoryFile, mountFiles, promises as fsp, readFileSync } from "../src/browser/node/fs.js";
import { registerGrowableMemory } from "../src/browser/node/fs.js";
import { sourceFromFiles } from "../src/browser/source.js";

const bytes = (n: number) => Uint8Array.from({ length: n }, (_, i) => (i * 7) % 256);

/** A Blob-like file (what a file picker gives) that counts the bytes read through it. */
function blob(data: Uint8Array, name: string) {
  const counter = { read: 0 };
  return {
    counter,
    file: {
      size: data.byteLength,
      name,
      webkitRelativePath: `picked/${name}`,
      slice: (start: number, end: number) => ({
        arrayBuffer: async () => {
          counter.read += end - start;
          return data.slice(start, end).buffer;
        },
      }),
    },
  };
}

describe("the browser build's file system", () => {
  it("reads a picked folder as a checkpoint folder: listing, sizes, positioned reads of only what is asked", async () => {
    const weights = bytes(10_000);
    const w = blob(weights, "model.safetensors");
    const c = blob(new TextEncoder().encode('{"model_type":"qwen3"}'), "config.json");
    const dir = mountFiles("/checkpoints/picked", sourceFromFiles([w.file, c.file]));
    expect(dir).toBe("/checkpoints/picked");
    expect(await fsp.readdir(dir)).toEqual(["config.json", "model.safetensors"]);
    const stat = await fsp.stat(`${dir}/model.safetensors`);
    expect([stat.isFile(), stat.isDirectory(), stat.size]).toEqual([true, false, 10_000]);
    expect((await fsp.stat(dir)).isDirectory()).toBe(true);
    const handle = await fsp.open(`${dir}/model.safetensors`, 0);
    const target = new Uint8Array(100);
    const { bytesRead } = await handle.read(target, 10, 50, 9_000);
    expect(bytesRead).toBe(50);
    expect(target.subarray(10, 60)).toEqual(weights.subarray(9_000, 9_050));
    expect(w.counter.read).toBe(50); // a range, never the whole file
    expect((await handle.read(target, 0, 100, 9_990)).bytesRead).toBe(10); // short at the end, as Node
    expect(await fsp.readFile(`${dir}/config.json`, "utf8")).toBe('{"model_type":"qwen3"}');
  });

  it("lands a read in a wasm memory that grew while the bytes were on their way (the view was detached)", async () => {
    // typed here: the project declares only the parts of the WebAssembly global it uses
    const memory = new WebAssembly.Memory({ initial: 1, maximum: 4 }) as unknown as {
      buffer: ArrayBuffer;
      grow(pages: number): number;
    };
    registerGrowableMemory(() => memory);
    const data = bytes(300);
    let release!: () => void;
    const arrived = new Promise<void>((r) => (release = r));
    const slow = { size: 300, read: async (at: number, n: number) => (await arrived, data.slice(at, at + n)) };
    const dir = mountFiles("/checkpoints/slow", [["w.bin", slow]]);
    const handle = await fsp.open(`${dir}/w.bin`, "r");
    const view = new Uint8Array(memory.buffer, 1000, 200);
    const pending = handle.read(view, 0, 200, 100);
    memory.grow(1); // what a tensor allocated meanwhile does to the heap
    expect(view.byteLength).toBe(0);
    release();
    expect((await pending).bytesRead).toBe(200);
    expect(new Uint8Array(memory.buffer, 1000, 200)).toEqual(data.subarray(100, 300));
  });

  it("refuses writes inside a mount (EROFS) and names missing paths (ENOENT)", async () => {
    const dir = mountFiles("/checkpoints/ro", [["config.json", memoryFile(new TextEncoder().encode("{}"))]]);
    await expect(fsp.writeFile(`${dir}/config.json`, "x")).rejects.toMatchObject({ code: "EROFS" });
    await expect(fsp.open(`${dir}/new.json`, "w")).rejects.toMatchObject({ code: "EROFS" });
    await expect(fsp.rm(dir, { recursive: true })).rejects.toMatchObject({ code: "EROFS" });
    await expect(fsp.rename(`${dir}/config.json`, "/tmp/x")).rejects.toMatchObject({ code: "EROFS" });
    await expect(fsp.stat(`${dir}/missing.json`)).rejects.toMatchObject({ code: "ENOENT" });
    await expect(fsp.readdir("/nowhere")).rejects.toMatchObject({ code: "ENOENT" });
    expect(existsSync(`${dir}/config.json`)).toBe(true);
  });

  it("keeps files written elsewhere in memory: write, rename into place, link, read back, remove", async () => {
    await fsp.mkdir("/tmp", { recursive: true });
    const dir = await fsp.mkdtemp("/tmp/save-");
    const h = await fsp.open(`${dir}/a.tmp`, "w");
    await h.write(new Uint8Array([1, 2, 3]));
    await h.write("ab");
    await h.close();
    await expect(fsp.open(`${dir}/a.tmp`, "wx")).rejects.toMatchObject({ code: "EEXIST" });
    await fsp.rename(`${dir}/a.tmp`, `${dir}/a.bin`);
    expect(existsSync(`${dir}/a.tmp`)).toBe(false);
    expect(readFileSync(`${dir}/a.bin`)).toEqual(new Uint8Array([1, 2, 3, 97, 98]));
    await fsp.link(`${dir}/a.bin`, `${dir}/b.bin`);
    expect(await fsp.readFile(`${dir}/b.bin`)).toEqual(new Uint8Array([1, 2, 3, 97, 98]));
    await expect(fsp.rmdir(dir)).rejects.toMatchObject({ code: "ENOTEMPTY" });
    await fsp.rm(dir, { recursive: true });
    expect(existsSync(`${dir}/b.bin`)).toBe(false);
    expect(existsSync(dir)).toBe(false);
  });
});
