// The family presets: real-checkpoint shapes (checked by parameter count against the published models),
// each with its real tokenizer, and `fusekit generate --chat` rendering that family's chat template.
import { afterAll, describe, expect, it } from "vitest";
import { spawn } from "node:child_process";
import { readFileSync, rmSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import {
  AutoModelForCausalLM,
  AutoTokenizer,
  PRESETS,
  defaultModelDir,
  makeModel,
  setBackend,
  type PresetName,
} from "fusekit";
import { tmpDir } from "./helpers/models.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const bin = path.join(root, "dist", "src", "cli", "main.js");
const tmp = tmpDir("fusekit-presets-");
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function fusekit(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [bin, ...args], {
      env: { ...process.env, FUSEKIT_BACKEND: "" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

/** Parameters of a Llama / Qwen2 config, counted by hand from transformers' module shapes. */
function parameterCount(c: Record<string, any>): number {
  const d = c.head_dim ?? c.hidden_size / c.num_attention_heads;
  const [h, q, kv] = [c.hidden_size, c.num_attention_heads * d, c.num_key_value_heads * d];
  const qkvBias = c.model_type === "qwen2" ? q + 2 * kv : 0;
  const layer = h * q + 2 * h * kv + q * h + qkvBias + 3 * h * c.intermediate_size + 2 * h;
  return c.vocab_size * h * (c.tie_word_embeddings ? 1 : 2) + c.num_hidden_layers * layer + h;
}

describe("family presets", () => {
  it("have the published models' shapes (parameter counts of Llama-3.2-1B, Qwen2.5-0.5B, SmolLM2-135M)", () => {
    expect(parameterCount(PRESETS["llama-3.2-1b"].config)).toBe(1_235_814_400);
    expect(parameterCount(PRESETS["qwen2.5-0.5b"].config)).toBe(494_032_768);
    // SmolLM2's own 49152-token tokenizer is not on npm: the layers match exactly, the vocabulary is Llama 3's.
    expect(parameterCount({ ...PRESETS["smollm2-135m"].config, vocab_size: 49152 })).toBe(134_515_008);
    expect(PRESETS["llama-3.2-1b"].config.rope_scaling).toMatchObject({
      rope_type: "llama3",
      factor: 32,
      original_max_position_embeddings: 8192,
    });
  });

  const LLAMA3_CHAT =
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n";
  const QWEN_CHAT = "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n";
  const cases: [PresetName, string, string][] = [
    ["llama-tiny", "LlamaForCausalLM", LLAMA3_CHAT],
    ["qwen2-tiny", "Qwen2ForCausalLM", QWEN_CHAT],
    ["qwen3-tiny", "Qwen3ForCausalLM", QWEN_CHAT],
  ];

  it.each(cases)("%s: loads as %s and `generate --chat` renders its template", async (preset, cls, expected) => {
    await setBackend("cpu");
    const dir =
      preset === "qwen3-tiny" ? await defaultModelDir() : await makeModel({ out: path.join(tmp, preset), preset });
    const model = await AutoModelForCausalLM.fromPretrained(dir, { strict: true });
    expect(model.constructor.name).toBe(cls);
    model.dispose();
    const tokenizer = await AutoTokenizer.fromPretrained(dir);
    expect(tokenizer.decode([])).toBe(""); // the streamer flushes an empty tail after a line break
    expect(tokenizer.applyChatTemplate([{ role: "user", content: "Hi" }], { addGenerationPrompt: true })).toBe(
      expected,
    );
    const r = await fusekit([
      "generate",
      "--model",
      dir,
      "--chat",
      "--show-prompt",
      "--prompt",
      "Hi",
      "-n",
      "2",
      "-b",
      "cpu",
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain(`prompt: ${JSON.stringify(expected)}\n`); // once: no second BOS from encode
    const ids = tokenizer.encode(expected, { addSpecialTokens: false });
    expect(r.stderr).toMatch(new RegExp(`^prompt ${ids.length} tokens`, "m"));
    const config = JSON.parse(readFileSync(path.join(dir, "config.json"), "utf8"));
    expect(config.model_type).toBe(cls.replace("ForCausalLM", "").toLowerCase());
  });
});
