// The gateway's PostgreSQL store on a real server (a throwaway database for this file, a schema per test):
// what a shared database adds to the port's contract (test/coordinator-store.test.ts). Two stores stand for
// two gateways. Faults are made at a chosen step of a transaction (onTransactionStep), never by timing.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { setImmediate as nextTurn } from "node:timers/promises";
import {
  CoordinatorStoreStoppedError,
  PaymentInputError,
  PostgresCoordinatorStore,
  type PostgresCoordinatorStoreOptions,
  type TransactionStep,
  unfinishedQuery,
} from "../src/core/gateway/store/postgres/index.js";
import { countsKey, type PaymentCounts } from "../src/core/gateway/store/coordinator-store.js";
import { migrate, openDatabase, type Database } from "../src/core/durable/postgres/database.js";
import { gatewayMigrations } from "../src/core/gateway/store/postgres/migrations.js";
import type { PaymentDetails, PaymentRecord } from "../src/core/domain/payment.js";
import { createThrowawayDatabase, terminateSessions, type ThrowawayDatabase } from "./helpers/postgres.js";

function details(paymentId: string, amountMinor = 500n): PaymentDetails {
  return { paymentId, fromUser: "alice", fromBank: "B1", toUser: "bob", toBank: "B2", amountMinor };
}

/**
 * A transaction step hook that holds the next transaction open after its statements (before COMMIT) until
 * released: held() resolves, with the release, once one is held.
 */
function holdingHook() {
  let onHeld: ((release: () => void) => void) | null = null;
  return {
    step: async ({ step }: TransactionStep) => {
      const notify = onHeld;
      if (step !== "written" || notify === null) return;
      onHeld = null;
      await new Promise<void>((resolve) => notify(resolve));
    },
    held: () => new Promise<() => void>((resolve) => (onHeld = resolve)),
  };
}

const zeroCounts = (): PaymentCounts => ({ preparing: 0, committing: 0, aborting: 0, committed: 0, aborted: 0 });

