// transformers.js's `pipeline("text-generation", model, options)`: load the model and its tokenizer once, then
// `await generator(textOrMessages, { max_new_tokens, … })` → `[{ generated_text }]` — the prompt with its
// continuation for text, the messages with the assistant's reply appended for a chat.
import { ArgumentError } from "../errors.js";
import { checkOptionKeys } from "../option-keys.js";
import { fromPretrained } from "../loading/from-pretrained.js";
import { LOAD_OPTION_HINTS, LOAD_OPTION_KEYS, type FromPretrainedOptions } from "../loading/options.js";
import type { PreTrainedModel } from "../loading/pretrained.js";
import { AutoTokenizer, type ChatMessage, type PreTrainedTokenizer } from "../tokenizer/tokenizer.js";
import { generate } from "../generation/generate.js";
import { readGenerateKwargs, withModelGenerationConfig, type GenerateKwargs } from "../generation/kwargs.js";

export const SUPPORTED_TASKS = ["text-generation"] as const;

/** fromPretrained's options, plus transformers.js's spellings of the hub ones and a tokenizer of your own. */
export interface PipelineOptions extends FromPretrainedOptions {
  cache_dir?: string;
  local_files_only?: boolean;
  /** Use this tokenizer instead of the model folder's. */
  tokenizer?: PreTrainedTokenizer;
}

/** A call's options: generate's (snake_case or camelCase), plus whether the prompt is part of the text returned. */
export interface TextGenerationCallOptions extends Omit<GenerateKwargs, "inputs" | "input_ids" | "inputIds"> {
  /** For a text prompt: return prompt + continuation (default true, as transformers.js) or the continuation only. */
  return_full_text?: boolean;
  /** Add the tokenizer's special tokens to a text prompt (default true; a chat's template has its own). */
  add_special_tokens?: boolean;
}

export type TextGenerationSingle = { generated_text: string | ChatMessage[] }[];

export interface TextGenerationPipeline {
  /** One prompt (text or chat messages) → `[{ generated_text }]`; a list of prompts → one such array each. */
  (input: string | readonly ChatMessage[], options?: TextGenerationCallOptions): Promise<TextGenerationSingle>;
  (
    input: readonly string[] | readonly ChatMessage[][],
    options?: TextGenerationCallOptions,
  ): Promise<TextGenerationSingle[]>;
  readonly task: "text-generation";
  readonly model: PreTrainedModel;
  readonly tokenizer: PreTrainedTokenizer;
  /** Frees the model's tensors. */
  dispose(): Promise<void>;
}

const PIPELINE_KEYS = [...Object.keys(LOAD_OPTION_KEYS), "cache_dir", "local_files_only", "tokenizer"];

/** `pipeline("text-generation", "org/name" or a folder, options)`, as transformers.js has it. */
export async function pipeline(
  task: "text-generation",
  model: string,
  options: PipelineOptions = {},
): Promise<TextGenerationPipeline> {
  if (!(SUPPORTED_TASKS as readonly string[]).includes(task))
    throw new ArgumentError(
      `pipeline: unsupported task ${ArgumentError.describe(task)} (fusekit has "text-generation")`,
    );
  if (typeof model !== "string" || model === "")
    throw new ArgumentError(
      `pipeline: expected a hub model id or a checkpoint folder, got ${ArgumentError.describe(model)}`,
    );
  checkOptionKeys("pipeline", options, PIPELINE_KEYS, LOAD_OPTION_HINTS);
  const { cache_dir, local_files_only, tokenizer: given, ...load } = options;
  const loaded = await fromPretrained(model, {
    ...load,
    cacheDir: load.cacheDir ?? cache_dir,
    localFilesOnly: load.localFilesOnly ?? local_files_only,
  });
  try {
    const tokenizer = given ?? (await AutoTokenizer.fromPretrained(loaded.sourceDir!));
    const run = (input: unknown, call: TextGenerationCallOptions = {}) => generateFor(loaded, tokenizer, input, call);
    return Object.assign(run, {
      task,
      model: loaded,
      tokenizer,
      dispose: async () => loaded.dispose(),
    }) as TextGenerationPipeline;
  } catch (err) {
    loaded.dispose();
    throw err;
  }
}

const isChat = (x: unknown): x is ChatMessage[] =>
  Array.isArray(x) && x.length > 0 && x.every((m) => typeof m === "object" && m !== null && "role" in m);

async function generateFor(
  model: PreTrainedModel,
  tokenizer: PreTrainedTokenizer,
  input: unknown,
  call: TextGenerationCallOptions,
): Promise<TextGenerationSingle | TextGenerationSingle[]> {
  if (typeof input === "string" || isChat(input)) return one(model, tokenizer, input, call);
  if (Array.isArray(input) && input.length && input.every((x) => typeof x === "string" || isChat(x))) {
    const out: TextGenerationSingle[] = [];
    for (const item of input as (string | ChatMessage[])[]) out.push(await one(model, tokenizer, item, call));
    return out;
  }
  throw new ArgumentError(
    `text-generation pipeline: expected a string, chat messages ([{ role, content }]) or a list of them, got ${ArgumentError.describe(input)}`,
  );
}

async function one(
  model: PreTrainedModel,
  tokenizer: PreTrainedTokenizer,
  input: string | ChatMessage[],
  call: TextGenerationCallOptions,
): Promise<TextGenerationSingle> {
  const { return_full_text = true, add_special_tokens = true, ...kwargs } = call;
  const chat = typeof input !== "string";
  const ids = chat
    ? tokenizer.encode(tokenizer.applyChatTemplate(input, { addGenerationPrompt: true }), { addSpecialTokens: false })
    : tokenizer.encode(input, { addSpecialTokens: add_special_tokens });
  const [prompt, options] = readGenerateKwargs({ ...kwargs, inputs: [ids] }, "text-generation pipeline");
  const { newTokens } = await generate(model, prompt, withModelGenerationConfig(model, { tokenizer, ...options }));
  const reply = tokenizer.decode(newTokens[0], { skipSpecialTokens: true });
  if (chat) return [{ generated_text: [...input, { role: "assistant", content: reply }] }];
  return [{ generated_text: return_full_text ? input + reply : reply }];
}
