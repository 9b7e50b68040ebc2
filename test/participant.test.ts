// Specification of src/core/bank/participant.ts: one bank's accounts and its side of two-phase commit, on real
// files in a temp dir through its file store (no sockets), and at its seam with the store over one in memory.
// Every test gets its own copy of the files; the clock is injected.
import { after, afterEach, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { appendFile, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Participant } from "../src/core/bank/participant.js";
import { FileLedgerStore, type FileLedgerStoreOptions } from "../src/core/bank/store/file/file-ledger-store.js";
import { readBankState } from "../src/core/bank/store/file/bank-state.js";
import { waitUntil } from "./helpers/network.js";
import { PaymentError, type Reason } from "../src/core/domain/errors.js";
import type { Account, LedgerEntry } from "../src/core/domain/ledger.js";
import type { LedgerState, LedgerStore } from "../src/core/bank/store/ledger-store.js";
import { parseAccountsCsv, type AccountRow } from "../src/core/bank/store/file/accounts-csv.js";
import { isPasswordHash, verifyPassword } from "../src/core/bank/passwords.js";
import { BankJournalError, encodeEntry, readJournal } from "../src/core/bank/store/file/bank-journal.js";
import { FinishedLog, FinishedLogError, readFinishedLog } from "../src/core/bank/store/file/finished-log.js";
import { PendingFileError, readBankPending, writeBankPending } from "../src/core/bank/store/file/pending-file.js";

const bank = "SBI";
const holdTimeoutMs = 30_000;
const startMs = 1_700_000_000_000;

// alice 100.00 and bob 50.25 at SBI; carol and a second alice at HDFC, which this participant must not touch.
const seedCsv = [
  "username,balance,password,bank",
  "alice,100,alice123,SBI",
  "bob,50.25,bob123,SBI",
  "carol,10,carol123,HDFC",
  "alice,7,alice-hdfc,HDFC",
  "",
].join("\n");

function paymentError(code: Reason): (error: unknown) => true {
  return (error) => {
    assert.ok(error instanceof PaymentError, `expected a PaymentError, got ${String(error)}`);
    assert.equal(error.code, code);
    return true;
  };
}

interface BankFiles {
  accountsCsvPath: string;
  pendingJsonPath: string;
  finishedLogPath: string;
  journalDirectory: string;
}

interface PendingSectionJson {
  holds: Array<Record<string, unknown>>;
  applying: Array<Record<string, unknown>>;
  finished: Array<Record<string, unknown>>;
}

describe("Participant", () => {
  let root = "";
  const clock = { nowMs: startMs };

  before(async () => {
    root = await mkdtemp(join(tmpdir(), "paynet-participant-"));
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });
  // Every participant a test opened, closed after it: one left open (as a crash is simulated by opening
  // the files again) would otherwise have its file handles closed by the GC, with a DEP0137 warning.
  const opened: Participant[] = [];
  async function tracked(opening: Promise<Participant>): Promise<Participant> {
    const participant = await opening;
    opened.push(participant);
    return participant;
  }
  /** The file store under each participant opened on files. */
  const stores = new Map<Participant, FileLedgerStore>();
  function storeOf(participant: Participant): FileLedgerStore {
    const store = stores.get(participant);
    assert.ok(store !== undefined, "a participant opened on files");
    return store;
  }

  /** A participant over the bank's files, as the bank process opens it. */
  async function openOnFiles(
    files: BankFiles,
    finishedRetainedMax: number,
    storeOptions: Pick<FileLedgerStoreOptions, "checkpointDelayMs" | "checkpointEntriesMax" | "onWriteFailure"> = {},
  ): Promise<Participant> {
    const store = await FileLedgerStore.open({ bank, files, finishedRetainedMax, ...storeOptions });
    const participant = await tracked(
      Participant.open(store, { bank, holdTimeoutMs, finishedRetainedMax, nowMs: () => clock.nowMs }),
    );
    stores.set(participant, store);
    return participant;
  }
  afterEach(async () => {
    for (const participant of opened.splice(0)) await participant.close().catch(() => undefined);
    stores.clear();
  });

  async function newFiles(options: { csv?: string; pending?: unknown } = {}): Promise<BankFiles> {
    const dir = await mkdtemp(join(root, "data-"));
    await mkdir(join(dir, "server"));
    const files = {
      accountsCsvPath: join(dir, "server", "dummydata.csv"),
      pendingJsonPath: join(dir, "server", "pending_transactions.json"),
      finishedLogPath: join(dir, "server", `finished_transactions_${bank}.jsonl`),
      journalDirectory: join(dir, "server"),
    };
    await writeFile(files.accountsCsvPath, options.csv ?? seedCsv, "utf8");
    if (options.pending !== undefined) await writeFile(files.pendingJsonPath, JSON.stringify(options.pending), "utf8");
    return files;
  }

  function open(files: BankFiles, finishedRetainedMax = 1_000): Promise<Participant> {
    return openOnFiles(files, finishedRetainedMax);
  }

  async function fresh(): Promise<{ files: BankFiles; participant: Participant }> {
    clock.nowMs = startMs;
    const files = await newFiles();
    return { files, participant: await open(files) };
  }

  async function csvRows(files: BankFiles): Promise<AccountRow[]> {
    return parseAccountsCsv(await readFile(files.accountsCsvPath, "utf8"), files.accountsCsvPath);
  }

  async function csvBalances(files: BankFiles): Promise<string[]> {
    return (await csvRows(files)).map((row) => `${row.username}@${row.bank}=${row.balanceMinor}`);
  }

  /** The finished records of the bank's own log, latest line per payment, oldest first. */
  async function finishedOnDisk(files: BankFiles): Promise<PendingSectionJson["finished"]> {
    const text = await readFile(files.finishedLogPath, "utf8").catch(() => "");
    const records = new Map<string, PendingSectionJson["finished"][number]>();
    for (const line of text.split("\n").filter(Boolean)) {
      const record = JSON.parse(line) as PendingSectionJson["finished"][number] & { paymentId: string };
      records.delete(record.paymentId);
      records.set(record.paymentId, record);
    }
    return [...records.values()];
  }

  /** What a bank restarted now would find: the last checkpoint with the journal replayed over it. */
  function durableState(files: BankFiles) {
    return readBankState(files, bank);
  }

  async function pendingSection(files: BankFiles, name = bank): Promise<PendingSectionJson> {
    const document = JSON.parse(await readFile(files.pendingJsonPath, "utf8")) as {
      format: string;
      banks: Record<string, PendingSectionJson>;
    };
    assert.equal(document.format, "paynet-pending/1");
    const section = document.banks[name];
    assert.ok(section !== undefined, `no section for ${name} in the pending file`);
    return section;
  }

  it("opens with this bank's accounts only", async () => {
    const { participant } = await fresh();
    assert.equal(participant.bank, bank);
    assert.equal(participant.accountCount, 2);
    assert.deepEqual(participant.balance("alice"), { balanceMinor: 10_000n, availableMinor: 10_000n });
    assert.deepEqual(participant.balance("bob"), { balanceMinor: 5_025n, availableMinor: 5_025n });
    assert.equal(participant.totalBalanceMinor(), 15_025n);
    assert.deepEqual(participant.holds(), []);
    assert.throws(() => participant.balance("carol"), paymentError("UNKNOWN_ACCOUNT"));
  });

  it("authenticates with the migrated passwords", async () => {
    const { participant } = await fresh();
    await participant.authenticate("alice", "alice123");
    await assert.rejects(participant.authenticate("alice", "alice-hdfc"), paymentError("UNAUTHENTICATED"));
    await assert.rejects(participant.authenticate("carol", "carol123"), paymentError("UNAUTHENTICATED"));
  });

  it("prepare of a debit reserves funds: balance unchanged, available reduced", async () => {
    const { participant, files } = await fresh();
    await participant.prepare("p1", "alice", "debit", 6_000n);
    assert.deepEqual(participant.balance("alice"), { balanceMinor: 10_000n, availableMinor: 4_000n });
    assert.deepEqual(participant.holds(), [
      {
        paymentId: "p1",
        username: "alice",
        kind: "debit",
        amountMinor: 6_000n,
        preparedAtMs: startMs,
        expiresAtMs: startMs + holdTimeoutMs,
      },
    ]);
    assert.deepEqual(
      [...(await durableState(files)).holds.values()],
      [
        {
          paymentId: "p1",
          username: "alice",
          kind: "debit",
          amountMinor: 6_000n,
          preparedAtMs: startMs,
          expiresAtMs: startMs + holdTimeoutMs,
        },
      ],
      "the hold is durable (in the journal) before the vote returns",
    );
    assert.deepEqual(
      await csvBalances(files),
      ["alice@SBI=10000", "bob@SBI=5025", "carol@HDFC=1000", "alice@HDFC=700"],
      "a hold does not touch the CSV",
    );
  });

  it("refuses a second prepare beyond the available funds with INSUFFICIENT_FUNDS; exactly the available is fine", async () => {
    const { participant } = await fresh();
    await participant.prepare("p1", "alice", "debit", 6_000n);
    await assert.rejects(participant.prepare("p2", "alice", "debit", 4_001n), paymentError("INSUFFICIENT_FUNDS"));
    assert.equal(participant.holds().length, 1, "a refused prepare leaves no hold");
    await participant.prepare("p3", "alice", "debit", 4_000n);
    assert.deepEqual(participant.balance("alice"), { balanceMinor: 10_000n, availableMinor: 0n });
    await assert.rejects(participant.prepare("p4", "alice", "debit", 1n), paymentError("INSUFFICIENT_FUNDS"));
  });

  it("a refused prepare can be retried under the same id once funds suffice", async () => {
    const { participant } = await fresh();
    await assert.rejects(participant.prepare("p1", "alice", "debit", 10_001n), paymentError("INSUFFICIENT_FUNDS"));
    await participant.prepare("p1", "alice", "debit", 10_000n);
    assert.equal(participant.balance("alice").availableMinor, 0n);
  });

  it("a credit hold changes neither balance nor available, and its commit returns the payee's new balance", async () => {
    const { participant } = await fresh();
    await participant.prepare("c1", "bob", "credit", 1_000n);
    assert.deepEqual(participant.balance("bob"), { balanceMinor: 5_025n, availableMinor: 5_025n });
    assert.equal(await participant.commit("c1"), 6_025n);
    assert.deepEqual(participant.balance("bob"), { balanceMinor: 6_025n, availableMinor: 6_025n });
  });

  it("prepare names an account of another bank UNKNOWN_ACCOUNT", async () => {
    const { participant } = await fresh();
    await assert.rejects(participant.prepare("p1", "carol", "debit", 1n), paymentError("UNKNOWN_ACCOUNT"));
    await assert.rejects(participant.prepare("p2", "nobody", "credit", 1n), paymentError("UNKNOWN_ACCOUNT"));
  });

  it("commit applies a debit exactly once: a repeat returns the same balance and changes nothing", async () => {
    const { participant } = await fresh();
    await participant.prepare("p1", "alice", "debit", 6_000n);
    assert.equal(await participant.commit("p1"), 4_000n);
    assert.deepEqual(participant.balance("alice"), { balanceMinor: 4_000n, availableMinor: 4_000n });
    assert.deepEqual(participant.holds(), []);
    assert.equal(await participant.commit("p1"), 4_000n);
    assert.equal(await participant.commit("p1"), 4_000n);
    assert.deepEqual(participant.balance("alice"), { balanceMinor: 4_000n, availableMinor: 4_000n });
    assert.equal(participant.totalBalanceMinor(), 15_025n - 6_000n);
  });

  it("commit of an unknown payment is UNKNOWN_PAYMENT", async () => {
    const { participant } = await fresh();
    await assert.rejects(participant.commit("never-prepared"), paymentError("UNKNOWN_PAYMENT"));
    assert.equal(participant.totalBalanceMinor(), 15_025n);
  });

  it("prepare repeated with the same details is a yes with one hold; other details are IDEMPOTENCY_CONFLICT", async () => {
    const { participant } = await fresh();
    await participant.prepare("p1", "alice", "debit", 3_000n);
    await participant.prepare("p1", "alice", "debit", 3_000n);
    assert.equal(participant.holds().length, 1);
    assert.equal(participant.balance("alice").availableMinor, 7_000n, "the repeat reserves nothing more");
    await assert.rejects(participant.prepare("p1", "alice", "debit", 3_001n), paymentError("IDEMPOTENCY_CONFLICT"));
    await assert.rejects(participant.prepare("p1", "alice", "credit", 3_000n), paymentError("IDEMPOTENCY_CONFLICT"));
    await assert.rejects(participant.prepare("p1", "bob", "debit", 3_000n), paymentError("IDEMPOTENCY_CONFLICT"));
    assert.equal(participant.holds()[0]?.amountMinor, 3_000n);
    assert.equal(participant.balance("alice").availableMinor, 7_000n);
  });

  it("prepare after commit is a yes that makes no new hold; abort after commit is IDEMPOTENCY_CONFLICT", async () => {
    const { participant } = await fresh();
    await participant.prepare("p1", "alice", "debit", 1_000n);
    await participant.commit("p1");
    await participant.prepare("p1", "alice", "debit", 1_000n);
    assert.deepEqual(participant.holds(), []);
    assert.deepEqual(participant.balance("alice"), { balanceMinor: 9_000n, availableMinor: 9_000n });
    await assert.rejects(participant.abort("p1"), paymentError("IDEMPOTENCY_CONFLICT"));
    assert.equal(participant.balance("alice").balanceMinor, 9_000n);
  });

  it("abort releases a hold and is idempotent; the payment can then be neither committed nor prepared", async () => {
    const { participant, files } = await fresh();
    await participant.prepare("p1", "alice", "debit", 6_000n);
    await participant.abort("p1");
    assert.deepEqual(participant.balance("alice"), { balanceMinor: 10_000n, availableMinor: 10_000n });
    assert.deepEqual(participant.holds(), []);
    await participant.abort("p1");
    assert.deepEqual(participant.balance("alice"), { balanceMinor: 10_000n, availableMinor: 10_000n });
    await assert.rejects(participant.commit("p1"), paymentError("PAYMENT_ABORTED"));
    await assert.rejects(participant.prepare("p1", "alice", "debit", 6_000n), paymentError("PAYMENT_ABORTED"));
    const durable = await durableState(files);
    assert.deepEqual(durable.holds, new Map());
    assert.deepEqual(
      [...durable.finished.values()],
      [{ paymentId: "p1", outcome: "aborted", atMs: startMs, replyBalanceMinor: null }],
    );
    await storeOf(participant).flushCheckpoint();
    assert.deepEqual((await pendingSection(files)).holds, []);
    assert.deepEqual(await finishedOnDisk(files), [
      { paymentId: "p1", outcome: "aborted", atMs: startMs, replyBalanceMinor: null },
    ]);
  });

  it("abort of an unknown payment records it, so a later prepare is PAYMENT_ABORTED", async () => {
    const { participant } = await fresh();
    await participant.abort("late");
    await assert.rejects(participant.prepare("late", "alice", "debit", 1_000n), paymentError("PAYMENT_ABORTED"));
    await assert.rejects(participant.prepare("late", "bob", "credit", 1_000n), paymentError("PAYMENT_ABORTED"));
    assert.deepEqual(participant.holds(), []);
    assert.equal(participant.balance("alice").availableMinor, 10_000n);
  });

  it("transfer moves money within the bank once; a repeat returns the same balance without applying again", async () => {
    const { participant } = await fresh();
    assert.equal(await participant.transfer("t1", "alice", "bob", 2_500n, clock.nowMs), 7_500n);
    assert.deepEqual(participant.balance("alice"), { balanceMinor: 7_500n, availableMinor: 7_500n });
    assert.deepEqual(participant.balance("bob"), { balanceMinor: 7_525n, availableMinor: 7_525n });
    assert.equal(await participant.transfer("t1", "alice", "bob", 2_500n, clock.nowMs), 7_500n);
    assert.equal(participant.balance("alice").balanceMinor, 7_500n);
    assert.equal(participant.balance("bob").balanceMinor, 7_525n);
    assert.equal(participant.totalBalanceMinor(), 15_025n, "a transfer keeps the bank's total");
  });

  it("transfer of the whole available balance is allowed", async () => {
    const { participant } = await fresh();
    assert.equal(await participant.transfer("t1", "bob", "alice", 5_025n, clock.nowMs), 0n);
    assert.equal(participant.balance("alice").balanceMinor, 15_025n);
  });

  it("transfer refuses SELF_PAYMENT, INSUFFICIENT_FUNDS and UNKNOWN_ACCOUNT and then changes nothing", async () => {
    const { participant } = await fresh();
    await participant.prepare("hold", "alice", "debit", 9_000n);
    await assert.rejects(participant.transfer("t1", "alice", "alice", 100n, clock.nowMs), paymentError("SELF_PAYMENT"));
    await assert.rejects(
      participant.transfer("t2", "alice", "bob", 1_001n, clock.nowMs),
      paymentError("INSUFFICIENT_FUNDS"),
      "held funds are not available",
    );
    await assert.rejects(
      participant.transfer("t3", "bob", "alice", 5_026n, clock.nowMs),
      paymentError("INSUFFICIENT_FUNDS"),
    );
    await assert.rejects(participant.transfer("t4", "nobody", "bob", 1n, clock.nowMs), paymentError("UNKNOWN_ACCOUNT"));
    await assert.rejects(participant.transfer("t5", "bob", "nobody", 1n, clock.nowMs), paymentError("UNKNOWN_ACCOUNT"));
    await assert.rejects(
      participant.transfer("t6", "bob", "carol", 1n, clock.nowMs),
      paymentError("UNKNOWN_ACCOUNT"),
      "carol is at another bank",
    );
    assert.deepEqual(participant.balance("alice"), { balanceMinor: 10_000n, availableMinor: 1_000n });
    assert.deepEqual(participant.balance("bob"), { balanceMinor: 5_025n, availableMinor: 5_025n });
  });

  it("transfer under the id of a prepared hold is IDEMPOTENCY_CONFLICT", async () => {
    const { participant } = await fresh();
    await participant.prepare("p1", "alice", "debit", 1_000n);
    await assert.rejects(
      participant.transfer("p1", "alice", "bob", 1_000n, clock.nowMs),
      paymentError("IDEMPOTENCY_CONFLICT"),
    );
    assert.equal(participant.balance("bob").balanceMinor, 5_025n);
  });

  it("transfer under the id of an aborted payment is PAYMENT_ABORTED", async () => {
    const { participant } = await fresh();
    await participant.abort("a1");
    await assert.rejects(
      participant.transfer("a1", "alice", "bob", 1_000n, clock.nowMs),
      paymentError("PAYMENT_ABORTED"),
    );
    assert.equal(participant.balance("bob").balanceMinor, 5_025n);
  });

  it("after a checkpoint the CSV on disk reflects committed balances and leaves other banks' rows alone", async () => {
    const { participant, files } = await fresh();
    await participant.prepare("p1", "alice", "debit", 1_050n);
    await participant.commit("p1");
    await participant.prepare("c1", "bob", "credit", 1_050n);
    await participant.commit("c1");
    await participant.transfer("t1", "bob", "alice", 75n, clock.nowMs);
    await participant.prepare("open-hold", "alice", "debit", 100n); // not committed: not on disk
    await storeOf(participant).flushCheckpoint();
    assert.deepEqual(await csvBalances(files), ["alice@SBI=9025", "bob@SBI=6000", "carol@HDFC=1000", "alice@HDFC=700"]);
    const rows = await csvRows(files);
    for (const row of rows.filter((row) => row.bank === bank))
      assert.equal(isPasswordHash(row.password), true, `${row.username}@${bank} is hashed`);
    assert.deepEqual(
      rows.filter((row) => row.bank !== bank).map((row) => row.password),
      ["carol123", "alice-hdfc"],
    );
    const aliceRow = rows.find((row) => row.username === "alice" && row.bank === bank);
    assert.equal(await verifyPassword("alice123", aliceRow?.password ?? ""), true);
  });

  it("state survives reopening: holds reloaded, balances as committed, finished payments remembered", async () => {
    const { participant, files } = await fresh();
    await participant.prepare("committed", "alice", "debit", 2_000n);
    await participant.commit("committed");
    await participant.prepare("held", "alice", "debit", 3_000n);
    await participant.prepare("credit-held", "bob", "credit", 500n);
    await participant.abort("aborted");
    await participant.transfer("moved", "bob", "alice", 25n, clock.nowMs);
    const holdsBefore = participant.holds();
    // One live instance per bank, as in a bank process: the first stops (its checkpoint done) before the next opens.
    await participant.close();

    clock.nowMs = startMs + 1_000;
    const reopened = await open(files);
    assert.deepEqual(reopened.holds(), holdsBefore);
    assert.deepEqual(reopened.balance("alice"), { balanceMinor: 8_025n, availableMinor: 5_025n });
    assert.deepEqual(reopened.balance("bob"), { balanceMinor: 5_000n, availableMinor: 5_000n });
    assert.equal(await reopened.commit("committed"), 8_000n, "the reply of the first commit, not applied again");
    assert.equal(await reopened.transfer("moved", "bob", "alice", 25n, clock.nowMs), 5_000n);
    await assert.rejects(reopened.prepare("aborted", "alice", "debit", 1n), paymentError("PAYMENT_ABORTED"));
    assert.equal(await reopened.commit("held"), 5_025n);
    assert.equal(await reopened.commit("credit-held"), 5_500n);
    assert.deepEqual(reopened.holds(), []);
    await reopened.close();

    const third = await open(files);
    assert.deepEqual(third.balance("alice"), { balanceMinor: 5_025n, availableMinor: 5_025n });
    assert.deepEqual(third.balance("bob"), { balanceMinor: 5_500n, availableMinor: 5_500n });
  });

  it("redoes an `applying` entry left by a crash before the CSV was rewritten, exactly once", async () => {
    clock.nowMs = startMs;
    // Crash after step 1 of a transfer of 30.00 from alice to bob: absolute after-balances logged, CSV still old.
    const files = await newFiles({
      pending: {
        format: "paynet-pending/1",
        banks: {
          [bank]: {
            holds: [],
            applying: [
              { paymentId: "crashed", balancesMinor: { alice: "7000", bob: "8025" }, replyBalanceMinor: "7000" },
            ],
            finished: [],
          },
        },
      },
    });
    const participant = await open(files);
    assert.deepEqual(participant.balance("alice"), { balanceMinor: 7_000n, availableMinor: 7_000n });
    assert.deepEqual(participant.balance("bob"), { balanceMinor: 8_025n, availableMinor: 8_025n });
    assert.equal(participant.totalBalanceMinor(), 15_025n);
    assert.deepEqual(await csvBalances(files), ["alice@SBI=7000", "bob@SBI=8025", "carol@HDFC=1000", "alice@HDFC=700"]);
    const section = await pendingSection(files);
    assert.deepEqual(section.applying, []);
    // An earlier build's applying entry carries no time: its finished record says 0.
    assert.deepEqual(await finishedOnDisk(files), [
      { paymentId: "crashed", outcome: "committed", atMs: 0, replyBalanceMinor: "7000" },
    ]);
    assert.equal(
      await participant.transfer("crashed", "alice", "bob", 3_000n, clock.nowMs),
      7_000n,
      "a retry gets the logged reply",
    );
    assert.equal(participant.balance("alice").balanceMinor, 7_000n);

    const reopened = await open(files);
    assert.deepEqual(reopened.balance("alice"), { balanceMinor: 7_000n, availableMinor: 7_000n });
    assert.deepEqual(reopened.balance("bob"), { balanceMinor: 8_025n, availableMinor: 8_025n });
  });

  it("redoing an `applying` entry whose CSV was already rewritten sets the absolute balance, not adding twice", async () => {
    clock.nowMs = startMs;
    // Crash after step 2 of a committed debit of 30.00: the CSV already shows 70, the entry is still there.
    const files = await newFiles({
      csv: seedCsv.replace("alice,100,alice123,SBI", "alice,70,alice123,SBI"),
      pending: {
        format: "paynet-pending/1",
        banks: {
          [bank]: {
            holds: [],
            applying: [{ paymentId: "debit-1", balancesMinor: { alice: "7000" }, replyBalanceMinor: "7000" }],
            finished: [],
          },
        },
      },
    });
    const participant = await open(files);
    assert.equal(participant.balance("alice").balanceMinor, 7_000n);
    assert.equal(await participant.commit("debit-1"), 7_000n);
    assert.equal(participant.balance("alice").balanceMinor, 7_000n);
    assert.deepEqual(await csvBalances(files), ["alice@SBI=7000", "bob@SBI=5025", "carol@HDFC=1000", "alice@HDFC=700"]);
    assert.deepEqual((await pendingSection(files)).applying, []);
  });

  it("recovery keeps the holds and other banks' sections of the pending file", async () => {
    clock.nowMs = startMs;
    const otherSection = {
      holds: [
        { paymentId: "x", username: "carol", kind: "debit", amountMinor: "100", preparedAtMs: 1, expiresAtMs: 2 },
      ],
      applying: [],
      finished: [{ paymentId: "y", outcome: "aborted", atMs: 3, replyBalanceMinor: null }],
    };
    const hold = {
      paymentId: "held",
      username: "bob",
      kind: "debit",
      amountMinor: "25",
      preparedAtMs: startMs,
      expiresAtMs: startMs + holdTimeoutMs,
    };
    const files = await newFiles({
      pending: {
        format: "paynet-pending/1",
        banks: {
          [bank]: {
            holds: [hold],
            applying: [{ paymentId: "crashed", balancesMinor: { alice: "9000" }, replyBalanceMinor: "9000" }],
            finished: [],
          },
          HDFC: otherSection,
        },
      },
    });
    const participant = await open(files);
    assert.deepEqual(participant.holds(), [{ ...hold, amountMinor: 25n }]);
    assert.deepEqual(participant.balance("bob"), { balanceMinor: 5_025n, availableMinor: 5_000n });
    assert.equal(participant.balance("alice").balanceMinor, 9_000n);
    assert.deepEqual(await pendingSection(files, "HDFC"), otherSection);
    assert.deepEqual((await pendingSection(files)).holds, [hold]);
  });

  it("keeps the CSV equal to the committed balances when checkpoints follow each other closely", async () => {
    clock.nowMs = startMs;
    const files = await newFiles();
    const participant = await openOnFiles(files, 1_000, { checkpointDelayMs: 0 });
    // Waves of transfers, each wave durable before the next starts, so that many checkpoints are due at once.
    for (let wave = 0; wave < 20; wave += 1) {
      await Promise.all(
        Array.from({ length: 10 }, (_, index) =>
          participant.transfer(
            `w${wave}-${index}`,
            index % 2 === 0 ? "alice" : "bob",
            index % 2 === 0 ? "bob" : "alice",
            BigInt(wave + index + 1),
            clock.nowMs,
          ),
        ),
      );
    }
    await storeOf(participant).flushCheckpoint();
    const onDisk = new Map(
      (await csvRows(files)).filter((row) => row.bank === bank).map((row) => [row.username, row.balanceMinor]),
    );
    assert.equal(onDisk.get("alice"), participant.balance("alice").balanceMinor);
    assert.equal(onDisk.get("bob"), participant.balance("bob").balanceMinor);
    assert.equal(onDisk.get("alice")! + onDisk.get("bob")!, 15_025n, "money is conserved on disk");
  });

  it("remembers at most finishedRetainedMax finished payments, dropping the oldest", async () => {
    clock.nowMs = startMs;
    const files = await newFiles();
    const participant = await open(files, 2);
    await participant.abort("a1");
    await participant.abort("a2");
    await participant.transfer("t3", "alice", "bob", 1n, clock.nowMs);
    await storeOf(participant).flushCheckpoint(); // t3 is finished once its balances are in the CSV
    assert.deepEqual(participant.finishedIds(), ["a2", "t3"]);
    await assert.rejects(participant.prepare("a2", "alice", "debit", 1n), paymentError("PAYMENT_ABORTED"));
  });

  it("will not settle by abort a same-bank transfer it may have applied and forgotten; the mark survives reopening and rewrites", async () => {
    clock.nowMs = startMs;
    const files = await newFiles();
    const participant = await open(files, 2);
    // The gateway began t1, t2, t3 at 1,000, 2,000 and 3,000 ms; remembering two, the bank forgets t1.
    await participant.transfer("t1", "alice", "bob", 100n, 1_000);
    await participant.transfer("t2", "alice", "bob", 100n, 2_000);
    await participant.transfer("t3", "alice", "bob", 100n, 3_000);
    assert.deepEqual(participant.finishedIds(), ["t2", "t3"]);
    const aliceMinor = participant.balance("alice").balanceMinor;
    await assert.rejects(
      participant.settleTransfer("t1", 1_000),
      paymentError("UNKNOWN_PAYMENT"),
      "forgotten: it may have been applied",
    );
    await assert.rejects(
      participant.settleTransfer("t0", 500),
      paymentError("UNKNOWN_PAYMENT"),
      "begun before a forgotten transfer: the bank cannot tell",
    );
    await assert.rejects(
      participant.settleTransfer("t2", 2_000),
      paymentError("IDEMPOTENCY_CONFLICT"),
      "remembered as applied",
    );
    // Begun after every forgotten transfer and unknown: never applied here, and now it never will be.
    await participant.settleTransfer("t9", 1_001);
    await assert.rejects(participant.transfer("t9", "alice", "bob", 100n, 1_001), paymentError("PAYMENT_ABORTED"));
    assert.equal(participant.balance("alice").balanceMinor, aliceMinor, "no settle moved money");
    assert.deepEqual(participant.finishedIds(), ["t3", "t9"], "t2 is forgotten in turn");
    await participant.close();

    // The checkpoint rewrote the finished log down to its newest two records, with the mark first.
    const lines = (await readFile(files.finishedLogPath, "utf8")).split("\n");
    assert.equal(lines[0], '{"transfersForgottenThroughMs":2000}');
    const reopened = await open(files, 2);
    await assert.rejects(reopened.settleTransfer("t1", 1_000), paymentError("UNKNOWN_PAYMENT"));
    await assert.rejects(reopened.settleTransfer("t2", 2_000), paymentError("UNKNOWN_PAYMENT"));
    await assert.rejects(reopened.settleTransfer("t3", 3_000), paymentError("IDEMPOTENCY_CONFLICT"));
    // More payments forget t3, and the next rewrite carries the mark forward.
    for (const id of ["x1", "x2", "x3", "x4"]) await reopened.abort(id);
    await reopened.close();
    assert.equal(
      (await readFile(files.finishedLogPath, "utf8")).split("\n")[0],
      '{"transfersForgottenThroughMs":3000}',
    );
    const again = await open(files, 2);
    await assert.rejects(again.settleTransfer("t3", 3_000), paymentError("UNKNOWN_PAYMENT"));
    await again.settleTransfer("new", 3_001);
    assert.equal(again.balance("alice").balanceMinor, aliceMinor);
    await again.close();
  });

  it("serializes concurrent prepares: together they never reserve more than the balance", async () => {
    const { participant } = await fresh();
    const outcomes = await Promise.allSettled([
      participant.prepare("c1", "alice", "debit", 6_000n),
      participant.prepare("c2", "alice", "debit", 6_000n),
      participant.transfer("c3", "alice", "bob", 6_000n, clock.nowMs),
    ]);
    assert.equal(outcomes[0]?.status, "fulfilled", "the first in arrival order wins");
    for (const outcome of outcomes.slice(1)) {
      assert.equal(outcome.status, "rejected");
      paymentError("INSUFFICIENT_FUNDS")(outcome.reason);
    }
    assert.deepEqual(participant.balance("alice"), { balanceMinor: 10_000n, availableMinor: 4_000n });
  });

  it("refuses credits that would take a balance past balanceMinorMax with BALANCE_LIMIT, counting credit holds", async () => {
    clock.nowMs = startMs;
    // bob at balanceMinorMax - 1.00 (1e13 major units is the limit).
    const files = await newFiles({ csv: seedCsv.replace("bob,50.25,bob123,SBI", "bob,9999999999999,bob123,SBI") });
    const participant = await open(files);
    await assert.rejects(participant.prepare("c1", "bob", "credit", 101n), paymentError("BALANCE_LIMIT"));
    await participant.prepare("c2", "bob", "credit", 60n);
    await assert.rejects(
      participant.prepare("c3", "bob", "credit", 41n),
      paymentError("BALANCE_LIMIT"),
      "the pending credit counts",
    );
    await assert.rejects(participant.transfer("t1", "alice", "bob", 41n, clock.nowMs), paymentError("BALANCE_LIMIT"));
    assert.equal(await participant.transfer("t2", "alice", "bob", 40n, clock.nowMs), 9_960n);
    assert.equal(await participant.commit("c2"), 1_000_000_000_000_000n);
    assert.equal(participant.balance("bob").balanceMinor, 1_000_000_000_000_000n);
  });

  it("reports holds as expired once the hold timeout has passed on the injected clock", async () => {
    const { participant } = await fresh();
    await participant.prepare("p1", "alice", "debit", 100n);
    clock.nowMs = startMs + holdTimeoutMs - 1;
    assert.deepEqual(participant.expiredHolds(), []);
    clock.nowMs = startMs + holdTimeoutMs;
    assert.deepEqual(
      participant.expiredHolds().map((hold) => hold.paymentId),
      ["p1"],
    );
    participant.deferHold("p1", 5_000);
    assert.deepEqual(participant.expiredHolds(), []);
    clock.nowMs += 5_000;
    assert.equal(participant.expiredHolds().length, 1);
  });

  describe("the journal", () => {
    /** A bank whose checkpoints wait for a flush, a close or a full generation: its changes stay in the journal. */
    function openLazy(files: BankFiles, checkpointEntriesMax = 1_000_000): Promise<Participant> {
      return openOnFiles(files, 1_000, { checkpointDelayMs: 3_600_000, checkpointEntriesMax });
    }

    async function journals(files: BankFiles): Promise<string[]> {
      return (await readdir(files.journalDirectory)).filter((name) => name.startsWith(`journal_${bank}.`)).sort();
    }

    it("answers once the change is in the journal; a bank that dies before any checkpoint loses nothing", async () => {
      clock.nowMs = startMs;
      const files = await newFiles();
      const first = await openLazy(files);
      await first.prepare("p1", "alice", "debit", 1_000n);
      assert.equal(await first.commit("p1"), 9_000n);
      await first.prepare("held", "bob", "credit", 25n);
      await first.abort("gone");
      assert.deepEqual(
        await csvBalances(files),
        ["alice@SBI=10000", "bob@SBI=5025", "carol@HDFC=1000", "alice@HDFC=700"],
        "no checkpoint yet",
      );
      assert.deepEqual(await journals(files), [`journal_${bank}.000000.jsonl`]);

      // The first instance is abandoned as a killed process would be: no close, no checkpoint.
      const reopened = await openLazy(files);
      assert.equal(reopened.balance("alice").balanceMinor, 9_000n);
      assert.deepEqual(
        reopened.holds().map((hold) => hold.paymentId),
        ["held"],
      );
      assert.equal(await reopened.commit("p1"), 9_000n, "a repeated commit gets the first reply and applies nothing");
      await assert.rejects(reopened.prepare("gone", "alice", "debit", 1n), paymentError("PAYMENT_ABORTED"));
      // Opening folded the replayed generation into the shared files and started the next one.
      assert.deepEqual(await csvBalances(files), [
        "alice@SBI=9000",
        "bob@SBI=5025",
        "carol@HDFC=1000",
        "alice@HDFC=700",
      ]);
      assert.equal((await pendingSection(files)).holds.length, 1);
      assert.deepEqual(await journals(files), []);
      await reopened.close();
    });

    it("leaves out a last line torn by a crash mid-append (it was never answered) and refuses a damaged line before it", async () => {
      clock.nowMs = startMs;
      const files = await newFiles();
      const first = await openLazy(files);
      await first.transfer("t1", "alice", "bob", 500n, clock.nowMs);
      const [name] = await journals(files);
      const path = join(files.journalDirectory, name!);
      const line = (await readFile(path, "utf8")).replace("t1", "t2").replace("9500", "9000").replace("5525", "6025");
      await appendFile(path, line.slice(0, line.length - 10)); // the torn half of a second transfer
      const reopened = await openLazy(files);
      assert.equal(reopened.balance("alice").balanceMinor, 9_500n, "only the whole line counts");
      assert.equal(
        await reopened.transfer("t2", "alice", "bob", 500n, clock.nowMs),
        9_000n,
        "the torn payment never applied: its retry applies it once",
      );
      await reopened.close();

      const damaged = await newFiles();
      const lazy = await openLazy(damaged);
      await lazy.transfer("t1", "alice", "bob", 500n, clock.nowMs);
      await lazy.transfer("t2", "alice", "bob", 500n, clock.nowMs);
      const [damagedName] = await journals(damaged);
      const damagedPath = join(damaged.journalDirectory, damagedName!);
      const lines = (await readFile(damagedPath, "utf8")).split("\n");
      await writeFile(damagedPath, [lines[0]!.slice(0, 20), ...lines.slice(1)].join("\n"));
      await assert.rejects(openLazy(damaged), /journal_SBI\.000000\.jsonl:1: not JSON.*refusing to start/);
    });

    it("folds a generation into the shared files once it reaches checkpointEntriesMax, without waiting for the delay", async () => {
      clock.nowMs = startMs;
      const files = await newFiles();
      const participant = await openLazy(files, 4);
      for (let index = 0; index < 10; index += 1)
        await participant.transfer(`t${index}`, "alice", "bob", 100n, clock.nowMs);
      // Eight entries make two full generations; their checkpoints run behind the appends, each writing the
      // CSV, then the pending section, then deleting its generation: wait for the last step.
      const foldedDeleted = async () => (await journals(files)).every((name) => name >= `journal_${bank}.000002.jsonl`);
      await waitUntil(
        async () => (await csvBalances(files))[0] === "alice@SBI=9200" && (await foldedDeleted()),
        "two generations to be folded into the CSV and deleted",
      );
      assert.equal((await pendingSection(files)).holds.length, 0);
      const durable = await durableState(files);
      assert.equal(durable.accounts.get("alice")?.balanceMinor, 9_000n, "the rest is in the journal");
      await participant.close();
      assert.deepEqual(await csvBalances(files), [
        "alice@SBI=9000",
        "bob@SBI=6025",
        "carol@HDFC=1000",
        "alice@HDFC=700",
      ]);
      assert.deepEqual(await journals(files), []);
    });

    it("a journal append that fails stops the store: reported once, the operation rejected, every later append and settled() refused", async () => {
      clock.nowMs = startMs;
      const files = await newFiles();
      const failures: unknown[] = [];
      const participant = await openOnFiles(files, 1_000, {
        checkpointDelayMs: 3_600_000,
        onWriteFailure: (error) => failures.push(error),
      });
      // The journal is opened at its first append: a file where its directory was makes that append fail.
      await rm(files.journalDirectory, { recursive: true });
      await writeFile(files.journalDirectory, "not a directory");
      const failure = await participant.prepare("p1", "alice", "debit", 1_000n).then(
        () => assert.fail("a hold that is not durable must not be a yes"),
        (error: unknown) => error,
      );
      assert.equal(failures.length, 1);
      assert.equal(failures[0], failure);
      const store = storeOf(participant);
      await assert.rejects(
        store.append([{ op: "abort", paymentId: "a1", atMs: startMs }]),
        (error) => error === failure,
      );
      await assert.rejects(store.settled(), (error) => error === failure);
      await assert.rejects(participant.transfer("t1", "alice", "bob", 1n, clock.nowMs), (error) => error === failure);
      assert.equal(failures.length, 1, "reported once");
    });

    it("replays a generation whose checkpoint was cut short after the CSV was written: the absolute balances apply once", async () => {
      clock.nowMs = startMs;
      const files = await newFiles();
      const first = await openLazy(files);
      await first.transfer("t1", "alice", "bob", 1_000n, clock.nowMs);
      // What a crash between the CSV rename and the pending section's write leaves: CSV new, generation 0 still named.
      await writeFile(
        files.accountsCsvPath,
        (await readFile(files.accountsCsvPath, "utf8"))
          .replace("alice,100,", "alice,90,")
          .replace("bob,50.25,", "bob,60.25,"),
      );
      const reopened = await openLazy(files);
      assert.equal(reopened.balance("alice").balanceMinor, 9_000n);
      assert.equal(reopened.balance("bob").balanceMinor, 6_025n);
      assert.equal(reopened.totalBalanceMinor(), 15_025n);
      await reopened.close();
    });
  });
});

/** A ledger store in memory whose every append waits until the test settles it, in order. */
class ManualStore implements LedgerStore {
  readonly appended: LedgerEntry[][] = [];
  readonly #writes: Array<{ resolve: () => void; reject: (error: Error) => void }> = [];
  /** Settles once the last append so far has. */
  #last: Promise<void> = Promise.resolve();
  readonly #state: LedgerState;

  constructor(accounts: Array<[string, bigint]>) {
    this.#state = {
      accounts: new Map(
        accounts.map(([username, balanceMinor]): [string, Account] => [username, { balanceMinor, password: "unused" }]),
      ),
      holds: new Map(),
      finished: new Map(),
      transfersForgottenThroughMs: 0,
    };
  }

  async load(): Promise<LedgerState> {
    return this.#state;
  }

  append(entries: readonly LedgerEntry[]): Promise<void> {
    this.appended.push([...entries]);
    const write = new Promise<void>((resolve, reject) => this.#writes.push({ resolve, reject }));
    this.#last = write.catch(() => undefined);
    return write;
  }

  settled(): Promise<void> {
    return this.#last;
  }

  async close(): Promise<void> {}

  /** Completes the oldest append not yet completed. */
  resolveNext(): void {
    const write = this.#writes.shift();
    assert.ok(write !== undefined, "an append to complete");
    write.resolve();
  }

  rejectNext(error: Error): void {
    const write = this.#writes.shift();
    assert.ok(write !== undefined, "an append to fail");
    write.reject(error);
  }
}

/** Tracks how a promise settled, without leaving a rejection unhandled. */
function observe(promise: Promise<unknown>) {
  const state: { settled: "pending" | "resolved" | "rejected"; error: unknown } = {
    settled: "pending",
    error: undefined,
  };
  promise.then(
    () => {
      state.settled = "resolved";
    },
    (error: unknown) => {
      state.settled = "rejected";
      state.error = error;
    },
  );
  return state;
}

/** Lets every already-queued promise reaction run (one macrotask turn); not a delay that decides an outcome. */
function drainMicrotasks(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

describe("Participant over its LedgerStore", () => {
  const options = { bank, holdTimeoutMs, finishedRetainedMax: 1_000, nowMs: () => startMs };

  it("answers a prepare only once the store's append of its hold has resolved; a repeat waits for it too", async () => {
    const store = new ManualStore([
      ["alice", 10_000n],
      ["bob", 5_025n],
    ]);
    const participant = await Participant.open(store, options);
    const vote = observe(participant.prepare("p1", "alice", "debit", 6_000n));
    await drainMicrotasks();
    assert.deepEqual(store.appended, [
      [
        {
          op: "hold",
          paymentId: "p1",
          username: "alice",
          kind: "debit",
          amountMinor: 6_000n,
          preparedAtMs: startMs,
          expiresAtMs: startMs + holdTimeoutMs,
        },
      ],
    ]);
    assert.equal(vote.settled, "pending", "no vote before the hold is durable");
    assert.equal(participant.balance("alice").availableMinor, 4_000n, "the hold counts in memory at once");
    const repeat = observe(participant.prepare("p1", "alice", "debit", 6_000n));
    await drainMicrotasks();
    assert.equal(repeat.settled, "pending", "a repeat waits for the first vote's append");
    assert.equal(store.appended.length, 1, "a repeat appends nothing");
    store.resolveNext();
    await drainMicrotasks();
    assert.equal(vote.settled, "resolved");
    assert.equal(repeat.settled, "resolved");
  });

  it("rejects an operation whose append rejected, and refuses every later one without appending", async () => {
    const store = new ManualStore([
      ["alice", 10_000n],
      ["bob", 5_025n],
    ]);
    const participant = await Participant.open(store, options);
    const failure = new Error("EIO: the disk failed");
    const vote = observe(participant.prepare("p1", "alice", "debit", 1_000n));
    await drainMicrotasks();
    store.rejectNext(failure);
    await drainMicrotasks();
    assert.equal(vote.settled, "rejected");
    assert.equal(vote.error, failure);
    // Memory may be ahead of disk: nothing more is answered, not even a repeat, and nothing more is appended.
    await assert.rejects(participant.prepare("p1", "alice", "debit", 1_000n), (error) => error === failure);
    await assert.rejects(participant.prepare("p2", "bob", "credit", 1n), (error) => error === failure);
    await assert.rejects(participant.commit("p1"), (error) => error === failure);
    await assert.rejects(participant.abort("p1"), (error) => error === failure);
    await assert.rejects(participant.transfer("t1", "alice", "bob", 1n, startMs), (error) => error === failure);
    await assert.rejects(participant.settleTransfer("t2", startMs), (error) => error === failure);
    assert.equal(store.appended.length, 1);
  });
});

describe("the bank's file formats: journal, finished log, pending section", () => {
  let dir = "";
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "paynet-bank-formats-"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  let fileCount = 0;
  async function fileOf(content: string): Promise<string> {
    fileCount += 1;
    const path = join(dir, `file-${fileCount}`);
    await writeFile(path, content);
    return path;
  }
  const int64Max = "9223372036854775807";
  const beyondInt64 = "9223372036854775808";

  describe("the journal", () => {
    // Byte for byte as the build before the schemas wrote them.
    const earlier = [
      '{"op":"hold","paymentId":"p1","username":"alice","kind":"debit","amountMinor":"2500","preparedAtMs":1700000000006,"expiresAtMs":1700000030006}',
      '{"op":"commit","paymentId":"p1","balancesMinor":{"alice":"7500"},"replyBalanceMinor":"7500","atMs":1700000000007}',
      '{"op":"commit","paymentId":"t1","balancesMinor":{"alice":"7000","bob.x":"0"},"replyBalanceMinor":"7000","atMs":1700000000008,"begunAtMs":1700000000001}',
      '{"op":"abort","paymentId":"p2","atMs":1700000000009}',
    ];
    const entries: LedgerEntry[] = [
      {
        op: "hold",
        paymentId: "p1",
        username: "alice",
        kind: "debit",
        amountMinor: 2500n,
        preparedAtMs: 1700000000006,
        expiresAtMs: 1700000030006,
      },
      { op: "commit", paymentId: "p1", balancesMinor: { alice: 7500n }, replyBalanceMinor: 7500n, atMs: 1700000000007 },
      {
        op: "commit",
        paymentId: "t1",
        balancesMinor: { alice: 7000n, "bob.x": 0n },
        replyBalanceMinor: 7000n,
        atMs: 1700000000008,
        begunAtMs: 1700000000001,
      },
      { op: "abort", paymentId: "p2", atMs: 1700000000009 },
    ];

    it("reads a generation as the earlier build wrote it, and writes the same bytes", async () => {
      const path = await fileOf(`${earlier.join("\n")}\n{"op":"ab`);
      assert.deepEqual(await readJournal(path), {
        entries,
        completeBytes: Buffer.byteLength(`${earlier.join("\n")}\n`),
        tornBytes: 9,
      });
      assert.deepEqual(entries.map(encodeEntry), earlier);
      assert.deepEqual(await readJournal(join(dir, "missing.jsonl")), { entries: [], completeBytes: 0, tornBytes: 0 });
    });

    const damaged: ReadonlyArray<[string, string, RegExp | LedgerEntry]> = [
      [
        "an amount of int64's maximum",
        earlier[0]!.replace('"2500"', `"${int64Max}"`),
        { ...entries[0]!, amountMinor: BigInt(int64Max) } as LedgerEntry,
      ],
      [
        "an amount beyond int64",
        earlier[0]!.replace('"2500"', `"${beyondInt64}"`),
        /:2: amountMinor must be an integer string from 0 to 9223372036854775807, got "9223372036854775808"; refusing to start, fix or restore the file$/,
      ],
      [
        "a negative balance",
        earlier[1]!.replace('"7500"}', '"-1"}'),
        /:2: balancesMinor\.alice must be an integer string from 0 to /,
      ],
      [
        "an unknown op",
        '{"op":"refund","paymentId":"p1","atMs":1}',
        /:2: op must be one of "hold", "commit", "abort", got "refund"; refusing to start/,
      ],
      [
        "an unknown kind",
        earlier[0]!.replace('"debit"', '"both"'),
        /:2: kind must be one of "debit", "credit", got "both"/,
      ],
      ["an empty payment id", earlier[3]!.replace('"p2"', '""'), /:2: paymentId must be a non-empty string, got ""/],
      [
        "a balances map that is an array",
        earlier[1]!.replace('{"alice":"7500"}', '["7500"]'),
        /:2: balancesMinor must be an object, got an array/,
      ],
      [
        "a begunAtMs that is not an integer",
        earlier[2]!.replace('"begunAtMs":1700000000001', '"begunAtMs":"soon"'),
        /:2: begunAtMs must be an integer, got "soon"/,
      ],
      ["not JSON", '{"op":"hold",', /:2: not JSON \(/],
    ];
    for (const [name, line, outcome] of damaged) {
      it(`${outcome instanceof RegExp ? "refuses" : "reads"} a line with ${name}${outcome instanceof RegExp ? ", naming the file and the line" : ""}`, async () => {
        const path = await fileOf(`${earlier[3]}\n${line}\n`);
        if (!(outcome instanceof RegExp)) {
          assert.deepEqual((await readJournal(path)).entries, [entries[3], outcome]);
          return;
        }
        await assert.rejects(readJournal(path), (error: Error) => {
          assert.ok(error instanceof BankJournalError, `a BankJournalError, got ${String(error)}`);
          assert.ok(error.message.startsWith(`${path}:2: `), error.message);
          assert.match(error.message, outcome);
          return true;
        });
      });
    }
  });

  describe("the finished log", () => {
    const earlier = [
      '{"transfersForgottenThroughMs":1699999999997}',
      '{"paymentId":"t0","outcome":"committed","atMs":1700000000000,"replyBalanceMinor":"5","begunAtMs":1699999999991}',
      '{"paymentId":"p2","outcome":"aborted","atMs":1700000000007,"replyBalanceMinor":null}',
      '{"paymentId":"t0","outcome":"committed","atMs":1700000000008,"replyBalanceMinor":"6"}',
    ];
    const records = [
      { paymentId: "p2", outcome: "aborted", atMs: 1700000000007, replyBalanceMinor: null },
      { paymentId: "t0", outcome: "committed", atMs: 1700000000008, replyBalanceMinor: 6n },
    ];

    it("reads a log as the earlier build wrote it, a later line of a payment replacing an earlier one; a torn last line is skipped, and cut off at open", async () => {
      const complete = `${earlier.join("\n")}\n`;
      const path = await fileOf(`${complete}{"paymentId":"p9","out`);
      assert.deepEqual(await readFinishedLog(path), records);
      assert.equal(
        await readFile(path, "utf8"),
        `${complete}{"paymentId":"p9","out`,
        "a reader other than the bank cuts nothing",
      );
      const { log, records: opened } = await FinishedLog.open(path, 10);
      assert.deepEqual(opened, records);
      assert.equal(log.transfersForgottenThroughMs, 1699999999997);
      await log.close();
      assert.equal(await readFile(path, "utf8"), complete);
      assert.deepEqual(await readFinishedLog(join(dir, "missing.jsonl")), []);
    });

    it("keeps the highest of several marks", async () => {
      const path = await fileOf(
        `{"transfersForgottenThroughMs":7}\n${earlier[2]}\n{"transfersForgottenThroughMs":5}\n`,
      );
      const { log } = await FinishedLog.open(path, 10);
      assert.equal(log.transfersForgottenThroughMs, 7);
      await log.close();
    });

    const damaged: ReadonlyArray<[string, string, RegExp]> = [
      [
        "a reply balance beyond int64",
        earlier[3]!.replace('"6"', `"${beyondInt64}"`),
        /:2: replyBalanceMinor must be an integer string from 0 to 9223372036854775807, got "9223372036854775808"; refusing to start, fix or restore the file$/,
      ],
      [
        "no reply balance",
        earlier[3]!.replace(',"replyBalanceMinor":"6"', ""),
        /:2: replyBalanceMinor must be an integer string .*, got nothing/,
      ],
      [
        "an unknown outcome",
        earlier[2]!.replace('"aborted"', '"refunded"'),
        /:2: outcome must be one of "committed", "aborted", got "refunded"/,
      ],
      [
        "a negative begunAtMs",
        earlier[1]!.replace("1699999999991", "-1"),
        /:2: begunAtMs must be an integer from 0 to /,
      ],
      [
        "a negative mark",
        '{"transfersForgottenThroughMs":-1}',
        /:2: transfersForgottenThroughMs must be an integer from 0 to /,
      ],
      ["a mark that is not JSON", '{"transfersForgottenThroughMs":', /:2: not JSON \(/],
    ];
    for (const [name, line, message] of damaged) {
      it(`refuses a line with ${name}, naming the file and the line, and leaves the file as it was`, async () => {
        const content = `${earlier[2]}\n${line}\n{"torn`;
        const path = await fileOf(content);
        for (const reading of [() => readFinishedLog(path), () => FinishedLog.open(path, 10)]) {
          await assert.rejects(reading(), (error: Error) => {
            assert.ok(error instanceof FinishedLogError, `a FinishedLogError, got ${String(error)}`);
            assert.ok(error.message.startsWith(`${path}:2: `), error.message);
            assert.match(error.message, message);
            return true;
          });
        }
        assert.equal(await readFile(path, "utf8"), content);
      });
    }
  });

  describe("the pending section", () => {
    const earlier =
      '{"format":"paynet-pending/1","banks":{"SBI":{"holds":[{"paymentId":"p4","username":"alice","kind":"credit","amountMinor":"100","preparedAtMs":1700000000006,"expiresAtMs":1700000030006}],"applying":[{"paymentId":"x","balancesMinor":{"alice":"1"},"replyBalanceMinor":"1"}],"finished":[{"paymentId":"q","outcome":"aborted","atMs":1700000000006,"replyBalanceMinor":null}],"journalGeneration":4},"HDFC":{"holds":"not decoded by SBI"}}}\n';
    const section = {
      holds: new Map([
        [
          "p4",
          {
            paymentId: "p4",
            username: "alice",
            kind: "credit",
            amountMinor: 100n,
            preparedAtMs: 1700000000006,
            expiresAtMs: 1700000030006,
          },
        ],
      ]),
      applying: new Map([["x", { paymentId: "x", balancesMinor: { alice: 1n }, replyBalanceMinor: 1n }]]),
      finished: new Map([["q", { paymentId: "q", outcome: "aborted", atMs: 1700000000006, replyBalanceMinor: null }]]),
      journalGeneration: 4,
    };

    it("reads a section as the earlier build wrote it, decoding only its own bank's, and writes it back the same", async () => {
      const path = await fileOf(earlier);
      assert.deepEqual(await readBankPending(path, "SBI"), section);
      assert.deepEqual(await readBankPending(path, "ICICI"), {
        holds: new Map(),
        applying: new Map(),
        finished: new Map(),
        journalGeneration: 0,
      });
      assert.deepEqual(
        await readBankPending(path, "constructor"),
        { holds: new Map(), applying: new Map(), finished: new Map(), journalGeneration: 0 },
        "no section from Object's prototype",
      );
      await writeBankPending(path, "SBI", await readBankPending(path, "SBI"));
      assert.equal(await readFile(path, "utf8"), earlier);
    });

    it("reads a finished entry without a reply balance, and a section without journalGeneration", async () => {
      const path = await fileOf(
        '{"format":"paynet-pending/1","banks":{"SBI":{"holds":[],"applying":[],"finished":[{"paymentId":"q","outcome":"committed","atMs":1}]}}}',
      );
      assert.deepEqual(await readBankPending(path, "SBI"), {
        holds: new Map(),
        applying: new Map(),
        finished: new Map([["q", { paymentId: "q", outcome: "committed", atMs: 1, replyBalanceMinor: null }]]),
        journalGeneration: 0,
      });
    });

    const damaged: ReadonlyArray<[string, string, string]> = [
      [
        "a hold's amount beyond int64",
        earlier.replace('"100"', `"${beyondInt64}"`),
        `banks.SBI.holds[0].amountMinor must be an integer string from 0 to 9223372036854775807, got "${beyondInt64}"; refusing to start, fix or restore the file`,
      ],
      [
        "a negative hold amount",
        earlier.replace('"100"', '"-100"'),
        'banks.SBI.holds[0].amountMinor must be an integer string from 0 to 9223372036854775807, got "-100"; refusing to start, fix or restore the file',
      ],
      [
        "a negative applying balance",
        earlier.replace('{"alice":"1"}', '{"alice":"-1"}'),
        'banks.SBI.applying[0].balancesMinor.alice must be an integer string from 0 to 9223372036854775807, got "-1"; refusing to start, fix or restore the file',
      ],
      [
        "a hold of an unknown kind",
        earlier.replace('"credit"', '"both"'),
        'banks.SBI.holds[0].kind must be one of "debit", "credit", got "both"; refusing to start, fix or restore the file',
      ],
      [
        "a negative journalGeneration",
        earlier.replace('"journalGeneration":4', '"journalGeneration":-1'),
        "banks.SBI.journalGeneration must be an integer from 0 to 9007199254740991, got -1; refusing to start, fix or restore the file",
      ],
      [
        "no holds",
        earlier.replace('"holds":[{', '"holdz":[{'),
        "banks.SBI.holds must be an array, got nothing; refusing to start, fix or restore the file",
      ],
      [
        "a section that is not an object",
        earlier.replace(/"SBI":\{.*\},"HDFC"/, '"SBI":null,"HDFC"'),
        "banks.SBI must be an object, got null; refusing to start, fix or restore the file",
      ],
      [
        "another format",
        earlier.replace("paynet-pending/1", "paynet-pending/2"),
        'not a paynet-pending/1 document (format must be "paynet-pending/1", got "paynet-pending/2"); refusing to start, fix or restore the file',
      ],
      [
        "no banks",
        '{"format":"paynet-pending/1"}',
        "not a paynet-pending/1 document (banks must be an object, got nothing); refusing to start, fix or restore the file",
      ],
    ];
    for (const [name, content, message] of damaged) {
      it(`refuses ${name}, naming the file and the field`, async () => {
        const path = await fileOf(content);
        await assert.rejects(readBankPending(path, "SBI"), (error: Error) => {
          assert.ok(error instanceof PendingFileError, `a PendingFileError, got ${String(error)}`);
          assert.equal(error.message, `${path}: ${message}`);
          return true;
        });
      });
    }
  });
});
