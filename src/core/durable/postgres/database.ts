// The PostgreSQL server under the database adapters (`--store postgres://…`): a pool from a URL, the check that
// the server makes a commit durable before it answers, versioned migrations per schema, and a transaction
// helper that always releases its client. node-postgres does the protocol; nothing here speaks it by hand.
//
// Each organisation keeps its own schema (the gateway `paynet_gateway`, bank B `paynet_bank_<b>`), so banks stay
// independent: a schema holds its own migration table, and its migrations run under an advisory lock keyed by
// the schema's name, so that several processes starting at once apply each version exactly once.
import { randomBytes } from "node:crypto";
import { probeTransaction } from "./probe.js";
import pg from "pg";

/** Too many connections cost the server more than they gain; a process's writes are group-committed anyway. */
export const poolSizeDefault = 8;
/** A connection attempt that has not succeeded by then fails the call, with the server's address in the error. */
export const connectTimeoutMsDefault = 5_000;

export interface DatabaseOptions {
  /** `postgres://USER@HOST:PORT/DB` (any URL node-postgres takes). */
  url: string;
  /** Shown in pg_stat_activity: which paynet process a session belongs to. */
  applicationName: string;
  poolSize?: number;
  connectTimeoutMs?: number;
}

/** A database the adapters use: a pool, closed once with `end()`. */
export type Database = pg.Pool;
export type DatabaseClient = pg.PoolClient;

/** A store's database could not be used: the message says what and where, without the URL's password. */
export class DatabaseError extends Error {
  override name = "DatabaseError";
}

/** The URL with any password masked, for messages and logs. */
export function redactedUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password !== "") parsed.password = "***";
    return parsed.toString();
  } catch {
    return "(an unparsable URL)";
  }
}

/** Is `value` a PostgreSQL store URL (rather than `files`)? */
export function isPostgresUrl(value: string): boolean {
  return /^postgres(ql)?:\/\//.test(value);
}

export function openDatabase(options: DatabaseOptions): Database {
  if (!isPostgresUrl(options.url))
    throw new DatabaseError(
      `not a PostgreSQL URL: ${redactedUrl(options.url)} (expected postgres://USER@HOST:PORT/DB)`,
    );
  const pool = new pg.Pool({
    connectionString: options.url,
    application_name: options.applicationName,
    max: options.poolSize ?? poolSizeDefault,
    connectionTimeoutMillis: options.connectTimeoutMs ?? connectTimeoutMsDefault,
  });
  // An idle client whose connection dies (server restart, pg_terminate_backend) emits 'error' on the pool;
  // unhandled, that would kill the process. The pool drops the client; the next query opens a new one.
  pool.on("error", () => {});
  // A checked-out client has no listener of the pool's: its connection dying between two statements (a killed
  // session, a server restart) would emit an unhandled 'error' and kill the process. The failure still reaches
  // the caller, as the rejection of its next query; the client is then released as broken.
  pool.on("connect", (client) => client.on("error", () => {}));
  return pool;
}

/** Runs `work` in one transaction on one client: COMMIT if it resolves, ROLLBACK if it throws; the client is always released. */
export async function inTransaction<T>(
  database: Database,
  work: (client: DatabaseClient) => Promise<T>,
  probe?: { store: string; items: number },
): Promise<T> {
  const client = await database.connect();
  let broken: Error | undefined;
  const span = probe === undefined ? undefined : probeTransaction(probe.store, client, probe.items);
  try {
    await client.query("BEGIN");
    const result = await work(client);
    span?.committing();
    await client.query("COMMIT");
    return result;
  } catch (error) {
    broken = error instanceof Error ? error : new Error(String(error));
    await client.query("ROLLBACK").catch(() => {});
    throw error;
  } finally {
    span?.end();
    // A client whose transaction failed may have lost its connection: let the pool discard it.
    client.release(broken);
  }
}

export interface DurabilitySettings {
  fsync: string;
  synchronousCommit: string;
}

