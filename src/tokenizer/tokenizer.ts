// Tokenizer for a Hugging Face checkpoint directory: tokenizer.json runs through @huggingface/tokenizers,
// tokenizer_config.json supplies the special tokens and the chat template (rendered by @huggingface/jinja).
import path from "node:path";
import { Tokenizer } from "@huggingface/tokenizers";
import { Template } from "@huggingface/jinja";
import { ChatTemplateError, TokenizerError } from "../errors.js";
import { companionWrites, readTokenizerFiles, saveIntoFolder } from "../io/companions.js";
import { writeFilesAtomically } from "../io/atomic.js";
import { parseJsonStrict, readJsonObject } from "../io/json.js";
import { TemplateLimitError, renderBounded, type ChatTemplateLimits } from "./template-limits.js";
import { resolvePretrained, type ResolveOptions } from "../io/hf-resolve.js";
import { checkOptionKeys } from "../option-keys.js";

export const TOKENIZER_NAME = "tokenizer.json";
export const TOKENIZER_CONFIG_NAME = "tokenizer_config.json";

export interface ChatMessage {
  role: "system" | "user" | "assistant" | "tool" | (string & {});
  content: string;
  [extra: string]: unknown;
}

export interface ChatTemplateOptions {
  /** Append the assistant turn header so the model continues as the assistant (default false). */
  addGenerationPrompt?: boolean;
  /**
   * Qwen3's switch. Left undefined the template's own default applies (thinking on); `false` renders
   * an empty think block so the model answers directly — as transformers does with `enable_thinking=False`.
   */
  enableThinking?: boolean;
  /** Tool schemas passed to the template as `tools`. */
  tools?: unknown[];
  /** Any further template variables (transformers passes extra kwargs through the same way). */
  extra?: Record<string, unknown>;
  /** Render limits (steps, time, sizes); default CHAT_TEMPLATE_LIMITS. A template is data from the checkpoint. */
  limits?: ChatTemplateLimits;
}

export interface EncodeOptions {
  /** Add the tokenizer's post-processor special tokens (default true, like transformers). Qwen3 adds none. */
  addSpecialTokens?: boolean;
}

export interface DecodeOptions {
  skipSpecialTokens?: boolean;
}

/** A left-padded batch: rows aligned on the right, `attentionMask` 0 over the padding. */
export interface EncodedBatch {
  inputIds: number[][];
  attentionMask: number[][];
}

type TokenConfig = string | { content: string } | null | undefined;

/** The special token's text from a tokenizer_config value (a string or a serialised AddedToken). */
function tokenText(v: TokenConfig): string | undefined {
  if (typeof v === "string") return v;
  if (v && typeof v === "object" && typeof v.content === "string") return v.content;
  return undefined;
}

export class PreTrainedTokenizer {
  readonly bosToken?: string;
  readonly eosToken?: string;
  readonly padToken?: string;
  readonly unkToken?: string;
  readonly chatTemplate?: string;
  private compiledTemplate?: Template;

  constructor(
    readonly tokenizer: Tokenizer,
    readonly config: Record<string, unknown>,
    /** Where the files came from, for error messages. */
    readonly source = "tokenizer",
    /** The files it was built from, by name, as read (what `savePretrained` writes). */
    readonly files: ReadonlyMap<string, Uint8Array> = new Map(),
  ) {
    this.bosToken = tokenText(config.bos_token as TokenConfig);
    this.eosToken = tokenText(config.eos_token as TokenConfig);
    this.padToken = tokenText(config.pad_token as TokenConfig);
    this.unkToken = tokenText(config.unk_token as TokenConfig);
    const tpl = config.chat_template;
    // Some configs hold several named templates; the "default" one is what transformers picks.
    if (typeof tpl === "string") this.chatTemplate = tpl;
    else if (Array.isArray(tpl)) this.chatTemplate = tpl.find((t) => t?.name === "default")?.template;
  }

