// The ONNX Runtime peer (what transformers.js runs on in Node): the same checkpoint exported to ONNX by
// bench/pytorch_baseline.py (one graph with a KV cache, float32 weights), run by onnxruntime-node with 1 and 2
// intra-op threads on the same prompts. onnxruntime-node is installed on demand into a bench-only folder
// (bench/.peers, git-ignored) with --ignore-scripts (its postinstall downloads GPU files; the CPU binaries ship
// inside the package): never a dependency `npm ci` fetches.
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { cacheDir } from "../src/presets/presets.js";
import type { Figure } from "../src/compare/measure.js";
import { runPeer, type PeerPlan } from "./peer.js";

export const ORT_PACKAGE = "onnxruntime-node@1.30.0";
const here = path.dirname(fileURLToPath(import.meta.url));
/** The bench-only npm folder (repo/bench/.peers). */
export const PEERS_DIR = path.resolve(here, "..", "..", "bench", ".peers");

export interface OrtResult {
  threads: number;
  ort?: string;
  prefill?: Record<string, Figure>;
  decode?: Figure;
  error?: string;
}

/** onnxruntime-node's folder in PEERS_DIR, installing it first when missing; or why it is not there. */
export function ensureOrt(log: (l: string) => void): { dir: string } | { error: string } {
  const dir = path.join(PEERS_DIR, "node_modules", "onnxruntime-node");
  if (existsSync(path.join(dir, "package.json"))) return { dir };
  try {
    mkdirSync(PEERS_DIR, { recursive: true });
    const pkg = path.join(PEERS_DIR, "package.json");
    if (!existsSync(pkg))
      writeFileSync(pkg, JSON.stringify({ name: "fusekit-bench-peers", private: true }, null, 2) + "\n");
    log(`installing ${ORT_PACKAGE} into ${PEERS_DIR} (npm install --ignore-scripts)…`);
    execFileSync("npm", ["install", "--ignore-scripts", "--no-audit", "--no-fund", ORT_PACKAGE], {
      cwd: PEERS_DIR,
      stdio: ["ignore", "ignore", "pipe"],
      timeout: 600_000,
    });
    return { dir };
  } catch (e) {
    return { error: `could not install ${ORT_PACKAGE}: ${(e as Error).message.split("\n")[0]}` };
  }
}

/**
 * The ONNX export of checkpoint `dir` (cached under the fusekit cache folder, keyed by the checkpoint's path,
 * size and mtime), made with `python` running bench/pytorch_baseline.py --export-onnx when missing.
 */
export function ensureOnnx(
  python: string,
  dir: string,
  log: (l: string) => void,
): { file: string } | { error: string } {
  const st = statSync(path.join(dir, "model.safetensors"));
  const key = createHash("sha256")
    .update(`${path.resolve(dir)}:${st.size}:${st.mtimeMs}`)
    .digest("hex")
    .slice(0, 16);
  const out = path.join(cacheDir(), "onnx", key);
  const file = path.join(out, "model.onnx");
  if (existsSync(file)) return { file };
  const tmp = `${out}.tmp-${process.pid}`;
  try {
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(tmp, { recursive: true });
    log(`exporting ${dir} to ONNX (torch.onnx.export, float32, KV cache)…`);
    const script = path.resolve(here, "..", "..", "bench", "pytorch_baseline.py");
    execFileSync(python, [script, dir, "--export-onnx", path.join(tmp, "model.onnx")], {
      stdio: ["ignore", "ignore", "pipe"],
      timeout: 3_600_000,
      maxBuffer: 1 << 26,
    });
    rmSync(out, { recursive: true, force: true });
    renameSync(tmp, out); // the folder appears complete or not at all
    return { file };
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    return { error: `ONNX export failed: ${(e as Error).message.split("\n")[0]}` };
  }
}

/** Runs bench/ort-child.js (built to dist/bench) in a child process with `threads` intra-op threads. */
export function runOrt(ortDir: string, onnx: string, o: PeerPlan & { vocab: number }): Promise<OrtResult> {
  const child = path.join(here, "ort-child.js");
  const payload = JSON.stringify({ ortDir, onnx, ...o });
  return runPeer(process.execPath, [child, payload], o.threads, o.timeoutS).then(({ output, ...r }) => ({
    ...r,
    ort: output?.ort as string | undefined,
  }));
}

/** The installed onnxruntime-node version. */
export const ortVersion = (ortDir: string) =>
  (JSON.parse(readFileSync(path.join(ortDir, "package.json"), "utf8")) as { version: string }).version;
