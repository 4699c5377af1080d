import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import {
  AutoTokenizer,
  ChatTemplateError,
  PreTrainedTokenizer,
  TokenizerError,
  defaultModelDir,
  qwen3TokenizerDir,
} from "fusekit/internals";

let tok: PreTrainedTokenizer;
const tmp = mkdtempSync(path.join(os.tmpdir(), "fusekit-tok-"));

beforeAll(async () => {
  tok = await AutoTokenizer.fromPretrained(await defaultModelDir());
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe("AutoTokenizer on the default model", () => {
  it("encodes and decodes the reference sentence", () => {
    const ids = tok.encode("Hello, how are you?");
    expect(ids).toEqual([9707, 11, 1246, 525, 498, 30]);
    expect(tok.decode(ids)).toBe("Hello, how are you?");
  });

  it("reads special tokens from tokenizer_config.json", () => {
    expect(tok.eosToken).toBe("<|im_end|>");
    expect(tok.eosTokenId).toBe(151645);
    expect(tok.padToken).toBe("<|endoftext|>");
    expect(tok.padTokenId).toBe(151643);
    expect(tok.bosToken).toBeUndefined();
    expect(tok.bosTokenId).toBeUndefined();
  });

  it("matches special tokens inside text and can skip them when decoding", () => {
    const ids = tok.encode("<|im_start|>user\nhi<|im_end|>");
    expect(ids[0]).toBe(tok.tokenToId("<|im_start|>"));
    expect(ids.at(-1)).toBe(151645);
    expect(tok.decode(ids)).toBe("<|im_start|>user\nhi<|im_end|>");
    expect(tok.decode(ids, { skipSpecialTokens: true })).toBe("user\nhi");
  });

  it("left-pads a batch with the pad token", () => {
    const short = tok.encode("Hi");
    const long = tok.encode("Hello, how are you?");
    const batch = tok.encodeBatch(["Hi", "Hello, how are you?"]);
    const padLen = long.length - short.length;
    expect(batch.inputIds[0]).toEqual([...Array(padLen).fill(151643), ...short]);
    expect(batch.inputIds[1]).toEqual(long);
    expect(batch.attentionMask[0]).toEqual([...Array(padLen).fill(0), ...Array(short.length).fill(1)]);
    expect(batch.attentionMask[1]).toEqual(Array(long.length).fill(1));
  });
});

describe("chat template (Qwen3, from tokenizer_config.json)", () => {
  // Expected strings written by hand from the template: a user turn is
  // '<|im_start|>' + role + '\n' + content + '<|im_end|>\n'; the generation prompt is
  // '<|im_start|>assistant\n', followed by an empty think block only when enable_thinking is false.
  const user = [{ role: "user", content: "Give me a short introduction to large language models." }];

  it("one user message with the generation prompt", () => {
    expect(tok.applyChatTemplate(user, { addGenerationPrompt: true })).toBe(
      "<|im_start|>user\nGive me a short introduction to large language models.<|im_end|>\n<|im_start|>assistant\n",
    );
  });

  it("enableThinking: false adds the empty think block; true is the template default", () => {
    expect(tok.applyChatTemplate(user, { addGenerationPrompt: true, enableThinking: false })).toBe(
      "<|im_start|>user\nGive me a short introduction to large language models.<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n",
    );
    expect(tok.applyChatTemplate(user, { addGenerationPrompt: true, enableThinking: true })).toBe(
      tok.applyChatTemplate(user, { addGenerationPrompt: true }),
    );
  });

  it("system message, no generation prompt, and a past assistant turn with reasoning stripped", () => {
    const msgs = [
      { role: "system", content: "You are terse." },
      { role: "user", content: "2+2?" },
      { role: "assistant", content: "<think>\nadd\n</think>\n\n4" },
      { role: "user", content: "3+3?" },
    ];
    // The assistant turn precedes the last user query, so the template drops its reasoning.
    expect(tok.applyChatTemplate(msgs)).toBe(
      "<|im_start|>system\nYou are terse.<|im_end|>\n" +
        "<|im_start|>user\n2+2?<|im_end|>\n" +
        "<|im_start|>assistant\n4<|im_end|>\n" +
        "<|im_start|>user\n3+3?<|im_end|>\n",
    );
  });

  it("the rendered prompt tokenizes with the chat markers as single tokens", () => {
    const ids = tok.encode(
      tok.applyChatTemplate([{ role: "user", content: "Hello, how are you?" }], { addGenerationPrompt: true }),
    );
    const imStart = tok.tokenToId("<|im_start|>")!;
    // <|im_start|> user \n Hello , how are you ? <|im_end|> \n <|im_start|> assistant \n
    expect(ids).toEqual([
      imStart,
      tok.encode("user")[0],
      198,
      9707,
      11,
      1246,
      525,
      498,
      30,
      151645,
      198,
      imStart,
      tok.encode("assistant")[0],
      198,
    ]);
  });

  it("bad messages are a ChatTemplateError", () => {
    expect(() => tok.applyChatTemplate([{ role: "user" } as never])).toThrow(ChatTemplateError);
    expect(() => tok.applyChatTemplate([{ role: "user" } as never])).toThrow(
      /messages must be an array of \{ role: string, content: string \}/,
    );
  });
});

describe("broken tokenizer directories", () => {
  const src = qwen3TokenizerDir();
  const dir = (name: string) => {
    const d = path.join(tmp, name);
    rmSync(d, { recursive: true, force: true });
    mkdirSync(d);
    return d;
  };

  it("a missing tokenizer.json names the file", async () => {
    const d = dir("missing");
    const err = await AutoTokenizer.fromPretrained(d).catch((e) => e);
    expect(err).toBeInstanceOf(TokenizerError);
    expect(err.message).toBe(`${path.join(d, "tokenizer.json")}: file not found`);
  });

  it("truncated JSON names the file", async () => {
    const d = dir("truncated");
    writeFileSync(path.join(d, "tokenizer.json"), '{"model": {"type": "BPE", "vocab": {');
    const err = await AutoTokenizer.fromPretrained(d).catch((e) => e);
    expect(err).toBeInstanceOf(TokenizerError);
    expect(err.message).toMatch(new RegExp(`^${escape(path.join(d, "tokenizer.json"))}: not valid JSON`));
  });

  it("broken tokenizer_config.json names that file", async () => {
    const d = dir("badcfg");
    copyFileSync(path.join(src, "tokenizer.json"), path.join(d, "tokenizer.json"));
    writeFileSync(path.join(d, "tokenizer_config.json"), "[1, 2]");
    await expect(AutoTokenizer.fromPretrained(d)).rejects.toThrow(
      `${path.join(d, "tokenizer_config.json")}: expected a JSON object`,
    );
  });

  it("a JSON file that is not a tokenizer is rejected", async () => {
    const d = dir("notok");
    writeFileSync(path.join(d, "tokenizer.json"), JSON.stringify({ version: "1.0" }));
    await expect(AutoTokenizer.fromPretrained(d)).rejects.toThrow(/not a tokenizers file \(no "model" section\)/);
  });

  it("without tokenizer_config.json it still tokenizes but has no chat template", async () => {
    const d = dir("nocfg");
    copyFileSync(path.join(src, "tokenizer.json"), path.join(d, "tokenizer.json"));
    const t = await AutoTokenizer.fromPretrained(d);
    expect(t.encode("Hello, how are you?")).toEqual([9707, 11, 1246, 525, 498, 30]);
    expect(t.eosToken).toBeUndefined();
    expect(() => t.applyChatTemplate([{ role: "user", content: "x" }])).toThrow(ChatTemplateError);
    expect(() => t.applyChatTemplate([{ role: "user", content: "x" }])).toThrow(
      `${d}: tokenizer_config.json has no chat_template`,
    );
  });
});

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
