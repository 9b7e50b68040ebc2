// The bank's ledger store on PostgreSQL (see ledger-store.ts), in the schema `paynet_bank_<bank>`. Each
// group commit is one transaction (ledger-writes.ts): entries appended while one is in flight share the next,
// and an append resolves only after its COMMIT has returned (the caller checks with checkDurability that the
// server makes a commit durable before it answers). The tables guard the invariants themselves (bank-schema.ts),
// so another writer on the schema is refused rather than believed.
//
// A write that fails stops the store: that append and every later one reject, onWriteFailure is told, and the
// owner must stop and reload (its memory is then ahead of the database, or, if the connection died after the
// server committed, the database is ahead of what was answered). Either way the transaction applied all of
// its entries or none; and since re-applying an applied entry is a no-op (ledger-writes.ts), whatever the
// owner appends again after a reload is not applied twice.
//
// Retention: the finished table keeps only the newest finishedRetainedMax rows. Each write that adds finished
// rows deletes those that fall out, and in the same transaction raises meta.transfers_forgotten_through_ms by
// the start times of the forgotten same-bank transfers, exactly as retainNewest does in memory. Deleting keeps
// the table (and the cost of load) bounded by the retention rather than by the bank's history; the file store
// bounds its finished log the same way. The price: an entry whose finished row was forgotten can no longer be
// recognised as applied; only an append retried after that many newer payments finished could be hurt.
import { assert } from "../../../domain/assert.js";
import type { Account, LedgerEntry } from "../../../domain/ledger.js";
import { GroupCommit } from "../../../durable/group-commit.js";
import { inTransaction, migrate, type Database } from "../../../durable/postgres/database.js";
import { silentLogger, type Logger } from "../../../observability/log.js";
import { groupCommitBatchSize } from "../../../observability/metrics.js";
import { hashPassword, isPasswordHash } from "../../passwords.js";
import type { LedgerState, LedgerStore } from "../ledger-store.js";
import { importInitialAccounts } from "./bank-accounts.js";
import { bankMigrations, bankSchemaName } from "./bank-schema.js";
import { checkEntry, readLedgerState } from "./ledger-rows.js";
import { LedgerSql } from "./ledger-writes.js";

export interface PostgresLedgerStoreOptions {
  /** From openDatabase; the caller owns it and ends it (close() does not). */
  database: Database;
  /** E.g. "SBI"; the schema is `paynet_bank_<lowercase bank>`. */
  bank: string;
  /** As the file store: load() returns at most this many finished payments, oldest first. */
  finishedRetainedMax: number;
  /**
   * The accounts to import when the schema has none yet (read from server/dummydata.csv by the caller), with
   * passwords hashed or plaintext (a plaintext one is hashed with hashPassword). Not called once imported.
   */
  initialAccounts: () => Promise<Map<string, Account>>;
  /** Hashes a plaintext initial password (default: scrypt, bank/passwords.ts). */
  hashPassword?: (password: string) => Promise<string>;
  /** Called once when a write fails: memory is then ahead of the database, and the process must stop and reload. */
  onWriteFailure?: (error: unknown) => void;
  logger?: Logger;
}

export class PostgresLedgerStore implements LedgerStore {
  readonly bank: string;
  readonly schema: string;
  readonly #database: Database;
  readonly #sql: LedgerSql;
  readonly #writer: GroupCommit<LedgerEntry>;
  readonly #onWriteFailure: (error: unknown) => void;
  readonly #logger: Logger;
  /** The balances as the last committed transaction left them: a transfer's compare-and-set values. */
  readonly #durableBalancesMinor: Map<string, bigint>;
  #loaded: LedgerState | null;
  /** The failure that stopped the store (a thrown non-Error wrapped): every later call rejects with it. */
  #broken: Error | null = null;
  #closed = false;

