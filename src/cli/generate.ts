import type { Command } from "commander";
import type { PreTrainedTokenizer } from "../tokenizer/tokenizer.js";
import { streamGenerate, type FinishReason, type GenerateOptions } from "../generation/generate.js";
import { loadGenerationConfig, type GenerationConfig } from "../io/companions.js";
import { TextStreamer } from "../generation/streamer.js";
import { plural } from "../compare/sections.js";
import type { WeightStorageChoice } from "../loading/memory-plan.js";
import {
  addModelOptions,
  loadModel,
  resolveModelAndTokenizer,
  statusLine,
  setBackend,
  integerIn,
  nonEmptyText,
  numberWhere,
} from "./common.js";

interface GenerateCliOptions {
  model?: string;
  revision?: string;
  backend?: string;
  prompt?: string;
  chat?: boolean;
  thinking: boolean;
  showPrompt?: boolean;
  maxNewTokens: number;
  temperature?: number;
  topK?: number;
  topP?: number;
  repetitionPenalty?: number;
  seed?: number;
  stop?: string[];
  weightStorage: WeightStorageChoice;
}

/** `fusekit generate`: streams the continuation to stdout, then prints timings and tokens/s to stderr. */
export function registerGenerate(program: Command): void {
  const cmd = program
    .command("generate")
    .description("generate text from a prompt, streaming it to stdout; timings and tokens/s go to stderr");
  addModelOptions(cmd)
    // Checked in the action, not by requiredOption: commander checks required options before unknown
    // ones, so `--promt hi` would report a missing --prompt instead of naming the misspelling.
    .option("-p, --prompt <text>", "the prompt (required, non-empty)", nonEmptyText)
    .option("--chat", "wrap the prompt as one user message with the model's chat template")
    .option("--no-thinking", "with --chat: render enable_thinking=false (Qwen3 answers without a think block)")
    .option("--show-prompt", "print the prompt as the model gets it (after the chat template) to stderr first")
    .option("-n, --max-new-tokens <n>", "new tokens at most (≥ 1)", integerIn(1), 32)
    .option(
      "-t, --temperature <t>",
      "sample at this temperature (≥ 0); 0 = greedy (default: generation_config.json)",
      numberWhere((t) => t >= 0, "a number ≥ 0 (0 = greedy)"),
    )
    .option("--top-k <k>", "keep the k most likely tokens when sampling (≥ 0; 0 = all)", integerIn(0))
    .option(
      "--top-p <p>",
      "nucleus sampling mass, in (0, 1]",
      numberWhere((p) => p > 0 && p <= 1, "a number in (0, 1]"),
    )
    .option(
      "--repetition-penalty <r>",
      "penalise tokens already present (> 0; > 1 penalises)",
      numberWhere((r) => r > 0, "a number > 0"),
    )
    .option(
      "-s, --seed <n>",
      "sampling seed, 0 to 2^32-1 (default: random, printed so the run can be repeated)",
      integerIn(0, 2 ** 32 - 1),
    )
    .option(
      "--stop <text...>",
      "stop once the output contains one of these (non-empty) strings",
      (v: string, prev: string[] = []) => [...prev, nonEmptyText(v)],
    )
    .action(runGenerate);
}

/** The prompt's token ids: the text as given, or rendered by the chat template (`--chat`). */
function promptIds(tokenizer: PreTrainedTokenizer, opts: GenerateCliOptions & { prompt: string }): number[] {
  const text = opts.chat
    ? tokenizer.applyChatTemplate([{ role: "user", content: opts.prompt }], {
        addGenerationPrompt: true,
        enableThinking: opts.thinking ? undefined : false,
      })
    : opts.prompt;
  // A rendered chat template already holds the special tokens it wants (Llama 3's starts with its BOS).
  const inputIds = tokenizer.encode(text, { addSpecialTokens: !opts.chat });
  if (opts.showPrompt) process.stderr.write(`prompt: ${JSON.stringify(tokenizer.decode(inputIds))}\n`);
  return inputIds;
}

