// The gateway's payment log keeps memory and its snapshot bounded: finished payments beyond the newest
// `finishedRetainedMax` move to the archive (transaction_archive.sqlite), from which they are still found by
// id, however old; an earlier build's archive (transaction_archive.jsonl and its index) is imported at start.
import { afterEach, beforeEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import { access, copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import {
  GatewayLog,
  GatewayLogError,
  readGatewayRecords,
  type PaymentDetails,
  type PaymentRecord,
} from "../src/core/gateway/store/file/gateway-log.js";
import { SqliteArchive } from "../src/core/gateway/store/file/sqlite-archive.js";
import { dataPaths, type DataPaths } from "../src/core/durable/paths.js";
import { reasonMessageCharsMax, type PaymentLeg } from "../src/core/domain/payment.js";

function details(index: number): PaymentDetails {
  return {
    paymentId: `p${index}`,
    fromUser: "alice",
    fromBank: "SBI",
    toUser: "bob",
    toBank: "HDFC",
    amountMinor: BigInt(100 + index),
  };
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
  if (index % 2 === 0)
    await log.advance({
      paymentId: `p${index}`,
      state: "committed",
      outcome: { balanceAfterMinor: 900n, finished: true },
    });
  else
    await log.advance({
      paymentId: `p${index}`,
      state: "aborted",
      outcome: { reason: "INSUFFICIENT_FUNDS", reasonMessage: "no", finished: true },
    });
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
    assert.deepEqual(
      [...reopened.all()].map((record) => record.paymentId).sort(),
      ["p3", "p4", "p5"],
      "the newest two finished, and the unfinished one",
    );
    for (const id of ["p0", "p1", "p2"]) assert.equal(reopened.get(id), undefined, `${id} is no longer held in memory`);
    const p1 = await reopened.find("p1");
    assert.equal(p1?.state, "aborted");
    assert.equal(p1?.reason, "INSUFFICIENT_FUNDS");
    assert.equal(p1?.amountMinor, 101n);
    assert.equal((await reopened.find("p2"))?.balanceAfterMinor, 900n);
    assert.equal(await reopened.find("never"), undefined);
    assert.deepEqual(reopened.archivedCounts(), { committed: 2, aborted: 1 });
    assert.deepEqual(await reopened.counts(), { preparing: 1, committing: 0, aborting: 0, committed: 3, aborted: 2 });
    await reopened.close();

    const snapshot = JSON.parse(await readFile(paths.transactionLogsJson, "utf8")) as { payments: unknown[] };
    assert.equal(snapshot.payments.length, 3);
    assert.deepEqual([...(await readGatewayRecords(paths)).keys()].sort(), ["p0", "p1", "p2", "p3", "p4", "p5"]);
  });

  it("journals a payment's first line as its whole record and each later change as its progress, and replays both", async () => {
    const log = await GatewayLog.open(paths, { nowMs });
    await begin(log, details(0));
    await log.advance({ paymentId: "p0", state: "prepared" });
    await log.advance({ paymentId: "p0", state: "committed", outcome: { balanceAfterMinor: 900n } });
    await log.advance({ paymentId: "p0", state: "committed", outcome: { finished: true } });
    const before = { ...log.get("p0")! };
    const journal = await readFile(paths.transactionLogsJournal, "utf8");
    const lines = journal
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    assert.equal(lines.length, 4);
    assert.equal(lines[0]!.fromUser, "alice", "the first line is the whole record");
    assert.deepEqual(
      lines.slice(1).map((line) => [line.progress, line.state, line.finished, "fromUser" in line]),
      [
        ["p0", "prepared", false, false],
        ["p0", "committed", false, false],
        ["p0", "committed", true, false],
      ],
    );
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

  it("carries the legs in the progress lines it already writes, and keeps them in the snapshot and the archive", async () => {
    const votes: PaymentLeg[] = [
      { role: "payer", vote: "yes", votedAtMs: 1_700_000_000_100, ackedAtMs: null },
      { role: "payee", vote: "yes", votedAtMs: 1_700_000_000_101, ackedAtMs: null },
    ];
    const acked = votes.map((leg, index) => ({ ...leg, ackedAtMs: 1_700_000_000_200 + index }));
    const log = await GatewayLog.open(paths, { nowMs, finishedRetainedMax: 0 });
    await begin(log, details(0));
    await log.advance({ paymentId: "p0", state: "committed", outcome: { legs: votes } });
    await log.advance({ paymentId: "p0", state: "committed", outcome: { finished: true, legs: acked } });
    const lines = (await readFile(paths.transactionLogsJournal, "utf8"))
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    assert.equal(lines.length, 3, "no line of their own: the decision's and finished's lines carry them");
    assert.deepEqual(
      lines.map((line) => line.legs),
      [[], votes, acked],
    );
    const journaled = log.get("p0");
    await log.close(); // compacts: archived (finishedRetainedMax 0), out of the snapshot
    const reopened = await GatewayLog.open(paths, { nowMs, finishedRetainedMax: 0 });
    assert.equal(reopened.get("p0"), undefined, "archived");
    assert.deepEqual(await reopened.find("p0"), journaled);
    assert.deepEqual((await reopened.find("p0"))?.legs, acked);
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
    await assert.rejects(
      GatewayLog.open(paths, { nowMs }),
      (error: Error) =>
        error instanceof GatewayLogError &&
        error.message.includes(paths.transactionLogsJournal) &&
        error.message.includes("ghost"),
    );
  });

  it("answers every repeat of an archived id as first recorded, across reopens, and an id never archived as unknown", async () => {
    const log = await GatewayLog.open(paths, { nowMs, finishedRetainedMax: 0 });
    for (let index = 0; index < 4; index += 1) await finishOne(log, index);
    const recorded = new Map(["p0", "p1", "p2", "p3"].map((id) => [id, log.get(id)!]));
    await log.close();
    for (let life = 0; life < 2; life += 1) {
      const reopened = await GatewayLog.open(paths, { nowMs, finishedRetainedMax: 0 });
      for (const id of recorded.keys())
        assert.equal(reopened.get(id), undefined, `${id} is archived, not held in memory`);
      for (const [id, record] of recorded) {
        assert.deepEqual(await reopened.find(id), record, `find(${id})`);
        const begun = await reopened.beginOrGet({ ...details(Number(id.slice(1))) });
        assert.equal(begun.created, false, `a repeat of ${id} begins nothing`);
        assert.deepEqual(begun.record, record);
        assert.deepEqual(
          await reopened.tombstone(id),
          record,
          `a bank's question about ${id} gets its record, not a tombstone`,
        );
      }
      const fresh = 9 + life;
      const batch = await reopened.beginOrGetAll([details(1), details(fresh), details(fresh)]);
      assert.deepEqual(
        batch.map((one) => [one.record.paymentId, one.created]),
        [
          ["p1", false],
          [`p${fresh}`, true],
          [`p${fresh}`, false],
        ],
      );
      assert.deepEqual(batch[0]!.record, recorded.get("p1"));
      assert.equal(await reopened.find("never"), undefined);
      assert.deepEqual(reopened.archivedCounts(), { committed: 2, aborted: 2 });
      await reopened.close();
    }
  });

  it("counts each payment once when a crash between the archive's commit and the snapshot's rewrite left it in both", async () => {
    const log = await GatewayLog.open(paths, { nowMs, finishedRetainedMax: 10 });
    for (let index = 0; index < 5; index += 1) await finishOne(log, index);
    await log.close(); // all five retained: in the snapshot, none archived
    const snapshot = await readFile(paths.transactionLogsJson, "utf8");
    const archiving = await GatewayLog.open(paths, { nowMs, finishedRetainedMax: 2 });
    await finishOne(archiving, 5);
    const journal = await readFile(paths.transactionLogsJournal, "utf8");
    await archiving.close(); // archives p0-p3, then writes a snapshot of p4 and p5 and empties the journal
    // As if it had died at gateway-archive-appended: archived, the snapshot and the journal as they were.
    await writeFile(paths.transactionLogsJson, snapshot);
    await writeFile(paths.transactionLogsJournal, journal);
    for (const dropped of [4, 0]) {
      const reopened = await GatewayLog.open(paths, { nowMs, finishedRetainedMax: 2 });
      assert.equal(reopened.archivedDroppedAtOpen, dropped, "memory lets go of the records that are archived");
      assert.deepEqual([...reopened.all()].map((record) => record.paymentId).sort(), ["p4", "p5"]);
      assert.deepEqual(reopened.archivedCounts(), { committed: 2, aborted: 2 });
      assert.deepEqual(await reopened.counts(), { preparing: 0, committing: 0, aborting: 0, committed: 3, aborted: 3 });
      for (let index = 0; index < 6; index += 1)
        assert.equal((await reopened.find(`p${index}`))?.paymentId, `p${index}`);
      await reopened.close(); // its compaction archives nothing twice
    }
  });

  it("archiving the same records again changes nothing: inserts are skipped and the counts stay exact", async () => {
    await mkdir(dirname(paths.transactionArchiveSqlite), { recursive: true });
    const archive = SqliteArchive.open(paths.transactionArchiveSqlite);
    const payments = [
      { paymentId: "a", line: '{"paymentId":"a"}', committed: true },
      { paymentId: "b", line: '{"paymentId":"b"}', committed: false },
    ];
    assert.equal(archive.insertMany(payments), 2);
    assert.equal(archive.insertMany(payments), 0);
    assert.equal(archive.insertMany([...payments, { paymentId: "c", line: '{"paymentId":"c"}', committed: true }]), 1);
    assert.deepEqual(archive.counts(), { committed: 2, aborted: 1 });
    assert.equal(archive.lineOf("b"), '{"paymentId":"b"}');
    assert.equal(archive.lineOf("d"), undefined);
    archive.close();
    const reopened = SqliteArchive.open(paths.transactionArchiveSqlite);
    assert.deepEqual(reopened.counts(), { committed: 2, aborted: 1 });
    reopened.close();
  });

  it("the archive lists ids by prefix: a range of the key, in order, bounded", async () => {
    await mkdir(dirname(paths.transactionArchiveSqlite), { recursive: true });
    const archive = SqliteArchive.open(paths.transactionArchiveSqlite);
    const ids = ["abc", "abc-1", "abc-2", "abc_3", "abd", "ab", "xabc", "ABC"];
    archive.insertMany(ids.map((paymentId) => ({ paymentId, line: "{}", committed: true })));
    const table: Array<[string, number, string[]]> = [
      ["abc", 10, ["abc", "abc-1", "abc-2", "abc_3"]],
      ["abc-", 10, ["abc-1", "abc-2"]],
      ["abc", 2, ["abc", "abc-1"]],
      ["ab", 10, ["ab", "abc", "abc-1", "abc-2", "abc_3", "abd"]],
      ["abe", 10, []],
      ["A", 10, ["ABC"]],
    ];
    for (const [prefix, limit, expected] of table)
      assert.deepEqual(archive.idsWithPrefix(prefix, limit), expected, `${prefix} (limit ${limit})`);
    archive.close();
  });

  it("finds ids by prefix in memory and in the archive together, each once", async () => {
    const log = await GatewayLog.open(paths, { nowMs, finishedRetainedMax: 1 });
    for (let index = 10; index < 14; index += 1) await finishOne(log, index);
    await log.close(); // archives all but the newest finished payment
    const reopened = await GatewayLog.open(paths, { nowMs, finishedRetainedMax: 1 });
    await begin(reopened, details(15)); // unfinished, in memory
    assert.ok(reopened.archivedCounts().committed + reopened.archivedCounts().aborted > 0, "some are archived");
    assert.deepEqual(await reopened.idsWithPrefix("p1", 10), ["p10", "p11", "p12", "p13", "p15"]);
    assert.deepEqual(await reopened.idsWithPrefix("p1", 2), ["p10", "p11"]);
    assert.deepEqual(await reopened.idsWithPrefix("p15", 10), ["p15"]);
    assert.deepEqual(await reopened.idsWithPrefix("p2", 10), []);
    await reopened.close();
  });
});

describe("the upgrade from an earlier build's archive (transaction_archive.jsonl and its index)", () => {
  let dir: string;
  let paths: DataPaths;
  let clockMs: number;
  const nowMs = () => (clockMs += 1);

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "paynet-gateway-upgrade-"));
    paths = dataPaths(dir);
    clockMs = 1_700_000_000_000;
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /** Finishes p0-p4 and returns their records, as an earlier build would have archived them (one line each). */
  async function earlierArchive(): Promise<{ records: PaymentRecord[]; lines: string }> {
    const log = await GatewayLog.open(paths, { nowMs, finishedRetainedMax: 10 });
    for (let index = 0; index < 5; index += 1) await finishOne(log, index);
    const records = [...log.all()];
    await log.close();
    await rm(paths.transactionLogsJson);
    await rm(paths.transactionArchiveSqlite);
    await rm(`${paths.transactionArchiveSqlite}-wal`, { force: true });
    await rm(`${paths.transactionArchiveSqlite}-shm`, { force: true });
    return {
      records,
      lines: records
        .map(
          (record) =>
            `${JSON.stringify(record, (_key, value: unknown) => (typeof value === "bigint" ? value.toString() : value))}\n`,
        )
        .join(""),
    };
  }

  const exists = (path: string) =>
    access(path).then(
      () => true,
      () => false,
    );

  it("imports every record once at start, a torn last line left out, removes the old files, and answers every id the same after", async () => {
    const { records, lines } = await earlierArchive();
    await writeFile(paths.transactionArchiveJsonl, `${lines}{"paymentId":"p9","fromUser":"al`);
    await mkdir(paths.transactionArchiveIndex);
    await writeFile(join(paths.transactionArchiveIndex, "0000000000000000-0000000000000400.idx"), "an index file");
    assert.deepEqual(
      [...(await readGatewayRecords(paths)).keys()].sort(),
      ["p0", "p1", "p2", "p3", "p4"],
      "tools read the earlier archive before it is imported",
    );

    const log = await GatewayLog.open(paths, { nowMs });
    assert.deepEqual(log.legacyArchiveImport, { linesRead: 5, inserted: 5, tornBytes: 32, indexFilesRemoved: 1 });
    assert.equal(await exists(paths.transactionArchiveJsonl), false, "the jsonl is removed");
    assert.equal(await exists(paths.transactionArchiveIndex), false, "the index directory is removed");
    for (const record of records) assert.deepEqual(await log.find(record.paymentId), record);
    assert.equal(await log.find("p9"), undefined, "the torn line was never a payment");
    assert.deepEqual(log.archivedCounts(), { committed: 3, aborted: 2 });
    await log.close();

    const reopened = await GatewayLog.open(paths, { nowMs });
    assert.equal(reopened.legacyArchiveImport, null, "nothing left to import");
    for (const record of records) assert.deepEqual(await reopened.find(record.paymentId), record);
    assert.deepEqual(reopened.archivedCounts(), { committed: 3, aborted: 2 });
    await reopened.close();
    assert.deepEqual(
      Object.fromEntries(await readGatewayRecords(paths)),
      Object.fromEntries(records.map((record) => [record.paymentId, record])),
    );
  });

  it("imports again, counting each payment once, after a crash that left the jsonl in place", async () => {
    const { records, lines } = await earlierArchive();
    await writeFile(paths.transactionArchiveJsonl, lines);
    await copyFile(paths.transactionArchiveJsonl, join(dir, "jsonl-copy"));
    const log = await GatewayLog.open(paths, { nowMs });
    await log.close();
    // As if it had died after its inserts, before it removed the jsonl.
    await copyFile(join(dir, "jsonl-copy"), paths.transactionArchiveJsonl);
    const reopened = await GatewayLog.open(paths, { nowMs });
    assert.deepEqual(reopened.legacyArchiveImport, { linesRead: 5, inserted: 0, tornBytes: 0, indexFilesRemoved: 0 });
    assert.deepEqual(reopened.archivedCounts(), { committed: 3, aborted: 2 });
    for (const record of records) assert.deepEqual(await reopened.find(record.paymentId), record);
    await reopened.close();
  });

  it("refuses to start on a damaged line of the earlier archive, naming the file and the line, and leaves it", async () => {
    const { lines } = await earlierArchive();
    const damaged = lines.replace('"state":"committed"', '"state":"spent"');
    await writeFile(paths.transactionArchiveJsonl, damaged);
    await assert.rejects(
      GatewayLog.open(paths, { nowMs }),
      (error: Error) =>
        error instanceof GatewayLogError && error.message.includes(`${paths.transactionArchiveJsonl}:1`),
    );
    assert.equal(await readFile(paths.transactionArchiveJsonl, "utf8"), damaged);
  });
});

