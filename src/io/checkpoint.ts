// A Hugging Face checkpoint directory: config.json plus model.safetensors, or shards listed in
// model.safetensors.index.json. Shards are opened lazily and must stay inside the directory.
import { promises as fsp } from "node:fs";
import path from "node:path";
import { CheckpointFormatError, ConfigError } from "../errors.js";
import { SafetensorsFile, type TensorData, type TensorInfo } from "./safetensors.js";
import { preview, readJsonObject } from "./json.js";
import {
  SAVE_JOURNAL,
  TMP_MARKER,
  pendingSave,
  resolveCheckpointFile,
  type SaveJournal,
  type WriteTarget,
} from "./atomic.js";
import { SAVE_LOCK, SAVE_LOCK_BREAK } from "./save-lock.js";

/** What every model config offers the loader and saver. */
export interface ModelConfig {
  model_type: string;
  architectures: string[];
  tie_word_embeddings: boolean;
  torch_dtype: string;
  toDict(): Record<string, unknown>;
}

export const CONFIG_NAME = "config.json";
export const WEIGHTS_NAME = "model.safetensors";
export const WEIGHTS_INDEX_NAME = "model.safetensors.index.json";

export async function readConfigJson(dir: string): Promise<Record<string, unknown>> {
  const stat = await fsp.stat(dir).catch(() => undefined);
  if (!stat?.isDirectory())
    throw new ConfigError(`${dir}: not a checkpoint directory (it does not exist or is not a folder)`);
  // A save interrupted after its commit point may still have the new config.json under its staged name.
  const file = await resolveCheckpointFile(dir, CONFIG_NAME, await pendingSave(dir));
  return readJsonObject(file ?? path.join(dir, CONFIG_NAME));
}

/** What loading reads tensors through: a CheckpointReader, or a view over one (e.g. loading/fp8.ts). */
export type TensorSource = Pick<CheckpointReader, "keys" | "infos" | "totalBytes" | "read" | "readBytes"> &
  Partial<Pick<CheckpointReader, "readBytesIntoMany">>;

/**
 * Reads `readBytesIntoMany` keeps in flight: twice libuv's 4 pool threads, so a thread that finishes one never
 * waits for the (possibly busy) main thread to hand it the next.
 */
const READS_IN_FLIGHT = 8;
/** Bytes per read: few system calls, yet a large tensor still spreads over every read in flight. */
const READ_CHUNK = 16 * 2 ** 20;

/** The tensors of a checkpoint directory, across shards. */
export class CheckpointReader {
  private readonly open = new Map<string, Promise<SafetensorsFile>>();

  private constructor(
    readonly dir: string,
    /** tensor name → shard file name (relative to dir) */
    private readonly weightMap: Map<string, string>,
    readonly infos: Map<string, TensorInfo>,
    files: Map<string, SafetensorsFile>,
  ) {
    for (const [name, f] of files) this.open.set(name, Promise.resolve(f));
  }

  private static async openSingle(dir: string, single: string): Promise<CheckpointReader> {
    const file = await SafetensorsFile.open(single);
    const weightMap = new Map(file.keys().map((k) => [k, WEIGHTS_NAME]));
    return new CheckpointReader(dir, weightMap, new Map(file.tensors), new Map([[WEIGHTS_NAME, file]]));
  }

