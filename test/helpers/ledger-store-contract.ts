// The LedgerStore port's contract (src/core/bank/store/ledger-store.ts) as one suite, run against every adapter
// (memory, files, PostgreSQL): what a reopened store loads after appends, group commit, retention of finished
// payments with the watermark of forgotten transfers, fresh state per load, and the participant over it.
import { it } from "node:test";
import assert from "node:assert/strict";
import { Participant } from "../../src/core/bank/participant.js";
import type { Account, LedgerEntry } from "../../src/core/domain/ledger.js";
import type { LedgerState, LedgerStore } from "../../src/core/bank/store/ledger-store.js";

/** A bank's durable ledger under one adapter: open a store on it, as often as a restart would. */
export interface LedgerStoreBank {
  /** A new store instance over the bank's durable state (the previous instance closed or abandoned). */
  open(finishedRetainedMax: number): Promise<LedgerStore>;
}

export interface LedgerStoreAdapter {
  /** A new bank seeded with `accounts` (each test gets its own). */
  create(accounts: ReadonlyMap<string, Account>): Promise<LedgerStoreBank>;
}

const startMs = 1_700_000_000_000;
/** Hash-shaped, so that no adapter hashes it (slowly) at open. */
const passwordHash = "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

function seed(): Map<string, Account> {
  return new Map<string, Account>([
    ["alice", { balanceMinor: 10_000n, password: passwordHash }],
    ["bob", { balanceMinor: 2_000n, password: passwordHash }],
    ["carol", { balanceMinor: 0n, password: passwordHash }],
  ]);
}

function hold(paymentId: string, username: string, kind: "debit" | "credit", amountMinor: bigint): LedgerEntry {
  return { op: "hold", paymentId, username, kind, amountMinor, preparedAtMs: startMs, expiresAtMs: startMs + 1_000 };
}

function balances(state: LedgerState): Record<string, bigint> {
  return Object.fromEntries([...state.accounts].map(([username, account]) => [username, account.balanceMinor]));
}

async function reopened(bank: LedgerStoreBank, store: LedgerStore, finishedRetainedMax = 10): Promise<LedgerState> {
  await store.close();
  const again = await bank.open(finishedRetainedMax);
  const state = await again.load();
  await again.close();
  return state;
}

