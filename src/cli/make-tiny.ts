import { Option, type Command } from "commander";
import { makeModel, PRESETS, DEFAULT_PRESET, type PresetName } from "../models/presets.js";
import { BACKENDS } from "../tensor/backend.js";
import { parseInteger, setBackend } from "./common.js";

/** `fusekit make-tiny`: writes a random checkpoint with real shapes (the embedded default model, or 0.6B-shaped). */
export function registerMakeTiny(program: Command): void {
  program
    .command("make-tiny")
    .description("write a random checkpoint (BF16, real tokenizer) shaped like a real model — Qwen3, Qwen2.5, SmolLM2, Llama 3.2 (see --preset)")
    .option("-o, --out <dir>", "where to write it (default: the cache folder, $FUSEKIT_CACHE_DIR or ~/.cache/fusekit)")
    .option("-s, --seed <n>", "seed of the random weights", parseInteger, 0)
    .addOption(new Option("-p, --preset <name>", "model shape").choices(Object.keys(PRESETS)).default(DEFAULT_PRESET))
    .addOption(new Option("-b, --backend <name>", "tfjs backend used to initialise the weights (the result is the same on every backend)").choices([...BACKENDS]))
    .action(async (opts: { out?: string; seed: number; preset: PresetName; backend?: string }) => {
      await setBackend(opts.backend);
      const dir = await makeModel({ out: opts.out, seed: opts.seed, preset: opts.preset });
      console.log(`wrote ${PRESETS[opts.preset].name} (seed ${opts.seed}) to ${dir}`);
    });
}
