// The gateway's payment log keeps memory and its snapshot bounded: finished payments beyond the newest
// `finishedRetainedMax` move to an append-only archive, from which they are still found by id.
import { afterEach, beforeEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import { appendFile, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { GatewayLog, GatewayLogError, readGatewayRecords, type PaymentDetails } from "../src/core/gateway/store/file/gateway-log.js";
import { dataPaths, type DataPaths } from "../src/core/durable/paths.js";

function details(index: number): PaymentDetails {
  return { paymentId: `p${index}`, fromUser: "alice", fromBank: "SBI", toUser: "bob", toBank: "HDFC", amountMinor: BigInt(100 + index) };
}

/** Begins a new payment; resolves once its record is durable. */
async function begin(log: GatewayLog, payment: PaymentDetails): Promise<void> {
  const begun = await log.beginOrGet(payment);
  assert.ok(begun.created, `${payment.paymentId} was new`);
  await begun.durable;
}

/** Begins payment `index` and finishes it, committed when even and aborted when odd. */
async function finishOne(log: GatewayLog, index: number): Promise<void> {
  await begin(log, details(index));
  if (index % 2 === 0) await log.advance({ paymentId: `p${index}`, state: "committed", outcome: { balanceAfterMinor: 900n, finished: true } });
  else await log.advance({ paymentId: `p${index}`, state: "aborted", outcome: { reason: "INSUFFICIENT_FUNDS", reasonMessage: "no", finished: true } });
}

describe("the gateway's payment log", () => {
  let dir: string;
  let paths: DataPaths;
  let clockMs: number;
  const nowMs = () => (clockMs += 1);

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "paynet-gateway-log-"));
    paths = dataPaths(dir);
    clockMs = 1_700_000_000_000;
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("archives finished payments beyond the retained ones at a compaction, and still finds them by id", async () => {
    const log = await GatewayLog.open(paths, { nowMs, finishedRetainedMax: 2 });
    for (let index = 0; index < 5; index += 1) await finishOne(log, index);
    await log.beginOrGet(details(5)); // still unfinished: never archived
    await log.close();

    const reopened = await GatewayLog.open(paths, { nowMs, finishedRetainedMax: 2 });
    assert.deepEqual([...reopened.all()].map((record) => record.paymentId).sort(), ["p3", "p4", "p5"], "the newest two finished, and the unfinished one");
    for (const id of ["p0", "p1", "p2"]) {
      assert.equal(reopened.get(id), undefined);
      assert.ok(reopened.mayBeArchived(id));
    }
    const p1 = await reopened.find("p1");
    assert.equal(p1?.state, "aborted");
    assert.equal(p1?.reason, "INSUFFICIENT_FUNDS");
    assert.equal(p1?.amountMinor, 101n);
    assert.equal((await reopened.find("p2"))?.balanceAfterMinor, 900n);
    assert.equal(await reopened.find("never"), undefined);
    assert.deepEqual(reopened.archivedCounts(), { committed: 2, aborted: 1 });
    assert.equal(reopened.mayBeArchived("never"), false, "an id never archived is ruled out without reading the archive");
    await reopened.close();

    const snapshot = JSON.parse(await readFile(paths.transactionLogsJson, "utf8")) as { payments: unknown[] };
    assert.equal(snapshot.payments.length, 3);
    assert.deepEqual([...(await readGatewayRecords(paths)).keys()].sort(), ["p0", "p1", "p2", "p3", "p4", "p5"]);
  });

  it("cuts a torn final archive line, whose records the snapshot still holds", async () => {
    const log = await GatewayLog.open(paths, { nowMs, finishedRetainedMax: 1 });
    for (let index = 0; index < 3; index += 1) await finishOne(log, index);
    await log.close();
    const intact = await readFile(paths.transactionArchive, "utf8");
    await appendFile(paths.transactionArchive, `{"paymentId":"p9","fromUser":"al`);

    const reopened = await GatewayLog.open(paths, { nowMs, finishedRetainedMax: 1 });
    assert.equal(await readFile(paths.transactionArchive, "utf8"), intact);
    assert.equal((await reopened.find("p0"))?.state, "committed");
    await finishOne(reopened, 3);
    await reopened.close();
    const ids = (await readFile(paths.transactionArchive, "utf8")).trim().split("\n").map((line) => (JSON.parse(line) as { paymentId: string }).paymentId);
    assert.deepEqual(ids, ["p0", "p1", "p2"], "appends continue after the cut");
  });

  it("journals a payment's first line as its whole record and each later change as its progress, and replays both", async () => {
    const log = await GatewayLog.open(paths, { nowMs });
    await begin(log, details(0));
    await log.advance({ paymentId: "p0", state: "prepared" });
    await log.advance({ paymentId: "p0", state: "committed", outcome: { balanceAfterMinor: 900n } });
    await log.advance({ paymentId: "p0", state: "committed", outcome: { finished: true } });
    const before = { ...log.get("p0")! };
    const journal = await readFile(paths.transactionLogsJournal, "utf8");
    const lines = journal.trim().split("\n").map((line) => JSON.parse(line) as Record<string, unknown>);
    assert.equal(lines.length, 4);
    assert.equal(lines[0]!.fromUser, "alice", "the first line is the whole record");
    assert.deepEqual(lines.slice(1).map((line) => [line.progress, line.state, line.finished, "fromUser" in line]), [["p0", "prepared", false, false], ["p0", "committed", false, false], ["p0", "committed", true, false]]);
    assert.equal(lines[3]!.balanceAfterMinor, "900");
    assert.ok(!("reason" in lines[3]!), "null fields are left out");

    // As after a crash before any compaction: no snapshot, the journal alone is replayed.
    await log.close();
    await rm(paths.transactionLogsJson);
    await writeFile(paths.transactionLogsJournal, journal);
    const reopened = await GatewayLog.open(paths, { nowMs });
    assert.deepEqual({ ...reopened.get("p0")! }, before);
    await reopened.close();
  });

  it("answers from the archive a payment whose progress is in a journal its compaction did not empty (a crash)", async () => {
    const first = await GatewayLog.open(paths, { nowMs, finishedRetainedMax: 0 });
    await begin(first, details(0));
    await first.close(); // p0, unfinished, moves to the snapshot
    const second = await GatewayLog.open(paths, { nowMs, finishedRetainedMax: 0 });
    await second.advance({ paymentId: "p0", state: "committed", outcome: { balanceAfterMinor: 900n, finished: true } });
    const journal = await readFile(paths.transactionLogsJournal, "utf8");
    assert.match(journal, /^\{"progress":"p0"/);
    await second.close(); // archives p0 and writes a snapshot without it, then empties the journal
    await writeFile(paths.transactionLogsJournal, journal); // as if it had died before emptying it

    const reopened = await GatewayLog.open(paths, { nowMs, finishedRetainedMax: 0 });
    assert.equal(reopened.get("p0"), undefined);
    assert.equal((await reopened.find("p0"))?.state, "committed");
    assert.deepEqual(reopened.archivedCounts(), { committed: 1, aborted: 0 });
    await reopened.close();
  });

  it("refuses to start on the progress of a payment recorded nowhere", async () => {
    await mkdir(dirname(paths.transactionLogsJournal), { recursive: true });
    await writeFile(paths.transactionLogsJournal, `{"progress":"ghost","state":"committed","finished":true}\n`);
    await assert.rejects(GatewayLog.open(paths, { nowMs }), (error: Error) => error instanceof GatewayLogError && error.message.includes(paths.transactionLogsJournal) && error.message.includes("ghost"));
  });

  it("refuses to start on a damaged archive line, naming the file and the line", async () => {
    const log = await GatewayLog.open(paths, { nowMs, finishedRetainedMax: 0 });
    for (let index = 0; index < 2; index += 1) await finishOne(log, index);
    await log.close();
    const lines = (await readFile(paths.transactionArchive, "utf8")).split("\n");
    lines[0] = lines[0]!.replace('"state":"committed"', '"state":"spent"');
    await writeFile(paths.transactionArchive, lines.join("\n"));
    await assert.rejects(GatewayLog.open(paths, { nowMs }), (error: Error) => error instanceof GatewayLogError && error.message.includes(`${paths.transactionArchive}:1`));
  });
});
