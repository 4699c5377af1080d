// The `fusekit` command tree. Each subcommand lives in its own file (src/cli/<command>.ts) exporting a
// `register…(program)` function, and is registered below; main.ts runs it.
import { Command } from "commander";
import { registerGenerate } from "./generate.js";
import { registerInspect } from "./inspect.js";
import { registerMakeModel } from "./make-model.js";
import { registerQuantizeFp8 } from "./quantize.js";
import { registerExportGguf } from "./export-gguf.js";
import { registerCompare } from "./compare.js";
import { registerKernelsCommand } from "./kernels.js";
import { registerServe } from "./serve.js";
import { fusekitVersion } from "../io/package.js";
import { registeredModelTypes } from "../loading/registry.js";

/** Commander's message (which may span lines, e.g. "(Did you mean --prompt?)") as one line. */
export const oneLine = (text: string) => text.trim().replace(/\s*\n\s*/g, " ");

export function buildProgram(): Command {
  const program = new Command("fusekit")
    .description(
      // the families registered when the commands' modules loaded, so the text never falls behind them
      `Run Hugging Face causal LM checkpoints (model_type ${registeredModelTypes().join(", ")}) on TensorFlow.js, ` +
        "and compare ways of plugging fused kernels into them.",
    )
    .version(fusekitVersion())
    .showSuggestionAfterError(true)
    // Usage errors are one line; commander then throws (exitOverride) and the caller exits with status 2.
    .configureOutput({ outputError: (str, write) => write(`fusekit: ${oneLine(str)} (see --help)\n`) })
    .exitOverride();

  // ── Model commands ──────────────────────────────────────────────────────────────────────────────
  registerGenerate(program);
  registerInspect(program);
  registerMakeModel(program);
  registerQuantizeFp8(program);
  registerExportGguf(program);

  // ── Fusion / kernel commands ───────────────────────────────────────────────────────────────────
  registerCompare(program);
  registerKernelsCommand(program);
  registerServe(program);

  return program;
}
