// Specification of the memory stores (src/core/gateway/store/memory, src/core/bank/store/memory): the ports'
// contract, and power loss as the simulated disk models it — a write is durable only once its flush (a later
// macrotask) completes, the writes of one turn share a flush, a crash keeps only what is durable (a torn last
// write is dropped by the reader), every call on a crashed store hangs, and fromImage restarts from the image.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { MemoryCoordinatorStore } from "../src/core/gateway/store/memory/memory-coordinator-store.js";
import { MemoryLedgerStore, foldLedger } from "../src/core/bank/store/memory/memory-ledger-store.js";
import type { PaymentDetails } from "../src/core/domain/payment.js";
import type { Account, LedgerEntry } from "../src/core/domain/ledger.js";
import type { DiskEvent } from "../src/core/testing/simulated-disk.js";

const startMs = 1_700_000_000_000;

function details(paymentId: string, amountMinor = 500n): PaymentDetails {
  return { paymentId, fromUser: "alice", fromBank: "B1", toUser: "bob", toBank: "B2", amountMinor };
}

/** Whether `promise` settles within `turns` turns of the event loop (a flush takes one). */
async function settlesWithin(promise: Promise<unknown>, turns = 5): Promise<boolean> {
  let settled = false;
  promise.then(
    () => (settled = true),
    () => (settled = true),
  );
  for (let microtask = 0; microtask < 3; microtask += 1) await Promise.resolve();
  for (let turn = 0; turn < turns && !settled; turn += 1) await new Promise((resolve) => setImmediate(resolve));
  return settled;
}

function countingEvents(): { events: DiskEvent[]; onEvent: (event: DiskEvent) => void } {
  const events: DiskEvent[] = [];
  return { events, onEvent: (event) => events.push(event) };
}

