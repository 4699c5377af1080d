// `npm run test:mutation [target…]`: Stryker once per target (default: all of test/mutation/targets.mjs),
// one after another, each with its own incremental file under reports/mutation/. Arguments from the first one
// starting with "-" go to Stryker, e.g. `npm run test:mutation -- kernelize --mutate src/hub/fused.ts`.
import { spawnSync } from "node:child_process";
import { TARGETS } from "./targets.mjs";

const args = process.argv.slice(2);
const firstOption = args.findIndex((a) => a.startsWith("-"));
const given = firstOption < 0 ? args : args.slice(0, firstOption);
const strykerArgs = firstOption < 0 ? [] : args.slice(firstOption);
const names = given.length ? given : Object.keys(TARGETS);
const unknown = names.filter((n) => !(n in TARGETS));
if (unknown.length) {
  console.error(`unknown mutation target(s) ${unknown.join(", ")}; known: ${Object.keys(TARGETS).join(", ")}`);
  process.exit(2);
}
for (const name of names) {
  console.log(`\n=== mutation testing: ${name} (${TARGETS[name].mutate.join(", ")}) ===`);
  const run = spawnSync("npx", ["stryker", "run", "stryker.config.mjs", ...strykerArgs], {
    stdio: "inherit",
    env: { ...process.env, FUSEKIT_MUTATION_TARGET: name },
  });
  if (run.status !== 0) process.exit(run.status ?? 1);
}
