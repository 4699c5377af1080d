import type { PreTrainedTokenizer } from "../tokenizer/tokenizer.js";

/**
 * Turns a stream of token ids into a stream of text, like transformers' TextStreamer: it re-decodes the
 * tokens since the last line break and emits only the new suffix, holding back a trailing U+FFFD
 * (a multi-byte character whose remaining bytes are still to come).
 */
export class TextStreamer {
  private tokens: number[] = [];
  private printed = 0;

  constructor(
    private readonly tokenizer: PreTrainedTokenizer,
    private readonly onText: (text: string) => void,
    private readonly options: { skipSpecialTokens?: boolean } = {},
  ) {}

  put(ids: number | readonly number[]): void {
    this.tokens.push(...(typeof ids === "number" ? [ids] : ids));
    const text = this.tokenizer.decode(this.tokens, this.options);
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
    const text = this.tokenizer.decode(this.tokens, this.options);
    this.emit(text.slice(this.printed));
    this.tokens = [];
    this.printed = 0;
  }

  private emit(text: string): void {
    if (text) this.onText(text);
  }
}