  static async open(dir: string): Promise<CheckpointReader> {
    // Names resolve through a pending save journal, so a save killed mid-commit reads as the new checkpoint.
    const journal = await pendingSave(dir);
    const where = (name: string) => resolveCheckpointFile(dir, name, journal);
    const indexPath = path.join(dir, WEIGHTS_INDEX_NAME);
    // model.safetensors wins over an index beside it, as in transformers (which checks for it first).
    const single = await existing(await where(WEIGHTS_NAME));
    if (single) return CheckpointReader.openSingle(dir, single);
    const indexFile = await existing(await where(WEIGHTS_INDEX_NAME));
    if (!indexFile)
      throw new CheckpointFormatError(`no ${WEIGHTS_NAME} or ${WEIGHTS_INDEX_NAME} in the directory`, dir);
    const index = await readJsonObject(indexFile, { error: (m) => new CheckpointFormatError(m) });
    const map = (index as { weight_map?: unknown })?.weight_map;
    if (typeof map !== "object" || map === null || Array.isArray(map))
      throw new CheckpointFormatError(`"weight_map" must be an object of tensor name → shard file`, indexPath);
    const weightMap = new Map<string, string>();
    for (const [name, shard] of Object.entries(map)) {
      if (typeof shard !== "string")
        throw new CheckpointFormatError(`shard for "${name}" must be a file name, got ${preview(shard)}`, indexPath);
      const resolved = path.resolve(dir, shard);
      const rel = path.relative(path.resolve(dir), resolved);
      if (
        shard.includes("\0") ||
        path.isAbsolute(shard) ||
        rel === ".." ||
        rel.startsWith(`..${path.sep}`) ||
        rel === "" ||
        path.isAbsolute(rel)
      ) {
        throw new CheckpointFormatError(
          `shard path ${preview(shard)} for "${name}" escapes the checkpoint directory`,
          indexPath,
        );
      }
      weightMap.set(name, shard);
    }
    // Open every shard now: a missing or corrupt shard fails the load before any weight is touched.
    const files = new Map<string, SafetensorsFile>();
    const infos = new Map<string, TensorInfo>();
    try {
      for (const shard of new Set(weightMap.values())) {
        const shardPath = await existing(await shardFile(dir, shard, journal));
        if (!shardPath) throw new CheckpointFormatError(`shard "${shard}" listed in the index is missing`, indexPath);
        files.set(shard, await SafetensorsFile.open(shardPath));
      }
      for (const [name, shard] of weightMap) {
        const info = files.get(shard)!.tensors.get(name);
        if (!info)
          throw new CheckpointFormatError(
            `index says tensor "${name}" is in "${shard}", but that shard does not hold it`,
            indexPath,
          );
        infos.set(name, info);
      }
    } catch (err) {
      await Promise.all([...files.values()].map((f) => f.close()));
      throw err;
    }
    return new CheckpointReader(dir, weightMap, infos, files);
  }

  keys(): string[] {
    return [...this.weightMap.keys()];
  }

  /** Total bytes of tensor data (for progress). */
  get totalBytes(): number {
    let n = 0;
    for (const i of this.infos.values()) n += i.end - i.begin;
    return n;
  }

  private file(name: string): Promise<SafetensorsFile> {
    const shard = this.weightMap.get(name);
    if (!shard) throw new CheckpointFormatError("no such tensor in the checkpoint", this.dir, name);
    return this.open.get(shard)!;
  }

  async read(name: string): Promise<TensorData> {
    return (await this.file(name)).read(name);
  }

  async readBytes(name: string): Promise<Uint8Array> {
    return (await this.file(name)).readBytes(name);
  }

