// `npm run test:mutation [target…]`: Stryker once per target (default: all of test/mutation/targets.mjs),
// one after another, each with its own incremental file under reports/mutation/.
import { spawnSync } from "node:child_process";
import { TARGETS } from "./targets.mjs";

const names = process.argv.slice(2).length ? process.argv.slice(2) : Object.keys(TARGETS);
const unknown = names.filter((n) => !(n in TARGETS));
if (unknown.length) {
  console.error(`unknown mutation target(s) ${unknown.join(", ")}; known: ${Object.keys(TARGETS).join(", ")}`);
  process.exit(2);
}
for (const name of names) {
  console.log(`\n=== mutation testing: ${name} (${TARGETS[name].mutate.join(", ")}) ===`);
  const run = spawnSync("npx", ["stryker", "run", "stryker.config.mjs"], {
    stdio: "inherit",
    env: { ...process.env, FUSEKIT_MUTATION_TARGET: name },
  });
  if (run.status !== 0) process.exit(run.status ?? 1);
}
