// Lint: typescript-eslint's recommended rules over the TypeScript sources, tests and recipes.
// Formatting is prettier's job (npm run format:check), so no style rules here.
import js from "@eslint/js";
import tseslint from "typescript-eslint";
import globals from "globals";

export default tseslint.config(
  { ignores: ["dist/", "node_modules/", "scratch/", "bench/results.json", "**/*.wasm.ts", "src/backend/*-wasm.ts"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { ...globals.node } },
    rules: {
      // Module code is typed loosely at a few deliberate boundaries (forward(...args), tfjs backends).
      "@typescript-eslint/no-explicit-any": "off",
      // Tree walks start their cursor at `this` (`let mod: Module = this`); that is not the aliasing the rule targets.
      "@typescript-eslint/no-this-alias": "off",
      // `declare global { namespace WebAssembly … }` types the runtime's global (tsconfig has no DOM lib).
      "@typescript-eslint/no-namespace": ["error", { allowDeclarations: true }],
      "@typescript-eslint/no-unused-vars": [
        "error",
        { argsIgnorePattern: "^_", varsIgnorePattern: "^_", caughtErrors: "none" },
      ],
    },
  },
  { files: ["**/*.cjs"], languageOptions: { sourceType: "commonjs" } },
  {
    // Machinery reads in named steps: no function in src/ over 60 lines of code.
    files: ["src/**/*.ts"],
    rules: { "max-lines-per-function": ["error", { max: 60, skipBlankLines: true, skipComments: true }] },
  },
);
