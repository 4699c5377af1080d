// `fusekit serve`: the browser demo on a local static server — the page (web/), the browser bundle
// (dist/browser/) and one checkpoint folder, read-only, on 127.0.0.1 only. The page is cross-origin isolated
// (COOP/COEP) so its kernel pool can run on Web Workers over shared memory; --no-isolation serves it without,
// to see the one-thread fallback. node:http is enough for a static server of a few files (Range included).
import { createReadStream, promises as fsp } from "node:fs";
import http from "node:http";
import path from "node:path";
import type { AddressInfo } from "node:net";
import type { Command } from "commander";
import { ArgumentError } from "../errors.js";
import { FUSEKIT_ROOT } from "../io/package.js";
import { numberWhere, resolveModelDir } from "./common.js";

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json; charset=utf-8",
  ".map": "application/json; charset=utf-8",
  ".wasm": "application/wasm",
  ".png": "image/png",
};

export interface ServeOptions {
  /** The checkpoint folder served read-only under /model/. */
  modelDir: string;
  /** 0 picks a free port. */
  port?: number;
  /** COOP/COEP headers (default true): without them the page has no SharedArrayBuffer, so one thread. */
  isolation?: boolean;
  /** Where the page and the bundle are (default: the package's web/ and dist/browser/). */
  webDir?: string;
  bundleDir?: string;
}

/**
 * The file a request path names, or undefined: "/" and the page's own files from webDir, the bundle's files
 * from bundleDir, "/model/NAME" from the checkpoint folder. Only a plain name directly inside one of those
 * folders is ever served: no "..", no slash or backslash inside a name, no NUL, no hidden file.
 */
export function fileFor(urlPath: string, o: Required<Omit<ServeOptions, "port" | "isolation">>): string | undefined {
  let p: string;
  try {
    p = decodeURIComponent(urlPath);
  } catch {
    return undefined;
  }
  const plain = (name: string) => /^[^/\\\0]+$/.test(name) && !name.startsWith(".");
  if (p === "/") return path.join(o.webDir, "index.html");
  const model = /^\/model\/(.*)$/.exec(p);
  if (model) return plain(model[1]) ? path.join(o.modelDir, model[1]) : undefined;
  const name = p.slice(1);
  if (!plain(name)) return undefined;
  return [".wasm", ".map"].includes(path.extname(name)) || name === "fusekit.js"
    ? path.join(o.bundleDir, name)
    : path.join(o.webDir, name);
}

function headersFor(file: string, isolation: boolean): Record<string, string> {
  const h: Record<string, string> = {
    "content-type": TYPES[path.extname(file)] ?? "application/octet-stream",
    "cache-control": "no-cache",
    "x-content-type-options": "nosniff",
    "accept-ranges": "bytes",
  };
  if (isolation) {
    h["cross-origin-opener-policy"] = "same-origin";
    h["cross-origin-embedder-policy"] = "require-corp";
    h["cross-origin-resource-policy"] = "same-origin";
  }
  return h;
}

/** One request: GET or HEAD of a plain file, whole or one byte range; anything else is 404 / 405 / 416. */
async function answer(req: http.IncomingMessage, res: http.ServerResponse, o: Required<ServeOptions>): Promise<void> {
  if (req.method !== "GET" && req.method !== "HEAD") return void res.writeHead(405, { allow: "GET, HEAD" }).end();
  const urlPath = new URL(req.url ?? "/", "http://localhost").pathname;
  if (urlPath === "/model/") return listModel(res, o);
  const file = fileFor(urlPath, o);
  const stat = file ? await fsp.stat(file).catch(() => undefined) : undefined;
  if (!file || !stat?.isFile()) return void res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
  const headers = headersFor(file, o.isolation);
  const range = /^bytes=(\d*)-(\d*)$/.exec(req.headers.range ?? "");
  let [start, end] = [0, stat.size - 1];
  if (req.headers.range) {
    if (range && (range[1] || range[2])) {
      start = range[1] ? Number(range[1]) : Math.max(0, stat.size - Number(range[2]));
      end = range[1] && range[2] ? Math.min(Number(range[2]), stat.size - 1) : stat.size - 1;
    }
    if (!range || start > end || start >= stat.size) {
      return void res.writeHead(416, { ...headers, "content-range": `bytes */${stat.size}` }).end();
    }
    headers["content-range"] = `bytes ${start}-${end}/${stat.size}`;
  }
  headers["content-length"] = String(end - start + 1);
  res.writeHead(req.headers.range ? 206 : 200, headers);
  if (req.method === "HEAD" || stat.size === 0) return void res.end();
  createReadStream(file, { start, end })
    .on("error", () => res.destroy())
    .pipe(res);
}

/** The checkpoint folder's plain files and their sizes, as JSON (what the page's sourceFromUrl reads first). */
async function listModel(res: http.ServerResponse, o: Required<ServeOptions>): Promise<void> {
  const files: Record<string, number> = {};
  for (const name of (await fsp.readdir(o.modelDir)).sort()) {
    if (!fileFor(`/model/${encodeURIComponent(name)}`, o)) continue;
    const stat = await fsp.stat(path.join(o.modelDir, name)).catch(() => undefined);
    if (stat?.isFile()) files[name] = stat.size;
  }
  const headers = headersFor("listing.json", o.isolation);
  res.writeHead(200, headers).end(JSON.stringify({ files }));
}

/** Starts the server on 127.0.0.1; resolves once it listens. */
export async function startServer(options: ServeOptions): Promise<{ url: string; close(): Promise<void> }> {
  const o: Required<ServeOptions> = {
    port: 0,
    isolation: true,
    webDir: path.join(FUSEKIT_ROOT, "web"),
    bundleDir: path.join(FUSEKIT_ROOT, "dist", "browser"),
    ...options,
  };
  const server = http.createServer((req, res) => {
    answer(req, res, o).catch(() => res.destroy());
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(o.port, "127.0.0.1", () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/`,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

export function registerServe(program: Command): void {
  program
    .command("serve")
    .description(
      "serve the browser demo (load, stream, compare in a page) and one checkpoint folder, read-only, on 127.0.0.1",
    )
    .option("-m, --model <dir>", "checkpoint folder or ORG/NAME (default: the embedded tiny model)")
    .option(
      "--port <n>",
      "port (0: any free one)",
      numberWhere((n) => Number.isInteger(n) && n >= 0 && n <= 65535, "an integer from 0 to 65535"),
      8080,
    )
    .option("--no-isolation", "leave out COOP/COEP headers: the page then runs its kernels on one thread")
    .action(async (opts: { model?: string; port: number; isolation: boolean }) => {
      const modelDir = await resolveModelDir(opts.model);
      const bundle = path.join(FUSEKIT_ROOT, "dist", "browser", "fusekit.js");
      if (!(await fsp.stat(bundle).catch(() => undefined)))
        throw new ArgumentError(`${bundle} is missing: build the browser bundle first (npm run build)`);
      const { url } = await startServer({ modelDir, port: opts.port, isolation: opts.isolation });
      console.log(`fusekit serve: ${url} (model ${modelDir}; Ctrl-C stops)`);
    });
}
