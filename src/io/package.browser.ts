// package.ts in the browser build: fusekit's root is a folder of the browser's read-only file system holding
// what the bundle embeds of the package (package.json, the bundled hub, the recipe sources).
import path from "node:path";
import { mountFiles, memoryFile } from "../browser/node/fs.js";
import { PACKAGE_FILES } from "fusekit:package-files";

export const FUSEKIT_ROOT = "/fusekit";
const encoder = new TextEncoder();
mountFiles(
  FUSEKIT_ROOT,
  Object.entries(PACKAGE_FILES).map(([name, text]) => [name, memoryFile(encoder.encode(text))] as const),
);

export function fusekitVersion(): string {
  return (JSON.parse(PACKAGE_FILES["package.json"]) as { version: string }).version;
}

/** No npm packages on a page: tokenizers come from the checkpoint folder. */
export function installedPackageRoot(name: string): string {
  return path.join("/packages", name);
}