describe("MemoryCoordinatorStore", () => {
  const nowMs = () => startMs;

  it("makes a begin durable only once its flush completes, on a later turn", async () => {
    const store = new MemoryCoordinatorStore({ nowMs });
    const begun = await store.beginOrGet(details("p1"));
    assert.equal(begun.created, true);
    assert.equal(begun.record.state, "preparing");
    assert.equal(store.records().find((record) => record.paymentId === "p1")?.state, "preparing", "visible at once");
    assert.deepEqual(store.image().items, [], "not durable in the turn it was written");
    assert.ok(begun.created);
    // A known record is handed out only once durable: an answer or a decision may rest on it.
    const found = store.find("p1");
    const again = store.beginOrGet(details("p1"));
    const tombstone = store.tombstone("p1");
    assert.equal(await settlesWithin(begun.durable, 0), false, "durable only on a later turn");
    assert.equal(await settlesWithin(found, 0), false, "find waits for the write in flight");
    assert.equal(await settlesWithin(again, 0), false, "so does beginOrGet of a known id");
    assert.equal(await settlesWithin(tombstone, 0), false, "and tombstone of a known id");
    assert.equal(await settlesWithin(begun.durable), true);
    assert.equal((await found)?.state, "preparing");
    assert.equal((await again).created, false);
    assert.equal((await tombstone).fromUser, "alice", "a known id is not tombstoned");
    assert.deepEqual(
      store.image().items.map((record) => record.paymentId),
      ["p1"],
    );
  });

  it("shares one flush among the writes of one turn, and resolves an advance only once it is durable", async () => {
    const { events, onEvent } = countingEvents();
    const store = new MemoryCoordinatorStore({ nowMs, onEvent });
    const [first, second] = await Promise.all([store.beginOrGet(details("p1")), store.beginOrGet(details("p2"))]);
    assert.ok(first?.created && second?.created);
    await Promise.all([first.durable, second.durable]);
    assert.deepEqual(events, ["write", "write", "sync-start", "synced"]);
    const advanced = store.advance({ paymentId: "p1", state: "committed" });
    assert.equal(store.image().items.length, 2, "the advance is not durable yet");
    const record = await advanced;
    assert.equal(record.state, "committed");
    assert.equal(store.image().items.at(-1)?.state, "committed");
  });

  it("loses at a crash every write not yet durable, and restarts from the durable image", async () => {
    const store = new MemoryCoordinatorStore({ nowMs });
    const begun = await store.beginOrGet(details("p1"));
    assert.ok(begun.created);
    await begun.durable;
    const advanced = store.advance({ paymentId: "p1", state: "committed" });
    const image = store.crash();
    assert.equal(image.torn, null);
    assert.equal(await settlesWithin(advanced), false, "the advance hangs: the process is dead");
    const restarted = MemoryCoordinatorStore.fromImage(image, { nowMs });
    assert.equal((await restarted.find("p1"))?.state, "preparing");
    assert.deepEqual(
      (await restarted.unfinished()).map((record) => record.paymentId),
      ["p1"],
    );
  });

  it("hangs every call on a crashed instance", async () => {
    const store = new MemoryCoordinatorStore({ nowMs });
    store.crash();
    for (const call of [
      store.beginOrGet(details("p1")),
      store.find("p1"),
      store.tombstone("p1"),
      store.unfinished(),
      store.counts(),
      store.advanceAll([]),
    ]) {
      assert.equal(await settlesWithin(call), false);
    }
  });

  it("drops a torn last write at the restart, and keeps the undurable writes the OS wrote back", async () => {
    const store = new MemoryCoordinatorStore({ nowMs });
    const begun = await store.beginOrGetAll([details("p1"), details("p2")]);
    await Promise.all(begun.flatMap((one) => (one.created ? [one.durable] : [])));
    void store.advance({ paymentId: "p1", state: "aborted", outcome: { reason: "INSUFFICIENT_FUNDS" } });
    void store.advance({ paymentId: "p2", state: "committed" });
    const image = store.crash({ keep: 1, tear: true });
    assert.equal(image.torn?.paymentId, "p2");
    const restarted = MemoryCoordinatorStore.fromImage(image, { nowMs });
    assert.equal((await restarted.find("p1"))?.state, "aborted", "kept: written back before the power went");
    assert.equal((await restarted.find("p2"))?.state, "preparing", "torn: dropped");
  });

  it("creates an id once, however many concurrent calls begin it, and once when a call repeats it", async () => {
    const { events, onEvent } = countingEvents();
    const store = new MemoryCoordinatorStore({ nowMs, onEvent });
    const racing = await Promise.all(Array.from({ length: 10 }, () => store.beginOrGet(details("p1"))));
    assert.equal(racing.filter((one) => one.created).length, 1);
    assert.ok(racing.every((one) => one.record === racing[0]!.record));
    const batch = await store.beginOrGetAll([details("p2"), details("p3"), details("p2", 999n)]);
    assert.deepEqual(
      batch.map((one) => one.created),
      [true, true, false],
    );
    assert.equal(
      batch[2]!.record,
      batch[0]!.record,
      "the repeat gets the record created first (its details may differ)",
    );
    assert.equal(
      events.filter((event) => event === "write").length,
      2,
      "one write for the ten racing calls, one for the call",
    );
  });

  it("tombstones an unknown id durably, and returns the existing record of a known one", async () => {
    const { events, onEvent } = countingEvents();
    const store = new MemoryCoordinatorStore({ nowMs, onEvent });
    const tombstone = await store.tombstone("ghost");
    assert.equal(tombstone.state, "aborted");
    assert.equal(tombstone.finished, true);
    assert.equal(store.image().items.at(-1)?.paymentId, "ghost", "durable once it resolves");
    const begun = await store.beginOrGet(details("p1"));
    const writes = events.filter((event) => event === "write").length;
    assert.equal(await store.tombstone("p1"), begun.record);
    assert.equal(await store.tombstone("ghost"), tombstone);
    assert.equal(events.filter((event) => event === "write").length, writes, "no write for a known id");
  });

  it("finds any record, lists the unfinished, counts each state, and hands out frozen records", async () => {
    const store = new MemoryCoordinatorStore({ nowMs });
    await store.beginOrGetAll([details("p1"), details("p2"), details("p3"), details("p4")]);
    await store.advanceAll([
      { paymentId: "p1", state: "committed", outcome: { finished: true } },
      { paymentId: "p2", state: "aborted", outcome: { reason: "INSUFFICIENT_FUNDS", finished: true } },
      { paymentId: "p3", state: "committed" },
    ]);
    assert.equal((await store.find("p1"))?.finished, true);
    assert.equal(await store.find("nope"), undefined);
    assert.deepEqual((await store.unfinished()).map((record) => record.paymentId).sort(), ["p3", "p4"]);
    assert.deepEqual(await store.counts(), { preparing: 1, committing: 1, aborting: 0, committed: 1, aborted: 1 });
    const record = (await store.find("p4"))!;
    assert.throws(() => ((record as { state: string }).state = "committed"), TypeError);
  });

  it("refuses a change that moves a payment backwards (a programmer error)", async () => {
    const store = new MemoryCoordinatorStore({ nowMs });
    await store.beginOrGet(details("p1"));
    await store.advance({ paymentId: "p1", state: "committed" });
    await assert.rejects(store.advance({ paymentId: "p1", state: "aborted" }), /already committed/);
    await assert.rejects(store.advance({ paymentId: "unknown", state: "aborted" }), /unknown payment/);
  });

  it("with unsafeAckBeforeDurable, resolves an advance that a crash then loses", async () => {
    const store = new MemoryCoordinatorStore({ nowMs, unsafeAckBeforeDurable: true });
    await store.beginOrGet(details("p1"));
    await store.advance({ paymentId: "p1", state: "committed" });
    const restarted = MemoryCoordinatorStore.fromImage(store.crash(), { nowMs });
    assert.equal(await restarted.find("p1"), undefined);
  });
});

