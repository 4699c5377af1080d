import { registerModelFamily } from "../../loading/registry.js";
import { LlamaConfig } from "./config.js";
import { LlamaForCausalLM } from "./modeling.js";

export * from "./config.js";
export * from "./modeling.js";

registerModelFamily({
  modelType: "llama",
  configFromDict: (raw, where) => LlamaConfig.fromDict(raw, where),
  architectures: { LlamaForCausalLM },
  causalLM: LlamaForCausalLM,
});
