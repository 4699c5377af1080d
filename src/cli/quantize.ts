import { InvalidArgumentError, type Command } from "commander";
import { quantizeToFp8 } from "../loading/fp8.js";
import { addModelOptions, loadModel, resolveModelDir, setBackend } from "./common.js";

function parseBlock(value: string): [number, number] {
  const parts = value.split(/[x,×]/).map(Number);
  if (parts.length !== 2 || !parts.every((n) => Number.isSafeInteger(n) && n > 0))
    throw new InvalidArgumentError('expected two positive integers, e.g. "128,128".');
  return parts as [number, number];
}

/** `fusekit quantize-fp8`: writes an FP8 block-quantized copy of a checkpoint (the Qwen3-*-FP8 layout). */
export function registerQuantizeFp8(program: Command): void {
  const cmd = program
    .command("quantize-fp8")
    .description(
      "write an FP8 block-quantized copy of a checkpoint (F8_E4M3 Linear weights + weight_scale_inv, as Qwen3-*-FP8 ships)",
    );
  addModelOptions(cmd)
    .requiredOption(
      "-o, --out <dir>",
      "new folder for the quantized checkpoint (with the source's tokenizer and generation config)",
    )
    .option("--block <rows,cols>", "weight_block_size", parseBlock, [128, 128] as [number, number])
    .action(
      async (opts: { model?: string; revision?: string; backend?: string; out: string; block: [number, number] }) => {
        await setBackend(opts.backend);
        const model = await loadModel(await resolveModelDir(opts.model, opts.revision));
        try {
          const names = quantizeToFp8(model, { weightBlockSize: opts.block });
          await model.savePretrained(opts.out);
          console.log(`quantized ${names.length} Linear weights to FP8 (blocks ${opts.block.join("×")}) → ${opts.out}`);
        } finally {
          model.dispose();
        }
      },
    );
}
