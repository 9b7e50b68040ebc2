// Several gateways on one PostgreSQL (issue: no single process whose death blocks payments): two coordinators,
// each on a store of its own pool with its own owner id and lease, over the same schema and the same banks
// (an in-memory fake that records every leg). What is specified: one id sent to two gateways at once is one
// payment, answered alike by both; a gateway whose lease expired has its unfinished payments claimed and
// driven by another (undecided → abort, decided → its decision); a late write by a gateway that lost its
// lease, or a payment, is refused by the database and stops that gateway's store; a live gateway's payments
// are never claimed; an expired lease is never renewed. Time passes only through the database's clock for
// leases, and a test waits for the lease to be expired there, never a fixed time.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { Coordinator, type BankDirectory, type BankLink, type PrepareLeg } from "../src/core/gateway/coordinator.js";
import {
  CoordinatorStoreStoppedError,
  GatewayLease,
  LeaseLostError,
  OwnershipLostError,
  PostgresCoordinatorStore,
} from "../src/core/gateway/store/postgres/index.js";
import { openDatabase, type Database } from "../src/core/durable/postgres/database.js";
import { PaymentError } from "../src/core/domain/errors.js";
import { createThrowawayDatabase, type ThrowawayDatabase } from "./helpers/postgres.js";
import { waitUntil } from "./helpers/network.js";

/** The lease of a gateway a test lets lapse (the shortest allowed), and of one that must outlive the test. */
const shortLeaseMs = 500;
const longLeaseMs = 60_000;
const options = {
  prepareTimeoutMs: 5_000,
  decisionCallTimeoutMs: 5_000,
  replyWaitMs: 3_000,
  retryDelayMinMs: 10,
  retryDelayMaxMs: 100,
};

/** What one bank was asked, per payment id; a gate can hold a bank's prepares or commits until released. */
class FakeBank implements BankLink {
  readonly prepared: string[] = [];
  readonly committed: string[] = [];
  readonly aborted: string[] = [];
  holdPrepares: Promise<void> | null = null;
  holdCommits: Promise<void> | null = null;
  onPrepare: (() => void) | null = null;
  onCommit: (() => void) | null = null;

  async prepareAll(legs: readonly PrepareLeg[]): Promise<Array<PaymentError | null>> {
    this.onPrepare?.();
    if (this.holdPrepares !== null) await this.holdPrepares;
    for (const leg of legs) this.prepared.push(leg.paymentId);
    return legs.map(() => null);
  }
  async commitAll(paymentIds: readonly string[]): Promise<Array<bigint | PaymentError>> {
    this.onCommit?.();
    if (this.holdCommits !== null) await this.holdCommits;
    this.committed.push(...paymentIds);
    return paymentIds.map(() => 0n);
  }
  abortAll(paymentIds: readonly string[]): Promise<Array<PaymentError | null>> {
    this.aborted.push(...paymentIds);
    return Promise.resolve(paymentIds.map(() => null));
  }
  transfer(): Promise<bigint> {
    return Promise.reject(new Error("no same-bank payments here"));
  }
  settleTransfer(): Promise<void> {
    return Promise.resolve();
  }
}

function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}

const payer = { username: "alice", bank: "B1" };
const order = (paymentId: string) => ({ paymentId, toUser: "bob", toBank: "B2", amountMinor: 250n });

