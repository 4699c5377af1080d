// `fusekit serve`'s server: 127.0.0.1 only, COOP/COEP unless asked not to, the checkpoint folder read-only
// with byte ranges, and no request path that reaches a file outside the page, the bundle or that folder.
import { promises as fsp } from "node:fs";
import http from "node:http";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fileFor, startServer } from "../src/cli/serve.js";
import { tmpDir } from "./helpers/models.js";
import { sourceFromUrl, urlFile } from "../src/browser/source.js";

/** A raw GET (or other method) of `target` exactly as written: fetch would normalise "..". */
function request(
  url: string,
  target: string,
  init: { method?: string; headers?: Record<string, string> } = {},
): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const req = http.request(
      { hostname, port, path: target, method: init.method ?? "GET", headers: init.headers },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
      },
    );
    req.on("error", reject);
    req.end();
  });
}

describe("fusekit serve", () => {
  let root: string;
  let dirs: { modelDir: string; webDir: string; bundleDir: string };
  let server: Awaited<ReturnType<typeof startServer>>;
  const weights = Buffer.from(Array.from({ length: 1000 }, (_, i) => i % 251));

  beforeAll(async () => {
    root = tmpDir();
    dirs = {
      modelDir: path.join(root, "model"),
      webDir: path.join(root, "web"),
      bundleDir: path.join(root, "bundle"),
    };
    for (const d of Object.values(dirs)) await fsp.mkdir(d);
    await fsp.writeFile(path.join(dirs.modelDir, "model.safetensors"), weights);
    await fsp.writeFile(path.join(dirs.modelDir, "config.json"), "{}");
    await fsp.writeFile(path.join(dirs.modelDir, ".hidden"), "no");
    await fsp.mkdir(path.join(dirs.modelDir, "sub"));
    await fsp.writeFile(path.join(dirs.modelDir, "sub", "inner.json"), "no");
    await fsp.writeFile(path.join(dirs.webDir, "index.html"), "<p>page</p>");
    await fsp.writeFile(path.join(dirs.bundleDir, "fusekit.js"), "export {};");
    await fsp.writeFile(path.join(root, "secret.txt"), "secret");
    server = await startServer({ ...dirs, port: 0 });
  });

  afterAll(() => server?.close());

  it("listens on 127.0.0.1 and serves the page, the bundle and the model with COOP/COEP", async () => {
    expect(new URL(server.url).hostname).toBe("127.0.0.1");
    const page = await request(server.url, "/");
    expect(page.status).toBe(200);
    expect(page.body.toString()).toBe("<p>page</p>");
    expect(page.headers["content-type"]).toMatch(/^text\/html/);
    expect(page.headers["cross-origin-opener-policy"]).toBe("same-origin");
    expect(page.headers["cross-origin-embedder-policy"]).toBe("require-corp");
    expect((await request(server.url, "/fusekit.js")).body.toString()).toBe("export {};");
    const model = await request(server.url, "/model/model.safetensors");
    expect(model.body).toEqual(weights);
    expect(model.headers["cross-origin-embedder-policy"]).toBe("require-corp");
  });

  it("answers byte ranges (206), HEAD with the size, a listing of the model folder, and 416 past the end", async () => {
    const part = await request(server.url, "/model/model.safetensors", { headers: { range: "bytes=100-199" } });
    expect(part.status).toBe(206);
    expect(part.headers["content-range"]).toBe("bytes 100-199/1000");
    expect(part.body).toEqual(weights.subarray(100, 200));
    const tail = await request(server.url, "/model/model.safetensors", { headers: { range: "bytes=-10" } });
    expect(tail.body).toEqual(weights.subarray(990));
    const head = await request(server.url, "/model/model.safetensors", { method: "HEAD" });
    expect([head.status, head.headers["content-length"], head.body.length]).toEqual([200, "1000", 0]);
    const listing = await request(server.url, "/model/");
    expect(JSON.parse(listing.body.toString())).toEqual({ files: { "config.json": 2, "model.safetensors": 1000 } });
    const past = await request(server.url, "/model/model.safetensors", { headers: { range: "bytes=1000-" } });
    expect(past.status).toBe(416);
  });

  it("is what the page's sources read: the listing (sourceFromUrl), and HEAD + ranges (urlFile)", async () => {
    const source = await sourceFromUrl(`${server.url}model/`);
    expect([...source.keys()]).toEqual(["config.json", "model.safetensors"]);
    expect(Buffer.from(await source.get("model.safetensors")!.read(10, 20))).toEqual(weights.subarray(10, 30));
    const probed = (await urlFile(`${server.url}model/model.safetensors`))!;
    expect(probed.size).toBe(1000);
    expect(Buffer.from(await probed.read(995, 5))).toEqual(weights.subarray(995));
    expect(await urlFile(`${server.url}model/missing.json`)).toBeUndefined();
    await expect(probed.read(990, 20)).rejects.toThrow(/answered 416|with 10 bytes/);
  });

  it("is read-only: any other method is 405", async () => {
    for (const method of ["PUT", "POST", "DELETE"])
      expect((await request(server.url, "/model/config.json", { method })).status).toBe(405);
  });

  it("never serves a path outside its three folders, a hidden file or a subfolder's file", async () => {
    const escapes = [
      "/model/../secret.txt",
      "/model/..%2fsecret.txt",
      "/model/%2e%2e%2fsecret.txt",
      "/model/%2e%2e/secret.txt",
      "/model/..%5csecret.txt",
      "/model/sub/inner.json",
      "/model/sub%2finner.json",
      "/model/.hidden",
      "/model/%00config.json",
      "/model/%zz",
      "/..%2fsecret.txt",
      "/%2e%2e%2fsecret.txt",
      "/%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd",
      "//etc/passwd",
    ];
    for (const target of escapes) {
      const res = await request(server.url, target);
      expect([target, res.status]).toEqual([target, 404]);
      expect(res.body.toString()).not.toContain("secret");
    }
    // the pure mapping agrees: nothing resolves outside the folders
    for (const target of escapes) {
      const file = fileFor(target, dirs);
      if (file) expect(Object.values(dirs).some((d) => path.dirname(file) === d)).toBe(true);
    }
  });

  it("--no-isolation leaves out COOP/COEP", async () => {
    const plain = await startServer({ ...dirs, port: 0, isolation: false });
    try {
      const page = await request(plain.url, "/");
      expect(page.status).toBe(200);
      expect(page.headers["cross-origin-opener-policy"]).toBeUndefined();
      expect(page.headers["cross-origin-embedder-policy"]).toBeUndefined();
    } finally {
      await plain.close();
    }
  });
});
