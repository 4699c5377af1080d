// Pieces every `fusekit` command shares: option parsing, backend choice, loading a model with a
// progress bar (TTY only), and printing errors as one line.
import { InvalidArgumentError, Option, type Command } from "commander";
import cliProgress from "cli-progress";
import { setBackend, BACKENDS } from "../backend/backend.js";
import { DEFAULT_PRESET, ensureModel } from "../presets/presets.js";
import { readConfigJson } from "../io/checkpoint.js";
import { resolvePretrained } from "../io/hf-resolve.js";
import type { ProgressInfo } from "../io/hf-download.js";
import { AutoTokenizer, type PreTrainedTokenizer } from "../tokenizer/tokenizer.js";
import { AutoModelForCausalLM } from "../models/auto.js";
import type { PreTrainedModel } from "../loading/pretrained.js";
import type { FromPretrainedOptions } from "../loading/options.js";
import { WEIGHT_STORAGE_CHOICES } from "../loading/memory-plan.js";

/** Checkpoints at least this big get a progress bar while loading (on a TTY); $FUSEKIT_PROGRESS_MIN_BYTES overrides. */
export const PROGRESS_MIN_BYTES = 64 * 1024 * 1024;

function progressMinBytes(): number {
  const env = Number(process.env.FUSEKIT_PROGRESS_MIN_BYTES);
  return process.env.FUSEKIT_PROGRESS_MIN_BYTES && Number.isFinite(env) ? env : PROGRESS_MIN_BYTES;
}

export interface LoadModelOptions extends FromPretrainedOptions {
  /** Where the progress bar goes (default stderr); it is drawn only if this stream is a TTY. */
  progressStream?: NodeJS.WritableStream & { isTTY?: boolean };
}

// Option parsers: each rejects a value with what is allowed; commander names the option and exits 2.
type Parser<T> = (value: string) => T;

/** An integer in [min, max]. */
export function integerIn(min: number, max = Number.MAX_SAFE_INTEGER): Parser<number> {
  const allowed = max === Number.MAX_SAFE_INTEGER ? `an integer ≥ ${min}` : `an integer from ${min} to ${max}`;
  return (value) => {
    const n = Number(value);
    if (value.trim() === "" || !Number.isInteger(n) || n < min || n > max)
      throw new InvalidArgumentError(`expected ${allowed}.`);
    return n;
  };
}

/** A finite number that passes `ok`; `allowed` says which ones do ("a number ≥ 0"). */
export function numberWhere(ok: (n: number) => boolean, allowed: string): Parser<number> {
  return (value) => {
    const n = Number(value);
    if (value.trim() === "" || !Number.isFinite(n) || !ok(n)) throw new InvalidArgumentError(`expected ${allowed}.`);
    return n;
  };
}

/** Text that is not empty or only whitespace. */
export function nonEmptyText(value: string): string {
  if (value.trim() === "") throw new InvalidArgumentError("expected non-empty text.");
  return value;
}

/** Adds `--force`: replace what fusekit wrote at the output path before (never anything else). */
export function addForceOption(cmd: Command, what: string): Command {
  return cmd.option(
    "-f, --force",
    `replace ${what} fusekit wrote earlier at that path (anything else there is never replaced)`,
  );
}

/** Adds `--model DIR`, `--backend NAME` and `--weight-storage KIND`, shared by the commands that load a model. */
export function addModelOptions(cmd: Command): Command {
  return cmd
    .option(
      "-m, --model <dir-or-id>",
      "checkpoint directory, or a hub model id (org/name) from the Hugging Face cache, downloaded unless HF_HUB_OFFLINE=1 (default: the embedded tiny model, created on first use in the cache folder)",
      nonEmptyText,
    )
    .option("--revision <rev>", 'with a hub model id: branch, tag or commit sha (default "main")', nonEmptyText)
    .addOption(
      new Option(
        "-b, --backend <name>",
        "tfjs backend (default: $FUSEKIT_BACKEND, else tensorflow if tfjs-node loads, else wasm)",
      ).choices([...BACKENDS]),
    )
    .addOption(
      new Option(
        "-w, --weight-storage <kind>",
        "weights as packed bf16 (exact for BF16 checkpoints, half the memory), int8 (8-bit blocks of 32 with a float32 scale, lossy, ~0.56× bf16) or float32; fp8: an FP8 checkpoint's codes and block scales kept as stored; auto: fp8 for an FP8 checkpoint, else bf16 when exact or when float32 would not fit",
      )
        .choices([...WEIGHT_STORAGE_CHOICES])
        .default("auto"),
    );
}

/**
 * The checkpoint folder to use: `--model` (a folder, or a hub id resolved in the Hugging Face cache, downloaded
 * when missing and allowed) after checking it has a readable config.json — a ConfigError naming it before any
 * work —, else the embedded default model.
 */
export async function resolveModelDir(model: string | undefined, revision?: string): Promise<string> {
  if (model === undefined) return defaultModel();
  const bar = byteProgressBar("downloading");
  try {
    const { dir } = await resolvePretrained(model, { revision, onProgress: downloadProgress(bar) });
    await readConfigJson(dir);
    return dir;
  } finally {
    bar.stop();
  }
}

