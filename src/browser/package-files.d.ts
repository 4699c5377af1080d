// The module the browser build generates (web/build.mjs): the package files the bundle embeds.
declare module "fusekit:package-files" {
  /**
   * Path under the package root → text: package.json, the bundled hub's manifests (its builds as empty files:
   * their code is BUNDLED_BUILDS) and the recipe sources (patches/, conversions/, fusions/).
   */
  export const PACKAGE_FILES: Record<string, string>;
  /** Absolute path of a bundled hub build (as the importer looks it up) → its module. */
  export const BUNDLED_BUILDS: Record<string, Record<string, unknown>>;
}
