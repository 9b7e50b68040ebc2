// Times GatewayLog.find on archived ids and on ids never archived, for docs/benchmarks.md ("The archive"). Run
// after `npm run build`, on a data dir filled by fill-archive.mjs (ids fill-0 … fill-<N-1>), with no gateway on it:
//   node scripts/archive-lookups.mjs DATA_DIR [LOOKUPS]
// Prints one JSON object: the time to open the log, and p50/p99/max of each kind of lookup in microseconds.
import { GatewayLog } from "../dist/core/gateway/store/file/gateway-log.js";
import { dataPaths } from "../dist/core/durable/paths.js";

const [dataDir, lookupsText = "10000"] = process.argv.slice(2);
const lookups = Number(lookupsText);
if (dataDir === undefined || !Number.isSafeInteger(lookups) || lookups < 1) {
  console.error("usage: node scripts/archive-lookups.mjs DATA_DIR [LOOKUPS]");
  process.exit(2);
}

/** A seeded PRNG (mulberry32), so that both builds look up the same ids. */
function prng(seed) {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function percentiles(samplesUs) {
  const sorted = [...samplesUs].sort((a, b) => a - b);
  const at = (fraction) => sorted[Math.min(sorted.length - 1, Math.floor(fraction * sorted.length))];
  return {
    p50Us: Math.round(at(0.5) * 10) / 10,
    p99Us: Math.round(at(0.99) * 10) / 10,
    maxUs: Math.round(sorted.at(-1) * 10) / 10,
  };
}

async function timeFinds(log, ids, expectFound) {
  const samplesUs = [];
  for (const id of ids) {
    const startedMs = performance.now();
    const record = await log.find(id);
    samplesUs.push((performance.now() - startedMs) * 1000);
    if ((record !== undefined) !== expectFound)
      throw new Error(`find(${id}) ${expectFound ? "found nothing" : "found a record"}`);
  }
  return percentiles(samplesUs);
}

const openStartedMs = performance.now();
const log = await GatewayLog.open(dataPaths(dataDir), { finishedRetainedMax: 0 });
const openMs = Math.round(performance.now() - openStartedMs);
const { committed, aborted } = log.archivedCounts();
const archived = committed + aborted;
const random = prng(42);
const archivedIds = Array.from({ length: lookups }, () => `fill-${Math.floor(random() * archived)}`);
const neverIds = Array.from({ length: lookups }, (_, index) => `never-${index}-${Math.floor(random() * 1e9)}`);
const result = {
  archived,
  lookups,
  openMs,
  archivedFind: await timeFinds(log, archivedIds, true),
  neverArchivedFind: await timeFinds(log, neverIds, false),
};
await log.close();
console.log(JSON.stringify(result));
