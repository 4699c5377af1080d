// Two saves into one folder at once (two processes saving different models, or two saves in this one): they
// are serialised by the folder's save lock, so the folder ends as exactly one of the two checkpoints — never
// one model's config.json beside the other's weights, never a shard deleted — and both saves succeed.
// A lock left by a dead holder is broken; a live one is waited for, up to `lockTimeout`, then SaveLockError.
// FUSEKIT_SAVE_TRIALS=50 runs the cross-process trials 50 times (the suite runs a few).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sameParameters } from "./helpers/models.js";
import { spawn, spawnSync } from "node:child_process";
import { promises as fsp, readFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { AutoModelForCausalLM, Qwen3Config, SaveLockError, setBackend, type PreTrainedModel } from "fusekit";

const root = fileURLToPath(new URL("..", import.meta.url));
const { "//": _, ...MODEL_CONFIG } = JSON.parse(
  readFileSync(path.join(root, "test/fixtures/atomic-config.json"), "utf8"),
);
const child = path.join(root, "test/fixtures/concurrent-save-child.mjs");
const dist = path.join(root, "dist/src/index.js");
const LOCK = ".fusekit-save.lock";

type Layout = "single" | "sharded";
const saveOptions = (layout: Layout) =>
  layout === "sharded" ? { maxShardSize: "2MB", dtype: "F32" as const } : { dtype: "F32" as const };

const models = new Map<number, PreTrainedModel>();
/** Seed `seed`'s model; its config differs per seed too (as in the child), so a mismatched config.json shows. */
function model(seed: number): PreTrainedModel {
  const config = new Qwen3Config({ ...MODEL_CONFIG, rms_norm_eps: seed * 1e-6 });
  if (!models.has(seed)) models.set(seed, AutoModelForCausalLM.fromConfig(config, { seed }));
  return models.get(seed)!;
}

/**
 * The seeds whose model the folder holds, bit for bit and with its own config.json (a mix matches none). A
 * folder holding weight files of both layouts (a model.safetensors beside an index) is a mix too.
 */
async function seedsMatching(dir: string, seeds: number[]): Promise<number[]> {
  const names = await fsp.readdir(dir);
  if (names.includes("model.safetensors") && names.includes("model.safetensors.index.json")) return [];
  if (names.includes("model.safetensors.index.json")) {
    const index = JSON.parse(await fsp.readFile(path.join(dir, "model.safetensors.index.json"), "utf8"));
    const shards = new Set(Object.values(index.weight_map as Record<string, string>));
    if (names.some((n) => /^model-\d+-of-\d+\.safetensors$/.test(n) && !shards.has(n))) return [];
  }
  const loaded = await AutoModelForCausalLM.fromPretrained(dir, { strict: true });
  try {
    return seeds.filter(
      (seed) => (loaded.config as Qwen3Config).rms_norm_eps === seed * 1e-6 && sameParameters(loaded, model(seed)),
    );
  } finally {
    loaded.dispose();
  }
}

/** Starts a child saving `seed`; resolves `ready` when it waits at the barrier and `done` when it exits. */
function startChild(dir: string, seed: number, layout: Layout, barrier: string, delayMs = 0) {
  const p = spawn(process.execPath, [child, dist, dir, String(seed), layout, barrier, String(delayMs)], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  let onReady: () => void;
  const ready = new Promise<void>((r) => (onReady = r));
  p.stdout.on("data", (d) => {
    out += d;
    if (out.includes("ready")) onReady();
  });
  p.stderr.on("data", (d) => (err += d));
  const done = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
    p.on("error", reject);
    p.on("exit", (code) => resolve({ code, stdout: out, stderr: err }));
  });
  return { ready, done };
}

/** What one trial left: "seed N" when the folder is exactly seed N's checkpoint and both saves succeeded. */
async function verdict(dir: string, results: { code: number | null; stderr: string }[]): Promise<string> {
  const failed = results.filter((r) => r.code !== 0);
  if (failed.length) return `a save failed: ${failed[0].stderr.trim().split("\n")[0]}`;
  const left = (await fsp.readdir(dir)).filter((n) => n.includes(".fusekit-") || n === LOCK);
  if (left.length) return `left behind: ${left.join(", ")}`;
  try {
    const seeds = await seedsMatching(dir, [1, 2]);
    return seeds.length === 1 ? `seed ${seeds[0]}` : "MIXED";
  } catch (err) {
    return `BROKEN: ${(err as Error).name}: ${(err as Error).message}`;
  }
}