export async function durabilitySettings(database: Database): Promise<DurabilitySettings> {
  const result = await database.query<{ fsync: string; synchronous_commit: string }>(
    "SELECT current_setting('fsync') AS fsync, current_setting('synchronous_commit') AS synchronous_commit",
  );
  const row = result.rows[0];
  if (row === undefined) throw new DatabaseError("the server did not report its fsync and synchronous_commit settings");
  return { fsync: row.fsync, synchronousCommit: row.synchronous_commit };
}

/**
 * Refuses a server that could acknowledge a commit it then loses (fsync off, or synchronous_commit off for
 * this store's sessions), unless the operator said so. A payment answered "committed" rests on that commit.
 */
export async function checkDurability(
  database: Database,
  options: { allowAsyncCommit: boolean },
): Promise<DurabilitySettings> {
  const settings = await durabilitySettings(database);
  const unsafe: string[] = [];
  if (settings.fsync !== "on") unsafe.push(`fsync=${settings.fsync}`);
  if (settings.synchronousCommit === "off") unsafe.push(`synchronous_commit=${settings.synchronousCommit}`);
  if (unsafe.length > 0 && !options.allowAsyncCommit) {
    throw new DatabaseError(
      `the PostgreSQL server runs with ${unsafe.join(" and ")}: a commit it acknowledges can be lost in a crash, ` +
        "and payments answered as committed with it; turn it on, or start with --unsafe-allow-async-commit to accept that",
    );
  }
  return settings;
}

export interface Migration {
  /** 1, 2, 3, …: applied in order, each once per schema. */
  version: number;
  /** What it does, recorded beside the version. */
  name: string;
  /** SQL run inside the schema (search_path is set to it), in the migration's transaction. */
  sql: string;
}

/** A schema name safe to interpolate (lower-case letters, digits, underscores). */
export function checkedSchemaName(name: string): string {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(name)) throw new DatabaseError(`invalid schema name ${JSON.stringify(name)}`);
  return name;
}

/**
 * Creates `schema` if needed and applies the migrations it has not had yet, each in its own transaction, under
 * an advisory lock on the schema's name (several processes may start at once; the others wait, then find
 * nothing left to do). Refuses a schema migrated by a newer build (a version this build does not know).
 * Returns the versions applied now.
 */
