#!/usr/bin/env node
// Launcher for the compiled CLI (npm install builds dist/ through the prepare script).
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

const cli = fileURLToPath(new URL("../dist/cli.js", import.meta.url));
if (!existsSync(cli)) {
  process.stderr.write(
    "paynet: dist/cli.js is missing; run `npm install` (or `npm run build`) in the paynet folder first\n",
  );
  process.exit(1);
}
await import(cli);
