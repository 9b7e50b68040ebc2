// Runs every test file with node:test under tsx (Node 20 neither strips types nor expands globs itself).
import { readdirSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { join } from "node:path";

const testDir = fileURLToPath(new URL(".", import.meta.url));
const only = process.argv.slice(2);
const files = readdirSync(testDir)
  .filter((name) => name.endsWith(".test.ts"))
  .filter((name) => only.length === 0 || only.some((wanted) => name.includes(wanted)))
  .sort()
  .map((name) => join(testDir, name));
if (files.length === 0) {
  console.error("no test files found");
  process.exit(1);
}
const reporters = [
  "--test-reporter=spec",
  "--test-reporter-destination=stdout",
  `--test-reporter=${join(testDir, "slowest-files.js")}`,
  "--test-reporter-destination=stdout",
];
// Two test files at a time: most of a process test's time is spent waiting on other processes and fsyncs, so
// two overlap well on 2 cores (958 tests in 405 s instead of 556 s on 2026-12-04). PAYNET_TEST_CONCURRENCY=1
// runs them one after another, to read one file's output undisturbed.
const concurrency = process.env.PAYNET_TEST_CONCURRENCY ?? "2";
const result = spawnSync(
  process.execPath,
  ["--import", "tsx", "--test", `--test-concurrency=${concurrency}`, ...reporters, ...files],
  { stdio: "inherit" },
);
process.exit(result.status ?? 1);
