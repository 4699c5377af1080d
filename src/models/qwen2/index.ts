import { registerModelFamily } from "../../loading/registry.js";
import { Qwen2Config } from "./config.js";
import { Qwen2ForCausalLM } from "./modeling.js";

export * from "./config.js";
export * from "./modeling.js";

registerModelFamily({
  modelType: "qwen2",
  configFromDict: (raw, where) => Qwen2Config.fromDict(raw, where),
  architectures: { Qwen2ForCausalLM },
  causalLM: Qwen2ForCausalLM,
});
