// The module the browser build generates (web/build.mjs): the package files the bundle embeds.
declare module "fusekit:bundled-hub" {
  /** Path under the package root → text (package.json, the bundled hub's manifests; builds as empty files). */
  export const PACKAGE_FILES: Record<string, string>;
  /** Absolute path of a bundled hub build (as the importer looks it up) → its module. */
  export const BUNDLED_BUILDS: Record<string, Record<string, unknown>>;
}
