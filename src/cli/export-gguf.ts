import path from "node:path";
import { Option, type Command } from "commander";
import { preflightWrite } from "../io/atomic.js";
import { ggufTarget } from "../export/gguf.js";
import { exportGguf, GGUF_EXPORT_TYPES, type GgufExportType } from "../export/llama-gguf.js";
import { addForceOption, loadModel, nonEmptyText, resolveModelDir, setBackend } from "./common.js";
import { BACKENDS } from "../backend/backend.js";

interface ExportGgufCliOptions {
  type: GgufExportType;
  revision?: string;
  backend?: string;
  force?: boolean;
}

/** `fusekit export-gguf MODEL OUT.gguf`: a Llama / Qwen2 / Qwen3 checkpoint as a GGUF file for llama.cpp or Ollama. */
export function registerExportGguf(program: Command): void {
  const cmd = program
    .command("export-gguf")
    .description(
      "write a Llama, Qwen2 or Qwen3 checkpoint as a GGUF file for llama.cpp / Ollama (as llama.cpp's convert_hf_to_gguf.py does)",
    )
    .argument("<model>", "checkpoint directory, or a hub model id (org/name) from the Hugging Face cache", nonEmptyText)
    .argument("<out>", "the GGUF file to write", nonEmptyText)
    .addOption(
      new Option("-t, --type <type>", "weight type of the 2-D weights (norms and biases stay F32)")
        .choices([...GGUF_EXPORT_TYPES])
        .default("bf16"),
    )
    .option("--revision <rev>", 'with a hub model id: branch, tag or commit sha (default "main")', nonEmptyText)
    .addOption(new Option("-b, --backend <name>", "tfjs backend used to load the model").choices([...BACKENDS]));
  addForceOption(cmd, "a GGUF file").action(async (model: string, out: string, opts: ExportGgufCliOptions) => {
    const file = path.resolve(out);
    await preflightWrite(file, ggufTarget(opts.force)); // a bad path fails before the model loads
    const dir = await resolveModelDir(model, opts.revision);
    await setBackend(opts.backend);
    const loaded = await loadModel(dir);
    try {
      const { tensors } = await exportGguf(loaded, file, { type: opts.type, overwrite: opts.force });
      console.log(`wrote ${tensors} tensors (${opts.type}) → ${out}`);
    } finally {
      loaded.dispose();
    }
  });
}
