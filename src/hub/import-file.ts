// How the hub imports a build module by file path, in Node: a dynamic import of its file URL. The browser
// build swaps this file for import-file.browser.ts (only the bundled hub's builds, compiled into the bundle).
import { pathToFileURL } from "node:url";

export function importModuleFile(file: string): Promise<Record<string, unknown>> {
  return import(pathToFileURL(file).href) as Promise<Record<string, unknown>>;
}
