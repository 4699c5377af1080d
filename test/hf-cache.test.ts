// Hub ids ("org/name") resolve in a Hugging Face cache laid out as huggingface_hub does it (refs/, snapshots/ of
// symlinks into blobs/), offline: env precedence, revisions (a branch, a tag, a commit sha), the models--org--name
// folder itself, a local folder that wins over the cache, and a missing model named with the paths searched.
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { lstatSync, mkdirSync, rmSync, unlinkSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import {
  AutoModelForCausalLM,
  ArgumentError,
  ConfigError,
  ModelNotFoundError,
  hubCacheDir,
  resolvePretrained,
  setBackend,
} from "fusekit";
import { savedSmallModel, tmpDir } from "./helpers/models.js";
import { commitSha, folderFiles, writeCachedModel } from "./helpers/hub.js";
import { isRepoId, repoFolderName } from "../src/io/hf-cache.js";

const ENV_KEYS = [
  "HF_HUB_CACHE",
  "HF_HOME",
  "HUGGINGFACE_HUB_CACHE",
  "XDG_CACHE_HOME",
  "HF_HUB_OFFLINE",
  "HF_ENDPOINT",
];
const saved = Object.fromEntries(ENV_KEYS.map((k) => [k, process.env[k]]));
afterEach(() => {
  for (const k of ENV_KEYS)
    if (saved[k] === undefined) delete process.env[k];
    else process.env[k] = saved[k];
});

let files: Map<string, Buffer>;
let cache: string;
const V1 = commitSha("v1");
const MAIN = commitSha("main");
beforeAll(async () => {
  await setBackend("cpu");
  files = folderFiles(await savedSmallModel({}, { seed: 3 }));
  cache = tmpDir("fusekit-hf-cache-");
  writeCachedModel(cache, "acme/tiny", files, { sha: MAIN, refs: ["main"] });
  const v1 = new Map(files);
  v1.set(
    "config.json",
    Buffer.from(JSON.stringify({ ...JSON.parse(files.get("config.json")!.toString()), seed_tag: 1 })),
  );
  writeCachedModel(cache, "acme/tiny", v1, { sha: V1, refs: ["v1"] });
  // Never let a test in this file reach a network: downloads are off unless a test says otherwise.
  process.env.HF_HUB_OFFLINE = "1";
  saved.HF_HUB_OFFLINE = "1";
});
afterAll(() => {
  delete process.env.HF_HUB_OFFLINE;
});

describe("hubCacheDir", () => {
  it("follows huggingface_hub: HF_HUB_CACHE, else HF_HOME/hub, else XDG_CACHE_HOME/huggingface/hub, else ~/.cache", () => {
    expect(hubCacheDir({ HF_HUB_CACHE: "/a", HF_HOME: "/b", XDG_CACHE_HOME: "/c" })).toBe("/a");
    expect(hubCacheDir({ HF_HOME: "/b", XDG_CACHE_HOME: "/c" })).toBe("/b/hub");
    expect(hubCacheDir({ XDG_CACHE_HOME: "/c" })).toBe("/c/huggingface/hub");
    expect(hubCacheDir({})).toBe(path.join(os.homedir(), ".cache", "huggingface", "hub"));
    expect(hubCacheDir({ HUGGINGFACE_HUB_CACHE: "/legacy", HF_HOME: "/b" })).toBe("/legacy");
    expect(hubCacheDir({ HF_HOME: "~/hf" })).toBe(path.join(os.homedir(), "hf", "hub"));
  });

  it("names repo folders and recognises repo ids as huggingface_hub validates them", () => {
    expect(repoFolderName("Qwen/Qwen3-0.6B")).toBe("models--Qwen--Qwen3-0.6B");
    for (const ok of ["Qwen/Qwen3-0.6B", "gpt2", "a_b/c.d-e"]) expect(isRepoId(ok), ok).toBe(true);
    for (const bad of ["/abs/path", "./x", "a/b/c", "a--b/c", "a/..", "-a/b", "", "a b/c"])
      expect(isRepoId(bad), bad).toBe(false);
  });
});

describe("resolvePretrained / fromPretrained with a hub id", () => {
  it("reads refs/main and loads the snapshot of symlinked blobs ($HF_HUB_CACHE)", async () => {
    process.env.HF_HUB_CACHE = cache;
    const { dir, repoId } = await resolvePretrained("acme/tiny");
    expect(dir).toBe(path.join(cache, "models--acme--tiny", "snapshots", MAIN));
    expect(repoId).toBe("acme/tiny");
    expect(lstatSync(path.join(dir, "model.safetensors")).isSymbolicLink()).toBe(true);
    const model = await AutoModelForCausalLM.fromPretrained("acme/tiny", { strict: true });
    expect(model.sourceDir).toBe(dir);
    model.dispose();
  });

  it("takes the cache from $HF_HOME/hub when HF_HUB_CACHE is unset, and HF_HUB_CACHE over HF_HOME", async () => {
    const home = tmpDir("fusekit-hf-home-");
    writeCachedModel(path.join(home, "hub"), "acme/home-only", files);
    process.env.HF_HOME = home;
    expect((await resolvePretrained("acme/home-only")).dir).toContain(path.join(home, "hub"));
    process.env.HF_HUB_CACHE = cache;
    await expect(resolvePretrained("acme/home-only")).rejects.toThrow(ModelNotFoundError);
    expect((await resolvePretrained("acme/tiny")).dir).toContain(cache);
  });

  it("a branch or tag reads refs/{revision}; a 40-hex commit sha selects snapshots/{sha} directly", async () => {
    const v1 = await resolvePretrained("acme/tiny", { cacheDir: cache, revision: "v1" });
    expect(v1.dir).toBe(path.join(cache, "models--acme--tiny", "snapshots", V1));
    const bySha = await resolvePretrained("acme/tiny", { cacheDir: cache, revision: V1 });
    expect(bySha.dir).toBe(v1.dir);
    await expect(resolvePretrained("acme/tiny", { cacheDir: cache, revision: "../../etc" })).rejects.toThrow(
      ArgumentError,
    );
  });

  it("the models--org--name folder itself resolves to its revision's snapshot", async () => {
    const repo = path.join(cache, "models--acme--tiny");
    expect((await resolvePretrained(repo)).dir).toBe(path.join(repo, "snapshots", MAIN));
    const model = await AutoModelForCausalLM.fromPretrained(repo, { revision: "v1" });
    expect(model.sourceDir).toBe(path.join(repo, "snapshots", V1));
    model.dispose();
  });

  it("a local folder named like the id wins over the cache, as in transformers", async () => {
    const work = tmpDir("fusekit-cwd-");
    mkdirSync(path.join(work, "acme", "tiny"), { recursive: true });
    for (const [name, bytes] of files) writeFileSync(path.join(work, "acme", "tiny", name), bytes);
    const cwd = process.cwd();
    process.chdir(work);
    try {
      process.env.HF_HUB_CACHE = cache;
      expect((await resolvePretrained("acme/tiny")).dir).toBe("acme/tiny");
    } finally {
      process.chdir(cwd);
    }
  });

  it("a missing model is a ModelNotFoundError (a ConfigError) naming every path searched and how to get it", async () => {
    process.env.HF_HUB_CACHE = cache;
    const err = await resolvePretrained("Qwen/Qwen3-0.6B", { revision: "v2" }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModelNotFoundError);
    expect(err).toBeInstanceOf(ConfigError);
    const repo = path.join(cache, "models--Qwen--Qwen3-0.6B");
    expect((err as ModelNotFoundError).searched).toEqual([
      path.resolve("Qwen/Qwen3-0.6B"),
      path.join(repo, "refs", "v2"),
      path.join(repo, "snapshots"),
    ]);
    const message = (err as Error).message;
    for (const p of (err as ModelNotFoundError).searched) expect(message).toContain(p);
    expect(message).toContain("hf download Qwen/Qwen3-0.6B --revision v2");
    expect(message).toContain("huggingface-cli download Qwen/Qwen3-0.6B --revision v2");
    expect(message).toContain("downloads are off (HF_HUB_OFFLINE is set)");
  });

  it("a snapshot with a missing file (a dangling blob link) is not used: the error names what it lacks", async () => {
    const c = tmpDir("fusekit-hf-broken-");
    const repo = writeCachedModel(c, "acme/broken", files);
    const snapshot = path.join(repo, "snapshots", commitSha("acme/broken"));
    rmSync(path.join(repo, "blobs"), { recursive: true }); // every link now dangles
    unlinkSync(path.join(snapshot, "config.json"));
    await expect(resolvePretrained("acme/broken", { cacheDir: c, localFilesOnly: true })).rejects.toThrow(
      `snapshot ${snapshot} lacks config.json, model.safetensors, and downloads are off (localFilesOnly is set)`,
    );
  });

  it("a path that is not shaped like a hub id keeps the old missing-folder error", async () => {
    const missing = path.join(cache, "no-such-model");
    await expect(AutoModelForCausalLM.fromPretrained(missing)).rejects.toThrow(
      new ConfigError(`${missing}: not a checkpoint directory (it does not exist or is not a folder)`),
    );
  });
});
