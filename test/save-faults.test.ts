// Filesystem faults during a save: a full disk (ENOSPC) at every stage, a read-only filesystem (EROFS), a
// forbidden folder (EACCES) — injected into fs.promises. Every one is an OutputPathError naming the folder,
// the previous checkpoint still loads unchanged, and no staged file, journal or lock is left on the disk.
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { promises as fsp } from "node:fs";
import path from "node:path";
import {
  AutoModelForCausalLM,
  AutoTokenizer,
  OutputPathError,
  qwen3TokenizerDir,
  setBackend,
  type PreTrainedModel,
} from "fusekit/internals";
import { smallConfig, tmpDir } from "./helpers/models.js";

const errno = (code: string) => Object.assign(new Error(`${code}: injected`), { code });

/** Makes writes to files whose path passes `when` fail with `code` (handles from fsp.open). */
function failWrites(code: string, when: (file: string) => boolean): void {
  const open = fsp.open.bind(fsp);
  vi.spyOn(fsp, "open").mockImplementation((async (...args: Parameters<typeof fsp.open>) => {
    const h = await open(...args);
    if (!when(String(args[0]))) return h;
    h.write = (async () => {
      throw errno(code);
    }) as typeof h.write;
    h.writeFile = (async () => {
      throw errno(code);
    }) as typeof h.writeFile;
    return h;
  }) as typeof fsp.open);
}

/** Makes creating anything fail with `code` (open for writing, mkdir, mkdtemp), as on a read-only filesystem. */
function failCreates(code: string): void {
  const open = fsp.open.bind(fsp);
  vi.spyOn(fsp, "open").mockImplementation((async (...args: Parameters<typeof fsp.open>) => {
    if (args[1] !== undefined && args[1] !== "r") throw errno(code);
    return open(...args);
  }) as typeof fsp.open);
  vi.spyOn(fsp, "mkdir").mockRejectedValue(errno(code));
  vi.spyOn(fsp, "mkdtemp").mockRejectedValue(errno(code));
}

let work: string;
let model: PreTrainedModel;
let other: PreTrainedModel;
beforeAll(async () => {
  await setBackend("cpu");
  work = tmpDir("fusekit-save-faults-");
  model = AutoModelForCausalLM.fromConfig(smallConfig(), { seed: 1 });
  other = AutoModelForCausalLM.fromConfig(smallConfig(), { seed: 2 });
});
afterAll(async () => {
  model.dispose();
  other.dispose();
  await fsp.rm(work, { recursive: true, force: true });
});
afterEach(() => {
  vi.restoreAllMocks();
});

let n = 0;
/** A folder holding seed 1's checkpoint, and what it holds (names and bytes). */
async function existing(sharded: boolean): Promise<{ dir: string; snapshot: Map<string, Buffer> }> {
  const dir = path.join(work, `case-${n++}`);
  await model.savePretrained(dir, sharded ? { maxShardSize: 10_000 } : {});
  return { dir, snapshot: await snapshot(dir) };
}
async function snapshot(dir: string): Promise<Map<string, Buffer>> {
  const names = (await fsp.readdir(dir)).sort();
  return new Map(await Promise.all(names.map(async (f) => [f, await fsp.readFile(path.join(dir, f))] as const)));
}

async function expectRefused(save: Promise<unknown>, dir: string, code: string): Promise<void> {
  const err = await save.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(OutputPathError);
  expect((err as OutputPathError).path).toBe(dir);
  expect((err as Error).message).toBe(`${dir}: cannot write here (${code})`);
}

describe("a full disk (ENOSPC) during a save", () => {
  const both = [false, true];
  it.each([
    ["the first weight file", both, (f: string) => f.includes("model") && f.includes(".safetensors.fusekit-tmp-")],
    ["the index", [true], (f: string) => f.includes("index.json.fusekit-tmp-")],
    ["config.json", both, (f: string) => f.includes("config.json.fusekit-tmp-")],
    ["the journal (after every file was staged)", both, (f: string) => f.includes("journal.json.fusekit-tmp-")],
    ["the lock file", both, (f: string) => f.endsWith(".fusekit-save.lock")],
  ])(
    "while writing %s: OutputPathError, the old checkpoint unchanged, nothing staged left",
    async (_, layouts, when) => {
      for (const sharded of layouts) {
        const { dir, snapshot: before } = await existing(!sharded);
        failWrites("ENOSPC", when);
        await expectRefused(other.savePretrained(dir, sharded ? { maxShardSize: 10_000 } : {}), dir, "ENOSPC");
        vi.restoreAllMocks();
        expect(await snapshot(dir)).toEqual(before);
      }
    },
  );

  it("tokenizer.savePretrained with a full disk: OutputPathError, nothing left", async () => {
    const tok = await AutoTokenizer.fromPretrained(qwen3TokenizerDir());
    const dir = path.join(work, "tok");
    await fsp.mkdir(dir);
    failWrites("ENOSPC", (f) => f.includes(".fusekit-tmp-"));
    await expectRefused(tok.savePretrained(dir), dir, "ENOSPC");
    vi.restoreAllMocks();
    expect(await fsp.readdir(dir)).toEqual([]);
  });
});

describe("a read-only or forbidden target", () => {
  it.each(["EROFS", "EACCES"])("%s on an existing checkpoint: OutputPathError, unchanged", async (code) => {
    const { dir, snapshot: before } = await existing(false);
    failCreates(code);
    await expectRefused(other.savePretrained(dir), dir, code);
    vi.restoreAllMocks();
    expect(await snapshot(dir)).toEqual(before);
  });

  it.each(["EROFS", "EACCES"])("%s creating a new folder: OutputPathError", async (code) => {
    const dir = path.join(work, `new-${code}`, "model");
    failCreates(code);
    const err = await other.savePretrained(dir).catch((e: unknown) => e);
    vi.restoreAllMocks();
    expect(err).toBeInstanceOf(OutputPathError);
    expect((err as Error).message).toMatch(new RegExp(`cannot create this folder \\(${code}\\)$`));
  });

  it("EACCES listing the folder: OutputPathError", async () => {
    const { dir } = await existing(false);
    vi.spyOn(fsp, "readdir").mockRejectedValue(errno("EACCES"));
    await expectRefused(other.savePretrained(dir), dir, "EACCES");
  });
});