  get bosTokenId(): number | undefined {
    return this.bosToken === undefined ? undefined : this.tokenToId(this.bosToken);
  }
  get eosTokenId(): number | undefined {
    return this.eosToken === undefined ? undefined : this.tokenToId(this.eosToken);
  }
  get padTokenId(): number | undefined {
    return this.padToken === undefined ? undefined : this.tokenToId(this.padToken);
  }

  /** Vocabulary size including added tokens. */
  get vocabSize(): number {
    return this.tokenizer.get_vocab(true).size;
  }

  tokenToId(token: string): number | undefined {
    return this.tokenizer.token_to_id(token);
  }

  idToToken(id: number): string | undefined {
    return this.tokenizer.id_to_token(id);
  }

  encode(text: string, { addSpecialTokens = true }: EncodeOptions = {}): number[] {
    return this.tokenizer.encode(text, { add_special_tokens: addSpecialTokens }).ids;
  }

  decode(ids: readonly number[], { skipSpecialTokens = false }: DecodeOptions = {}): string {
    if (ids.length === 0) return ""; // as transformers; the underlying decoder rejects an empty list
    return this.tokenizer.decode([...ids], { skip_special_tokens: skipSpecialTokens });
  }

  /** Encodes several texts and left-pads them to one length (decoder-only generation pads on the left). */
  encodeBatch(texts: readonly string[], options: EncodeOptions = {}): EncodedBatch {
    const rows = texts.map((t) => this.encode(t, options));
    const len = Math.max(...rows.map((r) => r.length));
    const pad = this.padTokenId ?? this.eosTokenId;
    if (pad === undefined && rows.some((r) => r.length < len)) {
      throw new TokenizerError(`${this.source}: cannot pad a batch: the tokenizer has no pad_token or eos_token`);
    }
    return {
      inputIds: rows.map((r) => [...Array<number>(len - r.length).fill(pad ?? 0), ...r]),
      attentionMask: rows.map((r) => [...Array<number>(len - r.length).fill(0), ...Array<number>(r.length).fill(1)]),
    };
  }

  /**
   * Writes the tokenizer's files (tokenizer.json, tokenizer_config.json, … as they were read) into `dir`,
   * atomically: all appear or none. `dir` must be new, empty, or a checkpoint folder (see SaveTargetError).
   */
  async savePretrained(dir: string): Promise<void> {
    if (!this.files.has(TOKENIZER_NAME))
      throw new TokenizerError(`${this.source}: built without its ${TOKENIZER_NAME}; there is nothing to save`);
    await saveIntoFolder(dir, () =>
      writeFilesAtomically(companionWrites(dir, { tokenizerFiles: new Map(this.files) })),
    );
  }

