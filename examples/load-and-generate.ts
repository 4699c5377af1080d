// The first script a transformers.js user writes: load a model and its tokenizer by hub id, chat, print the reply.
// Run: node examples/load-and-generate.js [model id or folder]   (after `hf download Qwen/Qwen3-0.6B`)
import { AutoModelForCausalLM, AutoTokenizer } from "fusekit";

const modelId = process.argv[2] ?? "Qwen/Qwen3-0.6B";
const tokenizer = await AutoTokenizer.fromPretrained(modelId);
const model = await AutoModelForCausalLM.fromPretrained(modelId, {
  progress_callback: (p) => {
    if (p.status === "ready") console.error(`loaded ${p.model}`);
  },
});

const prompt = tokenizer.applyChatTemplate([{ role: "user", content: "Name a colour." }], {
  addGenerationPrompt: true,
  enableThinking: false,
});
const inputIds = tokenizer.encode(prompt, { addSpecialTokens: false }); // the template holds its special tokens
const [sequence] = await model.generate({ inputs: [inputIds], max_new_tokens: 8, do_sample: false });
console.log(tokenizer.decode(sequence.slice(inputIds.length), { skipSpecialTokens: true }));
model.dispose();
