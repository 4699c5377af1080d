// Streaming with a TextStreamer, transformers.js style: each piece of text as soon as it is decodable.
// Run: node examples/stream.js [model id or folder]
import { AutoModelForCausalLM, AutoTokenizer, TextStreamer } from "fusekit";

const modelId = process.argv[2] ?? "Qwen/Qwen3-0.6B";
const tokenizer = await AutoTokenizer.fromPretrained(modelId);
const model = await AutoModelForCausalLM.fromPretrained(modelId);

const pieces: string[] = [];
const streamer = new TextStreamer(tokenizer, {
  skip_prompt: true,
  skip_special_tokens: true,
  callback_function: (text) => {
    pieces.push(text);
    process.stdout.write(text);
  },
});
// A text prompt: the model encodes it with its own folder's tokenizer.
await model.generate({ inputs: "Once upon a time", max_new_tokens: 12, do_sample: false, streamer });
process.stdout.write("\n");
console.error(`${pieces.length} pieces streamed`);
model.dispose();
