// A throwaway PostgreSQL database per test file: created on the server named by PAYNET_TEST_PG_URL (default
// postgres://postgres@127.0.0.1:5432/postgres, the server every machine of this project runs) and dropped
// after, connections included. A test never skips for want of a server: with none reachable it fails with a
// message that says how to provide one.
import { randomBytes } from "node:crypto";
import pg from "pg";

export const testServerUrl = process.env.PAYNET_TEST_PG_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";

export interface ThrowawayDatabase {
  /** URL of the new database. */
  url: string;
  name: string;
  /** Drops the database, terminating any session still on it. */
  drop(): Promise<void>;
}

async function adminQuery(sql: string, parameters: unknown[] = []): Promise<pg.QueryResult> {
  const client = new pg.Client({ connectionString: testServerUrl, connectionTimeoutMillis: 5_000 });
  try {
    await client.connect();
  } catch (error) {
    throw new Error(
      `the PostgreSQL tests need a server: none answered at ${testServerUrl} (${(error as Error).message}). ` +
        "Start one (Debian: pg_ctlcluster 15 main start) or point PAYNET_TEST_PG_URL at a server where this user may CREATE DATABASE",
    );
  }
  try {
    return await client.query(sql, parameters);
  } finally {
    await client.end();
  }
}

export async function createThrowawayDatabase(label: string): Promise<ThrowawayDatabase> {
  const name = `paynet_test_${label.replace(/[^a-z0-9]/gi, "_").toLowerCase()}_${randomBytes(4).toString("hex")}`;
  await adminQuery(`CREATE DATABASE ${name}`);
  const url = new URL(testServerUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    name,
    async drop() {
      await adminQuery(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    },
  };
}

/**
 * Terminates every session on `database` whose application_name starts with `applicationPrefix` (a fault:
 * connections killed). With `waitForExitMs`, returns only once each has exited (or that long has passed), so
 * that the next statement on a killed connection fails for certain.
 */
export async function terminateSessions(database: string, applicationPrefix = "", waitForExitMs = 0): Promise<number> {
  const result = await adminQuery(
    "SELECT pg_terminate_backend(pid, $3) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid() AND application_name LIKE $2",
    [database, `${applicationPrefix}%`, waitForExitMs],
  );
  return result.rowCount ?? 0;
}
