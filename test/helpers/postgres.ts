// A throwaway PostgreSQL database per test file: created on the server named by PAYNET_TEST_PG_URL (default
// postgres://postgres@127.0.0.1:5432/postgres, the server every machine of this project runs) and dropped
// after, connections included. A test never skips for want of a server: with none reachable it fails with a
// message that says how to provide one.
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
