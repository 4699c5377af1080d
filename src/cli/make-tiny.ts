import { Option, type Command } from "commander";
import { makeModel, PRESETS, DEFAULT_PRESET, type PresetName } from "../models/presets.js";
import { RANDOM_CHECKPOINT_DTYPES, type RandomCheckpointDtype } from "../models/random-checkpoint.js";
import { BACKENDS } from "../tensor/backend.js";
import { byteProgressBar, parseInteger, setBackend } from "./common.js";

interface MakeModelCliOptions {
  out?: string;
  seed: number;
  preset: PresetName;
  dtype: RandomCheckpointDtype;
  backend?: string;
}

/**
 * `fusekit make-model` (alias `make-tiny`, its first name): writes a random checkpoint with real shapes — the
 * embedded default model or a Qwen3-0.6B / 1.7B-shaped one; large ones show a progress bar on a terminal.
 */
export function registerMakeTiny(program: Command): void {
  program
    .command("make-model")
    .alias("make-tiny")
    .description("write a random Qwen3 checkpoint (BF16, real Qwen3 tokenizer): the embedded default model or a Qwen3-0.6B / 1.7B-shaped one")
    .option("-o, --out <dir>", "where to write it (default: the cache folder, $FUSEKIT_CACHE_DIR or ~/.cache/fusekit)")
    .option("-s, --seed <n>", "seed of the random weights", parseInteger, 0)
    .addOption(new Option("-p, --preset <name>", "model shape").choices(Object.keys(PRESETS)).default(DEFAULT_PRESET))
    .addOption(new Option("-d, --dtype <dtype>", "weight dtype").choices(Object.keys(RANDOM_CHECKPOINT_DTYPES)).default("BF16"))
    .addOption(new Option("-b, --backend <name>", "tfjs backend used to initialise the weights (the result is the same on every backend)").choices([...BACKENDS]))
    .action(async (opts: MakeModelCliOptions) => {
      await setBackend(opts.backend);
      const bar = byteProgressBar("writing");
      try {
        const dir = await makeModel({ out: opts.out, seed: opts.seed, preset: opts.preset, dtype: opts.dtype, onProgress: bar.update });
        bar.stop();
        console.log(`wrote ${PRESETS[opts.preset].name}${opts.dtype === "BF16" ? "" : ` (${opts.dtype})`} (seed ${opts.seed}) to ${dir}`);
      } finally {
        bar.stop();
      }
    });
}
