// Builds fusekit for the browser: one ESM bundle (dist/browser/fusekit.js) from src/browser.ts, beside the
// tfjs-wasm binaries it loads. Node's modules are swapped for their browser twins at three seams:
//   - a source file with a sibling `NAME.browser.ts` is replaced by it (the worker host, the hub's importer,
//     the package root);
//   - `node:*` imports resolve to src/browser/node/ (a read-only file system over mounted checkpoint sources,
//     os / crypto / async_hooks as far as fusekit uses them), `Buffer` and `process` are injected;
//   - `fusekit:package-files` is generated here: the bundled hub's manifests and builds (compiled in), and
//     the recipe sources the comparison counts the lines of.
// Usage: node web/build.mjs [--minify]  (also `npm run build:browser`; --minify breaks patch mappings). Writes dist/browser/meta.json for
// size analysis (npx esbuild --analyze or https://esbuild.github.io/analyze/).
import { existsSync, promises as fsp } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
export const OUT_DIR = path.join(ROOT, "dist", "browser");
const NODE_TWINS = path.join(ROOT, "src", "browser", "node");
const TFJS_WASM = path.join(ROOT, "node_modules", "@tensorflow", "tfjs-backend-wasm", "dist");
export const WASM_FILES = [
  "tfjs-backend-wasm.wasm",
  "tfjs-backend-wasm-simd.wasm",
  "tfjs-backend-wasm-threaded-simd.wasm",
];

/** `node:x` / `node:x/y` → src/browser/node/x(-y).ts; every builtin fusekit imports has one. */
function twinOf(spec) {
  const name = spec.replace(/^node:/, "");
  if (name === "path") return { path: path.join(ROOT, "node_modules", "path-browserify", "index.js") };
  const file = path.join(NODE_TWINS, `${name.replace("/", "-")}.ts`);
  return existsSync(file) ? { path: file } : undefined;
}

/** The recipe folders the comparison counts the lines of (what a user writes per approach). */
const RECIPE_FOLDERS = ["patches", "conversions", "fusions"];

async function packageFilesModule() {
  const hub = path.join(ROOT, "hub");
  const files = {
    "package.json": JSON.stringify({
      name: "fusekit",
      version: JSON.parse(await fsp.readFile(path.join(ROOT, "package.json"), "utf8")).version,
    }),
  };
  const imports = [];
  const builds = [];
  for (const org of await fsp.readdir(hub)) {
    for (const repo of await fsp.readdir(path.join(hub, org))) {
      const dir = path.join(hub, org, repo);
      const manifestText = await fsp.readFile(path.join(dir, "manifest.json"), "utf8");
      files[`hub/${org}/${repo}/manifest.json`] = manifestText;
      for (const file of new Set(Object.values(JSON.parse(manifestText).builds))) {
        const source = path.join(dir, file.replace(/\.js$/, ".ts"));
        const compiled = `dist/hub/${org}/${repo}/${file}`;
        files[compiled] = ""; // exists for the importer's lookup; the code is the import below
        imports.push(`import * as b${builds.length} from ${JSON.stringify(source)};`);
        builds.push(`${JSON.stringify("/fusekit/" + compiled)}: b${builds.length}`);
      }
    }
  }
  for (const folder of RECIPE_FOLDERS)
    for (const name of await fsp.readdir(path.join(ROOT, folder)))
      files[`${folder}/${name}`] = await fsp.readFile(path.join(ROOT, folder, name), "utf8");
  return [
    ...imports,
    `export const PACKAGE_FILES = ${JSON.stringify(files)};`,
    `export const BUNDLED_BUILDS = { ${builds.join(", ")} };`,
  ].join("\n");
}

const twins = {
  name: "fusekit-browser-twins",
  setup(build) {
    build.onResolve({ filter: /^(node:|(util|os|fs|path|crypto)$)/ }, (args) => {
      const twin = twinOf(args.path);
      return twin ?? { errors: [{ text: `no browser twin for ${args.path} (imported by ${args.importer})` }] };
    });
    build.onResolve({ filter: /^fusekit:package-files$/ }, () => ({ path: "package-files", namespace: "fusekit" }));
    build.onLoad({ filter: /.*/, namespace: "fusekit" }, async () => ({
      contents: await packageFilesModule(),
      resolveDir: ROOT,
      loader: "js",
    }));
    // a sibling NAME.browser.ts replaces NAME.ts
    build.onResolve({ filter: /^\.\.?\/.*\.js$/ }, (args) => {
      const twin = path.resolve(args.resolveDir, args.path.replace(/\.js$/, ".browser.ts"));
      if (existsSync(twin) && !args.importer.endsWith(".browser.ts")) return { path: twin };
      return undefined;
    });
  },
};

// Not minified by default: class names are API (patch and kernel mappings name classes), and esbuild's
// keepNames would put a helper into the functions the kernel pool's workers run from their source text.
export async function buildBrowser({ minify = false, write = true } = {}) {
  await fsp.mkdir(OUT_DIR, { recursive: true });
  const result = await esbuild.build({
    entryPoints: [path.join(ROOT, "src", "browser.ts")],
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    outfile: path.join(OUT_DIR, "fusekit.js"),
    inject: [path.join(NODE_TWINS, "globals.ts")],
    plugins: [twins],
    metafile: true,
    minify,
    sourcemap: true,
    write,
    logLevel: "warning",
  });
  for (const f of WASM_FILES) await fsp.copyFile(path.join(TFJS_WASM, f), path.join(OUT_DIR, f));
  await fsp.writeFile(path.join(OUT_DIR, "meta.json"), JSON.stringify(result.metafile));
  return result;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { metafile } = await buildBrowser({ minify: process.argv.includes("--minify") });
  console.log(
    await esbuild.analyzeMetafile(metafile, { verbose: false }).then((t) => t.split("\n").slice(0, 25).join("\n")),
  );
}
