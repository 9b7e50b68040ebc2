// Where paynet's own files are, found from this module's place in the package. It sits one level below the package
// root wherever it runs: as src/package-paths.ts (tests, under tsx), as dist/package-paths.js (tsc's output) and
// inside dist/paynet.js (the bundle). Every other module asks here: a relative `import.meta.url` path elsewhere
// would point somewhere else once bundled (test/architecture.test.ts holds that line).
import { fileURLToPath } from "node:url";

const packageRootUrl = new URL("..", import.meta.url);

/** The executable every paynet process runs: the bundled CLI that `npm run build` writes (scripts/bundle.mjs). */
export const cliEntryPath = fileURLToPath(new URL("dist/paynet.js", packageRootUrl));

/** The seed's data files, copied into a new data dir. */
export const fixturesDir = fileURLToPath(new URL("fixtures", packageRootUrl));