/** Registers the contract's tests (inside the caller's describe). */
export function ledgerStoreContract(adapter: LedgerStoreAdapter): void {
  it("loads its seed accounts, with no holds and nothing finished", async () => {
    const bank = await adapter.create(seed());
    const store = await bank.open(10);
    const state = await store.load();
    assert.deepEqual(balances(state), { alice: 10_000n, bob: 2_000n, carol: 0n });
    assert.equal(state.accounts.get("alice")?.password, passwordHash);
    assert.equal(state.holds.size, 0);
    assert.equal(state.finished.size, 0);
    assert.equal(state.transfersForgottenThroughMs, 0);
    await store.settled();
    await store.close();
  });

  it("gives back at a reopening what the appends add up to: balances, holds added and removed, finished payments", async () => {
    const bank = await adapter.create(seed());
    const store = await bank.open(10);
    await store.load();
    await store.append([hold("p1", "alice", "debit", 700n), hold("p2", "bob", "credit", 50n)]);
    await store.append([
      { op: "commit", paymentId: "p1", balancesMinor: { alice: 9_300n }, replyBalanceMinor: 9_300n, atMs: startMs + 5 },
      { op: "abort", paymentId: "p2", atMs: startMs + 6 },
    ]);
    await store.append([hold("p3", "bob", "debit", 20n), { op: "abort", paymentId: "p0", atMs: startMs + 7 }]);
    const state = await reopened(bank, store);
    assert.deepEqual(balances(state), { alice: 9_300n, bob: 2_000n, carol: 0n });
    assert.deepEqual([...state.holds.values()], [withoutOp(hold("p3", "bob", "debit", 20n))]);
    assert.deepEqual(
      [...state.finished.values()],
      [
        { paymentId: "p1", outcome: "committed", atMs: startMs + 5, replyBalanceMinor: 9_300n },
        { paymentId: "p2", outcome: "aborted", atMs: startMs + 6, replyBalanceMinor: null },
        { paymentId: "p0", outcome: "aborted", atMs: startMs + 7, replyBalanceMinor: null },
      ],
    );
  });

  it("applies the entries of one batch in order, one account changed by several of them", async () => {
    const bank = await adapter.create(seed());
    const store = await bank.open(10);
    await store.load();
    await store.append([
      hold("d1", "alice", "debit", 1_000n),
      { op: "commit", paymentId: "d1", balancesMinor: { alice: 9_000n }, replyBalanceMinor: 9_000n, atMs: startMs },
      hold("d2", "alice", "debit", 9_000n),
      { op: "abort", paymentId: "d2", atMs: startMs },
      {
        op: "commit",
        paymentId: "t1",
        balancesMinor: { alice: 1_000n, carol: 8_000n },
        replyBalanceMinor: 1_000n,
        atMs: startMs,
        begunAtMs: startMs - 1,
      },
      hold("c1", "carol", "credit", 5n),
      { op: "commit", paymentId: "c1", balancesMinor: { carol: 8_005n }, replyBalanceMinor: 8_005n, atMs: startMs },
    ]);
    const state = await reopened(bank, store);
    assert.deepEqual(balances(state), { alice: 1_000n, bob: 2_000n, carol: 8_005n });
    assert.equal(state.holds.size, 0);
    assert.deepEqual([...state.finished.keys()], ["d1", "d2", "t1", "c1"]);
    assert.equal(state.finished.get("t1")?.begunAtMs, startMs - 1);
  });

  it("group-commits concurrent appends, resolving each only once it is durable, in order", async () => {
    const bank = await adapter.create(seed());
    const store = await bank.open(100);
    await store.load();
    const resolved: number[] = [];
    const appends = Array.from({ length: 20 }, (_, index) =>
      store.append([hold(`h${index}`, "alice", "debit", 10n)]).then(() => resolved.push(index)),
    );
    await store.settled();
    await Promise.all(appends);
    assert.deepEqual(
      resolved,
      Array.from({ length: 20 }, (_, index) => index),
    );
    const state = await reopened(bank, store, 100);
    assert.equal(state.holds.size, 20);
  });

  it("keeps the newest finished payments, raising the watermark by the forgotten transfers", async () => {
    const bank = await adapter.create(seed());
    const store = await bank.open(2);
    await store.load();
    for (const [index, begunAtMs] of [startMs - 30, startMs - 20, startMs - 10].entries()) {
      await store.append([
        {
          op: "commit",
          paymentId: `t${index}`,
          balancesMinor: { alice: 10_000n - BigInt(index + 1), bob: 2_000n + BigInt(index + 1) },
          replyBalanceMinor: 10_000n - BigInt(index + 1),
          atMs: startMs,
          begunAtMs,
        },
      ]);
    }
    await store.append([{ op: "abort", paymentId: "a1", atMs: startMs }]);
    const state = await reopened(bank, store, 2);
    assert.deepEqual([...state.finished.keys()], ["t2", "a1"]);
    assert.equal(state.transfersForgottenThroughMs, startMs - 20);
    assert.deepEqual(balances(state), { alice: 9_997n, bob: 2_003n, carol: 0n });
  });

  it("gives fresh state at every open: the participant may change what it loaded", async () => {
    const bank = await adapter.create(seed());
    const store = await bank.open(10);
    await store.load();
    await store.append([hold("p1", "alice", "debit", 5n)]);
    await store.close();
    const first = await bank.open(10);
    const loaded = await first.load();
    loaded.accounts.get("alice")!.balanceMinor = 0n;
    loaded.holds.get("p1")!.expiresAtMs = 0;
    const state = await reopened(bank, first);
    assert.equal(state.accounts.get("alice")?.balanceMinor, 10_000n);
    assert.equal(state.holds.get("p1")?.expiresAtMs, startMs + 1_000);
  });

  it("serves a participant that finds at a restart every payment it answered", async () => {
    const bank = await adapter.create(seed());
    const options = { bank: "SBI", holdTimeoutMs: 30_000, finishedRetainedMax: 10, nowMs: () => startMs };
    const participant = await Participant.open(await bank.open(10), options);
    await Promise.all([
      participant.prepare("x1", "alice", "debit", 600n),
      participant.prepare("x2", "bob", "credit", 600n),
      participant.prepare("x3", "alice", "debit", 9_000n),
    ]);
    await assert.rejects(participant.prepare("x4", "alice", "debit", 401n), /insufficient funds/);
    assert.equal(await participant.commit("x1"), 9_400n);
    assert.equal(await participant.commit("x2"), 2_600n);
    await participant.abort("x3");
    assert.equal(await participant.transfer("t1", "bob", "carol", 100n, startMs), 2_500n);
    await participant.prepare("x5", "carol", "debit", 100n);
    await participant.close();
    const restarted = await Participant.open(await bank.open(10), options);
    assert.deepEqual(restarted.balance("alice"), { balanceMinor: 9_400n, availableMinor: 9_400n });
    assert.deepEqual(restarted.balance("carol"), { balanceMinor: 100n, availableMinor: 0n });
    assert.deepEqual(
      restarted.holds().map((one) => one.paymentId),
      ["x5"],
    );
    assert.deepEqual(restarted.finishedIds(), ["x1", "x2", "x3", "t1"]);
    assert.equal(await restarted.commit("x1"), 9_400n, "a repeat answers the first result");
    await restarted.commit("x5");
    assert.equal(restarted.totalBalanceMinor(), 11_900n, "the debit of x5 left the bank");
    await restarted.close();
  });
}

function withoutOp(entry: LedgerEntry): unknown {
  const { op: _op, ...rest } = entry;
  return rest;
}
