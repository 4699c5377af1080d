// Autoregressive generation for causal LMs: a prefill over the prompt, then one token per step through
// the KV cache (logitsToKeep: 1, so only the last position reaches lm_head). Batches are left-padded;
// the model derives positions from the attention mask. Token choice happens on the host (sampling.ts).
import { tf } from "../tensor/tf.js";
import { DynamicCache } from "../cache/dynamic-cache.js";
import { Rng, selectToken, type SamplingParams } from "./sampling.js";
import type { CausalLMInputs, CausalLMOutput } from "../nn/outputs.js";
import { AutoTokenizer, type PreTrainedTokenizer } from "../tokenizer/tokenizer.js";
import { ArgumentError, GenerationConfigError, ShapeError } from "../errors.js";
import { type CompanionFiles, type GenerationConfig } from "../io/companions.js";
import { checkOptionKeys } from "../option-keys.js";
import type { BaseStreamer } from "./streamer.js";

/** What generate needs from a model: a causal-LM forward and a config with the special token ids. */
export interface CausalLM {
  /** Read for eos_token_id / pad_token_id when neither the options nor the generation config give them. */
  config: object;
  call(inputs: CausalLMInputs): CausalLMOutput;
}

export interface GenerateOptions {
  /** New tokens per row at most (default: generation config's max_new_tokens, else 20). */
  maxNewTokens?: number;
  /** Sample instead of greedy (default: generation config's do_sample, else false). */
  doSample?: boolean;
  /** Defaults follow transformers: temperature 1, top-k 50, top-p 1, repetition penalty 1. */
  temperature?: number;
  topK?: number;
  topP?: number;
  repetitionPenalty?: number;
  /** Seed of the sampling generator: the same seed gives the same tokens. Default: a random seed. */
  seed?: number;
  /** Stop a row when it emits one of these (default: generation config, else model config). `null`: never. */
  eosTokenId?: number | number[] | null;
  /** Fed to (and appended for) rows that have finished (default: config pad, else the first eos). */
  padTokenId?: number;
  /** Stop a row once its generated text contains one of these; needs `tokenizer`. */
  stopStrings?: string[];
  /** Encodes a text prompt and decodes for stopStrings. */
  tokenizer?: PreTrainedTokenizer;
  /** 1 = real token, 0 = left padding; `[batch, promptLen]`. Default: all ones. */
  attentionMask?: number[][] | tf.Tensor;
  /** Use the KV cache (default true). false recomputes the whole sequence every step (for checking). */
  useCache?: boolean;
  /** generation_config.json contents (see loadGenerationConfig), for the defaults above. */
  generationConfig?: GenerationConfig;
  /** Called after every step (the streaming callback). */
  onStep?: (step: GenerationStep) => void;
  /**
   * A streamer, as transformers' (e.g. `new TextStreamer(tokenizer, { skip_prompt: true })`): `put` gets the
   * prompt's rows first, then each new token as `[[id]]`; `end()` once generation stops. Batch size 1 only.
   */
  streamer?: BaseStreamer;
}

// Every key, checked by the compiler against the interface.
export const GENERATE_OPTION_KEYS: Record<keyof GenerateOptions, true> = {
  maxNewTokens: true,
  doSample: true,
  temperature: true,
  topK: true,
  topP: true,
  repetitionPenalty: true,
  seed: true,
  eosTokenId: true,
  padTokenId: true,
  stopStrings: true,
  tokenizer: true,
  attentionMask: true,
  useCache: true,
  generationConfig: true,
  onStep: true,
  streamer: true,
};

/** transformers' generate arguments fusekit spells otherwise or does not have. */
export const GENERATE_OPTION_HINTS: Readonly<Record<string, string>> = {
  max_length: 'fusekit counts new tokens only: "maxNewTokens"',
  maxLength: 'fusekit counts new tokens only: "maxNewTokens"',
  num_beams: "beam search is not implemented: greedy, or sampling with doSample",
  inputs: "the prompt is generate's second argument",
  input_ids: "the prompt is generate's second argument",
};

export type FinishReason = "eos" | "stop" | "length";

