import type { PreTrainedTokenizer } from "../tokenizer/tokenizer.js";
import { ArgumentError } from "../errors.js";
import { checkOptionKeys } from "../option-keys.js";

/** What generate's `streamer` option takes (transformers' BaseStreamer): the prompt's rows, then `[[id]]` per token. */
export interface BaseStreamer {
  put(value: number[][]): void;
  end(): void;
}

/** transformers.js's TextStreamer options (and their camelCase forms). */
export interface TextStreamerOptions {
  /** Do not print the prompt (the first `put`), as transformers' `skip_prompt`. Default false. */
  skip_prompt?: boolean;
  skipPrompt?: boolean;
  skip_special_tokens?: boolean;
  skipSpecialTokens?: boolean;
  /** Called with each finished piece of text (default: written to stdout, as transformers.js does). */
  callback_function?: (text: string) => void;
  /** Called with the token ids of each `put` (after skip_prompt). */
  token_callback_function?: (tokens: number[]) => void;
  /** Options for decode (transformers.js passes `skip_special_tokens` this way too). */
  decode_kwargs?: { skip_special_tokens?: boolean };
}

const OPTION_KEYS: Record<keyof TextStreamerOptions, true> = {
  skip_prompt: true,
  skipPrompt: true,
  skip_special_tokens: true,
  skipSpecialTokens: true,
  callback_function: true,
  token_callback_function: true,
  decode_kwargs: true,
};

type Ids = number | bigint | readonly (number | bigint)[] | readonly (readonly (number | bigint)[])[];

/**
 * Turns a stream of token ids into a stream of text, like transformers' TextStreamer: it re-decodes the
 * tokens since the last line break and emits only the new suffix, holding back a trailing U+FFFD
 * (a multi-byte character whose remaining bytes are still to come).
 *
 * Two ways to make one: `new TextStreamer(tokenizer, onText, { skipSpecialTokens })`, or transformers.js's
 * `new TextStreamer(tokenizer, { skip_prompt, skip_special_tokens, callback_function })` — which generate's
 * `streamer` option, `model.generate({ streamer })` and pipelines feed.
 */
export class TextStreamer implements BaseStreamer {
  private tokens: number[] = [];
  private printed = 0;
  private readonly onText: (text: string) => void;
  private readonly decodeOptions: { skipSpecialTokens: boolean };
  private readonly onTokens?: (tokens: number[]) => void;
  private promptPending: boolean;

  constructor(
    private readonly tokenizer: PreTrainedTokenizer,
    onTextOrOptions?: ((text: string) => void) | TextStreamerOptions,
    options: { skipSpecialTokens?: boolean } = {},
  ) {
    const o: TextStreamerOptions =
      typeof onTextOrOptions === "function"
        ? { ...options, callback_function: onTextOrOptions }
        : (onTextOrOptions ?? {});
    checkOptionKeys("TextStreamer", o, Object.keys(OPTION_KEYS));
    this.onText = o.callback_function ?? ((text) => process.stdout.write(text));
    this.onTokens = o.token_callback_function;
    const skip = o.skip_special_tokens ?? o.skipSpecialTokens ?? o.decode_kwargs?.skip_special_tokens ?? false;
    this.decodeOptions = { skipSpecialTokens: skip };
    this.promptPending = o.skip_prompt ?? o.skipPrompt ?? false;
  }

  /** One id, a row of ids, or transformers' `[[…ids]]` (a batch of one row; bigints as transformers.js has them). */
  put(ids: Ids): void {
    const row = toRow(ids);
    if (this.promptPending) {
      this.promptPending = false; // the first put is the prompt
      return;
    }
    this.onTokens?.(row);
    this.tokens.push(...row);
    const text = this.tokenizer.decode(this.tokens, this.decodeOptions);
    if (text.endsWith("\n")) {
      this.emit(text.slice(this.printed));
      this.tokens = [];
      this.printed = 0;
    } else if (!text.endsWith("\uFFFD")) {
      this.emit(text.slice(this.printed));
      this.printed = text.length;
    }
  }

  /** Flushes whatever is held back. */
  end(): void {
    const text = this.tokenizer.decode(this.tokens, this.decodeOptions);
    this.emit(text.slice(this.printed));
    this.tokens = [];
    this.printed = 0;
  }

  private emit(text: string): void {
    if (text) this.onText(text);
  }
}

function toRow(ids: Ids): number[] {
  if (typeof ids === "number" || typeof ids === "bigint") return [Number(ids)];
  if (!Array.isArray(ids))
    throw new ArgumentError(`TextStreamer.put: expected token ids, got ${ArgumentError.describe(ids)}`);
  if (ids.length && Array.isArray(ids[0])) {
    if (ids.length > 1) throw new ArgumentError(`TextStreamer only supports batch size 1, got ${ids.length} rows`);
    return (ids[0] as readonly (number | bigint)[]).map(Number);
  }
  return (ids as readonly (number | bigint)[]).map(Number);
}
