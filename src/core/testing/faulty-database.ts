// A PostgreSQL pool with a fault hook on every statement its clients send, for tests of the database adapters:
// a hook may kill the session before a statement (the statement then fails as on a dead server, and its
// transaction is rolled back by the server), or after a COMMIT has returned (the commit is durable but its
// caller sees a dead connection, as when the reply is lost). Counting the statements makes a schedule's fault
// land at the same point of the same transaction on every replay of a seed. Test-only; it does not import the
// driver itself (only the adapters may).
import type { Database, DatabaseClient } from "../durable/postgres/database.js";

export interface StatementFaults {
  /** Runs before each statement sent through a client of the pool (its SQL text); may kill the session. */
  before?(sql: string, client: DatabaseClient): Promise<void>;
  /** Runs after a statement succeeded; a throw replaces its result (a reply lost after the server acted). */
  after?(sql: string, client: DatabaseClient): Promise<void>;
}

/** `database` with `faults` around every query of the clients it hands out (`database.query` too). */
export function faultyDatabase(database: Database, faults: StatementFaults): Database {
  const wrapClient = (client: DatabaseClient): DatabaseClient =>
    new Proxy(client, {
      get(target, property, receiver) {
        if (property === "query") return (text: unknown, values?: unknown) => faultyQuery(target, text, values);
        const value: unknown = Reflect.get(target, property, receiver);
        return typeof value === "function" ? (value as (...args: unknown[]) => unknown).bind(target) : value;
      },
    });
  const faultyQuery = async (client: DatabaseClient, text: unknown, values: unknown): Promise<unknown> => {
    const sql = typeof text === "string" ? text : String((text as { text?: unknown }).text);
    await faults.before?.(sql, client);
    const result: unknown = await client.query(text as string, values as unknown[]);
    await faults.after?.(sql, client);
    return result;
  };
  return new Proxy(database, {
    get(target, property, receiver) {
      if (property === "connect") return async () => wrapClient(await target.connect());
      if (property === "query") {
        return async (text: unknown, values?: unknown) => {
          const client = await target.connect();
          let broken: Error | undefined;
          try {
            return await faultyQuery(client, text, values);
          } catch (error) {
            broken = error instanceof Error ? error : new Error(String(error));
            throw error;
          } finally {
            client.release(broken);
          }
        };
      }
      const value: unknown = Reflect.get(target, property, receiver);
      return typeof value === "function" ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
}

/** The error a statement meets on a connection the hook killed, shaped as node-postgres reports it. */
export function connectionLost(message = "Connection terminated unexpectedly (fault injected)"): Error {
  return Object.assign(new Error(message), { code: "57P01" });
}
