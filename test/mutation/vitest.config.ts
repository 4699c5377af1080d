// The vitest config Stryker runs: the project's, minus the global setup (the files mutation testing runs do
// not spawn the built CLI, so building dist/ in Stryker's sandbox would only cost time), and long loops (fuzz
// cases, repeated-forward memory checks) at a tenth (test/helpers/scale.ts), the fuzz with a fixed seed: a test
// runs once per mutant it covers, and should see the same cases each time.
import { defineConfig, mergeConfig } from "vitest/config";
import base from "../../vitest.config.js";

export default mergeConfig(
  { ...base, test: { ...base.test, globalSetup: [] } },
  defineConfig({
    test: {
      fileParallelism: false,
      maxWorkers: 1,
      env: { FUSEKIT_TEST_SCALE: "0.1", FUSEKIT_FUZZ_SEED: "19" },
    },
  }),
);