  private constructor(options: PostgresLedgerStoreOptions, schema: string, loaded: LedgerState) {
    this.bank = options.bank;
    this.schema = schema;
    this.#database = options.database;
    this.#sql = new LedgerSql(schema, options.finishedRetainedMax);
    this.#onWriteFailure = options.onWriteFailure ?? (() => undefined);
    this.#logger = options.logger ?? silentLogger;
    this.#loaded = loaded;
    this.#durableBalancesMinor = new Map(
      [...loaded.accounts].map(([username, account]) => [username, account.balanceMinor]),
    );
    const file = `postgres_${schema}`;
    this.#writer = new GroupCommit<LedgerEntry>((entries) => this.#write(entries), {
      onBatch: (entries) => groupCommitBatchSize.observe({ file }, entries),
      startOnNextTurn: true,
    });
  }

  /** Migrates the bank's schema, imports its initial accounts if it never had them, and reads its state. */
  static async open(options: PostgresLedgerStoreOptions): Promise<PostgresLedgerStore> {
    assert(
      Number.isSafeInteger(options.finishedRetainedMax) && options.finishedRetainedMax > 0,
      "finishedRetainedMax must be a positive integer",
    );
    const schema = await PostgresLedgerStore.prepareSchema(options);
    const state = await readLedgerState(options.database, schema, options.finishedRetainedMax);
    return new PostgresLedgerStore(options, schema, state);
  }

  /** Migrates the bank's schema and imports its initial accounts if it never had them; returns the schema's name. */
  static async prepareSchema(
    options: Pick<PostgresLedgerStoreOptions, "database" | "bank" | "initialAccounts" | "hashPassword" | "logger">,
  ): Promise<string> {
    const schema = bankSchemaName(options.bank);
    const logger = options.logger ?? silentLogger;
    const applied = await migrate(options.database, schema, bankMigrations);
    if (applied.length > 0) logger.info({ schema, versions: applied }, "migrated the bank's schema");
    const imported = await importInitialAccounts(options.database, {
      bank: options.bank,
      schema,
      initialAccounts: options.initialAccounts,
      hashPassword: options.hashPassword ?? hashPassword,
      isPasswordHash,
    });
    if (imported) logger.info({ schema }, "imported the bank's initial accounts");
    return schema;
  }

  /** The state read at open, handed over once: its objects are the caller's from then on. */
  load(): Promise<LedgerState> {
    const loaded = this.#loaded;
    assert(loaded !== null, "load() is called once");
    this.#loaded = null;
    return Promise.resolve(loaded);
  }

  /** Not async: the engine's shared promise is returned as it is. A malformed entry stops the store, unwritten. */
  append(entries: readonly LedgerEntry[]): Promise<void> {
    if (this.#broken !== null) return Promise.reject(this.#broken);
    if (this.#closed) return Promise.reject(new Error("the ledger store is closed"));
    try {
      for (const entry of entries) checkEntry(entry, this.#durableBalancesMinor);
    } catch (error) {
      return Promise.reject(this.#fail(error));
    }
    return this.#writer.commit(entries);
  }

  settled(): Promise<void> {
    if (this.#broken !== null) return Promise.reject(this.#broken);
    return this.#writer.settled();
  }

  /**
   * Waits for every append in flight, even on a stopped store (a write queued after the failure fails at once),
   * so that the caller may end the pool after. A failure was already reported to its caller and onWriteFailure.
   */
  async close(): Promise<void> {
    this.#closed = true;
    while (this.#writer.busy) await this.#writer.settled().catch(() => undefined);
  }

  async #write(entries: LedgerEntry[]): Promise<void> {
    if (this.#broken !== null) throw this.#broken;
    if (entries.length === 0) return;
    let changed: Map<string, bigint>;
    try {
      const result = await inTransaction(
        this.#database,
        (client) => this.#sql.applyBatch(client, entries, this.#durableBalancesMinor),
        { store: this.schema, items: entries.length },
      );
      changed = result.balancesMinor;
      if (result.skipped > 0) this.#logger.warn({ skipped: result.skipped }, "entries applied already were skipped");
    } catch (error) {
      throw this.#fail(error);
    }
    for (const [username, balanceMinor] of changed) this.#durableBalancesMinor.set(username, balanceMinor);
  }

  /** Stops the store with `error` (the first failure stays the reason) and returns the error to throw. */
  #fail(error: unknown): Error {
    const failure = error instanceof Error ? error : new Error(String(error));
    if (this.#broken !== null) return failure;
    this.#broken = failure;
    this.#logger.error({ schema: this.schema, error: String(error) }, "a ledger write failed: the store stops");
    this.#onWriteFailure(failure);
    return failure;
  }
}
