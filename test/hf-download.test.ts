// Downloading a hub id into the Hugging Face cache, against a stand-in hub on 127.0.0.1 (no other address is
// ever contacted: HF_ENDPOINT points at it in every test): the cache layout huggingface_hub writes, progress
// objects, HF_TOKEN as a bearer token, a dropped connection resumed with Range or failing cleanly, a corrupt
// transfer discarded, and no request at all when the cache has the model or downloads are off.
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import {
  existsSync,
  lstatSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import path from "node:path";
import {
  AutoModelForCausalLM,
  HubDownloadError,
  ModelNotFoundError,
  setBackend,
  tf,
  type PreTrainedModel,
  type ProgressInfo,
} from "fusekit";
import { savedSmallModel, tmpDir, flatLogitsOf } from "./helpers/models.js";
import { commitSha, folderFiles, gitEtag, sha256, startFakeHub, type FakeHub } from "./helpers/hub.js";
import { root, runNode } from "./helpers/cli.js";

const ENV_KEYS = ["HF_HUB_CACHE", "HF_HOME", "HF_HUB_OFFLINE", "HF_ENDPOINT", "HF_TOKEN", "HF_HUB_DOWNLOAD_TIMEOUT"];
const saved = Object.fromEntries(ENV_KEYS.map((k) => [k, process.env[k]]));
const SHA = commitSha("hub");
let hub: FakeHub;
let files: Map<string, Buffer>;
let reference: PreTrainedModel;
let cache: string;

beforeAll(async () => {
  await setBackend("cpu");
  const dir = await savedSmallModel({}, { seed: 5 });
  files = folderFiles(dir);
  reference = await AutoModelForCausalLM.fromPretrained(dir);
  hub = await startFakeHub({ "acme/tiny": files }, SHA);
});
afterAll(async () => {
  reference?.dispose();
  await hub?.close();
});
beforeEach(() => {
  cache = tmpDir("fusekit-hf-dl-");
  process.env.HF_HUB_CACHE = cache;
  process.env.HF_ENDPOINT = hub.endpoint;
  delete process.env.HF_HUB_OFFLINE;
  delete process.env.HF_TOKEN;
  hub.requests.length = 0;
});
afterEach(() => {
  for (const k of ENV_KEYS)
    if (saved[k] === undefined) delete process.env[k];
    else process.env[k] = saved[k];
});

const repo = () => path.join(cache, "models--acme--tiny");
const snapshot = () => path.join(repo(), "snapshots", SHA);
const sameLogits = (m: PreTrainedModel) =>
  expect([...flatLogitsOf(m, [[1, 2, 3]])]).toEqual([...flatLogitsOf(reference, [[1, 2, 3]])]);

describe("downloading a hub id into the cache", () => {
  it("writes blobs by etag, relative snapshot symlinks and refs/main, reports progress, then loads offline", async () => {
    const events: ProgressInfo[] = [];
    const model = await AutoModelForCausalLM.fromPretrained("acme/tiny", { progress_callback: (e) => events.push(e) });
    sameLogits(model);
    model.dispose();
    expect(readFileSync(path.join(repo(), "refs", "main"), "utf8")).toBe(SHA);
    const weights = files.get("model.safetensors")!;
    expect(readlinkSync(path.join(snapshot(), "model.safetensors"))).toBe(
      path.join("..", "..", "blobs", sha256(weights)),
    );
    expect(readlinkSync(path.join(snapshot(), "config.json"))).toBe(
      path.join("..", "..", "blobs", gitEtag(files.get("config.json")!)),
    );
    expect(readdirSync(path.join(repo(), "blobs")).filter((n) => n.endsWith(".incomplete"))).toEqual([]);
    const forWeights = events.filter((e) => e.file === "model.safetensors" && e.status !== "progress");
    expect(forWeights.map((e) => e.status)).toEqual(["initiate", "download", "done", "initiate", "done"]);
    // the download's progress (file bytes), then the load's (tensor bytes) for the same file
    const downloaded = events.findIndex((e) => e.file === "model.safetensors" && e.status === "done");
    const progress = events
      .slice(0, downloaded)
      .filter((e) => e.status === "progress" && e.file === "model.safetensors");
    expect(progress.at(-1)).toMatchObject({
      name: "acme/tiny",
      progress: 100,
      loaded: weights.length,
      total: weights.length,
    });
    const loading = events.slice(downloaded + 1).filter((e) => e.status === "progress");
    expect(loading.at(-1)).toMatchObject({ file: "model.safetensors", progress: 100 });
    expect(events.at(-1)).toEqual({ status: "ready", name: "acme/tiny", task: "text-generation", model: "acme/tiny" });
    expect(hub.requests.every((r) => r.url.startsWith("/acme/tiny/resolve/"))).toBe(true);

    hub.requests.length = 0;
    (await AutoModelForCausalLM.fromPretrained("acme/tiny")).dispose();
    expect(hub.requests).toEqual([]); // the cache has it: no request at all
  });

  it("sends HF_TOKEN as a bearer token, asks for the raw bytes, and asks HF_ENDPOINT only", async () => {
    process.env.HF_TOKEN = "hf_test_token";
    (await AutoModelForCausalLM.fromPretrained("acme/tiny")).dispose();
    expect(hub.requests.length).toBeGreaterThan(0);
    for (const r of hub.requests) {
      expect(r.headers.authorization).toBe("Bearer hf_test_token");
      expect(r.headers["accept-encoding"]).toBe("identity"); // sizes, hashes and ranges are of the raw bytes
    }
  });

  it("resumes a dropped connection with a Range request; the blob is whole", async () => {
    const weights = files.get("model.safetensors")!;
    hub.dropNext("model.safetensors", Math.floor(weights.length / 2), 1);
    const model = await AutoModelForCausalLM.fromPretrained("acme/tiny");
    sameLogits(model);
    model.dispose();
    const gets = hub.requests.filter((r) => r.method === "GET" && r.url.endsWith("/model.safetensors"));
    expect(gets.map((r) => r.headers.range)).toEqual([undefined, expect.stringMatching(/^bytes=\d+-$/)]);
    expect(sha256(readFileSync(path.join(snapshot(), "model.safetensors")))).toBe(sha256(weights));
  });

  it("a connection that keeps dropping fails with a HubDownloadError; the partial file is never used", async () => {
    hub.dropNext("model.safetensors", 100, 10);
    await expect(AutoModelForCausalLM.fromPretrained("acme/tiny")).rejects.toThrow(HubDownloadError);
    const blobs = readdirSync(path.join(repo(), "blobs"));
    expect(blobs.filter((n) => n.endsWith(".incomplete"))).toHaveLength(1);
    expect(blobs).not.toContain(sha256(files.get("model.safetensors")!));
    expect(existsSync(path.join(snapshot(), "model.safetensors"))).toBe(false);
    await expect(AutoModelForCausalLM.fromPretrained("acme/tiny", { localFilesOnly: true })).rejects.toThrow(
      /lacks model\.safetensors/,
    );
    hub.dropNext("model.safetensors", 0, 0);
    (await AutoModelForCausalLM.fromPretrained("acme/tiny")).dispose(); // resumes from the partial file
  });

  it("a connection that stalls (no bytes for HF_HUB_DOWNLOAD_TIMEOUT s) is resumed like a dropped one", async () => {
    process.env.HF_HUB_DOWNLOAD_TIMEOUT = "0.5";
    const weights = files.get("model.safetensors")!;
    hub.stallNext("model.safetensors", Math.floor(weights.length / 3), 1);
    const model = await AutoModelForCausalLM.fromPretrained("acme/tiny");
    sameLogits(model);
    model.dispose();
    const gets = hub.requests.filter((r) => r.method === "GET" && r.url.endsWith("/model.safetensors"));
    expect(gets.map((r) => r.headers.range)).toEqual([undefined, expect.stringMatching(/^bytes=\d+-$/)]);
    expect(sha256(readFileSync(path.join(snapshot(), "model.safetensors")))).toBe(sha256(weights));
  });

  it("a connection that keeps stalling is a HubDownloadError naming the file and the timeout, nothing linked", async () => {
    process.env.HF_HUB_DOWNLOAD_TIMEOUT = "0.3";
    hub.stallNext("model.safetensors", 100, 10);
    const err = await AutoModelForCausalLM.fromPretrained("acme/tiny").catch((e: unknown) => e);
    hub.stallNext("model.safetensors", 0, 0);
    expect(err).toBeInstanceOf(HubDownloadError);
    expect((err as Error).message).toMatch(
      /\/acme\/tiny\/resolve\/[0-9a-f]+\/model\.safetensors: .* 3 times \(stalled: no bytes for 0\.3 s \(HF_HUB_DOWNLOAD_TIMEOUT\)\)/,
    );
    expect(existsSync(path.join(snapshot(), "model.safetensors"))).toBe(false);
  });

  describe("two downloads of one blob at once", () => {
    /** The GETs of the weights: one download, stalled once and resumed — never a second writer. */
    const expectOneDownload = () => {
      const gets = hub.requests.filter((r) => r.method === "GET" && r.url.endsWith("/model.safetensors"));
      expect(gets.map((r) => r.headers.range)).toEqual([undefined, expect.stringMatching(/^bytes=\d+-$/)]);
      expect(sha256(readFileSync(path.join(snapshot(), "model.safetensors")))).toBe(
        sha256(files.get("model.safetensors")!),
      );
      const leftovers = (dir: string) => readdirSync(dir).filter((n) => /incomplete|lock/.test(n));
      expect([...leftovers(path.join(repo(), "blobs")), ...leftovers(snapshot())]).toEqual([]);
      expect(readdirSync(path.join(cache, ".locks", "models--acme--tiny"))).toEqual([]); // released
    };

    it("in one process: the second waits for the first's lock and uses its blob", async () => {
      process.env.HF_HUB_DOWNLOAD_TIMEOUT = "0.5";
      hub.stallNext("model.safetensors", 1000, 1); // the first download holds the lock for a while
      const models = await Promise.all([
        AutoModelForCausalLM.fromPretrained("acme/tiny"),
        AutoModelForCausalLM.fromPretrained("acme/tiny"),
      ]);
      for (const m of models) {
        sameLogits(m);
        m.dispose();
      }
      expectOneDownload();
    });

    it("in two processes: the same", async () => {
      process.env.HF_HUB_DOWNLOAD_TIMEOUT = "0.5";
      hub.stallNext("model.safetensors", 1000, 1);
      // inside the package, so `fusekit` resolves to its build
      const work = mkdtempSync(path.join(root, "test", ".hf-download-"));
      try {
        const script = path.join(work, "download.mjs");
        writeFileSync(
          script,
          'import { AutoModelForCausalLM } from "fusekit";\n' +
            '(await AutoModelForCausalLM.fromPretrained("acme/tiny")).dispose();\nconsole.log("loaded");\n',
        );
        const env = {
          HF_HUB_CACHE: cache,
          HF_ENDPOINT: hub.endpoint,
          HF_HUB_OFFLINE: "",
          HF_HUB_DOWNLOAD_TIMEOUT: "0.5",
        };
        const runs = await Promise.all(
          [1, 2].map(() => runNode(script, [], { cwd: root, env: { ...env, FUSEKIT_BACKEND: "cpu" } })),
        );
        for (const r of runs) expect([r.code, r.stdout, r.stderr]).toEqual([0, "loaded\n", ""]);
      } finally {
        rmSync(work, { recursive: true, force: true });
      }
      expectOneDownload();
    });
  });

  it("bytes that do not match the announced sha256 are discarded, never linked", async () => {
    const weights = files.get("model.safetensors")!;
    const bad = Buffer.from(weights);
    bad[bad.length - 1] ^= 0xff;
    hub.corrupt("model.safetensors", bad);
    try {
      await expect(AutoModelForCausalLM.fromPretrained("acme/tiny")).rejects.toThrow(/sha256 .* differs/);
    } finally {
      hub.corrupt("model.safetensors", weights);
    }
    expect(readdirSync(path.join(repo(), "blobs")).some((n) => n.startsWith(sha256(weights)))).toBe(false);
    expect(lstatSync(snapshot()).isDirectory()).toBe(true);
    expect(existsSync(path.join(snapshot(), "model.safetensors"))).toBe(false);
  });

  it("offline (localFilesOnly or HF_HUB_OFFLINE=1) makes no request and names the model missing", async () => {
    await expect(AutoModelForCausalLM.fromPretrained("acme/tiny", { localFilesOnly: true })).rejects.toThrow(
      ModelNotFoundError,
    );
    process.env.HF_HUB_OFFLINE = "1";
    await expect(AutoModelForCausalLM.fromPretrained("acme/tiny")).rejects.toThrow(/HF_HUB_OFFLINE is set/);
    expect(hub.requests).toEqual([]);
  });

  it("a model the hub does not have is a ModelNotFoundError naming the searched paths and the hub's answer", async () => {
    const err = await AutoModelForCausalLM.fromPretrained("acme/nope").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModelNotFoundError);
    expect((err as Error).message).toContain(`${hub.endpoint}/acme/nope/resolve/main/config.json`);
    expect((err as Error).message).toContain(path.join(cache, "models--acme--nope", "refs", "main"));
    expect(tf.memory().numTensors).toBeGreaterThan(0); // the reference model is still alive
  });

  it("an unreachable hub is a HubDownloadError saying so, and what the cache lacked and how to fill it", async () => {
    const gone = await startFakeHub({});
    await gone.close();
    process.env.HF_ENDPOINT = gone.endpoint;
    const err = await AutoModelForCausalLM.fromPretrained("acme/tiny").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HubDownloadError);
    expect((err as Error).message).toMatch(/cannot reach the hub \(ECONNREFUSED\); and acme\/tiny: no such folder/);
    expect((err as Error).message).toContain(path.join(repo(), "refs", "main"));
    expect((err as Error).message).toContain("hf download acme/tiny");
  });
});