/** The embedded default model; its one-time creation (a few seconds, ~50 MB) is told on stderr, step by step. */
async function defaultModel(): Promise<string> {
  const t0 = performance.now();
  let created = false;
  const dir = await ensureModel(DEFAULT_PRESET, {
    onCreate: (dir) => {
      created = true;
      process.stderr.write(`creating the embedded default model (once, ~50 MB) in ${dir}\n`);
    },
    onStep: (step) => process.stderr.write(`… ${step}\n`),
  });
  if (created) process.stderr.write(`created in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
  return dir;
}

/** Download progress on the bar (a TTY only), and one line per file fetched on stderr. */
function downloadProgress(bar: ReturnType<typeof byteProgressBar>): (info: ProgressInfo) => void {
  return (info) => {
    if (info.status === "download") process.stderr.write(`downloading ${info.name}/${info.file}\n`);
    if (info.status === "progress") bar.update(info.loaded ?? 0, info.total ?? 0);
    if (info.status === "done") bar.stop();
  };
}

/**
 * `resolveModelDir`, then the folder's tokenizer, for commands that need one: a TokenizerError naming it also
 * comes before any work. Loaded once (a real tokenizer.json takes ~0.6 s to build).
 */
export async function resolveModelAndTokenizer(
  model: string | undefined,
  revision?: string,
  status = statusLine(),
): Promise<{ dir: string; tokenizer: PreTrainedTokenizer; tokenizerMs: number }> {
  const dir = await resolveModelDir(model, revision);
  const t0 = performance.now();
  status.show("building the tokenizer…");
  try {
    const tokenizer = await AutoTokenizer.fromPretrained(dir);
    return { dir, tokenizer, tokenizerMs: performance.now() - t0 };
  } finally {
    status.clear();
  }
}

/**
 * One line on `stream` saying what the user waits for, when it is a terminal (nothing otherwise): shown before
 * work that may take seconds (a tokenizer build, a prefill) and cleared when it ends. Shown at once, not after a
 * delay: that work blocks the event loop, so no timer could fire during it.
 */
export function statusLine(stream: ProgressStream = process.stderr): { show(text: string): void; clear(): void } {
  let shown = false;
  return {
    show(text) {
      if (!stream.isTTY) return;
      stream.write(`\r\x1b[K${text}`);
      shown = true;
    },
    clear() {
      if (shown) stream.write("\r\x1b[K");
      shown = false;
    },
  };
}

export { setBackend };

type ProgressStream = NodeJS.WritableStream & { isTTY?: boolean };

/**
 * A byte-progress callback that draws a bar on `stream` when it is a terminal and the total is large
 * enough, nothing otherwise; `stop()` clears it.
 */
export function byteProgressBar(
  label: string,
  stream: ProgressStream = process.stderr,
): { update(done: number, total: number): void; stop(): void } {
  const tty = Boolean(stream.isTTY);
  const minBytes = progressMinBytes();
  let bar: cliProgress.SingleBar | undefined;
  const mb = (bytes: number) => Math.round(bytes / 2 ** 20);
  return {
    update(done, total) {
      if (!tty || total < minBytes) return;
      if (!bar) {
        bar = new cliProgress.SingleBar(
          {
            format: `${label} |{bar}| {percentage}% | {value}/{total} MiB`,
            stream,
            hideCursor: true,
            clearOnComplete: true,
          },
          cliProgress.Presets.shades_classic,
        );
        bar.start(mb(total), 0);
      }
      bar.update(mb(done));
    },
    stop() {
      bar?.stop();
      bar = undefined;
    },
  };
}

/** Loads a checkpoint; large ones show a progress bar on stderr when it is a terminal, nothing otherwise. */
export async function loadModel(dir: string, options: LoadModelOptions = {}): Promise<PreTrainedModel> {
  const { progressStream = process.stderr, ...loadOptions } = options;
  const bar = byteProgressBar("loading", progressStream);
  try {
    return await AutoModelForCausalLM.fromPretrained(dir, {
      ...loadOptions,
      onProgress: (p) => {
        loadOptions.onProgress?.(p);
        bar.update(p.bytesDone, p.bytesTotal);
      },
    });
  } finally {
    bar.stop();
  }
}

/** Terminal columns for tables and prose: $COLUMNS, else the terminal's width, else 100. */
export function terminalWidth(stream: { columns?: number } = process.stdout): number {
  const env = Number(process.env.COLUMNS);
  if (Number.isInteger(env) && env > 0) return env;
  return stream.columns || 100;
}

/**
 * Progress in steps ("round 3 of 32 · 0:12 to go") as a bar on stderr when it is a terminal, nothing otherwise;
 * `log` prints a line above it (the bar is redrawn by the next update).
 */
export function stepProgress(
  label: string,
  stream: ProgressStream = process.stderr,
): { update(done: number, total: number): void; log(line: string): void; stop(): void } {
  let bar: cliProgress.SingleBar | undefined;
  const stop = () => {
    bar?.stop();
    bar = undefined;
  };
  return {
    update(done, total) {
      if (!stream.isTTY) return;
      if (!bar) {
        bar = new cliProgress.SingleBar(
          {
            format: `${label} |{bar}| {value} of {total} · {eta_formatted} to go`,
            stream,
            hideCursor: true,
            clearOnComplete: true,
            etaBuffer: 8,
          },
          cliProgress.Presets.shades_classic,
        );
        bar.start(total, done);
      } else bar.update(done);
      if (done >= total) stop();
    },
    log(line) {
      stop();
      stream.write(`${line}\n`);
    },
    stop,
  };
}

/** `1234567` → `"1,234,567"`. */
export const formatCount = (n: number) => n.toLocaleString("en-US");

/** Colour only on a terminal, and never when $NO_COLOR is set to anything non-empty (no-color.org). */
export function useColor(stream: { isTTY?: boolean } = process.stdout): boolean {
  return Boolean(stream.isTTY) && !process.env.NO_COLOR;
}
