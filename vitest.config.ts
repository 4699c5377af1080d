import { defineConfig } from "vitest/config";
import { fileURLToPath } from "node:url";

const root = (p: string) => fileURLToPath(new URL(p, import.meta.url));

export default defineConfig({
  resolve: {
    // `import … from "fusekit"` (and its recipe subpaths) resolve to the sources, so tests need no build.
    alias: [
      { find: /^fusekit$/, replacement: root("./src/index.ts") },
      { find: /^fusekit\/internals$/, replacement: root("./src/internals.ts") },
      { find: /^fusekit\/(patches|conversions|fusions)\/(.*)$/, replacement: root("./$1/$2.ts") },
    ],
  },
  test: {
    include: ["test/**/*.test.ts"],
    // Builds dist/ when stale: the CLI tests spawn the built `fusekit` binary.
    globalSetup: ["test/global-setup.ts"],
    testTimeout: 600_000,
    hookTimeout: 300_000,
    // No test may reach a hub: ids resolve in temporary caches only (test/hf-download.test.ts turns downloads
    // back on against its own server on 127.0.0.1).
    env: { HF_HUB_OFFLINE: "1", HF_ENDPOINT: "http://127.0.0.1:1" },
    pool: "forks",
    fileParallelism: true,
    maxWorkers: 2,
  },
});
