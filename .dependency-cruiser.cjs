// Import cycles stay out of the house: no file imports itself back, and no folder below src/ imports a folder
// that imports it back. `npm test` runs this check (npm run check:cycles). Type-only and dynamic imports count
// too (tsPreCompilationDeps: true keeps them in the graph): a circle of types is a circle of concepts, and a
// dynamic import must not be a way around one. Shapes two files share go to a leaf types file.
module.exports = {
  forbidden: [
    {
      name: "no-file-cycles",
      comment: "Files must not import each other in a circle.",
      severity: "error",
      from: {},
      to: { circular: true },
    },
    {
      name: "no-folder-cycles",
      comment: "Folders must not import each other in a circle: each concept sits above what it uses.",
      severity: "error",
      scope: "folder",
      from: { path: "^src/" },
      to: { path: "^src/", circular: true },
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
