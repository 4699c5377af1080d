import path from "node:path";
import { Option, type Command } from "commander";
import { makeModel, PRESETS, DEFAULT_PRESET, cacheDir, type PresetName } from "../models/presets.js";
import { BACKENDS } from "../kernels/backend.js";
import { preflightWrite } from "../io/atomic.js";
import { checkpointFolderTarget } from "../io/checkpoint.js";
import { addForceOption, integerIn, nonEmptyText, setBackend } from "./common.js";

interface MakeTinyOptions {
  out?: string;
  seed: number;
  preset: PresetName;
  backend?: string;
  force?: boolean;
}

/** `fusekit make-tiny`: writes a random checkpoint with real shapes (the embedded default model, or 0.6B-shaped). */
export function registerMakeTiny(program: Command): void {
  const cmd = program
    .command("make-tiny")
    .description("write a random checkpoint (BF16, real tokenizer) shaped like a real model — Qwen3, Qwen2.5, SmolLM2, Llama 3.2 (see --preset)")
    .option("-o, --out <dir>", "a new folder to write it to (default: the cache folder, $FUSEKIT_CACHE_DIR or ~/.cache/fusekit)", nonEmptyText)
    .option("-s, --seed <n>", "seed of the random weights (integer ≥ 0)", integerIn(0, 2 ** 32 - 1), 0)
    .addOption(new Option("-p, --preset <name>", "model shape").choices(Object.keys(PRESETS)).default(DEFAULT_PRESET))
    .addOption(new Option("-b, --backend <name>", "tfjs backend used to initialise the weights (the result is the same on every backend)").choices([...BACKENDS]));
  addForceOption(cmd, "a checkpoint folder").action(async (opts: MakeTinyOptions) => {
    const out = path.resolve(opts.out ?? path.join(cacheDir(), PRESETS[opts.preset].name));
    await preflightWrite(out, checkpointFolderTarget(opts.force));
    await setBackend(opts.backend);
    const dir = await makeModel({ out, seed: opts.seed, preset: opts.preset, overwrite: opts.force });
    console.log(`wrote ${PRESETS[opts.preset].name} (seed ${opts.seed}) to ${dir}`);
  });
}
