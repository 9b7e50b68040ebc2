// The bank's PostgreSQL ledger store on a real server and a throwaway database: the LedgerStore contract, then
// what only a database shares with other writers and loses with its connections: two stores racing Prepares
// on one account never overdraw it (the SQL's guard, not memory), a session killed before any statement of an
// append leaves nothing of it, an append whose COMMIT went through but whose reply was lost is never applied
// twice, the initial import happens once, the export is the seed's CSV, and bad input changes nothing.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { openDatabase, type Database } from "../src/core/durable/postgres/database.js";
import {
  PostgresLedgerStore,
  bankSchemaName,
  exportBankAccounts,
  LedgerWriteRefused,
  type PostgresLedgerStoreOptions,
} from "../src/core/bank/store/postgres/index.js";
import { parseAccountsCsv, serializeAccountsCsv } from "../src/core/bank/store/file/accounts-csv.js";
import { isPasswordHash, verifyPassword } from "../src/core/bank/passwords.js";
import type { Account, LedgerEntry } from "../src/core/domain/ledger.js";
import { connectionLost, faultyDatabase } from "../src/core/testing/faulty-database.js";
import { runPostgresLedgerSchedule } from "../src/core/testing/postgres-ledger-schedule.js";
import { createThrowawayDatabase, terminateSessions, type ThrowawayDatabase } from "./helpers/postgres.js";
import { ledgerStoreContract } from "./helpers/ledger-store-contract.js";

const startMs = 1_700_000_000_000;
const passwordHash = "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
/** How long a kill waits for the session to exit: then the next statement on it fails for certain. */
const killWaitMs = 5_000;

let throwaway: ThrowawayDatabase;
const pools: Database[] = [];
let banks = 0;

/** A pool of its own (as another process would have), named so that its sessions can be killed together. */
function pool(applicationName: string): Database {
  const database = openDatabase({ url: throwaway.url, applicationName });
  pools.push(database);
  return database;
}

function accounts(entries: Array<[string, bigint]>): Map<string, Account> {
  return new Map(entries.map(([username, balanceMinor]) => [username, { balanceMinor, password: passwordHash }]));
}

function newBank(): string {
  banks += 1;
  return `T${banks}`;
}

function storeOptions(
  database: Database,
  bank: string,
  seed: Map<string, Account>,
  extra: Partial<PostgresLedgerStoreOptions> = {},
): PostgresLedgerStoreOptions {
  return { database, bank, finishedRetainedMax: 100, initialAccounts: () => Promise.resolve(new Map(seed)), ...extra };
}

function hold(paymentId: string, username: string, kind: "debit" | "credit", amountMinor: bigint): LedgerEntry {
  return { op: "hold", paymentId, username, kind, amountMinor, preparedAtMs: startMs, expiresAtMs: startMs + 1_000 };
}

/** Every row of the bank's tables, as text: two dumps are equal when nothing changed. */
async function dump(database: Database, bank: string): Promise<string> {
  const schema = bankSchemaName(bank);
  const parts: string[] = [];
  for (const [table, order] of [
    ["accounts", "username"],
    ["holds", "payment_id"],
    ["finished", "seq"],
    ["meta", "id"],
  ]) {
    const result = await database.query(`SELECT * FROM ${schema}.${table} ORDER BY ${order}`);
    parts.push(`${table}: ${JSON.stringify(result.rows)}`);
  }
  return parts.join("\n");
}

