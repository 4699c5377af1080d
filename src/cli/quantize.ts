import { promises as fsp } from "node:fs";
import path from "node:path";
import { InvalidArgumentError, type Command } from "commander";
import { quantizeToFp8 } from "../loading/fp8.js";
import { preflightWrite, writeFolderAtomically } from "../io/atomic.js";
import { checkpointFolderTarget } from "../io/checkpoint.js";
import { OutputPathError } from "../errors.js";
import { addForceOption, addModelOptions, loadModel, resolveModelDir, setBackend } from "./common.js";

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
    .option("--block <rows,cols>", "weight_block_size", parseBlock, [128, 128] as [number, number]);
  addForceOption(cmd, "a checkpoint folder").action(async (opts: QuantizeCliOptions) => {
    const source = await resolveModelDir(opts.model, opts.revision);
    const out = path.resolve(opts.out);
    // Before loading anything: never the source itself (even with --force), and only a checkpoint folder replaced.
    await refuseSource(source, out);
    await preflightWrite(out, checkpointFolderTarget(opts.force));
    await setBackend(opts.backend);
    const model = await loadModel(source);
    try {
      const names = quantizeToFp8(model, { weightBlockSize: opts.block });
      // Built beside the target and renamed into place: a failure leaves what was there before.
      await writeFolderAtomically(out, (tmp) => model.savePretrained(tmp), checkpointFolderTarget(opts.force));
      console.log(`quantized ${names.length} Linear weights to FP8 (blocks ${opts.block.join("×")}) → ${opts.out}`);
    } finally {
      model.dispose();
    }
  });
}

interface QuantizeCliOptions {
  model?: string;
  revision?: string;
  backend?: string;
  out: string;
  block: [number, number];
  force?: boolean;
}

/** `--out` naming the source checkpoint (by any path: symlinks, `.`, a bind mount) would overwrite its weights. */
async function refuseSource(source: string, out: string): Promise<void> {
  const [a, b] = await Promise.all([fsp.stat(source), fsp.stat(out).catch(() => undefined)]);
  if (b && a.dev === b.dev && a.ino === b.ino)
    throw new OutputPathError("is the source checkpoint (--model); write the quantized copy to another folder", out);
}
