// import-file.ts in the browser build: a page cannot import code from a file path, so the bundled hub's
// builds are compiled into the bundle and found here by their path; any other file (an outside kernel
// repository) is refused by name — the browser build runs no code it did not ship.
import { BUNDLED_BUILDS } from "fusekit:package-files";

export async function importModuleFile(file: string): Promise<Record<string, unknown>> {
  const mod = BUNDLED_BUILDS[file];
  if (mod) return mod;
  throw new Error(
    `${file}: the browser build runs only the bundled hub's kernels (importing outside kernel code needs Node)`,
  );
}
