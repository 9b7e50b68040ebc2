// The shared ledger (several processes of one bank on one PostgreSQL schema, `paynet bank --multi-instance`) on
// a real server and a throwaway database: two SharedLedger instances, each with a pool of its own as two
// processes would have, handle the same payment ids at once (a retried Prepare or Commit at both, an Abort racing
// a Prepare, a transfer at both) and agree: at most one hold per payment, one balance change, the same answer
// to every repeat; racing Prepares on one account never overdraw it; the overdue holds are claimed by one
// instance each; and the bank's session lock lets shared holders in together but never beside an exclusive one.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { holdSessionLock, openDatabase, type Database } from "../src/core/durable/postgres/database.js";
import { PostgresLedgerStore, SharedLedger, bankSchemaName } from "../src/core/bank/store/postgres/index.js";
import { PaymentError } from "../src/core/domain/errors.js";
import type { Account } from "../src/core/domain/ledger.js";
import { createThrowawayDatabase, type ThrowawayDatabase } from "./helpers/postgres.js";

const passwordHash = "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
const holdTimeoutMs = 30_000;

let throwaway: ThrowawayDatabase;
const pools: Database[] = [];
let banks = 0;

function pool(applicationName: string): Database {
  const database = openDatabase({ url: throwaway.url, applicationName });
  pools.push(database);
  return database;
}

function accounts(entries: Array<[string, bigint]>): Map<string, Account> {
  return new Map(entries.map(([username, balanceMinor]) => [username, { balanceMinor, password: passwordHash }]));
}

/** Two instances of a new bank, each on a pool of its own, over a schema seeded with `seed`. */
async function twoInstances(
  seed: Map<string, Account>,
  options: { nowMs?: () => number } = {},
): Promise<{ bank: string; schema: string; a: SharedLedger; b: SharedLedger; sql: Database }> {
  banks += 1;
  const bank = `S${banks}`;
  const open = async (name: string) => {
    const database = pool(`${bank}-${name}`);
    const schema = await PostgresLedgerStore.prepareSchema({
      database,
      bank,
      initialAccounts: () => Promise.resolve(new Map(seed)),
    });
    return SharedLedger.open({ database, bank, schema, finishedRetainedMax: 1_000, holdTimeoutMs, ...options });
  };
  // Both open at once, as two processes started together would: the seed is imported once.
  const [a, b] = await Promise.all([open("a"), open("b")]);
  return { bank, schema: bankSchemaName(bank), a, b, sql: pool(`${bank}-check`) };
}

/** The outcome of a call as a comparable value: its result, or its refusal's code. */
async function outcome<T>(call: Promise<T>): Promise<T | string> {
  try {
    return await call;
  } catch (error) {
    if (error instanceof PaymentError) return error.code;
    throw error;
  }
}

async function rows(sql: Database, schema: string) {
  const accountsRows = await sql.query<{
    username: string;
    balance_minor: string;
    held_debit_minor: string;
    held_credit_minor: string;
  }>(`SELECT username, balance_minor, held_debit_minor, held_credit_minor FROM ${schema}.accounts ORDER BY username`);
  const holds = await sql.query<{ payment_id: string }>(`SELECT payment_id FROM ${schema}.holds`);
  const finished = await sql.query<{ payment_id: string; outcome: string }>(
    `SELECT payment_id, outcome FROM ${schema}.finished`,
  );
  return {
    accounts: new Map(accountsRows.rows.map((row) => [row.username, row])),
    holds: holds.rows.map((row) => row.payment_id),
    finished: new Map(finished.rows.map((row) => [row.payment_id, row.outcome])),
  };
}

const ids = (prefix: string, count: number) => Array.from({ length: count }, (_, index) => `${prefix}-${index}`);

