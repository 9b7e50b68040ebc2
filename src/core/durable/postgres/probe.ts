// An opt-in timing probe of the PostgreSQL stores' transactions, for finding where a write's time goes. Off
// unless PAYNET_PG_PROBE names a file: then each store transaction counts its statements (round trips), the
// ms from BEGIN to COMMIT returned, the ms of the COMMIT alone, and the items it carried; every 5 s one JSON
// line of totals per store is appended to that file. Costs nothing when off (one branch per transaction).
import { appendFileSync } from "node:fs";
import type { DatabaseClient } from "./database.js";

interface Totals {
  transactions: number;
  statements: number;
  items: number;
  msInTransaction: number;
  msInCommit: number;
  msMax: number;
}

const probeFile = process.env["PAYNET_PG_PROBE"] ?? "";
const totals = new Map<string, Totals>();
let timer: NodeJS.Timeout | null = null;

const statementMs = new Map<string, { count: number; ms: number }>();

function addStatement(store: string, key: string, ms: number): void {
  const k = `${store} ${key}`;
  const t = statementMs.get(k) ?? { count: 0, ms: 0 };
  t.count += 1;
  t.ms += ms;
  statementMs.set(k, t);
}

function flushTotals(): void {
  for (const [statement, t] of statementMs)
    appendFileSync(
      probeFile,
      JSON.stringify({ pid: process.pid, statement, count: t.count, ms: +t.ms.toFixed(1) }) + "\n",
    );
  statementMs.clear();
  for (const [store, t] of totals) {
    if (t.transactions === 0) continue;
    appendFileSync(
      probeFile,
      JSON.stringify({
        pid: process.pid,
        store,
        ...t,
        statementsPerTransaction: +(t.statements / t.transactions).toFixed(1),
        itemsPerTransaction: +(t.items / t.transactions).toFixed(1),
        msPerTransaction: +(t.msInTransaction / t.transactions).toFixed(2),
        msCommitPerTransaction: +(t.msInCommit / t.transactions).toFixed(2),
      }) + "\n",
    );
    totals.set(store, { transactions: 0, statements: 0, items: 0, msInTransaction: 0, msInCommit: 0, msMax: 0 });
  }
}

export interface ProbeSpan {
  /** Call right before COMMIT is sent. */
  committing(): void;
  /** Call once COMMIT (or ROLLBACK) returned. */
  end(): void;
}

const noSpan: ProbeSpan = { committing: () => undefined, end: () => undefined };

/** Starts timing one transaction of `store` on `client` (after BEGIN), carrying `items`; a no-op when off. */
export function probeTransaction(store: string, client: DatabaseClient, items: number): ProbeSpan {
  if (probeFile === "") return noSpan;
  timer ??= setInterval(flushTotals, 5_000).unref();
  const started = performance.now();
  let committingAt = started;
  let statements = 1; // BEGIN
  // Counted by shadowing the prototype's query on this client while the transaction runs.
  const query = client.query.bind(client) as (...args: unknown[]) => unknown;
  (client as { query: unknown }).query = (...args: unknown[]) => {
    statements += 1;
    const key = typeof args[0] === "string" ? args[0].replace(/\s+/g, " ").slice(0, 60) : "?";
    const at = performance.now();
    const result = query(...args);
    if (result instanceof Promise)
      void result.then(
        () => addStatement(store, key, performance.now() - at),
        () => undefined,
      );
    return result;
  };
  return {
    committing: () => {
      committingAt = performance.now();
    },
    end: () => {
      delete (client as { query?: unknown }).query;
      const now = performance.now();
      const t = totals.get(store) ?? {
        transactions: 0,
        statements: 0,
        items: 0,
        msInTransaction: 0,
        msInCommit: 0,
        msMax: 0,
      };
      t.transactions += 1;
      t.statements += statements;
      t.items += items;
      t.msInTransaction += now - started;
      t.msInCommit += now - committingAt;
      t.msMax = Math.max(t.msMax, now - started);
      totals.set(store, t);
    },
  };
}