export async function migrate(database: Database, schema: string, migrations: readonly Migration[]): Promise<number[]> {
  checkedSchemaName(schema);
  for (let index = 0; index < migrations.length; index++) {
    if (migrations[index]?.version !== index + 1)
      throw new Error(`migrations of ${schema} must be numbered 1, 2, 3, … in order`);
  }
  const client = await database.connect();
  let broken: Error | undefined;
  try {
    // Session-level advisory lock: held by this client until unlocked, whatever the transactions in between.
    await client.query("SELECT pg_advisory_lock(hashtext($1))", [`paynet migrate ${schema}`]);
    try {
      await client.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`);
      await client.query(
        `CREATE TABLE IF NOT EXISTS ${schema}.schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`,
      );
      const appliedRows = await client.query<{ version: number }>(
        `SELECT version FROM ${schema}.schema_migrations ORDER BY version`,
      );
      const applied = new Set(appliedRows.rows.map((row) => row.version));
      const newest = Math.max(0, ...applied);
      if (newest > migrations.length) {
        throw new DatabaseError(
          `schema ${schema} is at version ${newest}, newer than this build knows (${migrations.length}); run a newer paynet`,
        );
      }
      const appliedNow: number[] = [];
      for (const migration of migrations) {
        if (applied.has(migration.version)) continue;
        await client.query("BEGIN");
        try {
          await client.query(`SET LOCAL search_path TO ${schema}`);
          await client.query(migration.sql);
          await client.query(`INSERT INTO ${schema}.schema_migrations (version, name) VALUES ($1, $2)`, [
            migration.version,
            migration.name,
          ]);
          await client.query("COMMIT");
        } catch (error) {
          await client.query("ROLLBACK").catch(() => {});
          throw error;
        }
        appliedNow.push(migration.version);
      }
      return appliedNow;
    } finally {
      await client.query("SELECT pg_advisory_unlock(hashtext($1))", [`paynet migrate ${schema}`]).catch(() => {});
    }
  } catch (error) {
    broken = error instanceof Error ? error : new Error(String(error));
    throw error;
  } finally {
    client.release(broken);
  }
}

/** A connection-level failure (server gone, connection terminated, refused) rather than a refused statement. */
export function isConnectionError(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const code = (error as { code?: unknown }).code;
  if (typeof code === "string") {
    // Class 08: connection exception; 57P01-57P03: admin shutdown, crash shutdown, cannot connect now.
    if (code.startsWith("08") || code === "57P01" || code === "57P02" || code === "57P03") return true;
    if (code === "ECONNREFUSED" || code === "ECONNRESET" || code === "EPIPE" || code === "ETIMEDOUT") return true;
  }
  return /Connection terminated|connection timeout|Client has encountered a connection error/i.test(error.message);
}

/** How long a starting process waits for a server that does not accept connections yet (restarting, recovering). */
export const startWaitMsDefault = 60_000;
const startRetryMinMs = 100;
const startRetryMaxMs = 2_000;

/**
 * 53300 too_many_connections: the server is up but full (max_connections, or a role's or a database's connection
 * limit). Another client's leaving makes room, so a starting process waits for it as for a server starting up.
 */
function isServerFull(error: unknown): boolean {
  return (error as { code?: unknown } | null)?.code === "53300";
}

/**
 * Resolves once the server answers a query. A connection-level failure (refused, the server starting up or
 * replaying its WAL, or full) is waited out, with `onWaiting` told at each failed attempt, for at most `waitMs`;
 * any other failure (a wrong password, no such database) is thrown at once. A process restarted while its server
 * restarts thus comes up with it, instead of failing to start; one pointed at no server at all still stops, with why.
 */
export async function waitForDatabase(
  database: Database,
  options: { waitMs?: number; onWaiting?: (error: Error) => void } = {},
): Promise<void> {
  const waitMs = options.waitMs ?? startWaitMsDefault;
  const deadlineMs = Date.now() + waitMs;
  for (let retryMs = startRetryMinMs; ; retryMs = Math.min(retryMs * 2, startRetryMaxMs)) {
    try {
      await database.query("SELECT 1");
      return;
    } catch (error) {
      if (!isConnectionError(error) && !isServerFull(error)) throw error;
      const remainingMs = deadlineMs - Date.now();
      if (remainingMs <= 0) {
        throw new DatabaseError(
          `the PostgreSQL server did not accept connections within ${waitMs / 1000} s: ${(error as Error).message}`,
          { cause: error },
        );
      }
      options.onWaiting?.(error as Error);
      await new Promise((resolve) => setTimeout(resolve, Math.min(retryMs, remainingMs)));
    }
  }
}

/** A session-level advisory lock held on a client of its own for as long as the process runs. */
export interface HeldLock {
  /** Rejects if the lock's connection is lost (the lock is then gone: the holder must stop). */
  lost: Promise<never>;
  release(): Promise<void>;
}

/**
 * Takes the advisory lock named `name` at once, or fails naming the session that holds it (its
 * application_name and client address, from pg_stat_activity): one process per role and schema, as the
 * file store's lifetime lock gives on one machine, but across machines.
 */
export async function holdSessionLock(
  database: Database,
  name: string,
  options: { shared?: boolean } = {},
): Promise<HeldLock> {
  // Shared holders exclude an exclusive one and are excluded by it, but not each other: several instances of a
  // role that may run side by side take it shared, a role that must be alone takes it exclusive.
  const mode = options.shared === true ? "_shared" : "";
  const client = await database.connect();
  try {
    const taken = await client.query<{ taken: boolean }>(`SELECT pg_try_advisory_lock${mode}(hashtext($1)) AS taken`, [
      name,
    ]);
    if (taken.rows[0]?.taken !== true) {
      const holder = await client.query<{ application_name: string; client_addr: string | null; pid: number }>(
        `SELECT a.application_name, a.client_addr::text AS client_addr, a.pid
           FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
          WHERE l.locktype = 'advisory' AND l.granted AND l.objid = (hashtext($1)::bigint & 4294967295)::oid`,
        [name],
      );
      const row = holder.rows[0];
      const who =
        row === undefined
          ? "another session"
          : `${row.application_name || "a session"} (server pid ${row.pid}${row.client_addr === null ? "" : `, from ${row.client_addr}`})`;
      throw new DatabaseError(`${name}: already held by ${who}`);
    }
  } catch (error) {
    client.release(error instanceof Error ? error : undefined);
    throw error;
  }
  let onLost: (error: Error) => void = () => undefined;
  const lost = new Promise<never>((_, reject) => (onLost = reject));
  // Unobserved until someone waits on it; the holder decides what a lost lock means.
  lost.catch(() => undefined);
  const onError = (error: Error) =>
    onLost(new DatabaseError(`${name}: the lock's connection was lost (${error.message})`));
  client.on("error", onError);
  return {
    lost,
    async release() {
      client.off("error", onError);
      try {
        await client.query(`SELECT pg_advisory_unlock${mode}(hashtext($1))`, [name]);
        client.release();
      } catch (error) {
        client.release(error instanceof Error ? error : new Error(String(error)));
      }
    },
  };
}

/** A database made for one run (a bench, a verify run, a test file) on the server `serverUrl` names. */
export interface ScratchDatabase {
  /** `serverUrl` with the new database's name. */
  url: string;
  name: string;
  /** Drops it, ending any session still on it. */
  drop(): Promise<void>;
}

async function onServer<T>(serverUrl: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: serverUrl, connectionTimeoutMillis: connectTimeoutMsDefault });
  try {
    await client.connect();
  } catch (error) {
    throw new DatabaseError(
      `no PostgreSQL server answered at ${redactedUrl(serverUrl)}: ${error instanceof Error ? error.message : String(error)}`,
      { cause: error },
    );
  }
  try {
    return await work(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Creates the database `<prefix>_<random>` on the server of `serverUrl` (its user needs CREATEDB). */
export async function createScratchDatabase(serverUrl: string, prefix: string): Promise<ScratchDatabase> {
  const name = checkedSchemaName(
    `${prefix.toLowerCase().replace(/[^a-z0-9_]/g, "_")}_${randomBytes(4).toString("hex")}`,
  );
  await onServer(serverUrl, (client) => client.query(`CREATE DATABASE ${name}`));
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    name,
    drop: () =>
      onServer(serverUrl, (client) => client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)).then(
        () => undefined,
      ),
  };
}

/**
 * Terminates the sessions on `database` whose application_name is `applicationName` (or starts with it, for
 * `match: "prefix"`): a fault for tests and `paynet verify`. With `waitForExitMs`, returns once each has exited
 * (or that long has passed), so that the next statement on a killed connection fails for certain. Returns how many.
 */
export async function terminateSessions(
  serverUrl: string,
  database: string,
  applicationName: string,
  options: { match?: "exact" | "prefix"; waitForExitMs?: number } = {},
): Promise<number> {
  const nameMatches = options.match === "exact" ? "application_name = $2" : "starts_with(application_name, $2)";
  return onServer(serverUrl, async (client) => {
    const result = await client.query(
      `SELECT pg_terminate_backend(pid, $3) FROM pg_stat_activity
        WHERE datname = $1 AND pid <> pg_backend_pid() AND ${nameMatches}`,
      [database, applicationName, options.waitForExitMs ?? 0],
    );
    return result.rowCount ?? 0;
  });
}
