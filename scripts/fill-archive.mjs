// Fills a data dir's gateway archive with COUNT finished payments, for measuring the archive's index
// (docs/benchmarks.md, "The archive's index"). Run after `npm run build`:
//   node scripts/fill-archive.mjs DATA_DIR COUNT
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
const log = await GatewayLog.open(dataPaths(dataDir), { finishedRetainedMax: 0 });
for (let from = 0; from < count; from += batch) {
  const to = Math.min(count, from + batch);
  const payments = [];
  for (let index = from; index < to; index += 1) {
    payments.push({ paymentId: `fill-${index}`, fromUser: `user${index % 1000}`, fromBank: "BANKA", toUser: `user${(index * 7) % 1000}`, toBank: "BANKB", amountMinor: BigInt(1 + (index % 5000)) });
  }
  await Promise.all((await log.beginOrGetAll(payments)).map((begun) => (begun.created ? begun.durable : undefined)));
  const changes = [];
  for (let index = from; index < to; index += 1) changes.push({ paymentId: `fill-${index}`, state: "committed", outcome: { balanceAfterMinor: 1000n, finished: true } });
  await log.advanceAll(changes);
}
await log.close();
console.log(JSON.stringify({ archived: log.archivedCounts(), index: log.archiveIndexStats() }));