describe("the gateway's PostgreSQL store", () => {
  let throwaway: ThrowawayDatabase;
  let admin: Database;
  const databases: Database[] = [];
  let schemas = 0;
  let applications = 0;

  /** A pool of its own (a gateway of its own), with an application name to terminate its sessions by. */
  const gateway = () => {
    applications += 1;
    const applicationName = `paynet-test-gw${applications}-`;
    const database = openDatabase({ url: throwaway.url, applicationName });
    databases.push(database);
    return { database, applicationName };
  };
  const newSchema = () => {
    schemas += 1;
    return `store_test_${schemas}`;
  };
  const open = (schema: string, options: Partial<PostgresCoordinatorStoreOptions> = {}) => {
    const { database, applicationName } = gateway();
    return PostgresCoordinatorStore.open({ database, schema, ...options }).then((store) => ({
      store,
      applicationName,
    }));
  };
  /** The counts as a scan of the table would give them. */
  const scannedCounts = async (schema: string): Promise<PaymentCounts> => {
    const rows = await admin.query<{ state: PaymentRecord["state"]; finished: boolean; n: number }>(
      `SELECT state, finished, count(*)::int AS n FROM ${schema}.payments GROUP BY state, finished`,
    );
    const counts = zeroCounts();
    for (const row of rows.rows) counts[countsKey(row)] += row.n;
    return counts;
  };
  /** Resolves once a session of `applicationName` waits on a lock (another transaction's row). */
  const waitingOnLock = async (applicationName: string) => {
    for (;;) {
      const waiting = await admin.query<{ n: number }>(
        "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND application_name = $2 AND wait_event_type = 'Lock'",
        [throwaway.name, applicationName],
      );
      if (waiting.rows[0]!.n > 0) return;
      await nextTurn();
    }
  };

  before(async () => {
    throwaway = await createThrowawayDatabase("pg_coordinator");
    admin = openDatabase({ url: throwaway.url, applicationName: "paynet-test-admin" });
  });
  after(async () => {
    await Promise.all([admin, ...databases].map((database) => database.end()));
    await throwaway.drop();
  });

  it("two gateways racing on the same ids create each payment once, and both answer with the same record", async () => {
    const schema = newSchema();
    const [a, b] = [await open(schema), await open(schema)];
    const ids = Array.from({ length: 200 }, (_, index) => `race-${index}`);
    // Each gateway asks for every id, in its own order and grouping; both run at once.
    const fromA = Promise.all(ids.map((id) => a.store.beginOrGet(details(id))));
    const fromB = Promise.all(
      [...ids].reverse().map((id, index) => b.store.beginOrGetAll([details(id, BigInt(index + 1))])),
    ).then((answers) => answers.flat().reverse());
    const [answersA, answersB] = await Promise.all([fromA, fromB]);
    for (let index = 0; index < ids.length; index += 1) {
      const [one, other] = [answersA[index]!, answersB[index]!];
      assert.equal(Number(one.created) + Number(other.created), 1, `${ids[index]} created exactly once`);
      assert.deepEqual(one.record, other.record, `${ids[index]}: both gateways answer with the one record`);
      if (one.created) await one.durable;
      if (other.created) await other.durable;
    }
    const rows = await admin.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${schema}.payments`);
    assert.equal(rows.rows[0]!.n, ids.length);
    assert.deepEqual(await a.store.counts(), { ...zeroCounts(), preparing: ids.length });
    await Promise.all([a.store.close(), b.store.close()]);
  });

  it("a begin that meets another gateway's uncommitted insert waits for it: its record if it commits, a new one if not", async () => {
    const holdOnce = holdingHook();
    const schema = newSchema();
    const [a, b] = [await open(schema, { onTransactionStep: holdOnce.step }), await open(schema)];
    const beganA = a.store.beginOrGet(details("shared", 700n));
    const release = await holdOnce.held();
    const beganB = b.store.beginOrGet(details("shared", 900n));
    await waitingOnLock(b.applicationName);
    release();
    const [answerA, answerB] = await Promise.all([beganA, beganB]);
    assert.equal(answerA.created, true);
    assert.equal(answerB.created, false, "B's insert skipped the row A committed");
    assert.deepEqual(answerB.record, answerA.record);
    assert.equal(answerB.record.amountMinor, 700n, "B sees A's details, to compare with its own");

    // Now C's transaction dies before its commit: B's waiting insert goes in, and B creates the payment.
    const failures: unknown[] = [];
    const c = await open(schema, { onWriteFailure: (error) => failures.push(error), onTransactionStep: holdOnce.step });
    const beganC = c.store.beginOrGet(details("second", 700n));
    const releaseC = await holdOnce.held();
    const beganB2 = b.store.beginOrGet(details("second", 900n));
    await waitingOnLock(b.applicationName);
    await terminateSessions(throwaway.name, c.applicationName);
    releaseC();
    const answerC = await beganC;
    assert.equal(answerC.created, true, "answered before its commit, as a new payment is");
    if (answerC.created) await assert.rejects(answerC.durable, "its commit never happened");
    const answerB2 = await beganB2;
    assert.equal(answerB2.created, true, "the row C never committed does not exist: B creates it");
    assert.equal(answerB2.record.amountMinor, 900n);
    assert.equal(failures.length, 1, "C's store was told of its failed write");
    await assert.rejects(c.store.find("second"), CoordinatorStoreStoppedError);
    await Promise.all([a.store.close(), b.store.close(), c.store.close()]);
  });

  it("moves a payment only forward, whichever gateway asks, and a raw backward UPDATE is refused by the table", async () => {
    const schema = newSchema();
    const [a, b] = [await open(schema), await open(schema)];
    const begun = await a.store.beginOrGet(details("p1"));
    assert.ok(begun.created);
    await a.store.advance({ paymentId: "p1", state: "prepared" });
    await a.store.advance({ paymentId: "p1", state: "committed", outcome: { balanceAfterMinor: 10n } });
    await assert.rejects(b.store.advance({ paymentId: "p1", state: "aborted" }), /already committed/);
    await assert.rejects(
      b.store.advance({ paymentId: "p1", state: "prepared" }),
      /may not move from committed to prepared/,
    );
    await assert.rejects(b.store.advance({ paymentId: "nobody", state: "aborted" }), /unknown payment nobody/);
    // An advanceAll is all or nothing: the good change of a refused call is not applied either.
    await b.store.beginOrGet(details("p2"));
    await assert.rejects(
      b.store.advanceAll([
        { paymentId: "p2", state: "aborted" },
        { paymentId: "p1", state: "preparing" },
      ]),
      /may not move/,
    );
    assert.equal((await a.store.find("p2"))!.state, "preparing");
    // An exact repeat of an applied change is applied again (as advancedRecord allows): same state, same outcome.
    const again = await b.store.advance({ paymentId: "p1", state: "committed", outcome: { balanceAfterMinor: 10n } });
    assert.equal(again.state, "committed");
    assert.equal(again.balanceAfterMinor, 10n);
    const finished = await b.store.advance({ paymentId: "p1", state: "committed", outcome: { finished: true } });
    assert.equal(finished.finished, true);
    assert.deepEqual(await a.store.find("p1"), finished, "A reads what B wrote");

    await assert.rejects(
      admin.query(`UPDATE ${schema}.payments SET state = 'preparing', version = version + 1 WHERE payment_id = 'p1'`),
      /may not move from committed to preparing/,
    );
    await assert.rejects(
      admin.query(`UPDATE ${schema}.payments SET finished = false, version = version + 1 WHERE payment_id = 'p1'`),
      /check constraint|may not be unfinished/,
    );
    await assert.rejects(
      admin.query(`UPDATE ${schema}.payments SET amount_minor = 1, version = version + 1 WHERE payment_id = 'p1'`),
      /details may not change/,
    );
    assert.equal(a.store.failure, null, "refused changes do not stop a store");
    assert.equal(b.store.failure, null);
    await Promise.all([a.store.close(), b.store.close()]);
  });

  it("migration 3 keeps a row of an earlier build without legs, and the table keeps what a leg recorded", async () => {
    const schema = newSchema();
    assert.deepEqual(await migrate(admin, schema, gatewayMigrations.slice(0, 2)), [1, 2]);
    await admin.query(
      `INSERT INTO ${schema}.payments (payment_id, from_user, from_bank, to_user, to_bank, amount_minor, state, reason,
         reason_message, finished, balance_after_minor, created_at_ms, decided_at_ms, finished_at_ms, version)
       VALUES ('old', 'alice', 'B1', 'bob', 'B2', 5, 'committed', NULL, NULL, true, 95, 1, 2, 3, 3)`,
    );
    const { store } = await open(schema);
    assert.deepEqual(store.migrationsApplied, [3]);
    const old = await store.find("old");
    assert.equal(old?.finishedAtMs, 3);
    assert.deepEqual(old?.legs, []);

    const begun = await store.beginOrGet(details("p1"));
    assert.ok(begun.created);
    const voted = await store.advance({
      paymentId: "p1",
      state: "committed",
      outcome: {
        legs: [
          { role: "payer", vote: "yes", votedAtMs: 10, ackedAtMs: null },
          { role: "payee", vote: "unanswered", votedAtMs: 11, ackedAtMs: null },
        ],
      },
    });
    assert.equal(voted.legs[1]?.vote, "unanswered");
    await store.advance({
      paymentId: "p1",
      state: "committed",
      outcome: { finished: true, legs: [{ role: "payer", vote: "yes", votedAtMs: 10, ackedAtMs: 20 }] },
    });
    const raw = (set: string) =>
      admin.query(`UPDATE ${schema}.payments SET ${set}, version = version + 1 WHERE payment_id = 'p1'`);
    await assert.rejects(raw("payer_vote = 'no'"), /a leg's recorded vote or acknowledgement may not change/);
    await assert.rejects(raw("payee_voted_at_ms = 12"), /a leg's recorded vote or acknowledgement may not change/);
    await assert.rejects(raw("payer_acked_at_ms = NULL"), /a leg's recorded vote or acknowledgement may not change/);
    await raw("payee_acked_at_ms = 21");
    assert.deepEqual((await store.find("p1"))?.legs, [
      { role: "payer", vote: "yes", votedAtMs: 10, ackedAtMs: 20 },
      { role: "payee", vote: "unanswered", votedAtMs: 11, ackedAtMs: 21 },
    ]);
    const insert = (legColumns: string) =>
      admin.query(
        `INSERT INTO ${schema}.payments (payment_id, from_user, from_bank, to_user, to_bank, amount_minor, state,
           finished, created_at_ms, version, payer_vote, payer_voted_at_ms)
         VALUES ('bad', 'alice', 'B1', 'bob', 'B2', 5, 'aborted', false, 1, 1, ${legColumns})`,
      );
    await assert.rejects(insert("'no', NULL"), /payments_payer_vote_timed/);
    await assert.rejects(insert("NULL, 5"), /payments_payer_vote_timed/);
    await assert.rejects(insert("'maybe', 5"), /payments_payer_vote"/);
    await store.close();
  });

  it("a connection killed before COMMIT keeps nothing of the transaction; the store stops; a reopened one has every acknowledged change", async () => {
    const schema = newSchema();
    const failures: unknown[] = [];
    let killAt: TransactionStep["step"] | null = null;
    let applicationName = "";
    const first = await open(schema, {
      onWriteFailure: (error) => failures.push(error),
      onTransactionStep: async ({ step }: TransactionStep) => {
        if (step !== killAt) return;
        killAt = null;
        await terminateSessions(throwaway.name, applicationName);
      },
    });
    applicationName = first.applicationName;
    const store = first.store;
    const acknowledged: PaymentRecord[] = [];
    for (const id of ["k1", "k2", "k3"]) {
      const begun = await store.beginOrGet(details(id));
      assert.ok(begun.created);
      await begun.durable;
    }
    acknowledged.push(await store.advance({ paymentId: "k1", state: "committed" }));

    // Killed after BEGIN: nothing was answered, so the transaction is retried on a new connection.
    killAt = "begun";
    acknowledged.push(await store.advance({ paymentId: "k2", state: "aborted", outcome: { finished: true } }));
    assert.equal(store.failure, null, "a retried transaction does not stop the store");

    // Killed after its statements, before COMMIT: answers may rest on it, so the store stops.
    killAt = "written";
    const lost = Promise.allSettled([
      store.beginOrGetAll([details("k4"), details("k5")]),
      store.advance({ paymentId: "k3", state: "committed" }),
      store.advance({ paymentId: "k1", state: "committed", outcome: { finished: true } }),
      store.tombstone("ghost"),
    ]);
    const [begun, ...rest] = await lost;
    assert.equal(begun.status, "fulfilled", "new payments are answered before their commit");
    if (begun.status === "fulfilled") for (const one of begun.value) if (one.created) await assert.rejects(one.durable);
    for (const settled of rest) assert.equal(settled.status, "rejected");
    assert.equal(failures.length, 1);
    assert.ok(store.failure !== null);
    await assert.rejects(store.beginOrGet(details("k6")), CoordinatorStoreStoppedError);
    await assert.rejects(store.advance({ paymentId: "k3", state: "aborted" }), CoordinatorStoreStoppedError);
    await store.close();

    const { store: reopened } = await open(schema);
    for (const id of ["k4", "k5", "ghost"])
      assert.equal(await reopened.find(id), undefined, `${id} was never committed`);
    assert.equal((await reopened.find("k3"))!.state, "preparing");
    assert.equal((await reopened.find("k1"))!.finished, false);
    for (const record of acknowledged) assert.deepEqual(await reopened.find(record.paymentId), record);
    assert.deepEqual(await reopened.counts(), await scannedCounts(schema));
    assert.deepEqual(
      (await reopened.unfinished()).map((record) => record.paymentId),
      ["k1", "k3"],
      "unfinished, oldest first",
    );
    await reopened.close();
  });

  it("retries a transaction PostgreSQL undid (a deadlock) before any answer, and stops on any other failure", async () => {
    const schema = newSchema();
    const steps: string[] = [];
    let fault: { step: TransactionStep["step"]; error: Error } | null = null;
    const failures: unknown[] = [];
    const { store } = await open(schema, {
      onWriteFailure: (error) => failures.push(error),
      onTransactionStep: ({ step, attempt }: TransactionStep) => {
        steps.push(`${step}#${attempt}`);
        if (fault === null || fault.step !== step) return;
        const { error } = fault;
        fault = null;
        throw error;
      },
    });
    fault = { step: "written", error: Object.assign(new Error("deadlock detected"), { code: "40P01" }) };
    const begun = await store.beginOrGet(details("d1"));
    assert.ok(begun.created);
    await begun.durable;
    assert.deepEqual(steps, ["begun#1", "written#1", "begun#2", "written#2", "committed#2"]);
    assert.equal(store.failure, null);
    assert.equal((await store.find("d1"))?.state, "preparing");

    fault = { step: "begun", error: Object.assign(new Error("disk full"), { code: "53100" }) };
    await assert.rejects(store.advance({ paymentId: "d1", state: "committed" }), /disk full/);
    assert.equal(failures.length, 1);
    await assert.rejects(store.find("d1"), CoordinatorStoreStoppedError);
    await store.close();
    const { store: reopened } = await open(schema);
    assert.equal((await reopened.find("d1"))?.state, "preparing");
    assert.deepEqual(await reopened.counts(), { ...zeroCounts(), preparing: 1 });
    await reopened.close();
  });

  it("group-commits: 200 concurrent begins and their advances share a handful of transactions", async () => {
    const schema = newSchema();
    let commits = 0;
    const { store } = await open(schema, {
      onTransactionStep: ({ step }: TransactionStep) => {
        if (step === "committed") commits += 1;
      },
    });
    const ids = Array.from({ length: 200 }, (_, index) => `g${index}`);
    const begun = await Promise.all(ids.map((id) => store.beginOrGet(details(id))));
    await Promise.all(begun.flatMap((one) => (one.created ? [one.durable] : [])));
    const beginCommits = commits;
    await Promise.all(ids.map((paymentId) => store.advance({ paymentId, state: "committed" })));
    const advanceCommits = commits - beginCommits;
    assert.ok(beginCommits <= 3, `200 begins took ${beginCommits} commits`);
    assert.ok(advanceCommits <= 3, `200 advances took ${advanceCommits} commits`);
    // The database's own word: the transactions that last wrote the rows.
    const writers = await admin.query<{ n: number }>(
      `SELECT count(DISTINCT xmin::text)::int AS n FROM ${schema}.payments`,
    );
    assert.ok(writers.rows[0]!.n <= 3, `rows last written by ${writers.rows[0]!.n} transactions`);
    assert.deepEqual(await store.counts(), { ...zeroCounts(), committing: 200 });
    await store.close();
  });

  it("keeps the counts right across many changes, several gateways and a reopening, without scanning", async () => {
    const schema = newSchema();
    const [a, b] = [await open(schema, { countStripe: 0 }), await open(schema, { countStripe: 5 })];
    const stores = [a.store, b.store];
    for (let round = 0; round < 5; round += 1) {
      const ids = Array.from({ length: 40 }, (_, index) => `c${round}-${index}`);
      // Durable before the other gateway advances them: a new payment is answered before its COMMIT.
      await Promise.all(
        ids.map(async (id, index) => {
          const begun = await stores[index % 2]!.beginOrGet(details(id));
          if (begun.created) await begun.durable;
        }),
      );
      // Each step taken by either gateway: counts move between stripes, their sum stays right.
      await Promise.all(
        ids.map((paymentId, index) => {
          const store = stores[(index + round) % 2]!;
          if (index % 5 === 0) return Promise.resolve();
          if (index % 5 === 1) return store.advance({ paymentId, state: "prepared" });
          if (index % 5 === 2)
            return store.advanceAll([
              { paymentId, state: "committed" },
              { paymentId, state: "committed", outcome: { finished: true } },
            ]);
          if (index % 5 === 3) return store.advance({ paymentId, state: "aborted" });
          return store.advance({ paymentId, state: "aborted", outcome: { finished: true } });
        }),
      );
      await Promise.all(ids.slice(0, 3).map((id) => stores[round % 2]!.tombstone(`${id}-ghost`)));
      assert.deepEqual(await a.store.counts(), await scannedCounts(schema), `round ${round}`);
    }
    await Promise.all([a.store.close(), b.store.close()]);
    const { store: reopened } = await open(schema);
    const counts = await reopened.counts();
    assert.deepEqual(counts, await scannedCounts(schema));
    assert.deepEqual(counts, { preparing: 80, committing: 0, aborting: 40, committed: 40, aborted: 55 });
    const plan = await admin.query<{ "QUERY PLAN": string }>(
      `EXPLAIN SELECT bucket, sum(payments) FROM ${schema}.payment_counts GROUP BY bucket`,
    );
    assert.doesNotMatch(plan.rows.map((row) => row["QUERY PLAN"]).join("\n"), /payments\b(?!_)/);
    await reopened.close();
  });

  it("keeps finished payments for good, and finds the unfinished among them through the partial index", async () => {
    const schema = newSchema();
    const { store } = await open(schema);
    // A long history, written directly: only the plan and the answers are in question here.
    await admin.query(
      `INSERT INTO ${schema}.payments SELECT 'old-' || n, 'alice', 'B1', 'bob', 'B2', n, 'committed', NULL, NULL,
         true, 5, n, n, n, 2 FROM generate_series(1, 100000) AS n`,
    );
    for (const id of ["new-1", "new-2"]) {
      const begun = await store.beginOrGet(details(id));
      if (begun.created) await begun.durable;
    }
    await store.advance({ paymentId: "new-1", state: "committed" });
    await admin.query(`ANALYZE ${schema}.payments`);
    const plan = await admin.query<{ "QUERY PLAN": string }>(`EXPLAIN ${unfinishedQuery(schema)}`);
    assert.match(plan.rows.map((row) => row["QUERY PLAN"]).join("\n"), /payments_unfinished/);
    assert.deepEqual(
      (await store.unfinished()).map((record) => record.paymentId),
      ["new-1", "new-2"],
    );
    const old = await store.find("old-77777");
    assert.equal(old?.amountMinor, 77777n);
    assert.equal((await store.beginOrGet(details("old-5"))).created, false, "an id however old is never begun again");
    await store.close();
  });

  it("refuses bad input to its caller alone, and stores any reason message a bank sends", async () => {
    const schema = newSchema();
    const { store } = await open(schema);
    const good = store.beginOrGet(details("fine"));
    const bad: Array<[string, () => Promise<unknown>]> = [
      ["a negative amount", () => store.beginOrGet(details("neg", -1n))],
      ["an amount beyond int8", () => store.beginOrGet(details("big", 2n ** 63n))],
      ["a NUL in a name", () => store.beginOrGet({ ...details("nul"), toUser: "bo\u0000b" })],
      ["a lone surrogate", () => store.beginOrGet({ ...details("sur"), fromUser: "al\ud800ice" })],
      ["an empty id", () => store.beginOrGet(details(""))],
      ["an empty user", () => store.beginOrGet({ ...details("empty"), fromUser: "" })],
      ["a number amount", () => store.beginOrGet({ ...details("num"), amountMinor: 5 as unknown as bigint })],
      ["an unknown state", () => store.advance({ paymentId: "fine", state: "done" as "committed" })],
      [
        "an unknown reason",
        () => store.advance({ paymentId: "fine", state: "aborted", outcome: { reason: "NOPE" as "INTERNAL" } }),
      ],
      [
        "a balance beyond int8",
        () => store.advance({ paymentId: "fine", state: "committed", outcome: { balanceAfterMinor: -(2n ** 64n) } }),
      ],
      ["a NUL in a tombstone's id", () => store.tombstone("gh\u0000st")],
      ["a NUL in a found id", () => store.find("gh\u0000st")],
    ];
    for (const [what, call] of bad) await assert.rejects(call(), PaymentInputError, what);
    const begun = await good;
    assert.ok(begun.created);
    await begun.durable;
    const aborted = await store.advance({
      paymentId: "fine",
      state: "aborted",
      outcome: { reason: "INSUFFICIENT_FUNDS", reasonMessage: `no\u0000money ${"é".repeat(1_014)}\ud83d\ude00` },
    });
    assert.equal(aborted.reasonMessage!.length, 1_024);
    assert.ok(aborted.reasonMessage!.startsWith("no\ufffdmoney"), "a NUL becomes U+FFFD");
    assert.ok(aborted.reasonMessage!.endsWith("\ufffd"), "a pair cut in half becomes U+FFFD");
    assert.deepEqual(await store.find("fine"), aborted, "the record handed out is the one stored");
    assert.equal(store.failure, null);
    assert.deepEqual(await store.counts(), { ...zeroCounts(), aborting: 1 });
    await store.close();
    await assert.rejects(store.find("fine"), /closed/);
  });
});
