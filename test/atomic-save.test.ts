// Kill-during-save: a child process saving over an existing checkpoint is
// SIGKILLed at several points. Before the save's commit point the previous checkpoint must load with
// identical tensors; after it, the new one must — never a mix — and no final file name may hold a partial
// file. The next save cleans up whatever the killed one left.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sameParameters } from "./helpers/models.js";
import { execFileSync, spawn } from "node:child_process";
import { promises as fsp } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { AutoModelForCausalLM, Qwen3Config, SafetensorsFile, setBackend, type PreTrainedModel } from "fusekit";
import { readFileSync } from "node:fs";

const root = fileURLToPath(new URL("..", import.meta.url));
const { "//": _, ...MODEL_CONFIG } = JSON.parse(
  readFileSync(path.join(root, "test/fixtures/atomic-config.json"), "utf8"),
);
const child = path.join(root, "test/fixtures/save-child.mjs");
const dist = path.join(root, "dist/src/index.js");
const TMP_MARKER = ".fusekit-tmp-";
const JOURNAL = ".fusekit-save-journal.json";

type Layout = "single" | "sharded";
const saveOptions = (layout: Layout) =>
  layout === "sharded" ? { maxShardSize: "2MB", dtype: "F32" as const } : { dtype: "F32" as const };

/** Runs the child; resolves with the signal that ended it. `killWhen` lets the parent kill it from outside. */
function runChild(
  dir: string,
  seed: number,
  layout: Layout,
  killAt: string[],
  killWhen?: () => Promise<boolean>,
): Promise<NodeJS.Signals | null> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [child, dist, dir, String(seed), layout, ...killAt], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    p.stderr.on("data", (d) => (stderr += d));
    let polling: NodeJS.Timeout | undefined;
    if (killWhen) {
      polling = setInterval(async () => {
        if (await killWhen()) {
          clearInterval(polling);
          p.kill("SIGKILL");
        }
      }, 1);
    }
    p.on("error", reject);
    p.on("exit", (code, signal) => {
      clearInterval(polling);
      if (code !== 0 && signal === null) reject(new Error(`child failed (${code}): ${stderr}`));
      else resolve(signal);
    });
  });
}

const models = new Map<number, PreTrainedModel>();
function model(seed: number): PreTrainedModel {
  if (!models.has(seed)) models.set(seed, AutoModelForCausalLM.fromConfig(new Qwen3Config(MODEL_CONFIG), { seed }));
  return models.get(seed)!;
}

/** Loads the directory strictly and returns the seeds whose model equals it in every tensor, bit for bit. */
async function seedsMatching(dir: string, seeds: number[]): Promise<number[]> {
  const loaded = await AutoModelForCausalLM.fromPretrained(dir, { strict: true });
  try {
    return seeds.filter((seed) => sameParameters(loaded, model(seed)));
  } finally {
    loaded.dispose();
  }
}

async function expectCheckpointOf(dir: string, seed: number): Promise<void> {
  // Asked about a second seed too, so a mix (some tensors of each) shows as matching neither.
  expect(await seedsMatching(dir, [seed, seed === 1 ? 2 : 1])).toEqual([seed]);
}

/** Every file under a final name is complete: weight files pass full validation, JSON files parse. */
async function expectNoPartialFinalFiles(dir: string): Promise<void> {
  for (const name of await fsp.readdir(dir)) {
    if (name.includes(TMP_MARKER) || name === JOURNAL) continue;
    const file = path.join(dir, name);
    if (name.endsWith(".safetensors")) {
      const f = await SafetensorsFile.open(file); // throws on a truncated / partial file
      for (const k of f.keys()) await f.readBytes(k);
      await f.close();
    } else if (name.endsWith(".json")) {
      expect(() => JSON.parse(execFileSync("cat", [file], { encoding: "utf8" })), name).not.toThrow();
    }
  }
}

let work: string;
beforeAll(async () => {
  await setBackend("cpu");
  // The child runs the built library (it cannot use vitest's TypeScript transform); test/global-setup.ts builds dist/.
  work = await fsp.mkdtemp(path.join(os.tmpdir(), "fusekit-atomic-"));
});
afterAll(async () => {
  for (const m of models.values()) m.dispose();
  await fsp.rm(work, { recursive: true, force: true });
});

// [old layout, new layout, kill point, which checkpoint must load afterwards]
const cases: [Layout, Layout, string[], "old" | "new"][] = [
  ["single", "sharded", ["bytes", "1000000"], "old"], // mid-way through the first temporary shard
  ["single", "sharded", ["shard", "2"], "old"], // first shard complete, second just opened
  ["single", "sharded", ["rename", "0"], "old"], // everything staged, just before the commit
  ["single", "sharded", ["rename", "1"], "new"], // committed, nothing renamed yet
  ["single", "sharded", ["rename", "7"], "new"], // every weight file and the index renamed, config.json not yet
  ["sharded", "single", ["bytes", "3000000"], "old"],
  ["sharded", "single", ["rename", "0"], "old"],
  ["sharded", "single", ["rename", "2"], "new"], // new model.safetensors in place, old index and shards still there
  ["sharded", "sharded", ["rename", "4"], "new"], // some shards renamed over the old ones of the same names
];

describe("savePretrained killed mid-save (SIGKILL in a child process)", () => {
  it.each(cases)(
    "old %s checkpoint, new %s save killed at %j → the %s checkpoint loads",
    async (oldLayout, newLayout, killAt, expected) => {
      const dir = path.join(work, `${oldLayout}-${newLayout}-${killAt.join("-")}`);
      await model(1).savePretrained(dir, saveOptions(oldLayout));
      await expectCheckpointOf(dir, 1);

      const signal = await runChild(dir, 2, newLayout, killAt);
      expect(signal).toBe("SIGKILL");
      const left = await fsp.readdir(dir);
      // A save killed after the commit point leaves its journal; one killed before it leaves only temporaries.
      expect(left.includes(JOURNAL)).toBe(expected === "new");
      await expectNoPartialFinalFiles(dir);
      await expectCheckpointOf(dir, expected === "old" ? 1 : 2);

      // The next save finishes or discards the killed one's leftovers and stands alone.
      await model(3).savePretrained(dir, saveOptions(oldLayout));
      expect((await fsp.readdir(dir)).filter((n) => n.includes(TMP_MARKER) || n === JOURNAL)).toEqual([]);
      await expectCheckpointOf(dir, 3);
    },
  );

  it("killed from outside as soon as a temporary file appears: the old checkpoint or the new one, never a mix", async () => {
    const dir = path.join(work, "external");
    await model(1).savePretrained(dir, saveOptions("single"));
    const hasTemp = async () => (await fsp.readdir(dir)).some((n) => n.includes(TMP_MARKER));
    const signal = await runChild(dir, 2, "sharded", ["none"], hasTemp);
    expect(signal).toBe("SIGKILL");
    await expectNoPartialFinalFiles(dir);
    // Killed while writing (the usual case) the old checkpoint loads; had the child won the race, the new one.
    expect((await seedsMatching(dir, [1, 2])).length).toBe(1);
  });
});
