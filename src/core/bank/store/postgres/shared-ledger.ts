// A bank's ledger served straight from PostgreSQL, for several processes of one bank on the same schema
// (`paynet bank --multi-instance`). The Participant cannot be shared: it decides in its memory (balances,
// holds, finished payments) and appends the result, so a second process's writes would contradict its
// compare-and-set checks and stop it (ledger-writes.ts refuses "another writer"). Here nothing is kept in
// memory: every operation is one database transaction that begins with a transaction-level advisory lock on
// (schema, payment id), reads the payment's hold and finished row, decides and writes. Two processes handling
// one payment id at once (a retried Commit at both, a batch leg at one and a single leg at the other) are thus
// serialized, and the second reads what the first committed (READ COMMITTED: each statement takes a new
// snapshot, after the lock was granted), so both give the same answer and the change is applied once.
//
// Different payments do not wait for each other except on their account rows (locked by the UPDATE that
// changes them, or FOR UPDATE when a decision depends on them) and on the meta row that numbers the finished
// rows (recordFinished). A transaction locks at most one account, except a same-bank transfer, which locks its
// two in username order, so no two transactions wait on each other in a cycle.
//
// The answers are the Participant's, reason for reason; the table's CHECKs (bank-schema.ts) hold the invariants
// a second time. A failed transaction (a lost connection, a server restart) applied nothing: the operation is
// refused with BANK_UNAVAILABLE and may be retried here or at another instance.
import { assert } from "../../../domain/assert.js";
import { PaymentError } from "../../../domain/errors.js";
import type { Hold, LegKind } from "../../../domain/ledger.js";
import { balanceMinorMax, formatMinor } from "../../../domain/money.js";
import {
  inTransaction,
  isConnectionError,
  type Database,
  type DatabaseClient,
} from "../../../durable/postgres/database.js";
import { silentLogger, type Logger } from "../../../observability/log.js";
import { isRepeatedPrepare, type BalanceView, type BankLedger } from "../../bank-ledger.js";
import { verifyPassword } from "../../passwords.js";
import { readMinor, readMs } from "./ledger-rows.js";
import { recordFinished } from "./ledger-writes.js";

/** The payment as the database has it, read under its lock. */
interface PaymentRows {
  hold: Hold | null;
  finished: { outcome: "committed" | "aborted"; replyBalanceMinor: bigint | null } | null;
}

interface AccountRow {
  balanceMinor: bigint;
  heldDebitMinor: bigint;
  heldCreditMinor: bigint;
}

/** A password hash nobody has: an unknown user's login costs what a known one's does. */
const unknownUserHash = "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

export interface SharedLedgerOptions {
  /** From openDatabase, with the schema migrated and the accounts imported (PostgresLedgerStore.prepareSchema). */
  database: Database;
  bank: string;
  schema: string;
  /** As the Participant's: finished payments kept to answer repeats (the newest, in the finished table). */
  finishedRetainedMax: number;
  holdTimeoutMs: number;
  nowMs?: () => number;
  logger?: Logger;
}

export class SharedLedger implements BankLedger {
  readonly bank: string;
  readonly schema: string;
  readonly accountCount: number;
  readonly #database: Database;
  readonly #options: SharedLedgerOptions;
  readonly #nowMs: () => number;
  readonly #logger: Logger;

  private constructor(options: SharedLedgerOptions, accountCount: number) {
    this.bank = options.bank;
    this.schema = options.schema;
    this.accountCount = accountCount;
    this.#database = options.database;
    this.#options = options;
    this.#nowMs = options.nowMs ?? Date.now;
    this.#logger = options.logger ?? silentLogger;
  }

