// The shapes transformers.js users type, on the embedded tiny model: model.generate({...}) with snake_case or
// camelCase names, generate's `streamer` with transformers.js's TextStreamer, pipeline("text-generation"),
// progress_callback, and the model folder's own tokenizer for text — every unknown key a named ArgumentError.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ArgumentError,
  AutoModelForCausalLM,
  AutoTokenizer,
  TextStreamer,
  defaultModelDir,
  generate,
  pipeline,
  setBackend,
  type PreTrainedModel,
  type PreTrainedTokenizer,
  type ProgressInfo,
  type TextGenerationPipeline,
} from "fusekit";

let dir: string;
let model: PreTrainedModel;
let tok: PreTrainedTokenizer;
let generator: TextGenerationPipeline;
const events: ProgressInfo[] = [];
beforeAll(async () => {
  await setBackend("wasm");
  dir = await defaultModelDir();
  model = await AutoModelForCausalLM.fromPretrained(dir, { progress_callback: (e) => events.push(e) });
  tok = await AutoTokenizer.fromPretrained(dir);
  generator = await pipeline("text-generation", dir);
});
afterAll(async () => {
  model?.dispose();
  await generator?.dispose();
});

const ids = () => [tok.encode("Hello there")];

describe("model.generate({...})", () => {
  it("max_new_tokens is honoured (snake_case or camelCase) and equals generate()", async () => {
    const { sequences } = await generate(model, ids(), { maxNewTokens: 5, doSample: false, eosTokenId: null });
    const snake = await model.generate({ inputs: ids(), max_new_tokens: 5, do_sample: false, eos_token_id: null });
    const camel = await model.generate({ input_ids: ids(), maxNewTokens: 5, doSample: false, eosTokenId: null });
    expect(snake[0].length).toBe(ids()[0].length + 5);
    expect(snake).toEqual(sequences);
    expect(camel).toEqual(sequences);
  });

  it("a text prompt uses the model's own tokenizer; seeded sampling with top_k / top_p / temperature repeats", async () => {
    const a = await model.generate({
      inputs: "Hello there",
      max_new_tokens: 4,
      do_sample: true,
      top_k: 5,
      top_p: 0.9,
      temperature: 0.7,
      seed: 7,
    });
    const b = await generate(model, ids(), {
      maxNewTokens: 4,
      doSample: true,
      topK: 5,
      topP: 0.9,
      temperature: 0.7,
      seed: 7,
      generationConfig: model.companionFiles!.generationConfig,
    });
    expect(a).toEqual(b.sequences);
  });

  it("unknown, doubled or missing arguments are named ArgumentErrors", async () => {
    await expect(model.generate({ inputs: ids(), num_beams: 4 } as never)).rejects.toThrow(
      new ArgumentError(
        'model.generate: unknown option "num_beams" (beam search is not implemented: greedy, or sampling with doSample)',
      ),
    );
    await expect(model.generate({ inputs: ids(), max_new_tokens: 2, maxNewTokens: 3 })).rejects.toThrow(
      'model.generate: "max_new_tokens" and "maxNewTokens" are the same option; give one',
    );
    await expect(model.generate({ max_new_tokens: 2 })).rejects.toThrow(
      "model.generate: give the prompt as exactly one of inputs / input_ids, got none",
    );
  });
});

