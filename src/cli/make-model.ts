import path from "node:path";
import { Option, type Command } from "commander";
import { makeModel, PRESETS, DEFAULT_PRESET, cacheDir, type PresetName } from "../presets/presets.js";
import { RANDOM_CHECKPOINT_DTYPES, type RandomCheckpointDtype } from "../presets/random-checkpoint.js";
import { BACKENDS } from "../backend/backend.js";
import { preflightWrite } from "../io/atomic.js";
import { checkpointFolderTarget } from "../io/checkpoint.js";
import { addForceOption, byteProgressBar, integerIn, nonEmptyText, setBackend } from "./common.js";

interface MakeModelCliOptions {
  out?: string;
  seed: number;
  preset: PresetName;
  dtype: RandomCheckpointDtype;
  backend?: string;
  force?: boolean;
}

/**
 * `fusekit make-model`: writes a random checkpoint with real shapes — the
 * embedded default model or a Qwen3-0.6B / 1.7B / 4B-shaped one; large ones show a progress bar on a terminal.
 */
export function registerMakeModel(program: Command): void {
  const cmd = program
    .command("make-model")
    .description(
      "write a random checkpoint (real tokenizer) shaped like a real model — Qwen3 tiny / 0.6B / 1.7B / 4B, Qwen2.5, SmolLM2, Llama 3.2 (see --preset)",
    )
    .option(
      "-o, --out <dir>",
      "a new folder to write it to (default: the cache folder, $FUSEKIT_CACHE_DIR or ~/.cache/fusekit)",
      nonEmptyText,
    )
    .option("-s, --seed <n>", "seed of the random weights (integer ≥ 0)", integerIn(0, 2 ** 32 - 1), 0)
    .addOption(new Option("-p, --preset <name>", "model shape").choices(Object.keys(PRESETS)).default(DEFAULT_PRESET))
    .addOption(
      new Option("-d, --dtype <dtype>", "weight dtype").choices(Object.keys(RANDOM_CHECKPOINT_DTYPES)).default("BF16"),
    )
    .addOption(
      new Option(
        "-b, --backend <name>",
        "tfjs backend used to initialise the weights (the result is the same on every backend)",
      ).choices([...BACKENDS]),
    );
  addForceOption(cmd, "a checkpoint folder").action(async (opts: MakeModelCliOptions) => {
    const out = path.resolve(opts.out ?? path.join(cacheDir(), PRESETS[opts.preset].name));
    await preflightWrite(out, checkpointFolderTarget(opts.force));
    await setBackend(opts.backend);
    const bar = byteProgressBar("writing");
    try {
      const dir = await makeModel({
        out,
        seed: opts.seed,
        preset: opts.preset,
        dtype: opts.dtype,
        overwrite: opts.force,
        onProgress: bar.update,
      });
      bar.stop();
      console.log(
        `wrote ${PRESETS[opts.preset].name}${opts.dtype === "BF16" ? "" : ` (${opts.dtype})`} (seed ${opts.seed}) to ${dir}`,
      );
    } finally {
      bar.stop();
    }
  });
}
