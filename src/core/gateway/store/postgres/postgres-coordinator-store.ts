// The coordinator's store in PostgreSQL (CoordinatorStore, ../coordinator-store.ts), for one gateway or several
// sharing a database. The database is the only memory: the store keeps no records, so every answer is the
// database's, and a gateway that starts (or a second one) sees what every other wrote.
//
// Group commit. Calls are queued and carried by one transaction at a time (durable/group-commit.ts): the
// calls made while a transaction runs share the next, so a thousand concurrent payments cost a few commits,
// not a thousand. A transaction runs, for all its calls together: one multi-row INSERT … ON CONFLICT DO
// NOTHING of the new ids (begins and tombstones), one SELECT … FOR UPDATE of every other id it touches, the
// changes checked in order in JavaScript (advancedRecord, exactly as the other stores), one multi-row UPDATE
// guarded by each row's version and the forward-only rule with the upsert of the counts in the same statement,
// COMMIT.
//
// The idempotency decision is the primary key. An id already committed is skipped by the INSERT and read by
// the SELECT; one being inserted by another transaction (another gateway) makes the INSERT wait for it, then
// skip it if it committed (the SELECT, a new snapshot under READ COMMITTED, then sees it) or insert it if it
// rolled back. However many gateways race on an id, one row is inserted and every caller answers from it.
// In this process, calls on one id in one transaction are decided in call order; calls in a later
// transaction find the row committed.
//
// When answers are given. A beginOrGetAll call whose payments are all new is answered once the transaction's
// statements have run, before its COMMIT, with `durable` resolving after it (the coordinator's phase 1 runs
// beside the commit, as with the file store); every other answer (a known record, an advance, a tombstone)
// only after COMMIT. A deadlock, a serialization failure or a lost connection before any answer is retried
// on a new connection (nothing of the transaction was committed); a failure after, or of the COMMIT itself
// (whose outcome is then unknown), stops the store: that call and every later one are refused and
// onWriteFailure is told, since the coordinator may hold answers the database does not. The gateway stops
// and recovers from the database.
//
// A refused change (a backward move, an unknown payment) refuses its call alone: the changes of one
// advanceAll apply together or not at all, and the other calls of the transaction go on. Every change is
// checked by advancedRecord against the row as the database holds it now (locked), so a second gateway's
// change is refused by the same rule as this one's. An exact repeat of a change already applied (the same
// state, the same outcome) is what advancedRecord allows, and is written again, as the other stores do: it
// changes nothing but the row's version. The UPDATE itself is a compare-and-set (the version read under the
// lock, and the forward-only rule again): a row it does not match cannot happen under the lock, so it fails
// the whole transaction, and the store stops, rather than answer for a change it did not write.
import { assert } from "../../../domain/assert.js";
import {
  advancedRecord,
  beganRecord,
  tombstoneRecord,
  withProgress,
  type PaymentChange,
  type PaymentDetails,
  type PaymentRecord,
} from "../../../domain/payment.js";
import {
  checkedSchemaName,
  isConnectionError,
  migrate,
  type Database,
  type DatabaseClient,
} from "../../../durable/postgres/database.js";
import { inStoreTransaction } from "./transaction.js";
import { GroupCommit } from "../../../durable/group-commit.js";
import { groupCommitBatchSize } from "../../../observability/metrics.js";
import { silentLogger, type Logger } from "../../../observability/log.js";
import { countsKey, type Begun, type CoordinatorStore, type PaymentCounts } from "../coordinator-store.js";
import { countStripes, gatewayMigrations, gatewaySchemaDefault } from "./migrations.js";
import { checkChange, checkDetails, checkPaymentId, storableMessage, type StoredPayment } from "./payment-rows.js";
import {
  claimOrphans,
  insertNew,
  lockRows,
  readCounts,
  readPayment,
  readUnfinished,
  updateProgress,
  type RowUpdate,
} from "./payment-statements.js";