async function countAccounts(database: Database, schema: string): Promise<number> {
  const result = await database.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${schema}.accounts`);
  return result.rows[0]?.n ?? -1;
}

/** The invariants in SQL: no balance below its debit holds, and each account's held sums are its holds'. */
async function assertInvariants(database: Database, bank: string): Promise<void> {
  const schema = bankSchemaName(bank);
  const result = await database.query(
    `SELECT a.username FROM ${schema}.accounts a
       LEFT JOIN (SELECT username, sum(amount_minor) FILTER (WHERE kind = 'debit') AS debit_minor,
                         sum(amount_minor) FILTER (WHERE kind = 'credit') AS credit_minor
                    FROM ${schema}.holds GROUP BY username) h USING (username)
      WHERE a.balance_minor < COALESCE(h.debit_minor, 0) OR a.balance_minor < 0
         OR a.held_debit_minor <> COALESCE(h.debit_minor, 0) OR a.held_credit_minor <> COALESCE(h.credit_minor, 0)`,
  );
  assert.deepEqual(result.rows, [], "every account covers its debit holds, and its held sums are its holds'");
}

before(async () => {
  throwaway = await createThrowawayDatabase("pg_ledger");
});
after(async () => {
  await Promise.all(pools.splice(0).map((database) => database.end()));
  await throwaway.drop();
});

describe("LedgerStore contract: PostgresLedgerStore", () => {
  ledgerStoreContract({
    create(seed) {
      const database = pool("paynet-test-contract");
      const bank = newBank();
      return Promise.resolve({
        open: (finishedRetainedMax) =>
          PostgresLedgerStore.open({ ...storeOptions(database, bank, new Map(seed)), finishedRetainedMax }),
      });
    },
  });
});

describe("PostgresLedgerStore", () => {
  it("lets two stores racing Prepares on one account never overdraw it: the SQL guard refuses the second", async () => {
    const bank = newBank();
    const first = pool("paynet-test-race-a");
    const second = pool("paynet-test-race-b");
    const rounds = 40;
    let refusals = 0;
    for (let round = 0; round < rounds; round += 1) {
      // Both stores load the same state, as two processes on one schema would: each believes 1,000 available.
      const stores = await Promise.all(
        [first, second].map((database) =>
          PostgresLedgerStore.open(storeOptions(database, bank, accounts([["alice", 1_000n]]))),
        ),
      );
      await Promise.all(stores.map((store) => store.load()));
      const outcomes = await Promise.allSettled(
        stores.map((store, index) =>
          store.append([
            hold(`r${round}-${index}-a`, "alice", "debit", 300n),
            hold(`r${round}-${index}-b`, "alice", "debit", 300n),
            hold(`r${round}-${index}-c`, "alice", "debit", 300n),
          ]),
        ),
      );
      const won = outcomes.filter((outcome) => outcome.status === "fulfilled").length;
      assert.equal(won, 1, `round ${round}: exactly one store's 900 fits in 1,000`);
      for (const outcome of outcomes)
        if (outcome.status === "rejected") {
          assert.ok(outcome.reason instanceof LedgerWriteRefused || /debit_holds_covered/.test(String(outcome.reason)));
          refusals += 1;
        }
      await assertInvariants(first, bank);
      // Release the round's holds through a third store, so that the next round starts from 1,000 again.
      const cleaner = await PostgresLedgerStore.open(storeOptions(first, bank, accounts([])));
      const { holds } = await cleaner.load();
      await cleaner.append([...holds.keys()].map((paymentId) => ({ op: "abort" as const, paymentId, atMs: startMs })));
      await cleaner.close();
      await Promise.all(stores.map((store) => store.close()));
    }
    assert.equal(refusals, rounds);
    await assertInvariants(first, bank);
  });

  it("applies many holds on one account in one batch under their cumulative guard: one over the funds refuses the batch, nothing applied", async () => {
    const bank = newBank();
    const look = pool("paynet-test-many-holds");
    const seed = accounts([
      ["alice", 1_000n],
      ["bob", 0n],
    ]);
    const setup = await PostgresLedgerStore.open(storeOptions(look, bank, seed));
    await setup.load();
    await setup.append([hold("h0", "bob", "credit", 5n)]);
    await setup.close();
    const before = await dump(look, bank);
    // Seven debits of 150 on alice (1,050 > 1,000), between credits to bob: the whole batch is refused.
    const over = await PostgresLedgerStore.open(storeOptions(look, bank, seed));
    await over.load();
    const batch: LedgerEntry[] = [];
    for (let index = 0; index < 7; index += 1)
      batch.push(hold(`d${index}`, "alice", "debit", 150n), hold(`c${index}`, "bob", "credit", 150n));
    await assert.rejects(over.append(batch), LedgerWriteRefused);
    await over.close();
    assert.equal(await dump(look, bank), before, "nothing of the refused batch is applied");
    // Six fit (900 ≤ 1,000): all applied, the account's held sum is theirs.
    const fits = await PostgresLedgerStore.open(storeOptions(look, bank, seed));
    await fits.load();
    await fits.append(batch.slice(0, 12));
    await fits.close();
    await assertInvariants(look, bank);
    const held = await look.query<{ held_debit_minor: string }>(
      `SELECT held_debit_minor FROM ${bankSchemaName(bank)}.accounts WHERE username = 'alice'`,
    );
    assert.equal(held.rows[0]?.held_debit_minor, "900");
    // Two holds that fit one by one (60 ≤ 100 available) but not together: the SQL's cumulative guard refuses them.
    const stale = await PostgresLedgerStore.open(storeOptions(look, bank, accounts([["alice", 1_000n]])));
    await stale.load();
    const afterFits = await dump(look, bank);
    await assert.rejects(
      stale.append([hold("s1", "alice", "debit", 60n), hold("s2", "alice", "debit", 60n)]),
      LedgerWriteRefused,
    );
    await stale.close();
    assert.equal(await dump(look, bank), afterFits, "nothing of the refused pair is applied");
  });

  it("applies many decisions on one account in one batch, decisions before holds, and a retry of the batch is a no-op", async () => {
    const bank = newBank();
    const look = pool("paynet-test-many-decisions");
    const seed = accounts([["alice", 1_000n]]);
    const setup = await PostgresLedgerStore.open(storeOptions(look, bank, seed));
    await setup.load();
    await setup.append([
      hold("p1", "alice", "debit", 100n),
      hold("p2", "alice", "debit", 100n),
      hold("p3", "alice", "debit", 100n),
      hold("p4", "alice", "debit", 100n),
      hold("c1", "alice", "credit", 50n),
    ]);
    const batch: LedgerEntry[] = [
      { op: "commit", paymentId: "p1", balancesMinor: { alice: 900n }, replyBalanceMinor: 900n, atMs: startMs },
      { op: "commit", paymentId: "p2", balancesMinor: { alice: 800n }, replyBalanceMinor: 800n, atMs: startMs },
      { op: "abort", paymentId: "p3", atMs: startMs },
      { op: "commit", paymentId: "c1", balancesMinor: { alice: 850n }, replyBalanceMinor: 850n, atMs: startMs },
      { op: "commit", paymentId: "p4", balancesMinor: { alice: 750n }, replyBalanceMinor: 750n, atMs: startMs },
      // Fits only once the decisions above applied (750 available after them, 600 before).
      hold("p5", "alice", "debit", 700n),
      // A hold and its decision in one batch: the decision is applied after it.
      hold("p6", "alice", "credit", 10n),
      { op: "commit", paymentId: "p6", balancesMinor: { alice: 760n }, replyBalanceMinor: 760n, atMs: startMs },
    ];
    await setup.append(batch);
    await setup.close();
    await assertInvariants(look, bank);
    const row = await look.query<{ balance_minor: string; held_debit_minor: string; held_credit_minor: string }>(
      `SELECT balance_minor, held_debit_minor, held_credit_minor FROM ${bankSchemaName(bank)}.accounts`,
    );
    assert.deepEqual(row.rows, [{ balance_minor: "760", held_debit_minor: "700", held_credit_minor: "0" }]);
    const applied = await dump(look, bank);
    // The same batch again (a retry after a lost reply): every entry is skipped, nothing changes.
    const again = await PostgresLedgerStore.open(storeOptions(look, bank, seed));
    const state = await again.load();
    assert.equal(state.accounts.get("alice")?.balanceMinor, 760n);
    await again.append(batch);
    await again.close();
    assert.equal(await dump(look, bank), applied);
  });

  it("leaves nothing of an append whose session is killed before any of its statements, and reloads the acknowledged prefix", async () => {
    const bank = newBank();
    const seed = accounts([
      ["alice", 10_000n],
      ["bob", 500n],
    ]);
    const look = pool("paynet-test-look");
    const setup = await PostgresLedgerStore.open(storeOptions(look, bank, seed));
    await setup.load();
    await setup.append([hold("p1", "alice", "debit", 1_000n), hold("p2", "bob", "credit", 20n)]);
    await setup.close();
    const acknowledged = await dump(look, bank);
    const batch: LedgerEntry[] = [
      { op: "commit", paymentId: "p1", balancesMinor: { alice: 9_000n }, replyBalanceMinor: 9_000n, atMs: startMs },
      { op: "abort", paymentId: "p2", atMs: startMs },
      {
        op: "commit",
        paymentId: "t1",
        balancesMinor: { alice: 8_000n, bob: 1_500n },
        replyBalanceMinor: 8_000n,
        atMs: startMs,
        begunAtMs: startMs,
      },
      hold("p3", "bob", "debit", 1_500n),
    ];
    // Kill the session before the 1st, 2nd, … statement of the append's transaction, until one gets through.
    for (let killAt = 1; ; killAt += 1) {
      const name = `paynet-test-kill-${killAt}-`;
      let statements = 0;
      let armed = false;
      let killed = false;
      const database = faultyDatabase(pool(name), {
        before: async () => {
          if (!armed) return;
          statements += 1;
          if (statements === killAt) killed = (await terminateSessions(throwaway.name, name, killWaitMs)) > 0;
        },
      });
      const failures: unknown[] = [];
      const faulty = await PostgresLedgerStore.open(
        storeOptions(database, bank, seed, { onWriteFailure: (error) => failures.push(error) }),
      );
      await faulty.load();
      armed = true;
      const appended = await faulty.append(batch).then(
        () => "acknowledged",
        (error: unknown) => error,
      );
      if (appended === "acknowledged") {
        assert.ok(killAt > 3, "the append ran several statements");
        assert.equal(killed, false);
        break;
      }
      assert.ok(killed, `statement ${killAt}: the session was killed`);
      assert.equal(failures.length, 1, "onWriteFailure is told once");
      await assert.rejects(faulty.append([hold("p9", "alice", "debit", 1n)]), "every later append is refused");
      await assert.rejects(faulty.settled());
      assert.equal(await dump(look, bank), acknowledged, `killed at statement ${killAt}`);
    }
    const reopened = await PostgresLedgerStore.open(storeOptions(pool("paynet-test-reopen"), bank, seed));
    const state = await reopened.load();
    assert.equal(state.accounts.get("alice")?.balanceMinor, 8_000n);
    assert.equal(state.accounts.get("bob")?.balanceMinor, 1_500n);
    assert.deepEqual([...state.holds.keys()], ["p3"]);
    assert.deepEqual([...state.finished.keys()], ["p1", "p2", "t1"]);
    await reopened.close();
  });

  it("never applies twice an append whose COMMIT went through but whose reply was lost, on reload or retry", async () => {
    const bank = newBank();
    const seed = accounts([
      ["alice", 10_000n],
      ["bob", 500n],
    ]);
    const setup = await PostgresLedgerStore.open(storeOptions(pool("paynet-test-lost-setup"), bank, seed));
    await setup.load();
    await setup.append([hold("p1", "alice", "debit", 1_000n), hold("p2", "bob", "credit", 20n)]);
    await setup.close();
    const name = "paynet-test-lost-reply-";
    let armed = false;
    const database = faultyDatabase(pool(name), {
      after: async (sql) => {
        if (!armed || sql !== "COMMIT") return;
        await terminateSessions(throwaway.name, name, killWaitMs);
        throw connectionLost();
      },
    });
    const batch: LedgerEntry[] = [
      { op: "commit", paymentId: "p1", balancesMinor: { alice: 9_000n }, replyBalanceMinor: 9_000n, atMs: startMs },
      { op: "commit", paymentId: "p2", balancesMinor: { bob: 520n }, replyBalanceMinor: 520n, atMs: startMs },
      {
        op: "commit",
        paymentId: "t1",
        balancesMinor: { alice: 8_000n, bob: 1_520n },
        replyBalanceMinor: 8_000n,
        atMs: startMs,
        begunAtMs: startMs,
      },
      hold("p3", "bob", "debit", 1_500n),
      { op: "abort", paymentId: "p4", atMs: startMs },
    ];
    const faulty = await PostgresLedgerStore.open(storeOptions(database, bank, seed));
    await faulty.load();
    armed = true;
    await assert.rejects(faulty.append(batch), /fault injected/);
    const look = pool("paynet-test-lost-look");
    const applied = await dump(look, bank);
    for (let retry = 0; retry < 2; retry += 1) {
      // The owner stops and reloads: the batch is there, once; the same entries appended again change nothing.
      const reopened = await PostgresLedgerStore.open(
        storeOptions(pool(`paynet-test-lost-retry-${retry}`), bank, seed),
      );
      const state = await reopened.load();
      assert.equal(state.accounts.get("alice")?.balanceMinor, 8_000n);
      assert.equal(state.accounts.get("bob")?.balanceMinor, 1_520n);
      assert.deepEqual([...state.holds.keys()], ["p3"]);
      assert.deepEqual([...state.finished.keys()], ["p1", "p2", "t1", "p4"]);
      await reopened.append(batch);
      await reopened.append(batch.slice(2, 4));
      await reopened.close();
      assert.equal(await dump(look, bank), applied, "the retried entries were not applied again");
    }
    await assertInvariants(look, bank);
  });

  it("imports the initial accounts once, even when two stores open an empty schema at once, and again after a failed import", async () => {
    const bank = newBank();
    let calls = 0;
    const seed = new Map<string, Account>([
      ["alice", { balanceMinor: 1_000n, password: "plain-secret" }],
      ["bob", { balanceMinor: 1_250n, password: passwordHash }],
    ]);
    const initialAccounts = () => {
      calls += 1;
      return Promise.resolve(new Map(seed));
    };
    // A first import dies before its transaction commits: nothing of it stays.
    const name = "paynet-test-import-dies-";
    const dying = faultyDatabase(pool(name), {
      before: async (sql) => {
        if (/SET accounts_imported = true/.test(sql)) await terminateSessions(throwaway.name, name, killWaitMs);
      },
    });
    await assert.rejects(PostgresLedgerStore.open({ ...storeOptions(dying, bank, seed), initialAccounts }));
    const look = pool("paynet-test-import-look");
    const schema = bankSchemaName(bank);
    assert.equal(await countAccounts(look, schema), 0);
    const stores = await Promise.all(
      ["a", "b", "c"].map((which) =>
        PostgresLedgerStore.open({
          ...storeOptions(pool(`paynet-test-import-${which}`), bank, seed),
          initialAccounts,
        }),
      ),
    );
    const states = await Promise.all(stores.map((store) => store.load()));
    for (const state of states) {
      assert.deepEqual(
        [...state.accounts].map(([username, account]) => [username, account.balanceMinor]),
        [
          ["alice", 1_000n],
          ["bob", 1_250n],
        ],
      );
      assert.ok(isPasswordHash(state.accounts.get("alice")!.password), "a plaintext password is hashed at import");
      assert.equal(await verifyPassword("plain-secret", state.accounts.get("alice")!.password), true);
      assert.equal(state.accounts.get("bob")?.password, passwordHash);
    }
    assert.equal(states[0]!.accounts.get("alice")!.password, states[2]!.accounts.get("alice")!.password);
    assert.ok(calls >= 2 && calls <= 4, "read by the failed import and by at least one of the racing stores");
    assert.equal(await countAccounts(look, schema), 2);
    await Promise.all(stores.map((store) => store.close()));
    // Imported once: a later open with another seed does not import it.
    const later = await PostgresLedgerStore.open(storeOptions(look, bank, accounts([["mallory", 5n]])));
    assert.deepEqual([...(await later.load()).accounts.keys()], ["alice", "bob"]);
    await later.close();
  });

  it("migrates and imports once when several stores open a schema that does not exist yet", async () => {
    for (let round = 0; round < 5; round += 1) {
      const bank = newBank();
      const seed = accounts([
        ["alice", 7n],
        ["bob", 8n],
      ]);
      const stores = await Promise.all(
        ["a", "b", "c", "d"].map((which) =>
          PostgresLedgerStore.open(storeOptions(pool(`paynet-test-fresh-${round}-${which}`), bank, seed)),
        ),
      );
      for (const store of stores) assert.deepEqual([...(await store.load()).accounts.keys()], ["alice", "bob"]);
      await Promise.all(stores.map((store) => store.close()));
      assert.equal(await countAccounts(pools[0]!, bankSchemaName(bank)), 2);
    }
  });

  it("exports the accounts in the seed's CSV format and order, which the CSV parser reads back", async () => {
    const bank = newBank();
    const rows = [
      { username: "zoe", balanceMinor: 100_000n, password: passwordHash, bank },
      { username: "adam", balanceMinor: 12_50n, password: passwordHash, bank },
      { username: "mia", balanceMinor: 0n, password: passwordHash, bank },
    ];
    const database = pool("paynet-test-export");
    const seed = new Map(rows.map((row) => [row.username, { balanceMinor: row.balanceMinor, password: row.password }]));
    const store = await PostgresLedgerStore.open(storeOptions(database, bank, seed));
    await store.load();
    assert.equal(await exportBankAccounts(database, bank), serializeAccountsCsv(rows));
    await store.append([
      {
        op: "commit",
        paymentId: "t1",
        balancesMinor: { zoe: 99_999n, mia: 1n },
        replyBalanceMinor: 99_999n,
        atMs: startMs,
        begunAtMs: startMs,
      },
      hold("h1", "adam", "debit", 50n),
    ]);
    await store.close();
    await assert.rejects(exportBankAccounts(database, "NOSUCH"), /bank NOSUCH has no ledger in this database/);
    const text = await exportBankAccounts(database, bank);
    assert.ok(text.startsWith("username,balance,password,bank\nzoe,999.99,"));
    assert.deepEqual(parseAccountsCsv(text, "export"), [
      { ...rows[0]!, balanceMinor: 99_999n },
      rows[1],
      { ...rows[2]!, balanceMinor: 1n },
    ]);
  });

  it("refuses bad input (an unknown account, a negative or zero amount, an impossible commit), changing nothing", async () => {
    const bad: Array<[string, LedgerEntry[]]> = [
      ["a hold on an unknown account", [hold("b1", "nobody", "debit", 5n)]],
      ["a negative amount", [hold("b2", "alice", "debit", -5n)]],
      ["a zero amount", [hold("b3", "alice", "credit", 0n)]],
      [
        "a commit naming an unknown account",
        [{ op: "commit", paymentId: "b4", balancesMinor: { nobody: 1n }, replyBalanceMinor: 1n, atMs: startMs }],
      ],
      [
        "a negative balance",
        [
          {
            op: "commit",
            paymentId: "b5",
            balancesMinor: { alice: -1n, bob: 1_001n },
            replyBalanceMinor: -1n,
            atMs: startMs,
            begunAtMs: startMs,
          },
        ],
      ],
      [
        "a transfer that creates money",
        [
          {
            op: "commit",
            paymentId: "b6",
            balancesMinor: { alice: 1_000n, bob: 1_000n },
            replyBalanceMinor: 1_000n,
            atMs: startMs,
            begunAtMs: startMs,
          },
        ],
      ],
      [
        "a commit without a hold that is no transfer",
        [{ op: "commit", paymentId: "b7", balancesMinor: { alice: 900n }, replyBalanceMinor: 900n, atMs: startMs }],
      ],
      [
        "a commit whose balance is not its hold's",
        [
          hold("b8", "alice", "debit", 100n),
          { op: "commit", paymentId: "b8", balancesMinor: { alice: 950n }, replyBalanceMinor: 950n, atMs: startMs },
        ],
      ],
      [
        "a hold beyond the funds (refused by the SQL guard), after a good entry of the same batch",
        [hold("b9", "bob", "credit", 1n), hold("b10", "alice", "debit", 1_001n)],
      ],
    ];
    const database = pool("paynet-test-bad");
    const bank = newBank();
    const seed = accounts([
      ["alice", 1_000n],
      ["bob", 0n],
    ]);
    const setup = await PostgresLedgerStore.open(storeOptions(database, bank, seed));
    await setup.load();
    await setup.append([hold("ok1", "alice", "debit", 10n)]);
    await setup.close();
    const before = await dump(database, bank);
    for (const [what, entries] of bad) {
      const failures: unknown[] = [];
      const store = await PostgresLedgerStore.open(
        storeOptions(database, bank, seed, { onWriteFailure: (error) => failures.push(error) }),
      );
      await store.load();
      await assert.rejects(store.append(entries), LedgerWriteRefused, what);
      assert.equal(failures.length, 1, `${what}: onWriteFailure is told`);
      await assert.rejects(store.append([hold("ok2", "alice", "debit", 1n)]), `${what}: the store stopped`);
      await store.close();
      assert.equal(await dump(database, bank), before, `${what}: nothing changed`);
    }
  });
});

