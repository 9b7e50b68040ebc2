// Fills a data dir's gateway archive with COUNT finished payments, for measuring the archive
// (docs/benchmarks.md ("The archive")). Run after `npm run build`:
//   node scripts/fill-archive.mjs DATA_DIR COUNT
// The ids are fill-0 … fill-<COUNT-1>; running it again on the same dir adds fill-<n> from the archived count on.
// Copy a network's certificate/ into DATA_DIR to start a gateway on it afterwards.
import { GatewayLog } from "../dist/core/gateway/store/file/gateway-log.js";
import { dataPaths } from "../dist/core/durable/paths.js";

const [dataDir, countText] = process.argv.slice(2);
const count = Number(countText);
if (dataDir === undefined || !Number.isSafeInteger(count) || count < 1) {
  console.error("usage: node scripts/fill-archive.mjs DATA_DIR COUNT");
  process.exit(2);
}
const batch = 10_000;
const startedMs = performance.now();
const log = await GatewayLog.open(dataPaths(dataDir), { finishedRetainedMax: 0 });
const archivedBefore = log.archivedCounts();
const first = archivedBefore.committed + archivedBefore.aborted;
for (let from = first; from < first + count; from += batch) {
  const to = Math.min(first + count, from + batch);
  const payments = [];
  for (let index = from; index < to; index += 1) {
    payments.push({
      paymentId: `fill-${index}`,
      fromUser: `user${index % 1000}`,
      fromBank: "BANKA",
      toUser: `user${(index * 7) % 1000}`,
      toBank: "BANKB",
      amountMinor: BigInt(1 + (index % 5000)),
    });
  }
  await Promise.all((await log.beginOrGetAll(payments)).map((begun) => (begun.created ? begun.durable : undefined)));
  const changes = [];
  for (let index = from; index < to; index += 1)
    changes.push({
      paymentId: `fill-${index}`,
      state: "committed",
      outcome: { balanceAfterMinor: 1000n, finished: true },
    });
  await log.advanceAll(changes);
  if ((to - first) % 1_000_000 === 0)
    console.error(`${to - first} filled in ${Math.round(performance.now() - startedMs)} ms`);
}
await log.close(); // its compaction archives the last batch
const reopened = await GatewayLog.open(dataPaths(dataDir), { finishedRetainedMax: 0 });
console.log(
  JSON.stringify({
    archived: reopened.archivedCounts(),
    imported: log.legacyArchiveImport,
    elapsedMs: Math.round(performance.now() - startedMs),
  }),
);
await reopened.close();