/** A step of one of the store's transactions, told to onTransactionStep. */
export interface TransactionStep {
  /** `begun`: BEGIN done; `written`: every statement run, COMMIT next; `committed`: COMMIT returned. */
  step: "begun" | "written" | "committed";
  /** The calls the transaction carries. */
  calls: number;
  /** 1, or more for a transaction retried after a deadlock or a lost connection. */
  attempt: number;
}

export interface PostgresCoordinatorStoreOptions {
  /** From openDatabase; the caller owns it and ends it after close(). */
  database: Database;
  /** The schema of the gateway's tables (default "paynet_gateway"), migrated at open. */
  schema?: string;
  /** Told once when a write fails: the coordinator may then be ahead of the database; stop and recover. */
  onWriteFailure?: (error: unknown) => void;
  logger?: Logger;
  nowMs?: () => number;
  /**
   * Awaited at each step of each transaction. For tests and metrics: a test counts commits with it, or kills
   * the connection at a chosen step.
   */
  onTransactionStep?: (step: TransactionStep) => void | Promise<void>;
  /** The stripe of payment_counts this store adds to (default: one at random, 0..countStripes-1). */
  countStripe?: number;
  /**
   * The id of this gateway in the gateways table, for several gateways on one database: its new payments are
   * its own, it writes only rows it owns while its lease is live (gateway-lease.ts), and claimOrphans works.
   * Without one (a store used alone, in tests), rows have no owner and writes are not fenced.
   */
  owner?: string;
}

/** This gateway no longer owns a payment it was driving (another claimed it): it must stop driving. */
export class OwnershipLostError extends Error {
  override readonly name = "OwnershipLostError";
}

/** A payment claimed by claimOrphans, and whom from. */
export interface ClaimedRecord {
  record: PaymentRecord;
  previousOwner: string | null;
}

/** The store stopped after a failed write; it refuses every call until the gateway restarts. */
export class CoordinatorStoreStoppedError extends Error {
  override readonly name = "CoordinatorStoreStoppedError";
}

/** Transactions attempted at most for one batch when a deadlock or a lost connection undoes one. */
export const attemptsMax = 3;

interface Deferred<T> {
  promise: Promise<T>;
  resolve: (value: T) => void;
  reject: (error: unknown) => void;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((resolveWith, rejectWith) => {
    resolve = resolveWith;
    reject = rejectWith;
  });
  return { promise, resolve, reject };
}

type Call =
  | { kind: "begin"; details: readonly PaymentDetails[]; answer: Deferred<Begun[]> }
  | { kind: "tombstone"; paymentId: string; answer: Deferred<PaymentRecord> }
  | { kind: "advance"; changes: readonly PaymentChange[]; answer: Deferred<PaymentRecord[]> };

/** What one attempt of a transaction decided for one call. */
type Outcome =
  | { kind: "begun"; begun: Array<{ created: boolean; record: PaymentRecord }> }
  | { kind: "records"; records: PaymentRecord[] }
  | { kind: "refused"; error: unknown };

function idsOf(call: Call): string[] {
  switch (call.kind) {
    case "begin":
      return call.details.map((details) => details.paymentId);
    case "tombstone":
      return [call.paymentId];
    case "advance":
      return call.changes.map((change) => change.paymentId);
  }
}

function isRetryable(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  // 40P01 deadlock detected, 40001 serialization failure: PostgreSQL undid the whole transaction.
  return code === "40P01" || code === "40001" || isConnectionError(error);
}

export class PostgresCoordinatorStore implements CoordinatorStore {
  readonly #database: Database;
  readonly schema: string;
  /** The migrations this open applied (none when the schema was up to date). */
  readonly migrationsApplied: readonly number[];
  readonly #stripe: number;
  readonly #owner: string | null;
  readonly #nowMs: () => number;
  readonly #logger: Logger;
  readonly #onWriteFailure: (error: unknown) => void;
  readonly #onStep: (step: TransactionStep) => void | Promise<void>;
  readonly #writer: GroupCommit<Call>;
  /** For each id with a call queued or in a transaction: the write that carries its latest call. */
  readonly #pending = new Map<string, Promise<void>>();
  #failure: Error | null = null;
  #closed = false;

