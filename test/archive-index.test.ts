// The archive's index: a gateway that has archived millions of payments still answers a repeated id from
// the archive, while holding about two bytes per archived payment in memory and reading, at a start, only
// the archive lines after its last sealed index file. The index files are derived from the archive: any
// that are lost or damaged are rebuilt, byte for byte, from the archive.
import { afterEach, beforeEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import { appendFile, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { hashId } from "../src/core/gateway/store/file/archive-index.js";
import { GatewayLog, type PaymentDetails } from "../src/core/gateway/store/file/gateway-log.js";
import { dataPaths, type DataPaths } from "../src/core/durable/paths.js";

function details(index: number): PaymentDetails {
  return { paymentId: `pay-${index}`, fromUser: "alice", fromBank: "SBI", toUser: "bob", toBank: "HDFC", amountMinor: BigInt(100 + index) };
}

describe("the gateway archive's index", () => {
  let dir: string;
  let paths: DataPaths;
  let clockMs: number;
  const nowMs = () => (clockMs += 1);
  const chunkRecords = 8;
  const open = (options: { archiveChunkRecords?: number } = {}) => GatewayLog.open(paths, { nowMs, finishedRetainedMax: 0, archiveChunkRecords: chunkRecords, ...options });

  /** Finishes payments [from, to) in one run of the log (even: committed, odd: aborted); its close archives them. */
  async function archiveRun(from: number, to: number, options: { archiveChunkRecords?: number } = {}): Promise<void> {
    const log = await open(options);
    const payments = [];
    for (let index = from; index < to; index += 1) payments.push(details(index));
    await Promise.all((await log.beginOrGetAll(payments)).map((begun) => (assert.ok(begun.created), begun.durable)));
    const changes = [];
    for (let index = from; index < to; index += 1) {
      changes.push(
        index % 2 === 0
          ? { paymentId: `pay-${index}`, state: "committed" as const, outcome: { balanceAfterMinor: 900n, finished: true } }
          : { paymentId: `pay-${index}`, state: "aborted" as const, outcome: { reason: "INSUFFICIENT_FUNDS" as const, reasonMessage: "no", finished: true } },
      );
    }
    await log.advanceAll(changes);
    await log.close();
  }

  /** Five runs of ten payments: 50 archived, most of them under sealed chunks. */
  async function archiveFifty(): Promise<void> {
    for (let run = 0; run < 5; run += 1) await archiveRun(run * 10, run * 10 + 10);
  }

  async function indexFiles(): Promise<Map<string, Buffer>> {
    const names = (await readdir(paths.transactionArchiveIndex)).sort();
    return new Map(await Promise.all(names.map(async (name) => [name, await readFile(join(paths.transactionArchiveIndex, name))] as const)));
  }

  async function assertEveryPaymentAnswered(log: GatewayLog, count: number): Promise<void> {
    for (let index = 0; index < count; index += 1) {
      const record = await log.find(`pay-${index}`);
      assert.equal(record?.state, index % 2 === 0 ? "committed" : "aborted", `pay-${index}`);
      assert.equal(record?.amountMinor, BigInt(100 + index), `pay-${index}`);
    }
    assert.deepEqual(log.archivedCounts(), { committed: Math.ceil(count / 2), aborted: Math.floor(count / 2) });
  }

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "paynet-archive-index-"));
    paths = dataPaths(dir);
    clockMs = 1_700_000_000_000;
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("seals chunk files that tile the archive, and at a start reads only the lines after the last of them", async () => {
    await archiveFifty();
    const log = await open();
    const stats = log.archiveIndexStats();
    assert.equal(stats.filesRebuiltAtOpen, 0);
    assert.ok(stats.sealedChunks >= 5, `sealed chunks: ${stats.sealedChunks}`);
    assert.ok(stats.linesReadAtOpen < chunkRecords + 10, `read ${stats.linesReadAtOpen} of 50 archive lines at open`);
    assert.equal(stats.sealedChunks * chunkRecords + stats.tailRecords, 50);

    const names = [...(await indexFiles()).keys()];
    assert.equal(names.length, stats.sealedChunks);
    let expectedStart = 0;
    for (const name of names) {
      const [start, end] = name.replace(".idx", "").split("-").map(Number);
      assert.equal(start, expectedStart, `${name} starts where the previous chunk ends`);
      expectedStart = end!;
    }
    assert.ok(expectedStart <= (await stat(paths.transactionArchive)).size);

    await assertEveryPaymentAnswered(log, 50);
    let maybe = 0;
    for (let index = 0; index < 1_000; index += 1) {
      const id = `never-${index}`;
      if (log.mayBeArchived(id)) maybe += 1;
      assert.equal(await log.find(id), undefined, id);
    }
    // Filters this small (128 bits) pass about 0.5% each, then the entries rule the id out.
    assert.ok(maybe <= 80, `${maybe} of 1,000 unknown ids passed the filters of ${stats.sealedChunks} chunks (expected about 30)`);
    await log.close();
  });

  it("rebuilds, byte for byte, index files that are missing, damaged or do not fit the archive", async () => {
    await archiveFifty();
    await (await open()).close();
    const intact = await indexFiles();
    const names = [...intact.keys()];
    assert.ok(names.length >= 4);
    const archiveBytes = (await stat(paths.transactionArchive)).size;
    const damages: Array<[string, () => Promise<void>]> = [
      ["the second file removed", () => rm(join(paths.transactionArchiveIndex, names[1]!))],
      ["a bit flipped in the third file's filter", async () => {
        const file = Buffer.from(intact.get(names[2]!)!);
        file[60]! ^= 0x10;
        await writeFile(join(paths.transactionArchiveIndex, names[2]!), file);
      }],
      ["the last file cut in half", () => writeFile(join(paths.transactionArchiveIndex, names.at(-1)!), intact.get(names.at(-1)!)!.subarray(0, 100))],
      ["a file for bytes past the archive's end", () => writeFile(join(paths.transactionArchiveIndex, `${String(archiveBytes).padStart(16, "0")}-${String(archiveBytes + 500).padStart(16, "0")}.idx`), intact.get(names[0]!)!)],
    ];
    for (const [damage, apply] of damages) {
      await apply();
      const log = await open();
      assert.ok(log.archiveIndexStats().filesRebuiltAtOpen >= 1 || damage.includes("removed"), damage);
      await assertEveryPaymentAnswered(log, 50);
      await log.close();
      assert.deepEqual(await indexFiles(), intact, `after ${damage}, the files are rebuilt as they were`);
    }
  });

  it("counts and finds once a payment whose line is in the archive twice (a crash before the snapshot dropped it)", async () => {
    await archiveFifty();
    const firstLine = (await readFile(paths.transactionArchive, "utf8")).split("\n")[0]!;
    assert.match(firstLine, /"pay-0"/);
    await appendFile(paths.transactionArchive, `${firstLine}\n${firstLine}\n`);
    await rm(paths.transactionArchiveIndex, { recursive: true });
    for (let open_ = 0; open_ < 2; open_ += 1) {
      // The first start rebuilds every file from the archive; the second reads them.
      const log = await open();
      await assertEveryPaymentAnswered(log, 50);
      await log.close();
    }
  });

  it("merges eight chunks of a level into one of the next, so that an id meets few filters; a merge's leftover inputs are removed", async () => {
    const single = { archiveChunkRecords: 1 };
    await archiveRun(0, 70, single);
    // This start seals 69 chunks (the 70th payment stays in the tail) and merges them in the background.
    await (await open(single)).close();
    const log = await open(single);
    const stats = log.archiveIndexStats();
    assert.deepEqual(stats.chunkLevels, [2, 0, 0, 0, 0, 0], "64 chunks merged twice, 5 left as sealed");
    assert.equal(stats.tailRecords, 1);
    assert.equal(stats.mergeError, null);
    await assertEveryPaymentAnswered(log, 70);
    await log.close();
    const files = await indexFiles();
    assert.equal(files.size, 6);

    // A crash between a merge's rename and the removal of its inputs leaves files inside the merged range.
    const [merged, sealed] = [...files.keys()];
    const [mergedStart] = merged!.replace(".idx", "").split("-");
    const leftover = `${mergedStart}-${String(100).padStart(16, "0")}.idx`;
    await writeFile(join(paths.transactionArchiveIndex, leftover), files.get(sealed!)!);
    const reopened = await open(single);
    assert.equal(reopened.archiveIndexStats().filesRebuiltAtOpen, 0);
    assert.deepEqual(reopened.archiveIndexStats().chunkLevels, [2, 0, 0, 0, 0, 0]);
    await assertEveryPaymentAnswered(reopened, 70);
    await reopened.close();
    assert.deepEqual(await indexFiles(), files, "the leftover input is removed, nothing else changes");

    // Rebuilt from the archive alone, the same files, byte for byte.
    await rm(paths.transactionArchiveIndex, { recursive: true });
    await (await open(single)).close();
    assert.deepEqual(await indexFiles(), files);
  });

  it("keeps about two bytes of memory per payment under sealed chunks", async () => {
    await archiveRun(0, 4_096, { archiveChunkRecords: 1_024 });
    const log = await open({ archiveChunkRecords: 1_024 });
    const stats = log.archiveIndexStats();
    assert.equal(stats.sealedChunks, 3, "the start seals three chunks; the last 1,024 stay in the tail");
    const bytesPerPayment = stats.memoryBytes / (stats.sealedChunks * 1_024);
    assert.ok(bytesPerPayment > 2 && bytesPerPayment < 2.5, `${bytesPerPayment} bytes per payment`);
    await assertEveryPaymentAnswered(log, 4_096);
    let maybe = 0;
    for (let index = 0; index < 10_000; index += 1) if (log.mayBeArchived(`never-${index}`)) maybe += 1;
    // About 0.05% per chunk at 16 bits per payment: an unknown id nearly never costs a read.
    assert.ok(maybe <= 60, `${maybe} of 10,000 unknown ids passed the filters of 3 chunks (expected about 15)`);
    await log.close();
  });

  it("hashes ids the same way in every process and version: the hashes are stored", () => {
    assert.deepEqual(hashId("pay-0"), hashId("pay-0"));
    assert.deepEqual(
      ["", "pay-0", "bench-25f6d6ed8ea8-w17", "é∑"].map((id) => hashId(id)),
      [
        { high: 4224944243, low: 1114129780 },
        { high: 3570268113, low: 3798618804 },
        { high: 3828486723, low: 643236342 },
        { high: 106308538, low: 4252043589 },
      ],
    );
  });
});
