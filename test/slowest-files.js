// A node:test reporter beside the spec one: once every file has run, it prints the slowest test files (their
// top-level tests' time added up), so that the next slowdown of `npm test` is visible, and then the run's
// count as the last line ("tests: N passed, N failed"), which the spec reporter's summary no longer is.
import { relative } from "node:path";

const shown = 8;

export default async function* slowestFiles(source) {
  const msByFile = new Map();
  let passed = 0;
  let failed = 0;
  for await (const event of source) {
    if (event.type !== "test:pass" && event.type !== "test:fail") continue;
    const { data } = event;
    if (data.details?.type !== "suite" && data.skip === undefined && data.todo === undefined) {
      if (event.type === "test:pass") passed += 1;
      else failed += 1;
    }
    if (data.nesting === 0 && data.file !== undefined)
      msByFile.set(data.file, (msByFile.get(data.file) ?? 0) + (data.details?.duration_ms ?? 0));
  }
  const slowest = [...msByFile].sort((a, b) => b[1] - a[1]).slice(0, shown);
  if (slowest.length > 0) yield "\nslowest test files (the time of their tests; files run in parallel):\n";
  for (const [file, ms] of slowest)
    yield `  ${(ms / 1000).toFixed(1).padStart(6)} s  ${relative(process.cwd(), file)}\n`;
  yield `\ntests: ${passed} passed, ${failed} failed\n`;
}