  /**
   * Reads tensors' raw bytes straight into their targets (e.g. tensors in a wasm heap: the bytes land in their final
   * place, no copy), READ_CHUNK bytes per read with READS_IN_FLIGHT reads at once, so the kernel copies — and
   * faults in the targets' fresh pages, most of a load's cost — on more than one core. Each target is a function
   * returning a view of the tensor's bytes, called for every read (a view of a heap that grew is empty); the memory
   * behind it must not move until the promise settles. Given a byte offset, a target holds only the bytes from
   * there on (as many as it has room for); else all of them. `onRead` is called as each target completes. On a
   * failure no new read starts, the ones in flight finish, and then the first error is thrown.
   */
  async readBytesIntoMany(
    targets: [string, () => Uint8Array, number?][],
    onRead?: (name: string) => void,
  ): Promise<void> {
    const files = await Promise.all(targets.map(([name]) => this.file(name)));
    const chunks: { tensor: number; from: number; to: number }[] = [];
    const left = targets.map(([name, target, offset], i) => {
      const size = target().byteLength;
      files[i].checkTarget(name, size, offset);
      for (let from = 0; from < size; from += READ_CHUNK)
        chunks.push({ tensor: i, from, to: Math.min(from + READ_CHUNK, size) });
      return Math.ceil(size / READ_CHUNK);
    });
    let failure: { error: unknown } | undefined;
    const finish = (i: number) => {
      try {
        if (left[i] === 0) onRead?.(targets[i][0]);
      } catch (error) {
        failure ??= { error };
      }
    };
    let next = 0;
    const worker = async () => {
      while (!failure && next < chunks.length) {
        const { tensor, from, to } = chunks[next++];
        const [name, target, at = 0] = targets[tensor];
        try {
          await files[tensor].readRangeInto(name, at + from, at + to, () => target().subarray(from, to));
        } catch (error) {
          failure ??= { error };
          return;
        }
        left[tensor]--;
        finish(tensor);
      }
    };
    targets.forEach((_, i) => finish(i)); // empty tensors are complete already
    await Promise.all(Array.from({ length: READS_IN_FLIGHT }, worker));
    if (failure) throw failure.error;
  }

  async close(): Promise<void> {
    await Promise.all([...this.open.values()].map(async (f) => (await f).close()));
  }
}

/** `p` if something exists there. */
async function existing(p: string | undefined): Promise<string | undefined> {
  return (
    p &&
    (await fsp.stat(p).then(
      () => p,
      () => undefined,
    ))
  );
}

/** A shard's path; shards in subfolders are not renamed by saves, so only bare names go through the journal. */
function shardFile(dir: string, shard: string, journal: SaveJournal | undefined): Promise<string | undefined> {
  return /[/\\]/.test(shard) ? Promise.resolve(path.join(dir, shard)) : resolveCheckpointFile(dir, shard, journal);
}

/** Files a Hugging Face checkpoint folder holds; a folder holding anything else is not only a checkpoint. */
const CHECKPOINT_JSON =
  /^(config|generation_config|tokenizer|tokenizer_config|special_tokens_map|added_tokens|vocab)\.json$/;
const CHECKPOINT_OTHER =
  /^(merges\.txt|chat_template\.jinja|model(-\d+-of-\d+)?\.safetensors|model\.safetensors\.index\.json)$/;

/**
 * Whether `dir` is a checkpoint folder and nothing else: config.json names a `model_type`, there are weights
 * (model.safetensors or an index), and every entry is a checkpoint file (or a save's journal, lock or
 * temporary). Only such a folder may be replaced by a new checkpoint: any config.json is not enough.
 */
export async function isCheckpointFolder(dir: string): Promise<boolean> {
  const entries = await fsp.readdir(dir, { withFileTypes: true }).catch(() => undefined);
  const names = new Set(entries?.map((e) => e.name));
  if (!names.has(CONFIG_NAME) || !(names.has(WEIGHTS_NAME) || names.has(WEIGHTS_INDEX_NAME))) return false;
  const special = [SAVE_JOURNAL, SAVE_LOCK, SAVE_LOCK_BREAK];
  const ours = (name: string) =>
    CHECKPOINT_JSON.test(name) || CHECKPOINT_OTHER.test(name) || special.includes(name) || name.includes(TMP_MARKER);
  if (!entries!.every((e) => e.isFile() && ours(e.name))) return false;
  const config = await readJsonObject(path.join(dir, CONFIG_NAME)).catch(() => undefined);
  return typeof config?.model_type === "string";
}

/** The rules for writing a whole checkpoint folder: only a checkpoint folder is replaced, and only when asked. */
export const checkpointFolderTarget = (overwrite = false): WriteTarget => ({
  kind: "checkpoint folder",
  folder: true,
  recognise: isCheckpointFolder,
  overwrite,
});