export interface GenerationStep {
  /** 0 for the token produced by the prefill. */
  step: number;
  /** The token appended to each row this step (the pad token for rows that had already finished). */
  tokens: number[];
  /** Rows still generating before this step (their token is real). */
  active: boolean[];
  /** Rows done after this step, with why (undefined while still generating). */
  finishReasons: (FinishReason | undefined)[];
}

export interface GenerateOutput {
  /** Prompt (with its padding) + generated tokens, rows padded on the right to equal length, like transformers. */
  sequences: number[][];
  /** Each row's generated tokens, up to and including its eos / stop-string token. */
  newTokens: number[][];
  finishReasons: FinishReason[];
}

interface Resolved {
  maxNewTokens: number;
  sampling: SamplingParams;
  eos: Set<number>;
  pad: number;
  stopStrings: string[];
  tokenizer?: PreTrainedTokenizer;
  useCache: boolean;
  rng: Rng;
}

const ids = (v: number | number[] | null | undefined): number[] => (v == null ? [] : Array.isArray(v) ? v : [v]);

function resolve(model: CausalLM, o: GenerateOptions): Resolved {
  checkOptionKeys("generate", o, Object.keys(GENERATE_OPTION_KEYS), GENERATE_OPTION_HINTS);
  const g = o.generationConfig ?? {};
  const cfg = model.config as { eos_token_id?: number | number[] | null; pad_token_id?: number | null };
  const bad = (msg: string) => new GenerationConfigError(msg);
  const maxNewTokens = o.maxNewTokens ?? g.max_new_tokens ?? 20;
  if (!Number.isInteger(maxNewTokens) || maxNewTokens < 0)
    throw bad(`maxNewTokens must be a non-negative integer, got ${maxNewTokens}`);
  const sampling: SamplingParams = {
    doSample: o.doSample ?? g.do_sample ?? false,
    temperature: o.temperature ?? g.temperature ?? 1,
    topK: o.topK ?? g.top_k ?? 50,
    topP: o.topP ?? g.top_p ?? 1,
    repetitionPenalty: o.repetitionPenalty ?? g.repetition_penalty ?? 1,
  };
  if (sampling.doSample && !(sampling.temperature > 0)) {
    throw bad(`temperature must be > 0 when sampling, got ${sampling.temperature} (use doSample: false for greedy)`);
  }
  if (!Number.isInteger(sampling.topK) || sampling.topK < 0)
    throw bad(`topK must be a non-negative integer, got ${sampling.topK}`);
  if (!(sampling.topP > 0 && sampling.topP <= 1)) throw bad(`topP must be in (0, 1], got ${sampling.topP}`);
  if (!(sampling.repetitionPenalty > 0)) throw bad(`repetitionPenalty must be > 0, got ${sampling.repetitionPenalty}`);
  const eosList =
    o.eosTokenId !== undefined
      ? ids(o.eosTokenId)
      : g.eos_token_id !== undefined
        ? ids(g.eos_token_id)
        : ids(cfg.eos_token_id);
  const pad = o.padTokenId ?? g.pad_token_id ?? cfg.pad_token_id ?? eosList[0] ?? 0;
  const stopStrings = o.stopStrings ?? [];
  if (stopStrings.length && !o.tokenizer)
    throw bad("stopStrings need a tokenizer (pass options.tokenizer; the model has no tokenizer files of its own)");
  if (stopStrings.some((s) => typeof s !== "string" || s === "")) throw bad("stopStrings must be non-empty strings");
  const seed = o.seed ?? Math.floor(Math.random() * 2 ** 32);
  return {
    maxNewTokens,
    sampling,
    eos: new Set(eosList),
    pad,
    stopStrings,
    tokenizer: o.tokenizer,
    useCache: o.useCache ?? true,
    rng: new Rng(seed),
  };
}

/** What `generate` accepts as a prompt: token ids per row, a 2-D tensor of them, or text with a tokenizer. */
export type PromptInput = number[][] | tf.Tensor | string;

