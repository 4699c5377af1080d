import type { Command } from "commander";
import { AutoTokenizer } from "../tokenizer/tokenizer.js";
import { loadGenerationConfig, streamGenerate, type FinishReason, type GenerateOptions } from "../generation/generate.js";
import { TextStreamer } from "../generation/streamer.js";
import type { WeightStorageChoice } from "../loading/plan.js";
import { readConfigJson } from "../io/checkpoint.js";
import { addModelOptions, loadModel, parseInteger, parseNumber, resolveModelDir, setBackend } from "./common.js";

interface GenerateCliOptions {
  model?: string;
  backend?: string;
  prompt: string;
  chat?: boolean;
  thinking: boolean;
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
    .requiredOption("-p, --prompt <text>", "the prompt")
    .option("--chat", "wrap the prompt as one user message with the model's chat template")
    .option("--no-thinking", "with --chat: render enable_thinking=false (Qwen3 answers without a think block)")
    .option("-n, --max-new-tokens <n>", "new tokens at most", parseInteger, 32)
    .option("-t, --temperature <t>", "sample at this temperature; 0 = greedy (default: generation_config.json)", parseNumber)
    .option("--top-k <k>", "keep the k most likely tokens when sampling", parseInteger)
    .option("--top-p <p>", "nucleus sampling mass", parseNumber)
    .option("--repetition-penalty <r>", "penalise tokens already present (>1)", parseNumber)
    .option("-s, --seed <n>", "sampling seed (default: random, printed so the run can be repeated)", parseInteger)
    .option("--stop <text...>", "stop once the output contains one of these strings")
    .action(runGenerate);
}

async function runGenerate(opts: GenerateCliOptions): Promise<void> {
  const backend = await setBackend(opts.backend);
  const dir = await resolveModelDir(opts.model);
  const t0 = performance.now();
  await readConfigJson(dir); // a path that is no checkpoint says so before its tokenizer is looked for
  const tokenizer = await AutoTokenizer.fromPretrained(dir);
  const generationConfig = (await loadGenerationConfig(dir)) ?? {};
  const text = opts.chat
    ? tokenizer.applyChatTemplate([{ role: "user", content: opts.prompt }], { addGenerationPrompt: true, enableThinking: opts.thinking ? undefined : false })
    : opts.prompt;
  const inputIds = tokenizer.encode(text);
  // the memory plan reserves exactly this run's context: a model that cannot hold it fails before loading
  const contextLength = inputIds.length + Math.max(opts.maxNewTokens, 0);
  const model = await loadModel(dir, { weightStorage: opts.weightStorage, contextLength, promptLength: inputIds.length });
  try {
    const loadMs = performance.now() - t0;

    const doSample = opts.temperature !== undefined ? opts.temperature > 0 : (generationConfig.do_sample ?? false);
    const seed = doSample ? (opts.seed ?? Math.floor(Math.random() * 2 ** 31)) : undefined;
    const genOpts: GenerateOptions = {
      maxNewTokens: opts.maxNewTokens,
      doSample,
      temperature: doSample ? opts.temperature : undefined,
      topK: opts.topK,
      topP: opts.topP,
      repetitionPenalty: opts.repetitionPenalty,
      seed,
      stopStrings: opts.stop,
      tokenizer,
      generationConfig,
    };

    const streamer = new TextStreamer(tokenizer, (piece) => process.stdout.write(piece), { skipSpecialTokens: true });
    let prefillMs = 0;
    let newTokens = 0;
    let reason: FinishReason = "length";
    const start = performance.now();
    for await (const step of streamGenerate(model, [inputIds], genOpts)) {
      if (step.step === 0) prefillMs = performance.now() - start;
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
      `model ${dir} · backend ${backend} · ${model.memoryPlan?.storage ?? "f32"} weights · loaded in ${(loadMs / 1000).toFixed(2)} s`,
      `prompt ${inputIds.length} tokens · prefill ${prefillMs.toFixed(0)} ms (${rate(inputIds.length, prefillMs)} tokens/s)`,
      `generated ${newTokens} tokens in ${(totalMs / 1000).toFixed(2)} s · ${rate(newTokens, totalMs)} tokens/s` +
        (decodeTokens > 0 ? ` · decode ${rate(decodeTokens, totalMs - prefillMs)} tokens/s` : "") +
        ` · stopped: ${reason}` +
        (doSample ? ` · seed ${seed}` : " · greedy"),
    ];
    process.stderr.write(lines.join("\n") + "\n");
  } finally {
    model.dispose();
  }
}
