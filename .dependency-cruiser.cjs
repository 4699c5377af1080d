// Import cycles stay out of the house: no file imports itself back, and no folder below src/ imports a folder
// that imports it back. `npm test` runs this check (npm run check:cycles). Type-only imports are erased before
// the check (tsPreCompilationDeps: true): they cannot make a run-time cycle.
module.exports = {
  forbidden: [
    {
      name: "no-file-cycles",
      comment: "Files must not import each other in a circle.",
      severity: "error",
      from: {},
      to: { circular: true, viaOnly: { dependencyTypesNot: ["type-only"] } },
    },
    {
      name: "no-folder-cycles",
      comment: "Folders must not import each other in a circle: each concept sits above what it uses.",
      severity: "error",
      scope: "folder",
      from: { path: "^src/" },
      to: { path: "^src/", circular: true, viaOnly: { dependencyTypesNot: ["type-only"] } },
    },
  ],
  options: {
    doNotFollow: { path: "node_modules" },
    exclude: { path: "(^|/)(dist|node_modules|scratch)/" },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: "tsconfig.json" },
    enhancedResolveOptions: { extensions: [".ts", ".mts", ".js", ".mjs"] },
  },
};