describe("several gateways on one PostgreSQL", () => {
  let throwaway: ThrowawayDatabase;
  let admin: Database;
  const pools: Database[] = [];
  let schemas = 0;

  before(async () => {
    throwaway = await createThrowawayDatabase("multi_gateway");
    admin = openDatabase({ url: throwaway.url, applicationName: "paynet-test-admin" });
  });
  after(async () => {
    await Promise.all(pools.map((pool) => pool.end().catch(() => undefined)));
    await admin.end();
    await throwaway.drop();
  });

  /** A fresh schema, and the banks every gateway of a test shares. */
  function world() {
    schemas += 1;
    const schema = `multi_gw_${schemas}`;
    const banks = { B1: new FakeBank(), B2: new FakeBank() };
    const directory: BankDirectory = { link: (bank) => banks[bank as keyof typeof banks] ?? null };
    /** A gateway: its pool, store (owner = id), lease and coordinator. */
    const gateway = async (
      gatewayId: string,
      { leaseMs = longLeaseMs, onCommitted = () => undefined }: { leaseMs?: number; onCommitted?: () => void } = {},
    ) => {
      const database = openDatabase({ url: throwaway.url, applicationName: `paynet-test-${gatewayId}` });
      pools.push(database);
      const failures: unknown[] = [];
      const store = await PostgresCoordinatorStore.open({
        database,
        schema,
        owner: gatewayId,
        onWriteFailure: (error) => failures.push(error),
        onTransactionStep: ({ step }) => {
          if (step === "committed") onCommitted();
        },
      });
      const lease = await GatewayLease.acquire({ database, schema, gatewayId, leaseMs });
      const coordinator = new Coordinator(store, directory, options);
      return { gatewayId, store, lease, coordinator, failures };
    };
    const row = async (paymentId: string) =>
      (
        await admin.query<{ state: string; owner: string; finished: boolean }>(
          `SELECT state, owner, finished FROM ${schema}.payments WHERE payment_id = $1`,
          [paymentId],
        )
      ).rows[0];
    /** Resolves once the database's clock has passed `gatewayId`'s lease. */
    const expired = (gatewayId: string) =>
      waitUntil(
        async () =>
          (
            await admin.query<{ expired: boolean }>(
              `SELECT lease_expires_at <= clock_timestamp() AS expired FROM ${schema}.gateways WHERE gateway_id = $1`,
              [gatewayId],
            )
          ).rows[0]?.expired === true,
        `the lease of ${gatewayId} to expire`,
      );
    return { schema, banks, gateway, row, expired };
  }

  it("answers one id sent to two gateways at once as one payment, prepared once", async () => {
    const { banks, gateway, row } = world();
    const a = await gateway("gw-a");
    let bBegan: () => void = () => undefined;
    const b = await gateway("gw-b", { onCommitted: () => bBegan() });
    // A's prepares wait until B has met the payment undecided (B's begin committed, finding A's row).
    const prepares = gate();
    banks.B1.holdPrepares = prepares.promise;
    const started = new Promise<void>((resolve) => (banks.B1.onPrepare = resolve));
    const atA = a.coordinator.makePayment(payer, order("twice"));
    await started;
    banks.B1.onPrepare = null;
    const bFoundIt = new Promise<void>((resolve) => (bBegan = resolve));
    const atB = b.coordinator.makePayment(payer, order("twice"));
    await bFoundIt;
    // B now waits for A's decision, reading the row: A decides once its prepares are answered.
    prepares.open();
    const [fromA, fromB] = await Promise.all([atA, atB]);
    assert.deepEqual(fromB, fromA, "both gateways answer the same outcome");
    assert.deepEqual(banks.B1.prepared, ["twice"], "one debit leg prepared, by the gateway that began it");
    assert.deepEqual(banks.B2.prepared, ["twice"]);
    assert.equal((await row("twice"))?.owner, "gw-a");
    assert.equal((await row("twice"))?.state, "committed");
  });

  it("takes over an undecided payment of a gateway whose lease expired, aborts it, and refuses the old owner's late decision", async () => {
    const { banks, gateway, row, expired } = world();
    const a = await gateway("gw-a", { leaseMs: shortLeaseMs });
    const b = await gateway("gw-b");
    // A prepares and then stalls (paused, partitioned) before it can record a decision.
    const prepares = gate();
    banks.B2.holdPrepares = prepares.promise;
    const stalled = new Promise<void>((resolve) => (banks.B2.onPrepare = resolve));
    const atA = a.coordinator.makePayment(payer, order("stalled"));
    await stalled;

    assert.deepEqual(await b.store.claimOrphans(10), [], "a live gateway's payment is not claimed");
    await expired("gw-a");
    await b.lease.renew();
    const claimed = await b.store.claimOrphans(10);
    assert.deepEqual(
      claimed.map((one) => [one.record.paymentId, one.record.state, one.previousOwner]),
      [["stalled", "preparing", "gw-a"]],
    );
    await b.coordinator.takeOver(claimed.map((one) => one.record));
    await waitUntil(async () => (await row("stalled"))?.finished === true, "B to finish the payment it took");
    assert.deepEqual(await row("stalled"), { state: "aborted", owner: "gw-b", finished: true });
    assert.ok(banks.B1.aborted.includes("stalled") && banks.B2.aborted.includes("stalled"), "B told both banks");

    // A wakes up with both votes yes: its commit decision is refused by the database, and its store stops.
    prepares.open();
    await assert.rejects(atA, (error: unknown) => error instanceof PaymentError && !error.final);
    assert.equal(a.failures.length, 1);
    assert.ok(a.failures[0] instanceof OwnershipLostError, String(a.failures[0]));
    assert.deepEqual(await row("stalled"), { state: "aborted", owner: "gw-b", finished: true }, "B's decision stands");
    assert.deepEqual(banks.B1.committed, [], "no bank was told to commit");
    await assert.rejects(a.store.find("stalled"), CoordinatorStoreStoppedError);
    await assert.rejects(a.lease.renew(), LeaseLostError, "an expired lease is never renewed");
  });

  it("takes over a decided payment and drives its commit to the banks", async () => {
    const { banks, gateway, row, expired } = world();
    const a = await gateway("gw-a", { leaseMs: shortLeaseMs });
    const b = await gateway("gw-b");
    // A records commit, then dies before any bank hears it (its commits never return).
    banks.B1.holdCommits = new Promise<void>(() => undefined);
    const committing = new Promise<void>((resolve) => (banks.B1.onCommit = resolve));
    void a.coordinator.makePayment(payer, order("decided")).catch(() => undefined);
    await committing;
    a.coordinator.stop();
    assert.equal((await row("decided"))?.state, "committed");

    await expired("gw-a");
    await b.lease.renew();
    banks.B1.holdCommits = null;
    banks.B1.onCommit = null;
    const claimed = await b.store.claimOrphans(10);
    assert.deepEqual(
      claimed.map((one) => one.record.paymentId),
      ["decided"],
    );
    await b.coordinator.takeOver(claimed.map((one) => one.record));
    await waitUntil(async () => (await row("decided"))?.finished === true, "B to finish the commit");
    assert.deepEqual(await row("decided"), { state: "committed", owner: "gw-b", finished: true });
    assert.ok(banks.B1.committed.includes("decided") && banks.B2.committed.includes("decided"));
    assert.ok(!banks.B1.aborted.includes("decided"), "a logged commit is never turned into an abort");
  });

  it("refuses a write by a gateway whose lease expired even before anyone claims its payment", async () => {
    const { banks, gateway, row, expired } = world();
    const a = await gateway("gw-a", { leaseMs: shortLeaseMs });
    const prepares = gate();
    banks.B1.holdPrepares = prepares.promise;
    const started = new Promise<void>((resolve) => (banks.B1.onPrepare = resolve));
    const atA = a.coordinator.makePayment(payer, order("late"));
    await started;
    await expired("gw-a");
    prepares.open();
    await assert.rejects(atA, PaymentError);
    assert.ok(a.failures[0] instanceof OwnershipLostError, String(a.failures[0]));
    assert.deepEqual(await row("late"), { state: "preparing", owner: "gw-a", finished: false }, "nothing written");
    assert.ok(
      a.lease.lost !== null ||
        (await a.lease.renew().then(
          () => false,
          () => true,
        )),
      "the lease is lost",
    );
  });

  it("forgets gateways long gone that own nothing unfinished, and keeps the others", async () => {
    const { schema, banks, gateway, expired } = world();
    const idle = await gateway("gw-idle", { leaseMs: shortLeaseMs });
    const owner = await gateway("gw-owner", { leaseMs: shortLeaseMs });
    const live = await gateway("gw-live");
    banks.B1.holdPrepares = new Promise<void>(() => undefined);
    const started = new Promise<void>((resolve) => (banks.B1.onPrepare = resolve));
    void owner.coordinator.makePayment(payer, order("left")).catch(() => undefined);
    await started;
    await expired("gw-idle");
    await expired("gw-owner");
    assert.equal(await live.lease.forgetExpired(0), 1);
    const rows = await admin.query<{ gateway_id: string }>(
      `SELECT gateway_id FROM ${schema}.gateways ORDER BY gateway_id`,
    );
    assert.deepEqual(
      rows.rows.map((row) => row.gateway_id),
      ["gw-live", "gw-owner"],
      "the one owning an unfinished payment stays",
    );
    await assert.rejects(idle.lease.renew(), LeaseLostError);
  });

  it("refuses a second gateway with the same id, and a bank's question about a live gateway's payment waits", async () => {
    const { banks, gateway } = world();
    const a = await gateway("gw-a");
    await assert.rejects(gateway("gw-a"), /gateway id gw-a is already taken/);
    const b = await gateway("gw-b");
    const prepares = gate();
    banks.B1.holdPrepares = prepares.promise;
    const started = new Promise<void>((resolve) => (banks.B1.onPrepare = resolve));
    const atA = a.coordinator.makePayment(payer, order("asked"));
    await started;
    // A bank that asks B about A's undecided payment is told to wait, not abort: A may still commit it.
    assert.equal(await b.coordinator.decisionFor("asked"), "pending");
    prepares.open();
    await atA;
    assert.equal(await b.coordinator.decisionFor("asked"), "commit");
  });
});
