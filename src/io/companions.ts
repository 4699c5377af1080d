// The files of a checkpoint directory besides config.json and the weights: generation_config.json and the
// tokenizer's files. A model loaded from a directory keeps them, so `savePretrained` writes a directory that
// `fusekit generate --model DIR` (or AutoTokenizer + fromPretrained) can use again.
import { promises as fsp } from "node:fs";
import path from "node:path";
import { CONFIG_NAME, WEIGHTS_INDEX_NAME, WEIGHTS_NAME } from "./checkpoint.js";
import { MAX_JSON_FILE_BYTES, readJsonObject } from "./json.js";
import { SAVE_JOURNAL, TMP_MARKER, asOutputError, ensureDir, writeTextFile } from "./atomic.js";
import { SAVE_LOCK, SAVE_LOCK_BREAK, withSaveLock } from "./save-lock.js";
import { GenerationConfigError, SaveTargetError } from "../errors.js";

export const GENERATION_CONFIG_NAME = "generation_config.json";

/** generation_config.json, with transformers' field names (the fields fusekit honours). */
export interface GenerationConfig {
  max_new_tokens?: number;
  do_sample?: boolean;
  temperature?: number;
  top_k?: number;
  top_p?: number;
  repetition_penalty?: number;
  eos_token_id?: number | number[] | null;
  pad_token_id?: number | null;
  bos_token_id?: number | null;
  [other: string]: unknown;
}

/** Reads `<dir>/generation_config.json`; undefined when the file does not exist. */
export async function loadGenerationConfig(dir: string): Promise<GenerationConfig | undefined> {
  const error = (message: string) => new GenerationConfigError(message);
  return (await readJsonObject(path.join(dir, GENERATION_CONFIG_NAME), { error, optional: true })) as
    GenerationConfig | undefined;
}

/** The tokenizer files transformers' save_pretrained writes (those present are kept byte for byte). */
export const TOKENIZER_FILES = [
  "tokenizer.json",
  "tokenizer_config.json",
  "special_tokens_map.json",
  "added_tokens.json",
  "vocab.json",
  "merges.txt",
  "chat_template.jinja",
  "chat_template.json",
] as const;

/** What a model keeps of its source directory besides the weights. */
export interface CompanionFiles {
  generationConfig?: GenerationConfig;
  /** Tokenizer files by name, as read. */
  tokenizerFiles: Map<string, Uint8Array>;
}

/** Reads the tokenizer files present in `dir` (regular files of bounded size; anything else is skipped). */
export async function readTokenizerFiles(dir: string): Promise<Map<string, Uint8Array>> {
  const out = new Map<string, Uint8Array>();
  for (const name of TOKENIZER_FILES) {
    const file = path.join(dir, name);
    const stat = await fsp.stat(file).catch(() => undefined);
    if (!stat?.isFile() || stat.size > MAX_JSON_FILE_BYTES) continue;
    out.set(name, await fsp.readFile(file));
  }
  return out;
}

/**
 * The companion files of a checkpoint directory. A malformed generation_config.json does not fail the load
 * (the CLI reports it when it needs it): it is left out, with a warning, as transformers falls back to a
 * generation config derived from the model config.
 */
export async function readCompanionFiles(dir: string): Promise<CompanionFiles> {
  let generationConfig: GenerationConfig | undefined;
  try {
    generationConfig = await loadGenerationConfig(dir);
  } catch (err) {
    if (!(err instanceof GenerationConfigError)) throw err;
    process.emitWarning(`${err.message}; the model keeps no generation config`, {
      type: "FusekitGenerationConfigWarning",
    });
  }
  return { generationConfig, tokenizerFiles: await readTokenizerFiles(dir) };
}

/** The staged writes that put companion files into `dir` (for writeFilesAtomically). */
export function companionWrites(
  dir: string,
  files: CompanionFiles | undefined,
): { path: string; write: (tmp: string) => Promise<void> }[] {
  if (!files) return [];
  const out = [...files.tokenizerFiles].map(([name, bytes]) => ({
    path: path.join(dir, name),
    write: (tmp: string) => writeBytes(tmp, bytes),
  }));
  const generation = files.generationConfig;
  if (generation)
    out.push({
      path: path.join(dir, GENERATION_CONFIG_NAME),
      write: (tmp) => writeTextFile(tmp, JSON.stringify(generation, null, 2) + "\n"),
    });
  return out;
}

async function writeBytes(tmpPath: string, bytes: Uint8Array): Promise<void> {
  const h = await fsp.open(tmpPath, "w");
  try {
    await h.writeFile(bytes);
    await h.sync();
  } finally {
    await h.close();
  }
}

const CHECKPOINT_NAMES = new Set<string>([
  CONFIG_NAME,
  WEIGHTS_NAME,
  WEIGHTS_INDEX_NAME,
  GENERATION_CONFIG_NAME,
  SAVE_JOURNAL,
  SAVE_LOCK,
  SAVE_LOCK_BREAK,
  ...TOKENIZER_FILES,
]);
const isCheckpointName = (n: string) => CHECKPOINT_NAMES.has(n) || n.includes(TMP_MARKER) || /\.safetensors$/.test(n);

/**
 * Refuses to save into a folder that is not a checkpoint: an existing directory is written into only when it
 * is empty, holds a config.json naming a model_type, or holds nothing but checkpoint files — a user's other folder (a project,
 * a home directory) is never mixed with, or overwritten by, checkpoint files. Creates `dir` when missing.
 */
export async function prepareSaveTarget(dir: string): Promise<void> {
  const stat = await fsp
    .stat(dir)
    .catch((err: NodeJS.ErrnoException) => (err.code === "ENOENT" ? undefined : Promise.reject(err)));
  if (!stat) {
    await ensureDir(dir);
    return;
  }
  if (!stat.isDirectory())
    throw new SaveTargetError(`${dir}: exists and is not a folder; savePretrained writes a checkpoint folder`);
  const names = await fsp.readdir(dir);
  if (names.every(isCheckpointName)) return;
  // A downloaded checkpoint (README.md, LICENSE, .gitattributes beside it) is one; a project's config.json is not.
  const config = names.includes(CONFIG_NAME)
    ? await readJsonObject(path.join(dir, CONFIG_NAME)).catch(() => undefined)
    : undefined;
  if (typeof config?.model_type === "string") return;
  const others = names.filter((n) => !isCheckpointName(n));
  const why = names.includes(CONFIG_NAME) ? `its ${CONFIG_NAME} names no model_type` : `no ${CONFIG_NAME}`;
  throw new SaveTargetError(
    `${dir}: not a checkpoint folder (${why}; it holds ${others
      .slice(0, 3)
      .map((n) => JSON.stringify(n))
      .join(", ")}` + `${others.length > 3 ? ", …" : ""}); refusing to write into it — save to a new or empty folder`,
  );
}

/**
 * The frame of every save into a checkpoint folder (model or tokenizer): the folder is checked (or created),
 * then `write` runs holding the folder's save lock (one save at a time, across processes; see save-lock.ts).
 * A filesystem failure (a full disk, a read-only or forbidden folder) is an OutputPathError naming `dir`.
 */
export async function saveIntoFolder(dir: string, write: () => Promise<void>, lockTimeoutMs?: number): Promise<void> {
  try {
    await prepareSaveTarget(dir);
    await withSaveLock(dir, write, lockTimeoutMs);
  } catch (err) {
    throw asOutputError(err, dir);
  }
}
