// A Hugging Face checkpoint directory: config.json plus model.safetensors, or shards listed in
// model.safetensors.index.json. Shards are opened lazily and must stay inside the directory.
import { promises as fsp } from "node:fs";
import path from "node:path";
import { CheckpointFormatError, ConfigError } from "../errors.js";
import { SafetensorsFile, type TensorData, type TensorInfo } from "./safetensors.js";
import { parseJsonStrict, preview } from "./json.js";
import { pendingSave, resolveCheckpointFile, type SaveJournal } from "./atomic.js";

export const CONFIG_NAME = "config.json";
export const WEIGHTS_NAME = "model.safetensors";
export const WEIGHTS_INDEX_NAME = "model.safetensors.index.json";

/** Largest JSON file (config.json, shard index) read into memory; real ones are a few hundred KB. */
export const MAX_JSON_FILE_BYTES = 100_000_000;

/**
 * Reads a JSON file strictly: a regular file of bounded size, valid UTF-8, no key repeated in an object
 * (JSON.parse would silently keep the last), nesting no deeper than the reference implementation allows.
 */
export async function readJsonFile(file: string, errorClass: typeof ConfigError | typeof CheckpointFormatError = ConfigError): Promise<unknown> {
  let bytes: Buffer;
  try {
    const stat = await fsp.stat(file);
    // Checked before reading: a FIFO would block readFile forever, /dev/zero would never end.
    if (!stat.isFile()) throw new errorClass(`${file}: not a regular file`);
    if (stat.size > MAX_JSON_FILE_BYTES) throw new errorClass(`${file}: ${stat.size} bytes is larger than the ${MAX_JSON_FILE_BYTES}-byte limit for JSON files`);
    bytes = await fsp.readFile(file);
  } catch (err) {
    if (err instanceof errorClass) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    throw new errorClass(code === "ENOENT" ? `${file}: file not found` : `${file}: cannot read (${code ?? (err as Error).message})`);
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new errorClass(`${file}: not valid UTF-8`);
  }
  const parsed = parseJsonStrict(text);
  if (!parsed.ok) throw new errorClass(`${file}: ${parsed.problem}`);
  return parsed.value;
}

export async function readConfigJson(dir: string): Promise<Record<string, unknown>> {
  const stat = await fsp.stat(dir).catch(() => undefined);
  if (!stat?.isDirectory()) throw new ConfigError(`${dir}: not a checkpoint directory (it does not exist or is not a folder)`);
  // A save interrupted after its commit point may still have the new config.json under its staged name.
  const file = await resolveCheckpointFile(dir, CONFIG_NAME, await pendingSave(dir));
  const raw = await readJsonFile(file ?? path.join(dir, CONFIG_NAME));
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) throw new ConfigError(`${path.join(dir, CONFIG_NAME)}: expected a JSON object`);
  return raw as Record<string, unknown>;
}

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

  static async open(dir: string): Promise<CheckpointReader> {
    // Names resolve through a pending save journal, so a save killed mid-commit reads as the new checkpoint.
    const journal = await pendingSave(dir);
    const where = (name: string) => resolveCheckpointFile(dir, name, journal);
    const indexPath = path.join(dir, WEIGHTS_INDEX_NAME);
    const indexFile = await existing(await where(WEIGHTS_INDEX_NAME));
    if (!indexFile) {
      const single = await existing(await where(WEIGHTS_NAME));
      if (!single) throw new CheckpointFormatError(`no ${WEIGHTS_NAME} or ${WEIGHTS_INDEX_NAME} in the directory`, dir);
      const file = await SafetensorsFile.open(single);
      const weightMap = new Map(file.keys().map((k) => [k, WEIGHTS_NAME]));
      return new CheckpointReader(dir, weightMap, new Map(file.tensors), new Map([[WEIGHTS_NAME, file]]));
    }
    const index = await readJsonFile(indexFile, CheckpointFormatError);
    const map = (index as { weight_map?: unknown })?.weight_map;
    if (typeof map !== "object" || map === null || Array.isArray(map)) throw new CheckpointFormatError(`"weight_map" must be an object of tensor name → shard file`, indexPath);
    const weightMap = new Map<string, string>();
    for (const [name, shard] of Object.entries(map)) {
      if (typeof shard !== "string") throw new CheckpointFormatError(`shard for "${name}" must be a file name, got ${preview(shard)}`, indexPath);
      const resolved = path.resolve(dir, shard);
      const rel = path.relative(path.resolve(dir), resolved);
      if (shard.includes("\0") || path.isAbsolute(shard) || rel === ".." || rel.startsWith(`..${path.sep}`) || rel === "" || path.isAbsolute(rel)) {
        throw new CheckpointFormatError(`shard path ${preview(shard)} for "${name}" escapes the checkpoint directory`, indexPath);
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
        if (!info) throw new CheckpointFormatError(`index says tensor "${name}" is in "${shard}", but that shard does not hold it`, indexPath);
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

  /** Reads a tensor's raw bytes into the view `target()` returns, taken only once its file is open (see readBytesIntoSync). */
  async readBytesInto(name: string, target: () => Uint8Array): Promise<void> {
    (await this.file(name)).readBytesIntoSync(name, target());
  }

  async close(): Promise<void> {
    await Promise.all([...this.open.values()].map(async (f) => (await f).close()));
  }
}

/** `p` if something exists there. */
async function existing(p: string | undefined): Promise<string | undefined> {
  return p && (await fsp.stat(p).then(() => p, () => undefined));
}

/** A shard's path; shards in subfolders are not renamed by saves, so only bare names go through the journal. */
function shardFile(dir: string, shard: string, journal: SaveJournal | undefined): Promise<string | undefined> {
  return /[/\\]/.test(shard) ? Promise.resolve(path.join(dir, shard)) : resolveCheckpointFile(dir, shard, journal);
}
