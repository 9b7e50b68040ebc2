// A throwaway PostgreSQL database per test file: created on the server named by PAYNET_TEST_PG_URL (default
// postgres://postgres@127.0.0.1:5432/postgres, the server every machine of this project runs) and dropped
// after, connections included. A test never skips for want of a server: with none reachable it fails with a
// message that says how to provide one.
import { connect, createServer, type Server, type Socket } from "node:net";
import pg from "pg";
import {
  createScratchDatabase,
  terminateSessions as terminateSessionsOn,
  type ScratchDatabase,
} from "../../src/core/durable/postgres/database.js";

export const testServerUrl = process.env.PAYNET_TEST_PG_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";

export type ThrowawayDatabase = ScratchDatabase;

export async function createThrowawayDatabase(label: string): Promise<ThrowawayDatabase> {
  try {
    return await createScratchDatabase(testServerUrl, `paynet_test_${label}`);
  } catch (error) {
    throw new Error(
      `the PostgreSQL tests need a server where this user may CREATE DATABASE: ${(error as Error).message}. ` +
        "Start one (Debian: sudo pg_ctlcluster 15 main start) or point PAYNET_TEST_PG_URL at another",
      { cause: error },
    );
  }
}

/**
 * Terminates every session on `database` whose application_name starts with `applicationPrefix` (a fault:
 * connections killed). With `waitForExitMs`, returns only once each has exited (or that long has passed), so
 * that the next statement on a killed connection fails for certain.
 */
export function terminateSessions(database: string, applicationPrefix = "", waitForExitMs = 0): Promise<number> {
  return terminateSessionsOn(testServerUrl, database, applicationPrefix, { waitForExitMs });
}

/** A database behind a port where no server listens until `comeUp()`: a server that is not up yet. */
export interface LatePostgres {
  /** `url` with its host and port replaced by the closed port's. */
  url: string;
  /** From now on the port forwards to the real server. */
  comeUp(): void;
  close(): Promise<void>;
}

export async function latePostgres(url: string): Promise<LatePostgres> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve));
  const { port } = probe.address() as { port: number };
  await new Promise((resolve) => probe.close(resolve));
  const real = new URL(url);
  const late = new URL(url);
  late.host = `127.0.0.1:${port}`;
  let proxy: Server | undefined;
  const sockets = new Set<Socket>();
  return {
    url: late.toString(),
    comeUp() {
      proxy ??= createServer((socket) => {
        const upstream = connect(Number(real.port || 5432), real.hostname);
        for (const end of [socket, upstream]) {
          sockets.add(end);
          end.on("close", () => sockets.delete(end));
        }
        socket.on("error", () => upstream.destroy());
        upstream.on("error", () => socket.destroy());
        socket.pipe(upstream).pipe(socket);
      }).listen(port, "127.0.0.1");
    },
    async close() {
      if (proxy === undefined) return;
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => proxy!.close(resolve));
    },
  };
}

// The state of a network of two banks (SBI, HDFC) and the gateway on one database, read as a restarted process
// would: each query on a connection of its own.

/** Rows of one statement on a connection of its own. */
export async function query<T extends pg.QueryResultRow>(url: string, sql: string): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<T>(sql)).rows;
  } finally {
    await client.end();
  }
}

/** Every account's balance, `user@BANK` → minor units. */
export async function balances(url: string): Promise<Map<string, bigint>> {
  const rows = await query<{ account: string; balance_minor: string }>(
    url,
    `SELECT username || '@SBI' AS account, balance_minor FROM paynet_bank_sbi.accounts
     UNION ALL SELECT username || '@HDFC', balance_minor FROM paynet_bank_hdfc.accounts`,
  );
  return new Map(rows.map((row) => [row.account, BigInt(row.balance_minor)]));
}

/** Payments not finished at the gateway plus holds at the banks: 0 once everything has settled. */
export async function unfinished(url: string): Promise<number> {
  const [row] = await query<{ n: number }>(
    url,
    `SELECT (SELECT count(*) FROM paynet_gateway.payments WHERE NOT finished)
          + (SELECT count(*) FROM paynet_bank_sbi.holds) + (SELECT count(*) FROM paynet_bank_hdfc.holds) AS n`,
  );
  return Number(row!.n);
}

/** Each client payment's state in the gateway's table. */
export async function gatewayStates(url: string): Promise<Map<string, string>> {
  const rows = await query<{ payment_id: string; state: string }>(
    url,
    "SELECT payment_id, state FROM paynet_gateway.payments WHERE from_user <> ''",
  );
  return new Map(rows.map((row) => [row.payment_id, row.state]));
}
