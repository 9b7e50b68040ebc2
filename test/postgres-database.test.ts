// The PostgreSQL groundwork of the database adapters, on a real server and a throwaway database: migrations
// applied once however many processes start at once, a newer schema refused, the durability check, and a
// transaction that rolls back when its work throws.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import pg from "pg";
import {
  checkDurability,
  DatabaseError,
  inTransaction,
  isConnectionError,
  migrate,
  openDatabase,
  redactedUrl,
  waitForDatabase,
  type Database,
  type Migration,
} from "../src/core/durable/postgres/database.js";
import {
  createThrowawayDatabase,
  latePostgres,
  terminateSessions,
  type ThrowawayDatabase,
} from "./helpers/postgres.js";

const migrations: Migration[] = [
  { version: 1, name: "accounts", sql: "CREATE TABLE accounts (name text PRIMARY KEY, balance_minor bigint NOT NULL)" },
  { version: 2, name: "a default account", sql: "INSERT INTO accounts VALUES ('alice', 100)" },
];

describe("the PostgreSQL groundwork", () => {
  let throwaway: ThrowawayDatabase;
  const opened: Database[] = [];
  const open = (applicationName = "paynet-test") => {
    const database = openDatabase({ url: throwaway.url, applicationName });
    opened.push(database);
    return database;
  };

  before(async () => {
    throwaway = await createThrowawayDatabase("groundwork");
  });
  after(async () => {
    await Promise.all(opened.map((database) => database.end()));
    await throwaway.drop();
  });

  it("applies each migration once, however many processes migrate the schema at the same moment", async () => {
    const databases = [open(), open(), open(), open()];
    const appliedNow = await Promise.all(databases.map((database) => migrate(database, "paynet_race", migrations)));
    assert.deepEqual(
      appliedNow.flat().sort(),
      [1, 2],
      `each version applied by exactly one: ${JSON.stringify(appliedNow)}`,
    );
    const rows = await databases[0]!.query("SELECT name, balance_minor FROM paynet_race.accounts");
    assert.deepEqual(rows.rows, [{ name: "alice", balance_minor: "100" }]);
    assert.deepEqual(await migrate(databases[0]!, "paynet_race", migrations), [], "nothing left to apply");
  });

  it("refuses a schema a newer build migrated, and bad migration lists", async () => {
    const database = open();
    await migrate(database, "paynet_newer", migrations);
    await assert.rejects(migrate(database, "paynet_newer", migrations.slice(0, 1)), (error: Error) => {
      assert.ok(error instanceof DatabaseError);
      assert.match(error.message, /paynet_newer is at version 2, newer than this build knows \(1\)/);
      return true;
    });
    await assert.rejects(migrate(database, "paynet_gap", [migrations[1]!]), /numbered 1, 2, 3/);
    await assert.rejects(migrate(database, "Robert'); DROP", migrations), /invalid schema name/);
  });

  it("a failed migration leaves its version unapplied and its changes undone", async () => {
    const database = open();
    const broken: Migration[] = [
      migrations[0]!,
      { version: 2, name: "broken", sql: "INSERT INTO accounts VALUES ('bob', 1); SELECT 1/0" },
    ];
    await assert.rejects(migrate(database, "paynet_broken", broken), /division by zero/);
    const versions = await database.query("SELECT version FROM paynet_broken.schema_migrations ORDER BY version");
    assert.deepEqual(versions.rows, [{ version: 1 }]);
    assert.equal(
      (await database.query<{ n: number }>("SELECT count(*)::int AS n FROM paynet_broken.accounts")).rows[0]?.n,
      0,
    );
    assert.deepEqual(await migrate(database, "paynet_broken", migrations), [2], "the fixed migration applies later");
  });

  it("accepts this server's durability settings and reports them", async () => {
    const settings = await checkDurability(open(), { allowAsyncCommit: false });
    assert.equal(settings.fsync, "on");
    assert.notEqual(settings.synchronousCommit, "off");
  });

  it("refuses synchronous_commit=off for the store's sessions unless told to accept it", async () => {
    const url = new URL(throwaway.url);
    url.searchParams.set("options", "-c synchronous_commit=off");
    const database = openDatabase({ url: url.toString(), applicationName: "paynet-test" });
    opened.push(database);
    await assert.rejects(checkDurability(database, { allowAsyncCommit: false }), (error: Error) => {
      assert.ok(error instanceof DatabaseError);
      assert.match(
        error.message,
        /synchronous_commit=off: a commit it acknowledges can be lost.*--unsafe-allow-async-commit/,
      );
      return true;
    });
    const settings = await checkDurability(database, { allowAsyncCommit: true });
    assert.equal(settings.synchronousCommit, "off");
  });

  it("rolls a transaction back when its work throws, and releases the client either way", async () => {
    const database = open();
    await migrate(database, "paynet_tx", migrations);
    await assert.rejects(
      inTransaction(database, async (client) => {
        await client.query("UPDATE paynet_tx.accounts SET balance_minor = 0");
        throw new Error("changed my mind");
      }),
      /changed my mind/,
    );
    const committed = await inTransaction(database, async (client) => {
      await client.query("UPDATE paynet_tx.accounts SET balance_minor = balance_minor + 1");
      return (await client.query<{ balance_minor: string }>("SELECT balance_minor FROM paynet_tx.accounts")).rows[0]
        ?.balance_minor;
    });
    assert.equal(committed, "101");
    assert.equal(database.totalCount, database.idleCount, "no client left checked out");
  });

  it("survives its sessions being terminated: the next query opens a new connection", async () => {
    const database = open("paynet-test-terminated");
    await database.query("SELECT 1");
    const terminated = await terminateSessions(throwaway.name, "paynet-test-terminated");
    assert.ok(terminated >= 1, "a session was terminated");
    let failure: unknown;
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        await database.query("SELECT 1");
        failure = undefined;
        break;
      } catch (error) {
        failure = error;
        assert.ok(isConnectionError(error), `a terminated session fails as a connection error: ${String(error)}`);
      }
    }
    assert.equal(failure, undefined, "a later query succeeds");
  });

  it("waits for a server that is not accepting connections yet, and goes on once it does", async () => {
    const server = await latePostgres(throwaway.url);
    const database = openDatabase({ url: server.url, applicationName: "paynet-test-wait" });
    const failures: string[] = [];
    try {
      // The server comes up at the first failed attempt.
      await waitForDatabase(database, {
        waitMs: 60_000,
        onWaiting: (error) => {
          failures.push(error.message);
          server.comeUp();
        },
      });
      assert.ok(failures.length >= 1, "it met the closed port first");
      assert.match(failures[0]!, /ECONNREFUSED/);
      assert.equal((await database.query<{ one: number }>("SELECT 1 AS one")).rows[0]?.one, 1);
    } finally {
      await database.end();
      await server.close();
    }
  });

  it("waits for room on a server that is full (too many connections), and goes on once a client leaves", async () => {
    // A role allowed one connection stands for a full server: the second connection is refused with 53300.
    const role = `paynet_test_full_${process.pid}`;
    const admin = new pg.Client({ connectionString: throwaway.url });
    await admin.connect();
    await admin.query(`CREATE ROLE ${role} LOGIN CONNECTION LIMIT 1`);
    const asRole = new URL(throwaway.url);
    asRole.username = role;
    const holder = new pg.Client({ connectionString: asRole.toString() });
    const database = openDatabase({ url: asRole.toString(), applicationName: "paynet-test-full" });
    const failures: string[] = [];
    try {
      await holder.connect();
      await waitForDatabase(database, {
        waitMs: 60_000,
        onWaiting: (error) => {
          failures.push(`${(error as { code?: string }).code} ${error.message}`);
          if (failures.length === 1) void holder.end();
        },
      });
      assert.match(failures[0]!, /^53300 too many connections for role/);
      assert.equal((await database.query<{ one: number }>("SELECT 1 AS one")).rows[0]?.one, 1);
    } finally {
      await database.end();
      await holder.end().catch(() => undefined);
      await admin.query(`DROP ROLE ${role}`).catch(() => undefined);
      await admin.end();
    }
  });

  it("gives up on a server that never comes, saying how long it waited and why", async () => {
    const server = await latePostgres(throwaway.url);
    const waiting = openDatabase({ url: server.url, applicationName: "paynet-test-never" });
    let attempts = 0;
    const startedMs = Date.now();
    await assert.rejects(
      waitForDatabase(waiting, { waitMs: 300, onWaiting: () => (attempts += 1) }),
      (error: Error) => {
        assert.ok(error instanceof DatabaseError);
        assert.match(error.message, /did not accept connections within 0\.3 s: connect ECONNREFUSED 127\.0\.0\.1:\d+/);
        return true;
      },
    );
    assert.ok(attempts >= 1, "it retried before giving up");
    assert.ok(Date.now() - startedMs >= 300, "it waited the whole bound");
    await waiting.end();
  });

  it("does not wait out a failure that waiting cannot mend (no such database)", async () => {
    const url = new URL(throwaway.url);
    url.pathname = "/paynet_no_such_database";
    const database = openDatabase({ url: url.toString(), applicationName: "paynet-test-missing" });
    let attempts = 0;
    await assert.rejects(
      waitForDatabase(database, { waitMs: 60_000, onWaiting: () => (attempts += 1) }),
      /database "paynet_no_such_database" does not exist/,
    );
    assert.equal(attempts, 0, "refused at once");
    await database.end();
  });

  it("never shows a password in messages", () => {
    assert.equal(redactedUrl("postgres://paynet:secret@db:5432/paynet"), "postgres://paynet:***@db:5432/paynet");
    assert.equal(redactedUrl("postgres://postgres@127.0.0.1:5432/paynet"), "postgres://postgres@127.0.0.1:5432/paynet");
    assert.throws(
      () => openDatabase({ url: "mysql://x@y/z", applicationName: "t" }),
      /not a PostgreSQL URL: mysql:\/\/x@y\/z/,
    );
  });
});
