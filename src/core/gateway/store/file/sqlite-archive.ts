// The gateway's archive of older finished payments as one SQLite database, payment_gateway/
// transaction_archive.sqlite (better-sqlite3: synchronous calls, prepared statements). A table keyed by payment
// id holds each record's line and outcome; a one-row table holds the counts by outcome, changed in the same
// transaction as the inserts by the number of rows actually inserted, so counts() never scans and re-archiving
// the same ids (after a crash) leaves them exact. The schema is versioned with PRAGMA user_version.
import Database from "better-sqlite3";
import { closeSync, existsSync, fsyncSync, openSync } from "node:fs";
import { dirname } from "node:path";
import { assert } from "../../../domain/assert.js";
import type { ArchivedCounts, ArchivedPayment, PaymentArchive } from "./payment-archive.js";

/** The schema this build writes and reads; an unknown (newer) one is refused. */
const schemaVersion = 1;

/**
 * SQLite's page cache per connection: bounded, so the gateway's memory does not grow with the archive (a
 * lookup reads a few pages of two B-trees; the OS's page cache holds the rest).
 */
const pageCacheKibibytes = 8 * 1024;

/** How long a reader (readGatewayRecords) waits for the gateway's checkpoint, at most. */
const busyTimeoutMs = 5_000;

const schema = `
  CREATE TABLE archived_payments (
    payment_id TEXT PRIMARY KEY NOT NULL,
    committed INTEGER NOT NULL CHECK (committed IN (0, 1)),
    line TEXT NOT NULL
  );
  CREATE TABLE archived_counts (
    only_row INTEGER PRIMARY KEY CHECK (only_row = 1),
    committed INTEGER NOT NULL CHECK (committed >= 0),
    aborted INTEGER NOT NULL CHECK (aborted >= 0)
  );
  INSERT INTO archived_counts (only_row, committed, aborted) VALUES (1, 0, 0);
  PRAGMA user_version = ${schemaVersion};
`;

export class ArchiveDatabaseError extends Error {
  override readonly name = "ArchiveDatabaseError";
}

/** Makes a new name in the directory durable: SQLite syncs the directory for its journals, not for the database file. */
function syncDirectory(directory: string): void {
  const descriptor = openSync(directory, "r");
  try {
    fsyncSync(descriptor);
  } finally {
    closeSync(descriptor);
  }
}

function openDatabase(path: string, options: { readonly: boolean }): Database.Database {
  try {
    return new Database(path, { readonly: options.readonly, fileMustExist: options.readonly, timeout: busyTimeoutMs });
  } catch (error) {
    throw new ArchiveDatabaseError(
      `${path}: cannot open the archive database (${(error as Error).message}); check the file and its directory's permissions, or restore the file`,
      { cause: error },
    );
  }
}

function checkedVersion(db: Database.Database, path: string): number {
  const version = db.pragma("user_version", { simple: true }) as number;
  if (version !== 0 && version !== schemaVersion)
    throw new ArchiveDatabaseError(
      `${path}: archive schema version ${version}, this build reads version ${schemaVersion}; run the build that wrote it, or restore the file`,
    );
  return version;
}

export class SqliteArchive implements PaymentArchive {
  readonly #db: Database.Database;
  readonly #insert: Database.Statement<[string, number, string]>;
  readonly #addCounts: Database.Statement<[number, number]>;
  readonly #lineOf: Database.Statement<[string], string>;
  readonly #counts: Database.Statement<[], ArchivedCounts>;
  readonly #idsFrom: Database.Statement<[string, string, number], string>;
  readonly #insertAll: (payments: readonly ArchivedPayment[]) => number;