describe("PostgresLedgerStore under killed sessions: a randomized schedule", () => {
  // The default keeps npm test short; PAYNET_PG_SCHEDULES=N runs more (runs of 100 and 120 seeds found nothing more on 2026-12-04).
  const seeds = Number(process.env.PAYNET_PG_SCHEDULES ?? 30);
  const only = process.env.PAYNET_PG_SCHEDULE_SEED;
  it(`keeps every acknowledged entry and applies none twice (${only === undefined ? `${seeds} seeds` : `seed ${only}`}; replay one with PAYNET_PG_SCHEDULE_SEED)`, async (t) => {
    const list = only === undefined ? Array.from({ length: seeds }, (_, seed) => seed + 1) : [Number(only)];
    const failures: string[] = [];
    let lives = 0;
    let kills = 0;
    const parallel = 8;
    for (let start = 0; start < list.length; start += parallel) {
      const results = await Promise.all(
        list.slice(start, start + parallel).map((seed) =>
          runPostgresLedgerSchedule(seed, {
            openDatabase: (applicationName) => pool(applicationName),
            kill: (applicationPrefix) => terminateSessions(throwaway.name, applicationPrefix, killWaitMs),
          }),
        ),
      );
      for (const result of results) {
        if (only !== undefined) t.diagnostic(`seed ${result.seed}: ${JSON.stringify(result.stats)}`);
        lives += result.stats.lives;
        kills += result.stats.kills;
        for (const failure of result.failures) failures.push(`seed ${result.seed}: ${failure}`);
      }
      // The pools of finished seeds hold connections: end them as we go.
      await Promise.all(pools.splice(0).map((database) => database.end()));
    }
    t.diagnostic(`${list.length} seeds: ${lives} lives, ${kills} kills`);
    assert.deepEqual(failures, []);
    assert.ok(
      only !== undefined || kills > list.length / 2,
      `sessions were killed (${kills} kills over ${lives} lives)`,
    );
  });
});
