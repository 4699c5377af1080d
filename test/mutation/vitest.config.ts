// The vitest config Stryker runs: the project's, minus the global setup (the files mutation testing runs do
// not spawn the built CLI, so building dist/ in Stryker's sandbox would only cost time), and the loader fuzz at a
// tenth of its cases with a fixed seed: it runs once per mutant it covers, and the same cases each time.
import { defineConfig, mergeConfig } from "vitest/config";
import base from "../../vitest.config.js";

export default mergeConfig(
  { ...base, test: { ...base.test, globalSetup: [] } },
  defineConfig({
    test: {
      fileParallelism: false,
      maxWorkers: 1,
      env: { FUSEKIT_FUZZ_SCALE: "0.1", FUSEKIT_FUZZ_SEED: "19" },
    },
  }),
);