describe("the shared ledger: two instances of one bank on one schema", () => {
  before(async () => {
    throwaway = await createThrowawayDatabase("shared_ledger");
  });
  after(async () => {
    await Promise.all(pools.map((database) => database.end()));
    await throwaway.drop();
  });

  it("one payment id prepared and committed at both at once: one hold, one balance change, the same answers", async () => {
    const { a, b, sql, schema } = await twoInstances(accounts([["alice", 100_000n]]));
    const payments = ids("pc", 40);
    // Each Prepare twice at each instance, all at once: a retried leg at both, a batch leg and a single one.
    const votes = await Promise.all(
      payments.flatMap((id) => [a, b, a, b].map((ledger) => outcome(ledger.prepare(id, "alice", "debit", 100n)))),
    );
    assert.ok(
      votes.every((vote) => vote === undefined),
      `every Prepare is a yes vote: ${votes.filter(Boolean).join(", ")}`,
    );
    const prepared = await rows(sql, schema);
    assert.equal(prepared.holds.length, payments.length, "one hold per payment");
    assert.equal(prepared.accounts.get("alice")!.held_debit_minor, String(payments.length * 100), "reserved once each");
    const answers = await Promise.all(
      payments.map((id) => Promise.all([a, b, b, a].map((ledger) => outcome(ledger.commit(id))))),
    );
    for (const [index, perPayment] of answers.entries()) {
      assert.equal(typeof perPayment[0], "bigint", `${payments[index]} committed: ${String(perPayment[0])}`);
      assert.ok(
        perPayment.every((answer) => answer === perPayment[0]),
        `every Commit of ${payments[index]} answers the same: ${perPayment.join(", ")}`,
      );
    }
    const balancesAfter = answers.map((perPayment) => perPayment[0] as bigint).sort((x, y) => (x < y ? 1 : -1));
    assert.deepEqual(
      balancesAfter,
      payments.map((_, index) => 100_000n - 100n * BigInt(index + 1)),
      "each commit applied once, one after another",
    );
    const committed = await rows(sql, schema);
    assert.equal(committed.holds.length, 0);
    assert.equal(committed.accounts.get("alice")!.balance_minor, String(100_000 - payments.length * 100));
    assert.equal(committed.accounts.get("alice")!.held_debit_minor, "0");
    assert.ok(payments.every((id) => committed.finished.get(id) === "committed"));
    // A repeat later, at either: the first answer.
    assert.equal(await b.commit(payments[0]!), answers[0]![0]);
    assert.equal(
      await a.prepare(payments[0]!, "alice", "debit", 100n),
      undefined,
      "a Prepare repeated after the commit is a yes",
    );
  });

  it("an Abort racing a Prepare and a Commit of the same id at the other instance: one outcome, no hold left", async () => {
    const { a, b, sql, schema } = await twoInstances(accounts([["bob", 0n]]));
    const payments = ids("ab", 30);
    const results = await Promise.all(
      payments.map((id) =>
        Promise.all([
          outcome(a.prepare(id, "bob", "credit", 250n)),
          outcome(b.abort(id)),
          outcome(a.abort(id)),
          outcome(b.commit(id)),
        ]),
      ),
    );
    const after = await rows(sql, schema);
    assert.deepEqual(after.holds, [], "no hold left");
    let committed = 0n;
    for (const [index, [prepare, abortB, abortA, commit]] of results.entries()) {
      const id = payments[index]!;
      const final = after.finished.get(id);
      if (final === "committed") {
        // The commit came after the Prepare and before both Aborts: both Aborts are refused, as they would be.
        assert.equal(prepare, undefined);
        assert.equal(typeof commit, "bigint");
        assert.deepEqual([abortA, abortB], ["IDEMPOTENCY_CONFLICT", "IDEMPOTENCY_CONFLICT"]);
        committed += 250n;
      } else {
        assert.equal(final, "aborted", `${id} finished`);
        assert.ok(prepare === undefined || prepare === "PAYMENT_ABORTED", `${id} prepare: ${String(prepare)}`);
        assert.ok(commit === "UNKNOWN_PAYMENT" || commit === "PAYMENT_ABORTED", `${id} commit: ${String(commit)}`);
        assert.deepEqual([abortA, abortB], [undefined, undefined], "an Abort is idempotent");
      }
    }
    assert.equal(after.accounts.get("bob")!.balance_minor, String(committed), "only the committed credits applied");
    assert.equal(after.accounts.get("bob")!.held_credit_minor, "0");
    // Once aborted, a Prepare at either is refused.
    const aborted = payments.find((id) => after.finished.get(id) === "aborted");
    assert.ok(aborted !== undefined, "some payment was aborted");
    assert.equal(await outcome(b.prepare(aborted, "bob", "credit", 250n)), "PAYMENT_ABORTED");
  });

  it("Prepares of different payments on one account at both instances never reserve more than it has", async () => {
    const { a, b, sql, schema } = await twoInstances(accounts([["carol", 1_000n]]));
    const votes = await Promise.all(
      ids("funds", 40).map((id, index) => outcome((index % 2 === 0 ? a : b).prepare(id, "carol", "debit", 100n))),
    );
    assert.equal(votes.filter((vote) => vote === undefined).length, 10, "exactly the funds' worth voted yes");
    assert.equal(votes.filter((vote) => vote === "INSUFFICIENT_FUNDS").length, 30);
    const after = await rows(sql, schema);
    assert.equal(after.holds.length, 10);
    assert.equal(after.accounts.get("carol")!.held_debit_minor, "1000");
    assert.deepEqual(await a.balance("carol"), { balanceMinor: 1_000n, availableMinor: 0n });
  });

  it("a same-bank transfer sent to both at once applies once; both answer the payer's balance after it", async () => {
    const { a, b, sql, schema } = await twoInstances(
      accounts([
        ["dave", 5_000n],
        ["erin", 0n],
      ]),
    );
    const payments = ids("tr", 20);
    const answers = await Promise.all(
      payments.map((id, index) =>
        Promise.all(
          [a, b, a].map((ledger) =>
            outcome(
              index % 2 === 0
                ? ledger.transfer(id, "dave", "erin", 100n, 1_000 + index)
                : ledger.transfer(id, "erin", "dave", 1n, 1_000 + index),
            ),
          ),
        ),
      ),
    );
    for (const perPayment of answers)
      assert.ok(
        perPayment.every((answer) => answer === perPayment[0]),
        `the same answer at both: ${perPayment.join(", ")}`,
      );
    const after = await rows(sql, schema);
    const dave = BigInt(after.accounts.get("dave")!.balance_minor);
    const erin = BigInt(after.accounts.get("erin")!.balance_minor);
    const erinPaid = BigInt(
      answers.filter((perPayment, index) => index % 2 === 1 && typeof perPayment[0] === "bigint").length,
    );
    assert.equal(dave + erin, 5_000n, "money conserved");
    assert.equal(dave, 5_000n - 10n * 100n + erinPaid, "each transfer applied once");
    for (const [index, id] of payments.entries())
      assert.equal(
        after.finished.get(id),
        typeof answers[index]![0] === "bigint" ? "committed" : undefined,
        `${id}: recorded as answered (${String(answers[index]![0])})`,
      );
  });

  it("overdue holds are claimed by one instance each per recheck period", async () => {
    let nowMs = 1_800_000_000_000;
    const { a, b } = await twoInstances(accounts([["frank", 10_000n]]), { nowMs: () => nowMs });
    const payments = ids("od", 25);
    await Promise.all(payments.map((id) => a.prepare(id, "frank", "debit", 10n)));
    assert.deepEqual(await b.claimOverdueHolds(5_000, 100), [], "none is overdue yet");
    nowMs += holdTimeoutMs;
    const [claimedA, claimedB] = await Promise.all([a.claimOverdueHolds(5_000, 100), b.claimOverdueHolds(5_000, 100)]);
    const claimed = [...claimedA, ...claimedB].map((hold) => hold.paymentId).sort();
    assert.deepEqual(claimed, [...payments].sort(), "each overdue hold claimed once, by one of them");
    assert.deepEqual(await a.claimOverdueHolds(5_000, 100), [], "not again before the recheck period");
    nowMs += 5_000;
    assert.equal((await b.claimOverdueHolds(5_000, 10)).length, 10, "again after it, at most holdsMax at a time");
  });

  it("the bank's session lock: shared holders together, never beside an exclusive one", async () => {
    const name = `paynet bank S-lock-${Date.now()}`;
    const first = await holdSessionLock(pool("lock-1"), name, { shared: true });
    const second = await holdSessionLock(pool("lock-2"), name, { shared: true });
    await assert.rejects(holdSessionLock(pool("lock-3"), name), /already held by lock-[12]/);
    await first.release();
    await second.release();
    const alone = await holdSessionLock(pool("lock-4"), name);
    await assert.rejects(holdSessionLock(pool("lock-5"), name, { shared: true }), /already held by lock-4/);
    await alone.release();
  });
});