/** The prompt as token-id rows; text is encoded with `tokenizer` (one row). */
function readPrompt(x: PromptInput, tokenizer: PreTrainedTokenizer | undefined): number[][] {
  if (typeof x !== "string") return readRows(x, "inputIds");
  if (!tokenizer) {
    throw new ArgumentError(
      "generate: a text prompt needs options.tokenizer (the model has no tokenizer files of its own); without one pass token ids (number[][] or a 2-D tf.Tensor)",
    );
  }
  if (x === "") throw new ArgumentError("generate: the prompt is empty");
  return [tokenizer.encode(x)];
}

function readRows(x: number[][] | tf.Tensor, what: string): number[][] {
  if (!Array.isArray(x) && !(x instanceof tf.Tensor)) {
    const text = what === "inputIds" ? ", or a string with options.tokenizer" : "";
    throw new ArgumentError(`${what}: expected number[][] or a 2-D tf.Tensor${text}, got ${ArgumentError.describe(x)}`);
  }
  const rows = Array.isArray(x) ? x : (x.arraySync() as number[][]);
  if (
    !Array.isArray(rows) ||
    !rows.length ||
    !Array.isArray(rows[0]) ||
    !rows[0].length ||
    rows.some((r) => !Array.isArray(r) || r.length !== rows[0].length)
  ) {
    throw new ShapeError(`${what}: expected a non-empty rectangular [batch, seq] array or 2-D tensor`);
  }
  return rows.map((r) => [...r]);
}

/**
 * Generates a continuation for each row of `inputIds` and returns it when every row has finished.
 * Streaming: pass `onStep`, or iterate `streamGenerate` instead.
 */
export async function generate(
  model: CausalLM,
  inputIds: PromptInput,
  options: GenerateOptions = {},
): Promise<GenerateOutput> {
  const state = new GenerationState();
  for await (const step of run(model, inputIds, options, state)) options.onStep?.(step);
  return state.output();
}

/** The same generation as an async iterator of steps; breaking out early frees everything too. */
export async function* streamGenerate(
  model: CausalLM,
  inputIds: PromptInput,
  options: GenerateOptions = {},
): AsyncGenerator<GenerationStep> {
  yield* run(model, inputIds, options, new GenerationState());
}

class GenerationState {
  prompt: number[][] = [];
  generated: number[][] = [];
  newTokens: number[][] = [];
  reasons: (FinishReason | undefined)[] = [];

  output(): GenerateOutput {
    return {
      sequences: this.prompt.map((p, r) => [...p, ...this.generated[r]]),
      newTokens: this.newTokens,
      finishReasons: this.reasons.map((r) => r ?? "length"),
    };
  }
}

/** The attention mask given with the prompt, checked against its shape (undefined when none was given). */
function readPromptMask(attentionMask: GenerateOptions["attentionMask"], prompt: number[][]): number[][] | undefined {
  const promptMask = attentionMask === undefined ? undefined : readRows(attentionMask, "attentionMask");
  const b = prompt.length;
  if (promptMask && (promptMask.length !== b || promptMask[0].length !== prompt[0].length)) {
    throw new ShapeError(
      `attentionMask: expected shape [${b}, ${prompt[0].length}] like inputIds, got [${promptMask.length}, ${promptMask[0].length}]`,
    );
  }
  if (promptMask?.some((r) => !r.includes(1))) throw new ShapeError("attentionMask: a row has no attended token");
  return promptMask;
}

const derivedTokenizers = new WeakMap<object, PreTrainedTokenizer>();

/** The tokenizer of the folder the model was loaded from (its companion files), built once per model. */
function tokenizerOf(model: CausalLM): PreTrainedTokenizer | undefined {
  const { companionFiles, sourceDir } = model as { companionFiles?: CompanionFiles; sourceDir?: string };
  const files = companionFiles?.tokenizerFiles;
  if (!files?.has("tokenizer.json")) return undefined;
  let tokenizer = derivedTokenizers.get(model);
  if (!tokenizer) {
    tokenizer = AutoTokenizer.fromFiles(files, sourceDir ?? "the model's tokenizer files");
    derivedTokenizers.set(model, tokenizer);
  }
  return tokenizer;
}

/** `options`, with the model's own tokenizer when a text prompt or stop strings need one and none was given. */
function withTokenizer(model: CausalLM, inputIds: PromptInput, options: GenerateOptions): GenerateOptions {
  const needed = typeof inputIds === "string" || Boolean(options.stopStrings?.length);
  if (options.tokenizer || !needed) return options;
  const tokenizer = tokenizerOf(model);
  return tokenizer ? { ...options, tokenizer } : options;
}

