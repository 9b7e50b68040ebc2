// One transaction of the store on one pooled client. Like durable/postgres/database.ts inTransaction, and
// besides: the client's 'error' event is listened to while it is checked out. node-postgres emits it when
// the connection dies between two queries (a session terminated, the server gone); the pool listens only
// while a client is idle, and an 'error' nobody listens to would kill the process.
import type { Database, DatabaseClient } from "../../../durable/postgres/database.js";
import { probeTransaction } from "../../../durable/postgres/probe.js";

/** Runs `work` between BEGIN (READ COMMITTED) and COMMIT; ROLLBACK if anything throws; the client is always released. */
export async function inStoreTransaction<T>(
  database: Database,
  work: (client: DatabaseClient) => Promise<T>,
  probe?: { store: string; items: number },
): Promise<T> {
  const client = await database.connect();
  const span = probe === undefined ? undefined : probeTransaction(probe.store, client, probe.items);
  let broken: Error | undefined;
  const onError = (error: Error) => {
    broken ??= error;
  };
  client.on("error", onError);
  try {
    // READ COMMITTED whatever the server's default: each statement sees what committed before it began, which
    // is how a begin finds the row whose concurrent insert made its own skip (postgres-coordinator-store.ts).
    await client.query("BEGIN ISOLATION LEVEL READ COMMITTED");
    const result = await work(client);
    span?.committing();
    await client.query("COMMIT");
    return result;
  } catch (error) {
    broken ??= error instanceof Error ? error : new Error(String(error));
    await client.query("ROLLBACK").catch(() => undefined);
    throw error;
  } finally {
    span?.end();
    client.removeListener("error", onError);
    // A client whose transaction failed may have lost its connection: the pool discards it.
    client.release(broken);
  }
}
