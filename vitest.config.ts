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
    pool: "forks",
    fileParallelism: true,
    maxWorkers: 2,
  },
});