  private constructor(db: Database.Database) {
    this.#db = db;
    this.#insert = db.prepare<[string, number, string]>(
      "INSERT INTO archived_payments (payment_id, committed, line) VALUES (?, ?, ?) ON CONFLICT (payment_id) DO NOTHING",
    );
    this.#addCounts = db.prepare<[number, number]>(
      "UPDATE archived_counts SET committed = committed + ?, aborted = aborted + ? WHERE only_row = 1",
    );
    this.#lineOf = db.prepare<[string], string>("SELECT line FROM archived_payments WHERE payment_id = ?").pluck();
    this.#counts = db.prepare<[], ArchivedCounts>("SELECT committed, aborted FROM archived_counts WHERE only_row = 1");
    this.#idsFrom = db
      .prepare<[string, string, number], string>(
        "SELECT payment_id FROM archived_payments WHERE payment_id >= ? AND payment_id < ? ORDER BY payment_id LIMIT ?",
      )
      .pluck();
    this.#insertAll = db.transaction((payments: readonly ArchivedPayment[]) => {
      let committed = 0;
      let aborted = 0;
      for (const payment of payments) {
        if (this.#insert.run(payment.paymentId, payment.committed ? 1 : 0, payment.line).changes === 0) continue;
        if (payment.committed) committed += 1;
        else aborted += 1;
      }
      if (committed + aborted > 0) this.#addCounts.run(committed, aborted);
      return committed + aborted;
    });
  }

  /** Opens the archive to write it (created if missing): the gateway's own, under its data dir's lock. */
  static open(path: string): SqliteArchive {
    const created = !existsSync(path);
    const db = openDatabase(path, { readonly: false });
    try {
      // WAL: a commit appends to one file, and readers (readGatewayRecords) never block the writer.
      const mode = db.pragma("journal_mode = WAL", { simple: true });
      if (mode !== "wal")
        throw new ArchiveDatabaseError(
          `${path}: SQLite refused WAL mode (journal_mode is ${String(mode)}); put the data dir on a local file system`,
        );
      // FULL: every commit fsyncs the WAL before it returns. A record leaves the snapshot (and memory) only
      // once its archive write is durable, so a commit that a power loss could undo would lose the payment.
      db.pragma("synchronous = FULL");
      db.pragma(`cache_size = -${pageCacheKibibytes}`);
      if (checkedVersion(db, path) === 0) {
        db.exec(`BEGIN IMMEDIATE; ${schema} COMMIT;`);
        if (created) syncDirectory(dirname(path));
      }
      return new SqliteArchive(db);
    } catch (error) {
      db.close();
      throw error;
    }
  }

  insertMany(payments: readonly ArchivedPayment[]): number {
    if (payments.length === 0) return 0;
    const before = this.counts();
    const inserted = this.#insertAll(payments);
    const after = this.counts();
    assert(
      after.committed + after.aborted === before.committed + before.aborted + inserted,
      "the archive's counts grow by the rows inserted",
    );
    return inserted;
  }

  lineOf(paymentId: string): string | undefined {
    return this.#lineOf.get(paymentId);
  }

  idsWithPrefix(prefix: string, limit: number): string[] {
    // Ids are ASCII below DEL (validatePaymentId), so every id starting with the prefix sorts before prefix + DEL.
    return this.#idsFrom.all(prefix, `${prefix}\x7f`, limit);
  }

  counts(): ArchivedCounts {
    const counts = this.#counts.get();
    assert(counts !== undefined, "the archive's counts row exists");
    return { committed: counts.committed, aborted: counts.aborted };
  }

  close(): void {
    this.#db.close();
  }
}

/**
 * Every archived payment, for tools that read a data dir while the gateway may run (read-only: they never
 * change it); nothing when the database does not exist yet.
 */
export function* readArchivedPayments(path: string): Generator<ArchivedPayment> {
  if (!existsSync(path)) return;
  const db = openDatabase(path, { readonly: true });
  try {
    if (checkedVersion(db, path) === 0) return; // created, schema not yet committed: nothing archived
    const rows = db
      .prepare<[], { payment_id: string; committed: number; line: string }>(
        "SELECT payment_id, committed, line FROM archived_payments",
      )
      .iterate();
    for (const row of rows) yield { paymentId: row.payment_id, line: row.line, committed: row.committed === 1 };
  } finally {
    db.close();
  }
}