describe("streamer", () => {
  it("generate feeds a TextStreamer the prompt, then each token; skip_prompt leaves the prompt out", async () => {
    const { newTokens } = await generate(model, ids(), { maxNewTokens: 6, doSample: false, eosTokenId: null });
    const expected = tok.decode(newTokens[0], { skipSpecialTokens: true });
    const all: string[] = [];
    const tokens: number[][] = [];
    await generate(model, ids(), {
      maxNewTokens: 6,
      doSample: false,
      eosTokenId: null,
      streamer: new TextStreamer(tok, {
        callback_function: (t) => all.push(t),
        token_callback_function: (t) => tokens.push(t),
      }),
    });
    expect(all.join("")).toBe("Hello there" + expected);
    expect(tokens).toEqual([ids()[0], ...newTokens[0].map((t) => [t])]);
    const skipped: string[] = [];
    const streamer = new TextStreamer(tok, {
      skip_prompt: true,
      skip_special_tokens: true,
      callback_function: (t) => skipped.push(t),
    });
    await model.generate({ inputs: ids(), max_new_tokens: 6, do_sample: false, eos_token_id: null, streamer });
    expect(skipped.join("")).toBe(expected);
  });

  it("takes transformers.js's bigint rows; a batch of two rows or a non-streamer is an ArgumentError", async () => {
    const out: string[] = [];
    const s = new TextStreamer(tok, { callback_function: (t) => out.push(t) });
    s.put([ids()[0].map(BigInt)]);
    s.end();
    expect(out.join("")).toBe("Hello there");
    expect(() => s.put([[1], [2]])).toThrow(new ArgumentError("TextStreamer only supports batch size 1, got 2 rows"));
    await expect(generate(model, [ids()[0], ids()[0]], { streamer: new TextStreamer(tok, {}) })).rejects.toThrow(
      "generate: a streamer takes one prompt row, got 2",
    );
    await expect(generate(model, ids(), { streamer: {} as never })).rejects.toThrow(
      "generate: streamer must have put() and end(), got a Object",
    );
  });
});

describe('pipeline("text-generation")', () => {
  it("text → [{ generated_text: prompt + continuation }]; return_full_text: false → the continuation", async () => {
    const { newTokens } = await generate(model, [tok.encode("Hi")], { maxNewTokens: 4, doSample: false });
    const continuation = tok.decode(newTokens[0], { skipSpecialTokens: true });
    expect(await generator("Hi", { max_new_tokens: 4, do_sample: false })).toEqual([
      { generated_text: "Hi" + continuation },
    ]);
    expect(await generator("Hi", { max_new_tokens: 4, do_sample: false, return_full_text: false })).toEqual([
      { generated_text: continuation },
    ]);
    const batch = await generator(["Hi", "Hi"], { max_new_tokens: 4, do_sample: false });
    expect(batch).toEqual([[{ generated_text: "Hi" + continuation }], [{ generated_text: "Hi" + continuation }]]);
  });

  it("chat messages → the same messages with the assistant's reply appended", async () => {
    const messages = [{ role: "user", content: "Hi" }];
    const [out] = await generator(messages, { max_new_tokens: 3, do_sample: false });
    const chat = out.generated_text as { role: string; content: string }[];
    expect(chat.slice(0, 1)).toEqual(messages);
    expect(chat).toHaveLength(2);
    expect(chat[1].role).toBe("assistant");
    expect(messages).toHaveLength(1); // the input is not changed
  });

  it("refuses an unknown task, a transformers.js dtype and an unknown call option by name", async () => {
    await expect(pipeline("summarization" as never, dir)).rejects.toThrow(
      'pipeline: unsupported task a string ("summarization") (fusekit has "text-generation")',
    );
    await expect(pipeline("text-generation", dir, { dtype: "q4" } as never)).rejects.toThrow(
      /^pipeline: unknown option "dtype" \(fusekit calls it "weightStorage"/,
    );
    await expect(generator("Hi", { max_tokens: 3 } as never)).rejects.toThrow(
      /^text-generation pipeline: unknown option "max_tokens" \(known options: /,
    );
  });
});

describe("progress_callback", () => {
  it("a folder load reports initiate → progress… → done for the weights, then ready", () => {
    const statuses = events.map((e) => e.status);
    expect(statuses[0]).toBe("initiate");
    expect(statuses.at(-2)).toBe("done");
    expect(events.at(-1)).toEqual({ status: "ready", name: dir, task: "text-generation", model: dir });
    const last = events.filter((e) => e.status === "progress").at(-1)!;
    expect(last).toMatchObject({ file: "model.safetensors", progress: 100 });
    expect(last.loaded).toBe(last.total);
  });
});

describe("AutoTokenizer.fromFiles", () => {
  it("builds the same tokenizer from a loaded model's companion files", () => {
    const fromFiles = AutoTokenizer.fromFiles(model.companionFiles!.tokenizerFiles, dir);
    expect(fromFiles.encode("Hello there")).toEqual(tok.encode("Hello there"));
    expect(fromFiles.chatTemplate).toBe(tok.chatTemplate);
  });
});
