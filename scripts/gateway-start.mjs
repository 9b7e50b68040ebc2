// Starts a gateway on a data dir and reports how long it took until it logged "listening on" and its memory
// (RSS) then and 2 s later, for docs/benchmarks.md ("The archive"). The data dir needs certificate/ (paynet certs).
//   node scripts/gateway-start.mjs DATA_DIR
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const [dataDir] = process.argv.slice(2);
if (dataDir === undefined) {
  console.error("usage: node scripts/gateway-start.mjs DATA_DIR");
  process.exit(2);
}
const cli = fileURLToPath(new URL("../dist/paynet.js", import.meta.url));
const rssKibibytes = (pid) => Number(/VmRSS:\s+([0-9]+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))[1]);

const startedMs = performance.now();
const child = spawn(process.execPath, [cli, "gateway", "--data-dir", dataDir, "--port", "0"], {
  env: { ...process.env, PAYNET_LOG_FORMAT: "json" },
  stdio: ["ignore", "pipe", "pipe"],
});
let output = "";
const exited = new Promise((resolve) => child.on("exit", (code, signal) => resolve({ code, signal })));
const listening = await new Promise((resolve, reject) => {
  const onData = (chunk) => {
    output += chunk;
    if (output.includes("listening on")) resolve(performance.now() - startedMs);
  };
  child.stdout.on("data", onData);
  child.stderr.on("data", onData);
  exited.then(({ code, signal }) =>
    reject(new Error(`the gateway exited (${code ?? signal}) before listening:\n${output}`)),
  );
});
const rssAtListeningMiB = rssKibibytes(child.pid) / 1024;
await new Promise((resolve) => setTimeout(resolve, 2_000));
const rssAfter2sMiB = rssKibibytes(child.pid) / 1024;
child.kill("SIGTERM");
await exited;
console.log(
  JSON.stringify({
    startToListeningMs: Math.round(listening),
    rssAtListeningMiB: Math.round(rssAtListeningMiB * 10) / 10,
    rssAfter2sMiB: Math.round(rssAfter2sMiB * 10) / 10,
  }),
);
