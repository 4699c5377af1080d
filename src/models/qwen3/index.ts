import { registerModelFamily } from "../../loading/registry.js";
import { Qwen3Config } from "./config.js";
import { Qwen3ForCausalLM } from "./modeling.js";

export * from "./config.js";
export * from "./modeling.js";

registerModelFamily({
  modelType: "qwen3",
  configFromDict: (raw, where) => Qwen3Config.fromDict(raw, where),
  architectures: { Qwen3ForCausalLM },
  causalLM: Qwen3ForCausalLM,
});
