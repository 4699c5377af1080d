// `fusekit kernels list` and `fusekit kernels lock`: what the local kernel hub holds, and pinning it.
import path from "node:path";
import Table from "cli-table3";
import type { Command } from "commander";
import { bundledHubDir, discoverRepos } from "../hub/repos.js";
import { LOCKFILE_NAME, lockfileTarget, writeLockfile } from "../hub/lock.js";
import { preflightWrite } from "../io/atomic.js";
import { addForceOption, nonEmptyText } from "./common.js";
import { KernelRepositoryError } from "../errors.js";
import { plural } from "../compare/sections.js";

export function registerKernelsCommand(program: Command): Command {
  const kernels = program
    .command("kernels")
    .description("the local kernel hub (bundled hub/ plus $FUSEKIT_KERNELS_PATH)");

  kernels
    .command("list")
    .description("list kernel repositories: id, version, layers and functions(), backends, location")
    .option("--json", "print JSON instead of a table")
    .action(async (opts: { json?: boolean }) => {
      const repos = await discoverRepos();
      const rows = repos.map((r) => ({
        repoId: r.manifest.id,
        version: r.manifest.version,
        layers: [...r.manifest.layers, ...r.manifest.functions.map((f) => `${f}()`)],
        backends: Object.keys(r.manifest.builds),
        location: r.bundled ? "bundled" : r.dir,
      }));
      if (opts.json) {
        console.log(JSON.stringify(rows, null, 2));
        return;
      }
      const table = new Table({
        head: ["repo", "version", "layers", "backends", "location"],
        style: { head: [], border: [], compact: true },
      });
      for (const r of rows)
        table.push([r.repoId, String(r.version), r.layers.join(", "), r.backends.join(", "), r.location]);
      console.log(table.toString());
      console.log(`bundled hub: ${bundledHubDir()}`);
    });

  const lock = kernels
    .command("lock")
    .description(`write ${LOCKFILE_NAME}: version and sha256 of every file of each repository (default: all)`)
    .argument("[repos...]", "repository ids to lock (org/name)")
    .option("-o, --out <file>", "lockfile to write (its folder must exist)", nonEmptyText, LOCKFILE_NAME);
  addForceOption(lock, "a kernels.lock").action(async (ids: string[], opts: { out: string; force?: boolean }) => {
    const all = await discoverRepos();
    const picked = ids.length ? all.filter((r) => ids.includes(r.manifest.id)) : all;
    const unknown = ids.filter((id) => !all.some((r) => r.manifest.id === id));
    if (unknown.length) {
      throw new KernelRepositoryError(
        `kernels lock: not in the hub: ${unknown.join(", ")} (available: ${[...new Set(all.map((r) => r.manifest.id))].join(", ")})`,
      );
    }
    const out = path.resolve(opts.out);
    await preflightWrite(out, lockfileTarget(Boolean(opts.force))); // before hashing every file of the hub
    const lock = await writeLockfile(out, picked, { overwrite: Boolean(opts.force) });
    const files = lock.kernels.reduce((n, k) => n + Object.keys(k.files).length, 0);
    console.log(
      `locked ${plural(lock.kernels.length, "kernel repository", "kernel repositories")} (${plural(files, "file")}) in ${out}`,
    );
  });

  return kernels;
}