  private constructor(options: PostgresCoordinatorStoreOptions, schema: string, migrationsApplied: number[]) {
    this.#database = options.database;
    this.schema = schema;
    this.migrationsApplied = Object.freeze(migrationsApplied);
    this.#stripe = options.countStripe ?? Math.floor(Math.random() * countStripes);
    assert(
      Number.isInteger(this.#stripe) && this.#stripe >= 0 && this.#stripe < countStripes,
      `countStripe must be an integer in 0..${countStripes - 1}`,
    );
    this.#owner = options.owner ?? null;
    this.#nowMs = options.nowMs ?? Date.now;
    this.#logger = options.logger ?? silentLogger;
    this.#onWriteFailure = options.onWriteFailure ?? (() => undefined);
    this.#onStep = options.onTransactionStep ?? (() => undefined);
    this.#writer = new GroupCommit<Call>((calls) => this.#writeBatch(calls), {
      onBatch: (calls) => groupCommitBatchSize.observe({ file: `postgres:${schema}.payments` }, calls),
      startOnNextTurn: true,
    });
  }

  /** Migrates the schema (several gateways may start at once: migrate() serializes them) and opens the store. */
  static async open(options: PostgresCoordinatorStoreOptions): Promise<PostgresCoordinatorStore> {
    const schema = checkedSchemaName(options.schema ?? gatewaySchemaDefault);
    const applied = await migrate(options.database, schema, gatewayMigrations);
    return new PostgresCoordinatorStore(options, schema, applied);
  }

  /** The error that stopped the store, or null while it works. */
  get failure(): Error | null {
    return this.#failure;
  }

  async beginOrGet(details: PaymentDetails): Promise<Begun> {
    const [begun] = await this.beginOrGetAll([details]);
    assert(begun !== undefined, "beginOrGetAll answers one Begun per payment");
    return begun;
  }

  async beginOrGetAll(details: readonly PaymentDetails[]): Promise<Begun[]> {
    this.#refuseIfUnusable();
    if (details.length === 0) return [];
    for (const one of details) checkDetails(one);
    const answer = deferred<Begun[]>();
    this.#enqueue({ kind: "begin", details: [...details], answer });
    return answer.promise;
  }

  async advance(change: PaymentChange): Promise<PaymentRecord> {
    const [record] = await this.advanceAll([change]);
    assert(record !== undefined, "advanceAll answers one record per change");
    return record;
  }

  async advanceAll(changes: readonly PaymentChange[]): Promise<PaymentRecord[]> {
    this.#refuseIfUnusable();
    if (changes.length === 0) return [];
    for (const change of changes) checkChange(change);
    const answer = deferred<PaymentRecord[]>();
    this.#enqueue({ kind: "advance", changes: changes.map((change) => ({ ...change })), answer });
    return answer.promise;
  }

  async tombstone(paymentId: string): Promise<PaymentRecord> {
    this.#refuseIfUnusable();
    checkPaymentId(paymentId);
    const answer = deferred<PaymentRecord>();
    this.#enqueue({ kind: "tombstone", paymentId, answer });
    return answer.promise;
  }

  async find(paymentId: string): Promise<PaymentRecord | undefined> {
    this.#refuseIfUnusable();
    checkPaymentId(paymentId);
    // A change of this process in flight: the answer waits for it (the port: a record handed out is durable,
    // and this process's own change must not seem undone).
    await this.#pending.get(paymentId)?.catch(() => undefined);
    this.#refuseIfUnusable();
    return (await this.#read(() => readPayment(this.#database, this.schema, paymentId)))?.record;
  }

  /**
   * For an operator's lookup by a short id (`paynet payment PREFIX`). The scan is bounded by `limit` but not
   * by an index (the key's collation is not the byte order a prefix range needs): an operator command, never
   * on a payment's path.
   */
  async idsWithPrefix(prefix: string, limit: number): Promise<string[]> {
    this.#refuseIfUnusable();
    const result = await this.#read(() =>
      this.#database.query<{ payment_id: string }>(
        `SELECT payment_id FROM ${this.schema}.payments WHERE starts_with(payment_id, $1) ORDER BY payment_id LIMIT $2`,
        [prefix, limit],
      ),
    );
    return result.rows.map((row) => row.payment_id);
  }

  async unfinished(): Promise<PaymentRecord[]> {
    this.#refuseIfUnusable();
    await this.#writer.settled().catch(() => undefined);
    this.#refuseIfUnusable();
    return (await this.#read(() => readUnfinished(this.#database, this.schema))).map((stored) => stored.record);
  }

  /**
   * Claims up to `limit` unfinished payments of gateways whose lease has expired (see claimOrphans in
   * payment-statements.ts); the caller drives them. Only for a store with an owner.
   */
  async claimOrphans(limit: number): Promise<ClaimedRecord[]> {
    this.#refuseIfUnusable();
    assert(this.#owner !== null, "claimOrphans needs a store opened with an owner");
    assert(Number.isSafeInteger(limit) && limit >= 1, "limit must be a positive integer");
    const owner = this.#owner;
    // One statement, its own transaction: a claim that failed claimed nothing, and is tried again next time.
    const claimed = await claimOrphans(this.#database, this.schema, owner, limit);
    return claimed.map(({ payment, previousOwner }) => ({ record: payment.record, previousOwner }));
  }

  /** Sums payment_counts (at most countStripes × 5 rows), kept in the transactions that change the payments. */
  async counts(): Promise<PaymentCounts> {
    this.#refuseIfUnusable();
    await this.#writer.settled().catch(() => undefined);
    this.#refuseIfUnusable();
    return this.#read(() => readCounts(this.#database, this.schema));
  }

  /** Resolves once every call made so far has been carried by a finished transaction (committed or not). */
  async settled(): Promise<void> {
    await this.#writer.settled().catch(() => undefined);
  }

  /** Waits for the calls made so far; durable state stays; the database is the caller's to end. */
  async close(): Promise<void> {
    assert(!this.#closed, "the coordinator store is closed");
    this.#closed = true;
    await this.settled();
  }

  /** A read, tried again on a new connection when its own was lost (a read changes nothing). */
  async #read<T>(read: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt += 1) {
      try {
        return await read();
      } catch (error) {
        if (attempt >= attemptsMax || !isConnectionError(error)) throw error;
      }
    }
  }

  #refuseIfUnusable(): void {
    assert(!this.#closed, "the coordinator store is closed");
    if (this.#failure !== null) throw this.#stopped();
  }

  #stopped(): CoordinatorStoreStoppedError {
    return new CoordinatorStoreStoppedError(
      `the payment store stopped after a failed write (${this.#failure?.message ?? "unknown"}); ` +
        "restart the gateway to recover from the database",
      { cause: this.#failure },
    );
  }

  #enqueue(call: Call): void {
    const carried = this.#writer.commit([call]);
    // Callers hear through their call's answer; this promise only orders finds after the write.
    carried.catch(() => undefined);
    for (const paymentId of idsOf(call)) this.#pending.set(paymentId, carried);
    void carried
      .catch(() => undefined)
      .then(() => {
        for (const paymentId of idsOf(call))
          if (this.#pending.get(paymentId) === carried) this.#pending.delete(paymentId);
      });
  }

  async #writeBatch(calls: Call[]): Promise<void> {
    if (calls.length === 0) return;
    if (this.#failure !== null) {
      const stopped = this.#stopped();
      for (const call of calls) call.answer.reject(stopped);
      return;
    }
    const committed = deferred<void>();
    committed.promise.catch(() => undefined);
    for (let attempt = 1; ; attempt += 1) {
      let outcomes: Outcome[] | null = null;
      let answered = false;
      try {
        await inStoreTransaction(
          this.#database,
          async (client) => {
            await this.#onStep({ step: "begun", calls: calls.length, attempt });
            outcomes = await this.#runStatements(client, calls);
            await this.#onStep({ step: "written", calls: calls.length, attempt });
            // Past this point nothing is retried: the answers below may already have been acted on.
            answered = true;
            this.#answerBeforeCommit(calls, outcomes, committed.promise);
          },
          { store: this.schema, items: calls.reduce((sum, call) => sum + idsOf(call).length, 0) },
        );
      } catch (error) {
        if (!answered && attempt < attemptsMax && isRetryable(error)) {
          this.#logger.warn(
            { error: String(error), attempt, calls: calls.length },
            "a transaction of the payment store was undone before its commit; retrying it",
          );
          continue;
        }
        this.#stop(error);
        committed.reject(error);
        for (const call of calls) call.answer.reject(error);
        throw error;
      }
      committed.resolve();
      assert(outcomes !== null, "a committed transaction has its outcomes");
      this.#answerAfterCommit(calls, outcomes, committed.promise);
      await this.#onStep({ step: "committed", calls: calls.length, attempt });
      return;
    }
  }

  #stop(error: unknown): void {
    if (this.#failure !== null) return;
    this.#failure = error instanceof Error ? error : new Error(String(error));
    this.#logger.error(
      { error: String(error), schema: this.schema },
      "a write of the payment store failed: it refuses every call from now on",
    );
    this.#onWriteFailure(error);
  }

  /** A call of new payments only is answered now; a refused call is refused now; the rest wait for COMMIT. */
  #answerBeforeCommit(calls: Call[], outcomes: Outcome[], durable: Promise<void>): void {
    calls.forEach((call, index) => {
      const outcome = outcomes[index]!;
      if (outcome.kind === "refused") call.answer.reject(outcome.error);
      else if (call.kind === "begin" && outcome.kind === "begun" && outcome.begun.every((one) => one.created))
        call.answer.resolve(outcome.begun.map(({ record }) => ({ created: true, record, durable })));
    });
  }

  #answerAfterCommit(calls: Call[], outcomes: Outcome[], durable: Promise<void>): void {
    calls.forEach((call, index) => {
      const outcome = outcomes[index]!;
      if (outcome.kind === "refused") return;
      if (call.kind === "begin" && outcome.kind === "begun") {
        // Resolving twice is a no-op: a call answered before the commit keeps that answer.
        call.answer.resolve(
          outcome.begun.map(({ created, record }) => (created ? { created, record, durable } : { created, record })),
        );
      } else if (call.kind === "tombstone" && outcome.kind === "records") {
        call.answer.resolve(outcome.records[0]!);
      } else if (call.kind === "advance" && outcome.kind === "records") {
        call.answer.resolve(outcome.records);
      }
    });
  }

  /**
   * Every statement of one transaction for `calls`; returns what each call is answered. Throws (and the
   * transaction rolls back) on anything but a refused call.
   */
  async #runStatements(client: DatabaseClient, calls: Call[]): Promise<Outcome[]> {
    const nowMs = this.#nowMs();
    // The row each new id would be, proposed by the first call that could create it.
    const proposed = new Map<string, StoredPayment>();
    const touched = new Set<string>();
    for (const call of calls) {
      if (call.kind === "begin")
        for (const details of call.details)
          if (!proposed.has(details.paymentId))
            proposed.set(details.paymentId, { record: Object.freeze(beganRecord(details, nowMs)), version: 1 });
      if (call.kind === "tombstone" && !proposed.has(call.paymentId))
        proposed.set(call.paymentId, { record: Object.freeze(tombstoneRecord(call.paymentId, nowMs)), version: 1 });
      for (const paymentId of idsOf(call)) touched.add(paymentId);
    }
    const inserted = await insertNew(client, this.schema, [...proposed.values()], this.#owner);
    const existing = await lockRows(
      client,
      this.schema,
      [...touched].filter((paymentId) => !inserted.has(paymentId)),
    );

    // The calls in order, each on the records the calls before it left.
    const current = new Map(existing);
    const outcomes = calls.map((call): Outcome => {
      switch (call.kind) {
        case "begin":
          return {
            kind: "begun",
            begun: call.details.map((details) => this.#beginOne(details.paymentId, inserted, proposed, current)),
          };
        case "tombstone":
          return { kind: "records", records: [this.#beginOne(call.paymentId, inserted, proposed, current).record] };
        case "advance":
          return this.#advanceCall(call.changes, current, nowMs);
      }
    });

    const updates: RowUpdate[] = [];
    const deltas: PaymentCounts = { preparing: 0, committing: 0, aborting: 0, committed: 0, aborted: 0 };
    for (const [paymentId, payment] of current) {
      const before = existing.get(paymentId);
      if (before === undefined) {
        deltas[countsKey(payment.record)] += 1;
        if (payment.version > 1) updates.push({ payment, expectedVersion: 1 });
      } else if (payment.version !== before.version) {
        deltas[countsKey(before.record)] -= 1;
        deltas[countsKey(payment.record)] += 1;
        updates.push({ payment, expectedVersion: before.version });
      }
    }
    const written = await updateProgress(client, this.schema, updates, this.#stripe, deltas, this.#owner);
    if (written !== updates.length && this.#owner !== null)
      throw new OwnershipLostError(
        `the payment store wrote ${written} of ${updates.length} changed rows: this gateway's lease expired, or a row was not as locked; nothing of this transaction is kept`,
      );
    if (written !== updates.length)
      throw new Error(
        `the payment store wrote ${written} of ${updates.length} changed rows: a row was not as locked; nothing of this transaction is kept`,
      );
    return outcomes;
  }

  /** beginOrGet's (and tombstone's) decision for one id: the row this transaction inserted, or the one it found. */
  #beginOne(
    paymentId: string,
    inserted: ReadonlySet<string>,
    proposed: ReadonlyMap<string, StoredPayment>,
    current: Map<string, StoredPayment>,
  ): { created: boolean; record: PaymentRecord } {
    const known = current.get(paymentId);
    if (known !== undefined) return { created: false, record: known.record };
    const mine = proposed.get(paymentId);
    // Not inserted, so taken by a committed row, which the locking read (a later snapshot) must have found.
    if (!inserted.has(paymentId) || mine === undefined)
      throw new Error(`payment ${paymentId}: its insert was skipped, yet no committed row holds it`);
    current.set(paymentId, mine);
    // The proposing call is the first to reach the id: a tombstone's row for a tombstone, a begun one for a begin.
    return { created: mine.record.fromUser !== "", record: mine.record };
  }

  /** One advanceAll call, all or nothing: its records, or its refusal (the first change refused). */
  #advanceCall(changes: readonly PaymentChange[], current: Map<string, StoredPayment>, nowMs: number): Outcome {
    const changed = new Map<string, StoredPayment>();
    const records: PaymentRecord[] = [];
    try {
      for (const change of changes) {
        const base = changed.get(change.paymentId) ?? current.get(change.paymentId);
        assert(base !== undefined, `advance: unknown payment ${change.paymentId}`);
        // Only the owner drives a payment. Not a refusal of this call alone: the coordinator holds state about
        // the payment that is no longer its to act on, so the transaction fails and the store stops.
        if (this.#owner !== null && base.owner !== undefined && base.owner !== this.#owner)
          throw new OwnershipLostError(
            `payment ${change.paymentId} belongs to gateway ${base.owner ?? "(none)"} now, not ${this.#owner}: its lease had expired`,
          );
        let next = advancedRecord(base.record, change, nowMs);
        const message = storableMessage(next.reasonMessage);
        if (message !== next.reasonMessage) next = withProgress(next, { ...next, reasonMessage: message });
        const payment = { ...base, record: Object.freeze(next), version: base.version + 1 };
        changed.set(change.paymentId, payment);
        records.push(payment.record);
      }
    } catch (error) {
      if (error instanceof OwnershipLostError) throw error;
      return { kind: "refused", error };
    }
    for (const [paymentId, payment] of changed) current.set(paymentId, payment);
    return { kind: "records", records };
  }
}