describe("MemoryLedgerStore", () => {
  const seed = new Map<string, Account>([
    ["alice", { balanceMinor: 10_000n, password: "hash-a" }],
    ["bob", { balanceMinor: 2_000n, password: "hash-b" }],
  ]);
  const options = { finishedRetainedMax: 10 };
  const hold: LedgerEntry = {
    op: "hold",
    paymentId: "p1",
    username: "alice",
    kind: "debit",
    amountMinor: 700n,
    preparedAtMs: startMs,
    expiresAtMs: startMs + 1_000,
  };
  const commit: LedgerEntry = {
    op: "commit",
    paymentId: "p1",
    balancesMinor: { alice: 9_300n },
    replyBalanceMinor: 9_300n,
    atMs: startMs + 5,
  };

  async function loaded(store: MemoryLedgerStore): Promise<MemoryLedgerStore> {
    await store.load();
    return store;
  }

  it("loads its seed accounts, with no holds and nothing finished", async () => {
    const state = await new MemoryLedgerStore(seed, options).load();
    assert.equal(state.accounts.get("alice")?.balanceMinor, 10_000n);
    assert.equal(state.holds.size, 0);
    assert.equal(state.finished.size, 0);
    assert.equal(state.transfersForgottenThroughMs, 0);
  });

  it("makes an append durable only once its flush completes; the entries of one turn share it", async () => {
    const { events, onEvent } = countingEvents();
    const store = await loaded(new MemoryLedgerStore(seed, { ...options, onEvent }));
    const appends = [store.append([hold]), store.append([{ op: "abort", paymentId: "p0", atMs: startMs }])];
    assert.equal(store.image().items.length, 0);
    assert.equal(await settlesWithin(store.settled()), true);
    await Promise.all(appends);
    assert.equal(store.image().items.length, 2);
    assert.deepEqual(events, ["write", "write", "sync-start", "synced"]);
    assert.equal(await settlesWithin(store.settled(), 0), true, "settled at once when nothing is on its way");
  });

  it("folds the durable entries at a restart: absolute balances, holds added and removed, finished payments", async () => {
    const store = await loaded(new MemoryLedgerStore(seed, options));
    await store.append([
      hold,
      {
        op: "hold",
        paymentId: "p2",
        username: "bob",
        kind: "credit",
        amountMinor: 50n,
        preparedAtMs: startMs,
        expiresAtMs: startMs + 1_000,
      },
    ]);
    await store.append([commit, { op: "abort", paymentId: "p2", atMs: startMs + 6 }]);
    await store.append([
      {
        op: "hold",
        paymentId: "p3",
        username: "bob",
        kind: "debit",
        amountMinor: 20n,
        preparedAtMs: startMs,
        expiresAtMs: startMs + 1_000,
      },
    ]);
    const state = await MemoryLedgerStore.fromImage(store.crash(), options).load();
    assert.equal(state.accounts.get("alice")?.balanceMinor, 9_300n);
    assert.equal(state.accounts.get("bob")?.balanceMinor, 2_000n);
    assert.deepEqual([...state.holds.keys()], ["p3"]);
    assert.deepEqual(
      [...state.finished.values()].map((finished) => [finished.paymentId, finished.outcome]),
      [
        ["p1", "committed"],
        ["p2", "aborted"],
      ],
    );
  });

  it("loses at a crash every entry not yet durable, and hangs every later call", async () => {
    const store = await loaded(new MemoryLedgerStore(seed, options));
    await store.append([hold]);
    const lost = store.append([commit]);
    const image = store.crash();
    assert.equal(await settlesWithin(lost), false);
    assert.equal(await settlesWithin(store.append([commit])), false);
    assert.equal(await settlesWithin(store.settled()), false);
    const state = await MemoryLedgerStore.fromImage(image, options).load();
    assert.deepEqual([...state.holds.keys()], ["p1"]);
    assert.equal(state.accounts.get("alice")?.balanceMinor, 10_000n);
  });

  it("drops a torn last entry: the reader keeps nothing of it", async () => {
    const store = await loaded(new MemoryLedgerStore(seed, options));
    await store.append([hold]);
    void store.append([commit]);
    const image = store.crash({ tear: true });
    assert.equal(image.torn?.op, "commit");
    assert.equal(image.items.length, 1);
    const state = await MemoryLedgerStore.fromImage(image, options).load();
    assert.equal(state.accounts.get("alice")?.balanceMinor, 10_000n);
    assert.equal(state.finished.size, 0);
    assert.ok(state.holds.has("p1"));
  });

  it("keeps the newest finished payments, raising the watermark by the forgotten transfers", async () => {
    const store = await loaded(new MemoryLedgerStore(seed, { finishedRetainedMax: 2 }));
    for (const [index, begunAtMs] of [startMs - 30, startMs - 20, startMs - 10].entries()) {
      await store.append([
        {
          op: "commit",
          paymentId: `t${index}`,
          balancesMinor: { alice: 10_000n - BigInt(index + 1), bob: 2_000n + BigInt(index + 1) },
          replyBalanceMinor: 0n,
          atMs: startMs,
          begunAtMs,
        },
      ]);
    }
    const state = await MemoryLedgerStore.fromImage(store.crash(), { finishedRetainedMax: 2 }).load();
    assert.deepEqual([...state.finished.keys()], ["t1", "t2"]);
    assert.equal(state.transfersForgottenThroughMs, startMs - 30);
    assert.equal(state.accounts.get("bob")?.balanceMinor, 2_003n);
  });

  it("gives fresh state at every load: the participant may change it", async () => {
    const store = await loaded(new MemoryLedgerStore(seed, options));
    await store.append([hold]);
    const image = store.crash();
    const first = foldLedger(image, 10);
    first.accounts.get("alice")!.balanceMinor = 0n;
    first.holds.get("p1")!.expiresAtMs = 0;
    const second = await MemoryLedgerStore.fromImage(image, options).load();
    assert.equal(second.accounts.get("alice")?.balanceMinor, 10_000n);
    assert.equal(second.holds.get("p1")?.expiresAtMs, startMs + 1_000);
  });

  it("checks at load what the participant checked before appending (a programmer error)", () => {
    const image = {
      accounts: seed,
      items: [
        {
          op: "commit",
          paymentId: "p9",
          balancesMinor: { carol: 1n },
          replyBalanceMinor: 1n,
          atMs: startMs,
          begunAtMs: startMs,
        } as LedgerEntry,
      ],
      torn: null,
    };
    assert.throws(() => foldLedger(image, 10), /unknown account carol/);
  });

  it("with unsafeAckBeforeDurable, resolves an append that a crash then loses", async () => {
    const store = await loaded(new MemoryLedgerStore(seed, { ...options, unsafeAckBeforeDurable: true }));
    await store.append([hold]);
    const state = await MemoryLedgerStore.fromImage(store.crash(), options).load();
    assert.equal(state.holds.size, 0);
  });
});
