// The pipeline one-liner, transformers.js style: text in, `[{ generated_text }]` out; chat messages in, the
// messages with the assistant's reply appended out.
// Run: node examples/pipeline.js [model id or folder]
import { pipeline } from "fusekit";

const modelId = process.argv[2] ?? "Qwen/Qwen3-0.6B";
const generator = await pipeline("text-generation", modelId);

const [completion] = await generator("The capital of France is", { max_new_tokens: 8, do_sample: false });
console.log(completion.generated_text);

const messages = [
  { role: "system", content: "You are a helpful assistant." },
  { role: "user", content: "Tell me a joke." },
];
const [chat] = await generator(messages, { max_new_tokens: 8, do_sample: false });
const reply = (chat.generated_text as typeof messages).at(-1)!;
console.log(`${reply.role}: ${reply.content}`);
await generator.dispose();
