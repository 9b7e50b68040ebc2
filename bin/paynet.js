#!/usr/bin/env node
// Launcher for the bundled CLI (npm install builds dist/ through the prepare script).
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

const cli = fileURLToPath(new URL("../dist/paynet.js", import.meta.url));
if (!existsSync(cli)) {
  process.stderr.write(
    "paynet: dist/paynet.js is missing; run `npm install` (or `npm run build`) in the paynet folder first\n",
  );
  process.exit(1);
}
await import(cli);