let work: string;
beforeAll(async () => {
  await setBackend("cpu");
  work = await fsp.mkdtemp(path.join(os.tmpdir(), "fusekit-concurrent-save-"));
});
afterAll(async () => {
  for (const m of models.values()) m.dispose();
  await fsp.rm(work, { recursive: true, force: true });
});

const TRIALS = Number(process.env.FUSEKIT_SAVE_TRIALS ?? 4);
const LAYOUTS: [Layout, Layout][] = [
  ["single", "sharded"],
  ["sharded", "single"],
  ["sharded", "sharded"],
  ["single", "single"],
];

describe("two processes saving different models into one folder at once", () => {
  it(`${TRIALS} trials (single and sharded, both directions, into a new and an existing folder): one whole checkpoint, both saves succeed`, async () => {
    const verdicts: string[] = [];
    for (let t = 0; t < TRIALS; t++) {
      const [a, b] = LAYOUTS[t % LAYOUTS.length];
      const dir = path.join(work, `trial-${t}`);
      if (t % 2) await model(3).savePretrained(dir, saveOptions(a)); // an existing checkpoint being replaced
      const barrier = path.join(work, `go-${t}`);
      const one = startChild(dir, 1, a, barrier);
      // Every other trial starts the second save while the first one is under way (writing or committing).
      const two = startChild(dir, 2, b, barrier, t % 2 ? 0 : 20 + Math.floor(Math.random() * 400));
      await Promise.all([one.ready, two.ready]);
      await fsp.writeFile(barrier, "");
      const results = await Promise.all([one.done, two.done]);
      verdicts.push(`${t} ${a}/${b}: ${await verdict(dir, results)}`);
      await fsp.rm(dir, { recursive: true, force: true });
    }
    const bad = verdicts.filter((v) => !/: seed \d$/.test(v));
    console.log(`concurrent saves: ${TRIALS} trials, ${bad.length} lost or mixed\n${verdicts.join("\n")}`);
    expect(bad).toEqual([]);
  }, 300_000);
});

describe("two saves in one process into one folder", () => {
  it("Promise.all of two saves: one whole checkpoint (the later one), both resolve", async () => {
    const dir = path.join(work, "in-process");
    await Promise.all([
      model(1).savePretrained(dir, saveOptions("sharded")),
      model(2).savePretrained(dir, saveOptions("single")),
    ]);
    expect((await seedsMatching(dir, [1, 2])).length).toBe(1);
    expect((await fsp.readdir(dir)).filter((n) => n.includes(".fusekit-"))).toEqual([]);
  });
});

describe("the save lock", () => {
  const small = () => AutoModelForCausalLM.fromConfig(new Qwen3Config({ ...MODEL_CONFIG, vocab_size: 64 }));

  it("a lock held by a live process is waited for, then a SaveLockError naming the holder; nothing written", async () => {
    const dir = path.join(work, "held");
    await fsp.mkdir(dir);
    const holder = { pid: process.pid, host: os.hostname(), started: "2026-01-01T00:00:00.000Z", token: "x" };
    await fsp.writeFile(path.join(dir, LOCK), JSON.stringify(holder));
    const m = small();
    const t0 = Date.now();
    const err = await m.savePretrained(dir, { lockTimeout: 300 }).catch((e: unknown) => e);
    m.dispose();
    expect(Date.now() - t0).toBeGreaterThanOrEqual(300);
    expect(err).toBeInstanceOf(SaveLockError);
    expect((err as SaveLockError).path).toBe(dir);
    expect((err as Error).message).toBe(
      `${dir}: another save into this folder is running (pid ${process.pid} on ${os.hostname()}, since 2026-01-01T00:00:00.000Z); ` +
        `waited 0.3 s. If no save is running, remove ${path.join(dir, LOCK)}`,
    );
    expect(await fsp.readdir(dir)).toEqual([LOCK]);
  });

  it("a lock left by a crashed holder (its pid is dead) is broken and the save goes ahead", async () => {
    const dir = path.join(work, "stale");
    await fsp.mkdir(dir);
    const dead = spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"]).stdout.toString();
    const holder = { pid: Number(dead), host: os.hostname(), started: "2026-01-01T00:00:00.000Z", token: "x" };
    await fsp.writeFile(path.join(dir, LOCK), JSON.stringify(holder));
    const m = small();
    await m.savePretrained(dir, { lockTimeout: 5_000 });
    m.dispose();
    expect((await fsp.readdir(dir)).sort()).toEqual(["config.json", "model.safetensors"]);
  });
});