/** Sampling options from the flags, falling back to generation_config.json; a random seed is drawn (and printed). */
function generateOptions(
  opts: GenerateCliOptions,
  tokenizer: PreTrainedTokenizer,
  generationConfig: GenerationConfig,
): GenerateOptions {
  const doSample = opts.temperature !== undefined ? opts.temperature > 0 : (generationConfig.do_sample ?? false);
  return {
    maxNewTokens: opts.maxNewTokens,
    doSample,
    temperature: doSample ? opts.temperature : undefined,
    topK: opts.topK,
    topP: opts.topP,
    repetitionPenalty: opts.repetitionPenalty,
    seed: doSample ? (opts.seed ?? Math.floor(Math.random() * 2 ** 31)) : undefined,
    stopStrings: opts.stop,
    tokenizer,
    generationConfig,
  };
}

async function runGenerate(this: Command, opts: GenerateCliOptions): Promise<void> {
  if (opts.prompt === undefined)
    this.error("error: required option '-p, --prompt <text>' not specified", { exitCode: 2, code: "fusekit.usage" });
  if (!opts.thinking && !opts.chat)
    this.error("error: option '--no-thinking' needs --chat", { exitCode: 2, code: "fusekit.usage" });
  const { dir, tokenizer, tokenizerMs } = await resolveModelAndTokenizer(opts.model, opts.revision);
  const backend = await setBackend(opts.backend);
  const t0 = performance.now();
  const generationConfig = (await loadGenerationConfig(dir)) ?? {};
  const inputIds = promptIds(tokenizer, { ...opts, prompt: opts.prompt! }); // checked above
  // the memory plan reserves exactly this run's context: a model that cannot hold it fails before loading
  const contextLength = inputIds.length + Math.max(opts.maxNewTokens, 0);
  const model = await loadModel(dir, {
    weightStorage: opts.weightStorage,
    contextLength,
    promptLength: inputIds.length,
  });
  try {
    const loadMs = performance.now() - t0;

    const genOpts = generateOptions(opts, tokenizer, generationConfig);
    const { doSample, seed } = genOpts;

    const streamer = new TextStreamer(tokenizer, (piece) => process.stdout.write(piece), { skipSpecialTokens: true });
    let prefillMs = 0;
    let newTokens = 0;
    let reason: FinishReason = "length";
    const status = statusLine();
    status.show(`prefill of ${plural(inputIds.length, "token")}…`);
    const start = performance.now();
    for await (const step of streamGenerate(model, [inputIds], genOpts)) {
      if (step.step === 0) {
        prefillMs = performance.now() - start;
        status.clear();
      }
      newTokens++;
      streamer.put(step.tokens[0]);
      reason = step.finishReasons[0] ?? reason;
    }
    streamer.end();
    const totalMs = performance.now() - start;
    process.stdout.write("\n");

    const decodeTokens = newTokens - 1;
    const rate = (n: number, ms: number) => (ms > 0 ? (n / ms) * 1000 : 0).toFixed(1);
    const lines = [
      `model ${dir} · backend ${backend} · ${model.memoryPlan?.storage ?? "f32"} weights · loaded in ${(loadMs / 1000).toFixed(2)} s · tokenizer ${(tokenizerMs / 1000).toFixed(2)} s`,
      `prompt ${plural(inputIds.length, "token")} · prefill ${prefillMs.toFixed(0)} ms (${rate(inputIds.length, prefillMs)} tokens/s)`,
      `generated ${plural(newTokens, "token")} in ${(totalMs / 1000).toFixed(2)} s · ${rate(newTokens, totalMs)} tokens/s` +
        (decodeTokens > 0 ? ` · decode ${rate(decodeTokens, totalMs - prefillMs)} tokens/s` : "") +
        ` · stopped: ${reason}` +
        (doSample ? ` · seed ${seed}` : " · greedy"),
    ];
    process.stderr.write(lines.join("\n") + "\n");
  } finally {
    model.dispose();
  }
}
