// transformers.js's `model.generate({ inputs, max_new_tokens, do_sample, streamer, … })`: one object of
// snake_case (or camelCase) arguments, mapped onto fusekit's generate(model, prompt, options).
import { ArgumentError } from "../errors.js";
import { camelCase, checkOptionKeys } from "../option-keys.js";
import {
  GENERATE_OPTION_HINTS,
  GENERATE_OPTION_KEYS,
  generate,
  type CausalLM,
  type GenerateOptions,
  type PromptInput,
} from "./generate.js";
import type { CompanionFiles, GenerationConfig } from "../io/companions.js";
import type { BaseStreamer } from "./streamer.js";

/** What `model.generate({...})` takes: the prompt as `inputs` (or `input_ids`), the rest as transformers names them. */
export interface GenerateKwargs extends GenerateOptions {
  /** Token ids ([batch][seq] or a 2-D tensor) or text (encoded with the model's own tokenizer unless `tokenizer` is given). */
  inputs?: PromptInput;
  input_ids?: PromptInput;
  inputIds?: PromptInput;
  attention_mask?: GenerateOptions["attentionMask"];
  max_new_tokens?: number;
  do_sample?: boolean;
  top_k?: number;
  top_p?: number;
  repetition_penalty?: number;
  eos_token_id?: number | number[] | null;
  pad_token_id?: number;
  stop_strings?: string[];
  use_cache?: boolean;
  generation_config?: GenerationConfig;
  streamer?: BaseStreamer;
}

const INPUT_KEYS = ["inputs", "input_ids", "inputIds"] as const;
const snakeCase = (key: string) => key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
const OPTION_NAMES = Object.keys(GENERATE_OPTION_KEYS);
const KNOWN = [...INPUT_KEYS, ...new Set([...OPTION_NAMES, ...OPTION_NAMES.map(snakeCase)])];
const HINTS = Object.fromEntries(
  Object.entries(GENERATE_OPTION_HINTS).filter(([k]) => !(INPUT_KEYS as readonly string[]).includes(k)),
);

/** Splits transformers-style kwargs into the prompt and fusekit's options (a key given in both spellings is an error). */
export function readGenerateKwargs(kwargs: GenerateKwargs, what = "model.generate"): [PromptInput, GenerateOptions] {
  if (typeof kwargs !== "object" || kwargs === null || Array.isArray(kwargs))
    throw new ArgumentError(
      `${what}: expected one object of arguments ({ inputs, max_new_tokens, … }), got ${ArgumentError.describe(kwargs)}`,
    );
  checkOptionKeys(what, kwargs, KNOWN, HINTS);
  const given = INPUT_KEYS.filter((k) => kwargs[k] !== undefined);
  if (given.length !== 1)
    throw new ArgumentError(
      `${what}: give the prompt as exactly one of inputs / input_ids, got ${given.length ? given.join(" and ") : "none"}`,
    );
  const options: Record<string, unknown> = {};
  const givenAs: Record<string, string> = {};
  for (const [key, value] of Object.entries(kwargs)) {
    if ((INPUT_KEYS as readonly string[]).includes(key) || value === undefined) continue;
    const name = camelCase(key);
    if (name in options)
      throw new ArgumentError(`${what}: "${givenAs[name]}" and "${key}" are the same option; give one`);
    options[name] = value;
    givenAs[name] = key;
  }
  return [kwargs[given[0]]!, options as GenerateOptions];
}

/** The model's own generation_config.json (as transformers' `model.generation_config`), under the given options. */
export function withModelGenerationConfig(model: CausalLM, options: GenerateOptions): GenerateOptions {
  const own = (model as { companionFiles?: CompanionFiles }).companionFiles?.generationConfig;
  return options.generationConfig || !own ? options : { ...options, generationConfig: own };
}

/**
 * `model.generate({...})`: the prompt + generated token ids per row, as transformers returns its sequences.
 * Defaults come from the model's generation_config.json, as in transformers (fusekit's generate() takes them
 * only when passed as `generationConfig`).
 */
export async function generateWithKwargs(model: CausalLM, kwargs: GenerateKwargs): Promise<number[][]> {
  const [inputs, options] = readGenerateKwargs(kwargs);
  return (await generate(model, inputs, withModelGenerationConfig(model, options))).sequences;
}
