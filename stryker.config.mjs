// Mutation testing (`npm run test:mutation [target…]`, see docs/testing.md). Not part of `npm test`.
// test/mutation/run.mjs runs Stryker once per target of test/mutation/targets.mjs, passing the target
// through FUSEKIT_MUTATION_TARGET; run directly (`npx stryker run`) it covers every target at once.
import { TARGETS } from "./test/mutation/targets.mjs";

const name = process.env.FUSEKIT_MUTATION_TARGET;
const picked = name ? [TARGETS[name]] : Object.values(TARGETS);
if (picked.includes(undefined))
  throw new Error(`unknown mutation target "${name}" (known: ${Object.keys(TARGETS).join(", ")})`);

/** @type {import("@stryker-mutator/api/core").PartialStrykerOptions} */
export default {
  testRunner: "vitest",
  vitest: { configFile: "test/mutation/vitest.config.ts", related: false },
  mutate: picked.flatMap((t) => t.mutate),
  testFiles: [...new Set(picked.flatMap((t) => t.testFiles))],
  coverageAnalysis: "perTest",
  // 2 cores shared by several people: one test-runner process, mutants one after another.
  concurrency: 1,
  // Results of unchanged mutants (and unchanged tests) are reused: a re-run only tests what changed.
  incremental: true,
  incrementalFile: `reports/mutation/${name ?? "all"}.incremental.json`,
  // Module-level constants (static mutants) would need the whole suite re-run per mutant.
  ignoreStatic: true,
  // A mutant that hangs (a loop that never ends) is killed after its tests' usual time × 1.5 + 10 s.
  timeoutMS: 10_000,
  reporters: ["clear-text", "progress", "html", "json"],
  htmlReporter: { fileName: `reports/mutation/${name ?? "all"}.html` },
  jsonReporter: { fileName: `reports/mutation/${name ?? "all"}.json` },
  tempDirName: ".stryker-tmp",
  cleanTempDir: true,
};
