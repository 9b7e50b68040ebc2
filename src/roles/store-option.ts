// Where a process keeps its state: `--store files` (the default: the data dir's files in the seed's layout)
// or `--store postgres://USER@HOST:PORT/DB` (the PostgreSQL adapters; certificates and the client's files
// stay in the data dir). PAYNET_STORE gives the default, so that `paynet up` and its children, a bench or a
// verify run agree without repeating the flag.
import { isPostgresUrl, redactedUrl, waitForDatabase, type Database } from "../core/durable/postgres/database.js";
import type { Logger } from "../core/observability/log.js";
import { WaitingNotice } from "./process.js";

export type StoreChoice = { kind: "files" } | { kind: "postgres"; url: string; allowAsyncCommit: boolean };

export const storeOptions = {
  store: {
    type: "string",
    default: process.env.PAYNET_STORE ?? "files",
    describe: "where state is kept: files (the data dir) or postgres://USER@HOST:PORT/DB (env PAYNET_STORE)",
  },
  "unsafe-allow-async-commit": {
    type: "boolean",
    default: false,
    describe: "accept a PostgreSQL server with fsync or synchronous_commit off (a crash can lose answered payments)",
  },
} as const;

/** The parsed --store flag; a value that is neither `files` nor a PostgreSQL URL is a usage error. */
export function parseStore(value: string | undefined, allowAsyncCommit = false): StoreChoice {
  const store = value ?? "files";
  if (store === "files") return { kind: "files" };
  if (isPostgresUrl(store)) return { kind: "postgres", url: store, allowAsyncCommit };
  throw new Error(
    `--store must be "files" or a PostgreSQL URL (postgres://USER@HOST:PORT/DB), got ${JSON.stringify(redactedUrl(store) === "(an unparsable URL)" ? store : redactedUrl(store))}`,
  );
}

/** The flags that give a child process the same store. */
export function storeArgs(choice: StoreChoice): string[] {
  if (choice.kind === "files") return ["--store", "files"];
  return ["--store", choice.url, ...(choice.allowAsyncCommit ? ["--unsafe-allow-async-commit"] : [])];
}

/** The store as the logs and `paynet status` show it (no password). */
export function describeStore(choice: StoreChoice): string {
  return choice.kind === "files" ? "files" : `postgres ${redactedUrl(choice.url)}`;
}

/**
 * Waits (at most waitForDatabase's bound) for the PostgreSQL server to accept connections, saying so once in the
 * log and then every 30 s: a process started, or restarted by `paynet up`, while its server restarts comes up with
 * it rather than failing to start.
 */
export async function waitForStore(
  database: Database,
  choice: Extract<StoreChoice, { kind: "postgres" }>,
  logger: Logger,
): Promise<void> {
  let lastError = "";
  const notice = new WaitingNotice(`the database at ${redactedUrl(choice.url)}`, (message, waitedMs) =>
    logger.warn({ waitedMs, error: lastError }, message),
  );
  await waitForDatabase(database, {
    onWaiting: (error) => {
      lastError = error.message;
      notice.stillWaiting();
    },
  });
}
