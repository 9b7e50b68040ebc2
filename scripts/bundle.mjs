// Bundles the CLI into one file, dist/paynet.js, after tsc has compiled src/ to dist/. Node 20 has no compile cache,
// and resolving and loading ~630 modules cost each process start about 0.2 s of CPU (half of `paynet --help`);
// the test suite and `paynet up` start hundreds of processes, so every start counts.
//
// Kept outside the bundle: native add-ons (their .node files are found next to their package) and pg-native
// (an optional peer of pg that paynet never installs). A package that finds its own files through
// `import.meta.url`, `__dirname` or `__filename` (yargs' locales, for one) gets them pointed at its installed
// file, relative to the bundle, so the folder can still move as a whole.
import { build } from "esbuild";
import { readFile } from "node:fs/promises";
import { dirname, relative } from "node:path";
import { fileURLToPath } from "node:url";

const packageRoot = fileURLToPath(new URL("..", import.meta.url));
const outfile = `${packageRoot}dist/paynet.js`;
const outDir = dirname(outfile);

/**
 * A URL expression for `path`, evaluated in the bundle at run time. It names the bundle's URL through a banner
 * constant: `import.meta` itself in a CommonJS module would make esbuild treat that module as an ES module.
 */
const urlOf = (path) => `new URL(${JSON.stringify(relative(outDir, path).split("\\").join("/"))}, __paynetBundleUrl)`;

const ownPathsOfPackages = {
  name: "own-paths-of-packages",
  setup(builder) {
    builder.onLoad({ filter: /[\\/]node_modules[\\/].*\.(c|m)?js$/ }, async (args) => {
      const text = await readFile(args.path, "utf8");
      if (!/import\.meta\.url|__dirname|__filename/.test(text)) return undefined;
      let contents = text.replaceAll("import.meta.url", `${urlOf(args.path)}.href`);
      // CommonJS modules read the free variables; an ES module that declares its own keeps them.
      const declares = (name) => new RegExp(`(?:const|let|var)\\s+${name}\\b`).test(text);
      const prelude = [];
      if (text.includes("__dirname") && !declares("__dirname"))
        prelude.push(`var __dirname = __paynetFileURLToPath(${urlOf(dirname(args.path))});`);
      if (text.includes("__filename") && !declares("__filename"))
        prelude.push(`var __filename = __paynetFileURLToPath(${urlOf(args.path)});`);
      contents = prelude.join("") + contents;
      return { contents, loader: "js", resolveDir: dirname(args.path) };
    });
  },
};

await build({
  entryPoints: [`${packageRoot}dist/cli.js`],
  outfile,
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  external: ["better-sqlite3", "fs-native-extensions", "pg-native"],
  // Bundled CommonJS code calls require() for Node's own modules; an ES module has none, so it gets one.
  banner: {
    js: [
      'import { createRequire as __paynetCreateRequire } from "node:module";',
      'import { fileURLToPath as __paynetFileURLToPath } from "node:url";',
      "const __paynetBundleUrl = import.meta.url;",
      "const require = __paynetCreateRequire(__paynetBundleUrl);",
    ].join(" "),
  },
  sourcemap: true,
  plugins: [ownPathsOfPackages],
  logLevel: "warning",
});