describe("the gateway log's record schemas", () => {
  let dir: string;
  let paths: DataPaths;
  const nowMs = () => 1_800_000_000_000;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "paynet-gateway-schemas-"));
    paths = dataPaths(dir);
    await mkdir(dirname(paths.transactionLogsJournal), { recursive: true });
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  // Byte for byte as the build before the schemas wrote them: a payment begun, prepared and committed; one
  // refused (a message with quotes and a non-ASCII character); a tombstone.
  const whole1 =
    '{"paymentId":"p1","fromUser":"alice","fromBank":"SBI","toUser":"bob","toBank":"HDFC","amountMinor":"2500","state":"preparing","reason":null,"reasonMessage":null,"finished":false,"balanceAfterMinor":null,"createdAtMs":1700000000001,"decidedAtMs":null,"finishedAtMs":null}';
  const whole2 =
    '{"paymentId":"p2","fromUser":"bob","fromBank":"HDFC","toUser":"alice","toBank":"SBI","amountMinor":"9","state":"preparing","reason":null,"reasonMessage":null,"finished":false,"balanceAfterMinor":null,"createdAtMs":1700000000004,"decidedAtMs":null,"finishedAtMs":null}';
  const tombstone =
    '{"paymentId":"p3","fromUser":"","fromBank":"","toUser":"","toBank":"","amountMinor":"0","state":"aborted","reason":"PAYMENT_ABORTED","reasonMessage":"a bank asked about a payment this gateway never began","finished":true,"balanceAfterMinor":null,"createdAtMs":1700000000006,"decidedAtMs":1700000000006,"finishedAtMs":1700000000006}';
  const earlierJournal = [
    whole1,
    '{"progress":"p1","state":"prepared","finished":false}',
    '{"progress":"p1","state":"committed","finished":true,"balanceAfterMinor":"7500","decidedAtMs":1700000000003,"finishedAtMs":1700000000003}',
    whole2,
    '{"progress":"p2","state":"aborted","finished":true,"reason":"INSUFFICIENT_FUNDS","reasonMessage":"bob has 0.00, needs 0.09 \\"quoted\\" é","decidedAtMs":1700000000005,"finishedAtMs":1700000000005}',
    tombstone,
  ]
    .map((line) => `${line}\n`)
    .join("");
  const earlierSnapshot = `{"format":"paynet-gateway-log/1","payments":[{"paymentId":"p1","fromUser":"alice","fromBank":"SBI","toUser":"bob","toBank":"HDFC","amountMinor":"2500","state":"committed","reason":null,"reasonMessage":null,"finished":true,"balanceAfterMinor":"7500","createdAtMs":1700000000001,"decidedAtMs":1700000000003,"finishedAtMs":1700000000003},{"paymentId":"p2","fromUser":"bob","fromBank":"HDFC","toUser":"alice","toBank":"SBI","amountMinor":"9","state":"aborted","reason":"INSUFFICIENT_FUNDS","reasonMessage":"bob has 0.00, needs 0.09 \\"quoted\\" é","finished":true,"balanceAfterMinor":null,"createdAtMs":1700000000004,"decidedAtMs":1700000000005,"finishedAtMs":1700000000005},${tombstone}]}\n`;
  const expected = {
    p1: {
      paymentId: "p1",
      fromUser: "alice",
      fromBank: "SBI",
      toUser: "bob",
      toBank: "HDFC",
      amountMinor: 2500n,
      state: "committed",
      reason: null,
      reasonMessage: null,
      finished: true,
      balanceAfterMinor: 7500n,
      createdAtMs: 1700000000001,
      decidedAtMs: 1700000000003,
      finishedAtMs: 1700000000003,
      legs: [],
    },
    p2: {
      paymentId: "p2",
      fromUser: "bob",
      fromBank: "HDFC",
      toUser: "alice",
      toBank: "SBI",
      amountMinor: 9n,
      state: "aborted",
      reason: "INSUFFICIENT_FUNDS",
      reasonMessage: 'bob has 0.00, needs 0.09 "quoted" é',
      finished: true,
      balanceAfterMinor: null,
      createdAtMs: 1700000000004,
      decidedAtMs: 1700000000005,
      finishedAtMs: 1700000000005,
      legs: [],
    },
    p3: {
      paymentId: "p3",
      fromUser: "",
      fromBank: "",
      toUser: "",
      toBank: "",
      amountMinor: 0n,
      state: "aborted",
      reason: "PAYMENT_ABORTED",
      reasonMessage: "a bank asked about a payment this gateway never began",
      finished: true,
      balanceAfterMinor: null,
      createdAtMs: 1700000000006,
      decidedAtMs: 1700000000006,
      finishedAtMs: 1700000000006,
      legs: [],
    },
  };

  it("loads a journal, a snapshot and an archive as the earlier build wrote them", async () => {
    await writeFile(paths.transactionLogsJournal, earlierJournal);
    assert.deepEqual(Object.fromEntries(await readGatewayRecords(paths)), expected);
    await rm(paths.transactionLogsJournal);
    await writeFile(paths.transactionLogsJson, earlierSnapshot);
    assert.deepEqual(Object.fromEntries(await readGatewayRecords(paths)), expected);
    await rm(paths.transactionLogsJson);
    const archived = (JSON.parse(earlierSnapshot) as { payments: unknown[] }).payments
      .map((payment) => `${JSON.stringify(payment)}\n`)
      .join("");
    await writeFile(paths.transactionArchiveJsonl, archived); // imported into transaction_archive.sqlite at open
    const log = await GatewayLog.open(paths, { nowMs });
    for (const [id, record] of Object.entries(expected)) assert.deepEqual(await log.find(id), record);
    assert.deepEqual(log.archivedCounts(), { committed: 1, aborted: 2 });
    await log.close();
  });

  const int64Max = "9223372036854775807";
  const beyondInt64 = "9223372036854775808";
  // Each a second journal line after whole1; null is "refused" or the state of p1 it leaves.
  const secondLines: ReadonlyArray<[string, string, RegExp | Partial<Record<string, unknown>>]> = [
    ["an amount of int64's maximum", whole1.replace('"p1"', '"p9"').replace('"2500"', `"${int64Max}"`), {}],
    [
      "an amount beyond int64",
      whole1.replace('"p1"', '"p9"').replace('"2500"', `"${beyondInt64}"`),
      /:2: not a payment record \(amountMinor must be an integer string from 0 to 9223372036854775807, got "9223372036854775808"\); refusing to start, fix or restore the file$/,
    ],
    [
      "a negative amount",
      whole1.replace('"p1"', '"p9"').replace('"2500"', '"-1"'),
      /:2: not a payment record \(amountMinor must be an integer string from 0 to /,
    ],
    [
      "a whole record without createdAtMs",
      whole1.replace('"p1"', '"p9"').replace(',"createdAtMs":1700000000001', ""),
      /:2: not a payment record \(createdAtMs must be an integer, got nothing\)/,
    ],
    [
      "a whole record with a reasonMessage that is not a string",
      whole1.replace('"p1"', '"p9"').replace('"reasonMessage":null', '"reasonMessage":5'),
      /:2: not a payment record \(reasonMessage must be a string, got 5\)/,
    ],
    [
      "an unknown state",
      whole1.replace('"p1"', '"p9"').replace('"preparing"', '"lost"'),
      /:2: not a payment record \(state must be one of "preparing", "prepared", "committed", "aborted", got "lost"\)/,
    ],
    [
      "progress with balanceAfterMinor at int64's maximum",
      `{"progress":"p1","state":"committed","finished":false,"balanceAfterMinor":"${int64Max}"}`,
      { state: "committed", balanceAfterMinor: BigInt(int64Max) },
    ],
    [
      "progress with balanceAfterMinor beyond int64",
      `{"progress":"p1","state":"committed","finished":false,"balanceAfterMinor":"${beyondInt64}"}`,
      /:2: not a payment record \(balanceAfterMinor must be an integer string from 0 to 9223372036854775807, got "9223372036854775808"\)/,
    ],
    [
      "progress with its null fields written out",
      '{"progress":"p1","state":"aborted","finished":true,"reason":null,"reasonMessage":null,"balanceAfterMinor":null,"decidedAtMs":null,"finishedAtMs":null}',
      { state: "aborted", finished: true, reason: null, decidedAtMs: null },
    ],
    [
      "progress with an unknown reason",
      '{"progress":"p1","state":"aborted","finished":true,"reason":"NOPE"}',
      /:2: not a payment record \(reason must be a known reason, got "NOPE"\)/,
    ],
    [
      "progress with an empty id",
      '{"progress":"","state":"aborted","finished":true}',
      /:2: not a payment record \(progress must be a non-empty string, got ""\)/,
    ],
    [
      "progress without finished",
      '{"progress":"p1","state":"aborted"}',
      /:2: not a payment record \(finished must be a boolean, got nothing\)/,
    ],
    [
      "progress with a fractional time",
      '{"progress":"p1","state":"aborted","finished":true,"decidedAtMs":1.5}',
      /:2: not a payment record \(decidedAtMs must be an integer, got 1\.5\)/,
    ],
    [
      "progress with both legs' votes and acknowledgements",
      `{"progress":"p1","state":"committed","finished":true,"legs":[${[
        '{"role":"payer","vote":"yes","votedAtMs":1700000000002,"ackedAtMs":1700000000004}',
        '{"role":"payee","vote":"yes","votedAtMs":1700000000003,"ackedAtMs":null}',
      ].join(",")}]}`,
      {
        legs: [
          { role: "payer", vote: "yes", votedAtMs: 1700000000002, ackedAtMs: 1700000000004 },
          { role: "payee", vote: "yes", votedAtMs: 1700000000003, ackedAtMs: null },
        ],
      },
    ],
    [
      "progress with an acknowledgement but no vote (decided at a restart)",
      '{"progress":"p1","state":"aborted","finished":true,"legs":[{"role":"payee","vote":null,"votedAtMs":null,"ackedAtMs":7}]}',
      { legs: [{ role: "payee", vote: null, votedAtMs: null, ackedAtMs: 7 }] },
    ],
    [
      "progress with three legs",
      `{"progress":"p1","state":"aborted","finished":true,"legs":[${Array(3).fill('{"role":"payer","vote":"no","votedAtMs":1,"ackedAtMs":null}').join(",")}]}`,
      /:2: not a payment record \(legs must have at most 2 items, got an array\)/,
    ],
    [
      "progress with two payer legs",
      `{"progress":"p1","state":"aborted","finished":true,"legs":[${Array(2).fill('{"role":"payer","vote":"no","votedAtMs":1,"ackedAtMs":null}').join(",")}]}`,
      /:2: not a payment record \(legs must be the legs of one payment: one per role, payer first/,
    ],
    [
      "progress with a vote without its time",
      '{"progress":"p1","state":"aborted","finished":true,"legs":[{"role":"payer","vote":"no","votedAtMs":null,"ackedAtMs":null}]}',
      /:2: not a payment record \(legs must be the legs of one payment/,
    ],
    [
      "progress with an unknown vote",
      '{"progress":"p1","state":"aborted","finished":true,"legs":[{"role":"payer","vote":"maybe","votedAtMs":1,"ackedAtMs":null}]}',
      /:2: not a payment record \(legs\[0\]\.vote must be one of "yes", "no", "unanswered", got "maybe"\)/,
    ],
    ["an array", "[1]", /:2: not a payment record \(the record must be an object, got an array\)/],
    ["not JSON", '{"progress":', /transaction_logs\.journal:2: not JSON \(/],
  ];
  for (const [name, second, outcome] of secondLines) {
    it(`journal: ${outcome instanceof RegExp ? "refuses" : "reads"} ${name}`, async () => {
      await writeFile(paths.transactionLogsJournal, `${whole1}\n${second}\n`);
      if (outcome instanceof RegExp) {
        await assert.rejects(GatewayLog.open(paths, { nowMs }), (error: Error) => {
          assert.ok(error instanceof GatewayLogError, `a GatewayLogError, got ${String(error)}`);
          assert.ok(error.message.startsWith(`${paths.transactionLogsJournal}:2: `), error.message);
          assert.match(error.message, outcome);
          return true;
        });
        assert.equal(
          await readFile(paths.transactionLogsJournal, "utf8"),
          `${whole1}\n${second}\n`,
          "a refused file is left as it was",
        );
        return;
      }
      const records = await readGatewayRecords(paths);
      for (const [key, value] of Object.entries(outcome))
        assert.deepEqual((records.get("p1") as unknown as Record<string, unknown>)[key], value, key);
      if (second.startsWith('{"paymentId"')) assert.equal(records.get("p9")?.amountMinor, BigInt(int64Max));
    });
  }

  it("refuses a damaged snapshot entry, naming the file and the entry", async () => {
    await writeFile(
      paths.transactionLogsJson,
      earlierSnapshot.replace('"amountMinor":"9"', `"amountMinor":"${beyondInt64}"`),
    );
    await assert.rejects(GatewayLog.open(paths, { nowMs }), (error: Error) => {
      assert.ok(error instanceof GatewayLogError);
      assert.equal(
        error.message,
        `${paths.transactionLogsJson}: not a paynet-gateway-log/1 document (payments[1].amountMinor must be an integer string from 0 to 9223372036854775807, got "9223372036854775808"); refusing to start, fix or restore the file`,
      );
      return true;
    });
    await writeFile(paths.transactionLogsJson, '{"format":"paynet-gateway-log/2","payments":[]}');
    await assert.rejects(
      GatewayLog.open(paths, { nowMs }),
      /transaction_logs\.json: not a paynet-gateway-log\/1 document \(format must be "paynet-gateway-log\/1", got "paynet-gateway-log\/2"\)/,
    );
    await writeFile(paths.transactionLogsJson, "null");
    await assert.rejects(
      GatewayLog.open(paths, { nowMs }),
      /transaction_logs\.json: not a paynet-gateway-log\/1 document \(the record must be an object, got null\)/,
    );
  });

  it("refuses a damaged archive line with its file, line and field", async () => {
    await writeFile(
      paths.transactionArchiveJsonl,
      `${tombstone}\n${tombstone.replace('"p3"', '"p4"').replace('"finished":true', '"finished":"yes"')}\n`,
    );
    await assert.rejects(GatewayLog.open(paths, { nowMs }), (error: Error) => {
      assert.ok(error instanceof GatewayLogError);
      assert.equal(
        error.message,
        `${paths.transactionArchiveJsonl}:2: not a payment record (finished must be a boolean, got "yes"); refusing to start, fix or restore the file`,
      );
      return true;
    });
  });

  it("keeps a refusal's message only up to reasonMessageCharsMax, so that every line fits its reader", async () => {
    const log = await GatewayLog.open(paths, { nowMs });
    await begin(log, details(0));
    const change = {
      paymentId: "p0",
      state: "aborted" as const,
      outcome: { reason: "INTERNAL" as const, reasonMessage: "€".repeat(2 ** 20 / 3 + 1), finished: true },
    };
    const recorded = await log.advance(change);
    assert.equal(recorded.reasonMessage, "€".repeat(reasonMessageCharsMax));
    await log.close();
    const reopened = await GatewayLog.open(paths, { nowMs });
    assert.equal((await reopened.find("p0"))?.reasonMessage, "€".repeat(reasonMessageCharsMax));
    await reopened.close();
  });
});