  /**
   * Renders the conversation with the config's chat template, with the variables transformers passes:
   * `messages`, `tools`, `add_generation_prompt`, the special tokens, and `enable_thinking` when set.
   * Returns the prompt text; `encode` it (special tokens in it are matched as added tokens).
   */
  applyChatTemplate(messages: readonly ChatMessage[], options: ChatTemplateOptions = {}): string {
    if (!this.chatTemplate) throw new ChatTemplateError(`${this.source}: tokenizer_config.json has no chat_template`);
    if (
      !Array.isArray(messages) ||
      messages.some((m) => typeof m?.role !== "string" || typeof m?.content !== "string")
    ) {
      throw new ChatTemplateError(`${this.source}: messages must be an array of { role: string, content: string }`);
    }
    try {
      this.compiledTemplate ??= new Template(this.chatTemplate);
    } catch (err) {
      throw new ChatTemplateError(`${this.source}: chat_template does not parse: ${(err as Error).message}`, {
        cause: err,
      });
    }
    const vars: Record<string, unknown> = {
      messages,
      tools: options.tools ?? null,
      add_generation_prompt: options.addGenerationPrompt ?? false,
      bos_token: this.bosToken ?? "",
      eos_token: this.eosToken ?? "",
      pad_token: this.padToken ?? "",
      unk_token: this.unkToken ?? "",
      ...options.extra,
    };
    // Only defined when given: Qwen3's template tests `enable_thinking is defined`.
    if (options.enableThinking !== undefined) vars.enable_thinking = options.enableThinking;
    try {
      return renderBounded(this.compiledTemplate, vars, options.limits);
    } catch (err) {
      const what = err instanceof TemplateLimitError ? "stopped: it exceeds a render limit" : "failed to render";
      throw new ChatTemplateError(`${this.source}: chat_template ${what}: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }
}

function readJson(file: string, required: boolean): Promise<Record<string, unknown> | undefined> {
  return readJsonObject(file, { error: (message) => new TokenizerError(message), optional: !required });
}

/** Where AutoTokenizer.fromPretrained finds a hub model id's files (the same as fromPretrained's). */
export type TokenizerLoadOptions = Pick<ResolveOptions, "revision" | "cacheDir" | "localFilesOnly">;

/** Builds the tokenizer a checkpoint directory describes, like transformers' AutoTokenizer. */
export class AutoTokenizer {
  /**
   * Reads `tokenizer.json` (required) and `tokenizer_config.json` (optional: without it there are no
   * special-token names and no chat template). Missing or malformed files are a TokenizerError naming the file.
   * `idOrDir` may be a hub model id ("org/name"), resolved like fromPretrained's.
   */
  static async fromPretrained(idOrDir: string, options: TokenizerLoadOptions = {}): Promise<PreTrainedTokenizer> {
    checkOptionKeys("AutoTokenizer.fromPretrained", options, ["revision", "cacheDir", "localFilesOnly"]);
    const { dir } = await resolvePretrained(idOrDir, options);
    const tokFile = path.join(dir, TOKENIZER_NAME);
    const cfgFile = path.join(dir, TOKENIZER_CONFIG_NAME);
    const tokJson = (await readJson(tokFile, true))!;
    const cfgJson = (await readJson(cfgFile, false)) ?? {};
    return build(tokJson, cfgJson, tokFile, dir, await readTokenizerFiles(dir));
  }

  /**
   * The tokenizer from the files' bytes as a folder held them (e.g. a loaded model's `companionFiles.tokenizerFiles`);
   * `source` names them in errors.
   */
  static fromFiles(files: ReadonlyMap<string, Uint8Array>, source: string): PreTrainedTokenizer {
    const parse = (name: string, required: boolean) => {
      const bytes = files.get(name);
      if (!bytes) {
        if (required) throw new TokenizerError(`${source}: no ${name}`);
        return undefined;
      }
      const parsed = parseJsonStrict(new TextDecoder().decode(bytes));
      if (!parsed.ok || typeof parsed.value !== "object" || parsed.value === null || Array.isArray(parsed.value))
        throw new TokenizerError(`${source}: ${name}: ${parsed.ok ? "expected a JSON object" : parsed.problem}`);
      return parsed.value as Record<string, unknown>;
    };
    const tokJson = parse(TOKENIZER_NAME, true)!;
    return build(tokJson, parse(TOKENIZER_CONFIG_NAME, false) ?? {}, `${source}: ${TOKENIZER_NAME}`, source, files);
  }
}

function build(
  tokJson: Record<string, unknown>,
  cfgJson: Record<string, unknown>,
  tokFile: string,
  source: string,
  files: ReadonlyMap<string, Uint8Array>,
): PreTrainedTokenizer {
  if (typeof tokJson.model !== "object" || tokJson.model === null) {
    throw new TokenizerError(`${tokFile}: not a tokenizers file (no "model" section)`);
  }
  let tokenizer: Tokenizer;
  try {
    tokenizer = new Tokenizer(tokJson, cfgJson);
  } catch (err) {
    throw new TokenizerError(`${tokFile}: cannot build the tokenizer: ${(err as Error).message}`, { cause: err });
  }
  return new PreTrainedTokenizer(tokenizer, cfgJson, source, new Map(files));
}