/** The streamer, checked: an object with put and end, for a single row. */
function readStreamer(streamer: unknown, rows: number): BaseStreamer | undefined {
  if (streamer === undefined) return undefined;
  const s = streamer as BaseStreamer;
  if (typeof s !== "object" || s === null || typeof s.put !== "function" || typeof s.end !== "function")
    throw new ArgumentError(`generate: streamer must have put() and end(), got ${ArgumentError.describe(streamer)}`);
  if (rows !== 1) throw new ArgumentError(`generate: a streamer takes one prompt row, got ${rows}`);
  return s;
}

async function* run(
  model: CausalLM,
  inputIds: PromptInput,
  given: GenerateOptions,
  st: GenerationState,
): AsyncGenerator<GenerationStep> {
  const options = withTokenizer(model, inputIds, given ?? {});
  const o = resolve(model, options);
  const prompt = readPrompt(inputIds, options.tokenizer);
  const b = prompt.length;
  const streamer = readStreamer(options.streamer, b);
  const promptMask = readPromptMask(options.attentionMask, prompt);
  st.prompt = prompt;
  st.generated = prompt.map(() => []);
  st.newTokens = prompt.map(() => []);
  st.reasons = prompt.map(() => undefined);
  // The mask only matters when there is padding; then it grows by one attended column per step.
  const mask = promptMask?.some((r) => r.includes(0)) ? promptMask.map((r) => [...r]) : undefined;
  // Tokens the repetition penalty looks at: each row's real (unpadded) tokens.
  const history = prompt.map((r, i) => (mask ? r.filter((_, j) => mask[i][j]) : [...r]));

  const cache = o.useCache ? new DynamicCache() : undefined;
  streamer?.put(prompt.map((r) => [...r]));
  try {
    for (let step = 0; step < o.maxNewTokens && st.reasons.some((r) => r === undefined); step++) {
      const feed =
        !cache || step === 0
          ? prompt.map((p, r) => [...p, ...st.generated[r]])
          : st.generated.map((g) => [g[g.length - 1]]);
      const { logits } = model.call({
        inputIds: feed,
        attentionMask: mask,
        pastKeyValues: cache,
        useCache: !!cache,
        logitsToKeep: 1,
      });
      const data = await readAndDispose(logits);
      const vocab = data.length / b;
      const active = st.reasons.map((r) => r === undefined);
      const tokens = active.map((isActive, r) => {
        if (!isActive) return o.pad;
        const row = data.slice(r * vocab, (r + 1) * vocab);
        return selectToken(row, history[r], o.sampling, o.rng);
      });
      for (let r = 0; r < b; r++) {
        st.generated[r].push(tokens[r]);
        if (!active[r]) continue;
        st.newTokens[r].push(tokens[r]);
        history[r].push(tokens[r]);
        if (o.eos.has(tokens[r])) st.reasons[r] = "eos";
        else if (o.stopStrings.length && hitsStopString(o.tokenizer!, st.newTokens[r], o.stopStrings))
          st.reasons[r] = "stop";
        else if (st.newTokens[r].length >= o.maxNewTokens) st.reasons[r] = "length";
      }
      mask?.forEach((row) => row.push(1));
      if (streamer && active[0]) streamer.put([[tokens[0]]]);
      yield { step, tokens, active, finishReasons: [...st.reasons] };
    }
    streamer?.end();
  } finally {
    cache?.dispose();
  }
}

/** The logits' values; the tensor is disposed even when reading fails. */
async function readAndDispose(logits: tf.Tensor): Promise<Float32Array> {
  try {
    return (await logits.data()) as Float32Array;
  } finally {
    logits.dispose();
  }
}

/** Whether the row's generated text contains a stop string (decoded whole: a token may complete a multi-byte character). */
function hitsStopString(tokenizer: PreTrainedTokenizer, generated: number[], stops: string[]): boolean {
  const text = tokenizer.decode(generated);
  return stops.some((s) => text.includes(s));
}