  static async open(options: SharedLedgerOptions): Promise<SharedLedger> {
    assert(options.finishedRetainedMax > 0, "finishedRetainedMax must be positive");
    assert(options.holdTimeoutMs > 0, "holdTimeoutMs must be positive");
    const counted = await options.database.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM ${options.schema}.accounts`,
    );
    return new SharedLedger(options, counted.rows[0]?.n ?? 0);
  }

  async authenticate(username: string, password: string): Promise<void> {
    const result = await this.#query<{ password_hash: string }>(
      `SELECT password_hash FROM ${this.schema}.accounts WHERE username = $1`,
      [username],
    );
    const stored = result.rows[0]?.password_hash;
    const ok = await verifyPassword(password, stored ?? unknownUserHash);
    if (!ok || stored === undefined) throw new PaymentError("UNAUTHENTICATED", "wrong username or password");
  }

  async balance(username: string): Promise<BalanceView> {
    const result = await this.#query<{ balance_minor: string; held_debit_minor: string }>(
      `SELECT balance_minor, held_debit_minor FROM ${this.schema}.accounts WHERE username = $1`,
      [username],
    );
    const row = result.rows[0];
    if (row === undefined) throw this.#unknownAccount(username);
    const balanceMinor = readMinor(row.balance_minor, "accounts.balance_minor");
    return {
      balanceMinor,
      availableMinor: balanceMinor - readMinor(row.held_debit_minor, "accounts.held_debit_minor"),
    };
  }

  prepare(paymentId: string, username: string, kind: LegKind, amountMinor: bigint): Promise<void> {
    return this.#inPayment(paymentId, async (client, payment) => {
      const leg = { username, kind, amountMinor };
      if (isRepeatedPrepare(paymentId, payment.finished?.outcome, payment.hold ?? undefined, leg)) return;
      const account = await this.#lockAccount(client, username);
      if (kind === "debit") {
        const availableMinor = account.balanceMinor - account.heldDebitMinor;
        if (availableMinor < amountMinor)
          throw new PaymentError(
            "INSUFFICIENT_FUNDS",
            `insufficient funds: available ${formatMinor(availableMinor)}, needed ${formatMinor(amountMinor)}`,
          );
      } else if (account.balanceMinor + account.heldCreditMinor + amountMinor > balanceMinorMax) {
        throw new PaymentError("BALANCE_LIMIT", `the payee's balance would exceed ${formatMinor(balanceMinorMax)}`);
      }
      const preparedAtMs = this.#nowMs();
      await client.query(
        `UPDATE ${this.schema}.accounts
            SET held_debit_minor = held_debit_minor + CASE WHEN $2 = 'debit' THEN $3::int8 ELSE 0 END,
                held_credit_minor = held_credit_minor + CASE WHEN $2 = 'credit' THEN $3::int8 ELSE 0 END
          WHERE username = $1`,
        [username, kind, amountMinor.toString()],
      );
      await client.query(
        `INSERT INTO ${this.schema}.holds (payment_id, username, kind, amount_minor, prepared_at_ms, expires_at_ms)
         VALUES ($1, $2, $3, $4, $5, $6)`,
        [paymentId, username, kind, amountMinor.toString(), preparedAtMs, preparedAtMs + this.#options.holdTimeoutMs],
      );
      this.#logger.debug(
        { paymentId, username, kind, amountMinor: amountMinor.toString() },
        "voted yes: hold recorded",
      );
    });
  }

  commit(paymentId: string): Promise<bigint> {
    return this.#inPayment(paymentId, async (client, payment) => {
      const repeated = repeatedCommit(paymentId, payment);
      if (repeated !== undefined) return repeated;
      const hold = payment.hold;
      if (hold === null) throw new PaymentError("UNKNOWN_PAYMENT", `payment ${paymentId} is not prepared here`);
      const result = await client.query<{ balance_minor: string }>(
        `UPDATE ${this.schema}.accounts
            SET balance_minor = balance_minor + CASE WHEN $2 = 'credit' THEN $3::int8 ELSE -$3::int8 END,
                held_debit_minor = held_debit_minor - CASE WHEN $2 = 'debit' THEN $3::int8 ELSE 0 END,
                held_credit_minor = held_credit_minor - CASE WHEN $2 = 'credit' THEN $3::int8 ELSE 0 END
          WHERE username = $1
         RETURNING balance_minor`,
        [hold.username, hold.kind, hold.amountMinor.toString()],
      );
      const row = result.rows[0];
      assert(row !== undefined, `commit ${paymentId}: the hold's account ${hold.username} is gone`);
      const afterMinor = readMinor(row.balance_minor, "accounts.balance_minor");
      await this.#deleteHold(client, paymentId);
      await this.#finish(client, {
        op: "commit",
        paymentId,
        balancesMinor: {},
        replyBalanceMinor: afterMinor,
        atMs: this.#nowMs(),
      });
      this.#logger.debug({ paymentId, username: hold.username, kind: hold.kind }, "committed");
      return afterMinor;
    });
  }

  abort(paymentId: string): Promise<void> {
    return this.#inPayment(paymentId, (client, payment) => this.#abortLocked(client, paymentId, payment));
  }

  transfer(
    paymentId: string,
    fromUser: string,
    toUser: string,
    amountMinor: bigint,
    begunAtMs: number,
  ): Promise<bigint> {
    return this.#inPayment(paymentId, async (client, payment) => {
      const repeated = repeatedCommit(paymentId, payment);
      if (repeated !== undefined) return repeated;
      if (payment.hold !== null)
        throw new PaymentError("IDEMPOTENCY_CONFLICT", `payment ${paymentId} is prepared here as a 2PC leg`);
      if (fromUser === toUser) throw new PaymentError("SELF_PAYMENT", "sender and receiver are the same account");
      // Both rows locked in username order: two transfers between the same accounts never wait on each other in a cycle.
      const locked = new Map<string, AccountRow>();
      for (const username of [fromUser, toUser].sort()) {
        const account = await this.#readAccount(client, username, { lock: true });
        if (account !== null) locked.set(username, account);
      }
      const from = locked.get(fromUser);
      if (from === undefined) throw this.#unknownAccount(fromUser);
      const to = locked.get(toUser);
      if (to === undefined) throw this.#unknownAccount(toUser);
      const availableMinor = from.balanceMinor - from.heldDebitMinor;
      if (availableMinor < amountMinor)
        throw new PaymentError(
          "INSUFFICIENT_FUNDS",
          `insufficient funds: available ${formatMinor(availableMinor)}, needed ${formatMinor(amountMinor)}`,
        );
      if (to.balanceMinor + to.heldCreditMinor + amountMinor > balanceMinorMax)
        throw new PaymentError("BALANCE_LIMIT", `the payee's balance would exceed ${formatMinor(balanceMinorMax)}`);
      const fromAfterMinor = from.balanceMinor - amountMinor;
      await client.query(
        `UPDATE ${this.schema}.accounts a SET balance_minor = i.after_minor
           FROM unnest($1::text[], $2::int8[]) AS i(username, after_minor)
          WHERE a.username = i.username`,
        [
          [fromUser, toUser],
          [fromAfterMinor.toString(), (to.balanceMinor + amountMinor).toString()],
        ],
      );
      await this.#finish(client, {
        op: "commit",
        paymentId,
        balancesMinor: {},
        replyBalanceMinor: fromAfterMinor,
        atMs: this.#nowMs(),
        begunAtMs,
      });
      return fromAfterMinor;
    });
  }

  /** As Participant.settleTransfer, with the watermark of forgotten transfers read from the meta row. */
  settleTransfer(paymentId: string, begunAtMs: number): Promise<void> {
    return this.#inPayment(paymentId, async (client, payment) => {
      if (payment.finished === null && payment.hold === null) {
        const meta = await client.query<{ transfers_forgotten_through_ms: string }>(
          `SELECT transfers_forgotten_through_ms FROM ${this.schema}.meta WHERE id = 1`,
        );
        const forgottenThroughMs = readMs(
          meta.rows[0]?.transfers_forgotten_through_ms ?? "0",
          "meta.transfers_forgotten_through_ms",
        );
        if (begunAtMs <= forgottenThroughMs)
          throw new PaymentError(
            "UNKNOWN_PAYMENT",
            `payment ${paymentId} is unknown here, but began (${begunAtMs}) no later than a same-bank transfer this bank has forgotten (${forgottenThroughMs}): it may have been applied; an operator must check the accounts`,
          );
      }
      await this.#abortLocked(client, paymentId, payment);
    });
  }

  async listHolds(): Promise<Hold[]> {
    const result = await this.#query<HoldRow>(
      `SELECT ${holdColumns} FROM ${this.schema}.holds ORDER BY prepared_at_ms`,
      [],
    );
    return result.rows.map(holdOf);
  }

  /**
   * Claims overdue holds by pushing their expiry later in the database: the processes of the bank share the
   * sweep, and a hold is asked about by one of them per recheck period (SKIP LOCKED: a hold being decided or
   * claimed meanwhile is left to that transaction).
   */
  async claimOverdueHolds(recheckMs: number, holdsMax: number): Promise<Hold[]> {
    const nowMs = this.#nowMs();
    const result = await this.#query<HoldRow>(
      `UPDATE ${this.schema}.holds SET expires_at_ms = $2
        WHERE payment_id IN (
          SELECT payment_id FROM ${this.schema}.holds WHERE expires_at_ms <= $1
           ORDER BY expires_at_ms LIMIT $3 FOR UPDATE SKIP LOCKED)
       RETURNING ${holdColumns}`,
      [nowMs, nowMs + recheckMs, holdsMax],
    );
    return result.rows.map(holdOf);
  }

  /**
   * Nothing to do: the holds are the bank's, not this process's, and none was waiting on it. A hold whose
   * instance died is still driven by the gateway through the others, and comes due at its own expiry.
   */
  expireAllHolds(): void {}

  /** Nothing is kept in memory: every answer given was committed. */
  close(): Promise<void> {
    return Promise.resolve();
  }

  async #abortLocked(client: DatabaseClient, paymentId: string, payment: PaymentRows): Promise<void> {
    if (payment.finished?.outcome === "committed")
      throw new PaymentError("IDEMPOTENCY_CONFLICT", `cannot abort payment ${paymentId}: it is already committed here`);
    if (payment.finished?.outcome === "aborted") return;
    const hold = payment.hold;
    if (hold !== null) {
      await client.query(
        `UPDATE ${this.schema}.accounts
            SET held_debit_minor = held_debit_minor - CASE WHEN $2 = 'debit' THEN $3::int8 ELSE 0 END,
                held_credit_minor = held_credit_minor - CASE WHEN $2 = 'credit' THEN $3::int8 ELSE 0 END
          WHERE username = $1`,
        [hold.username, hold.kind, hold.amountMinor.toString()],
      );
      await this.#deleteHold(client, paymentId);
    }
    await this.#finish(client, { op: "abort", paymentId, atMs: this.#nowMs() });
  }

  /**
   * One transaction for one payment, serialized with every other transaction on the same payment id (in any
   * process) by a transaction-level advisory lock, taken first, so that the reads after it see their commits.
   */
  async #inPayment<T>(
    paymentId: string,
    work: (client: DatabaseClient, payment: PaymentRows) => Promise<T>,
  ): Promise<T> {
    try {
      return await inTransaction(
        this.#database,
        async (client) => {
          await client.query("SELECT pg_advisory_xact_lock(hashtext($1), hashtext($2))", [this.schema, paymentId]);
          return work(client, await this.#readPayment(client, paymentId));
        },
        { store: this.schema, items: 1 },
      );
    } catch (error) {
      throw this.#refusal(error, paymentId);
    }
  }

  async #readPayment(client: DatabaseClient, paymentId: string): Promise<PaymentRows> {
    const result = await client.query<HoldRow & { source: "hold" | "finished"; reply_balance_minor: string | null }>(
      `SELECT 'hold' AS source, ${holdColumns}, NULL AS reply_balance_minor FROM ${this.schema}.holds WHERE payment_id = $1
       UNION ALL
       SELECT 'finished', payment_id, NULL, outcome, NULL, NULL, NULL, reply_balance_minor
         FROM ${this.schema}.finished WHERE payment_id = $1`,
      [paymentId],
    );
    const payment: PaymentRows = { hold: null, finished: null };
    for (const row of result.rows) {
      if (row.source === "hold") payment.hold = holdOf(row);
      else
        payment.finished = {
          outcome: row.kind as "committed" | "aborted",
          replyBalanceMinor:
            row.reply_balance_minor === null
              ? null
              : readMinor(row.reply_balance_minor, "finished.reply_balance_minor"),
        };
    }
    // A payment is held or finished, never both: its decision deletes the hold in the same transaction.
    assert(payment.hold === null || payment.finished === null, `payment ${paymentId} is both held and finished`);
    return payment;
  }

  async #lockAccount(client: DatabaseClient, username: string): Promise<AccountRow> {
    const account = await this.#readAccount(client, username, { lock: true });
    if (account === null) throw this.#unknownAccount(username);
    return account;
  }

  async #readAccount(client: DatabaseClient, username: string, options: { lock: boolean }): Promise<AccountRow | null> {
    const result = await client.query<{ balance_minor: string; held_debit_minor: string; held_credit_minor: string }>(
      `SELECT balance_minor, held_debit_minor, held_credit_minor FROM ${this.schema}.accounts WHERE username = $1${options.lock ? " FOR UPDATE" : ""}`,
      [username],
    );
    const row = result.rows[0];
    if (row === undefined) return null;
    return {
      balanceMinor: readMinor(row.balance_minor, "accounts.balance_minor"),
      heldDebitMinor: readMinor(row.held_debit_minor, "accounts.held_debit_minor"),
      heldCreditMinor: readMinor(row.held_credit_minor, "accounts.held_credit_minor"),
    };
  }

  async #deleteHold(client: DatabaseClient, paymentId: string): Promise<void> {
    const deleted = await client.query(`DELETE FROM ${this.schema}.holds WHERE payment_id = $1`, [paymentId]);
    // Read under the payment's lock a moment ago: nothing else may delete it.
    assert(deleted.rowCount === 1, `payment ${paymentId}: its hold vanished under the payment's lock`);
  }

  #finish(client: DatabaseClient, entry: Parameters<typeof recordFinished>[3][number]): Promise<void> {
    return recordFinished(client, this.schema, this.#options.finishedRetainedMax, [entry]);
  }

  /** A statement outside a payment's transaction (reads), its connection failures as BANK_UNAVAILABLE. */
  async #query<Row extends object>(sql: string, values: unknown[]): Promise<{ rows: Row[] }> {
    try {
      return await this.#database.query<Row>(sql, values);
    } catch (error) {
      throw this.#refusal(error);
    }
  }

  #unknownAccount(username: string): PaymentError {
    return new PaymentError("UNKNOWN_ACCOUNT", `no account ${username} at bank ${this.bank}`);
  }

  /** A refusal passes; a database failure (nothing of the transaction applied) is BANK_UNAVAILABLE: retry it. */
  #refusal(error: unknown, paymentId?: string): PaymentError {
    if (error instanceof PaymentError) return error;
    const message = error instanceof Error ? error.message : String(error);
    this.#logger.warn(
      { paymentId, error: message, connection: isConnectionError(error) },
      "a ledger transaction failed; nothing of it applied",
    );
    return new PaymentError(
      "BANK_UNAVAILABLE",
      `bank ${this.bank}: its database did not complete the operation (${message})`,
      {
        cause: error,
        ...(paymentId === undefined ? {} : { paymentId }),
      },
    );
  }
}

type HoldRow = {
  payment_id: string;
  username: string;
  kind: string;
  amount_minor: string;
  prepared_at_ms: string;
  expires_at_ms: string;
};

const holdColumns = "payment_id, username, kind, amount_minor, prepared_at_ms, expires_at_ms";

function holdOf(row: HoldRow): Hold {
  return {
    paymentId: row.payment_id,
    username: row.username,
    kind: row.kind as LegKind,
    amountMinor: readMinor(row.amount_minor, "holds.amount_minor"),
    preparedAtMs: readMs(row.prepared_at_ms, "holds.prepared_at_ms"),
    expiresAtMs: readMs(row.expires_at_ms, "holds.expires_at_ms"),
  };
}

/** A commit or transfer of a finished payment: its first answer, or the refusal; undefined when not finished. */
function repeatedCommit(paymentId: string, payment: PaymentRows): bigint | undefined {
  const finished = payment.finished;
  if (finished === null) return undefined;
  if (finished.outcome === "aborted")
    throw new PaymentError("PAYMENT_ABORTED", `cannot commit payment ${paymentId}: it is already aborted here`);
  return finished.replyBalanceMinor ?? 0n;
}
