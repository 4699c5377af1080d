// The vitest config Stryker runs: the project's, minus the global setup (the files mutation testing runs do
// not spawn the built CLI, so building dist/ in Stryker's sandbox would only cost time).
import { defineConfig, mergeConfig } from "vitest/config";
import base from "../../vitest.config.js";

export default mergeConfig(
  { ...base, test: { ...base.test, globalSetup: [] } },
  defineConfig({ test: { fileParallelism: false, maxWorkers: 1 } }),
);
