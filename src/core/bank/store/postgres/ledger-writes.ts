// One group commit of a bank's ledger entries, as one PostgreSQL transaction: every entry of the batch applies,
// in order, or none does. The SQL guards the invariants itself, so a second writer on the schema is refused by
// the server instead of believed (bank-schema.ts has the CHECKs behind them):
//   - a hold reserves its amount with `UPDATE accounts … WHERE balance_minor - held_debit_minor >= amount`: the
//     row is locked by the UPDATE, and under READ COMMITTED a racing writer's UPDATE re-checks the condition on
//     the row as the first one left it, so two Prepares on one account can never both reserve the last funds;
//   - a commit deletes its hold and applies the hold's amount to the balance in one statement, and the result
//     must equal the entry's absolute after-balance; a same-bank transfer sets its balances only where they
//     still hold what this store last wrote (compare-and-set) and must conserve money;
//   - every statement's row count is checked: a guard that refused, a hold another writer took away, a balance
//     another writer changed, all fail the transaction (ROLLBACK: nothing of the batch is applied). Two writers
//     may also deadlock on account rows; the server then aborts one, whose append fails the same way.
//
// Re-applying an entry that is already applied (an append retried after its COMMIT went through but the reply
// was lost, or a reload replaying what it had) is a no-op: the batch first reads the holds and finished rows of
// its payments, and skips a hold whose payment is held with the same details or finished, and a decision whose
// payment is already finished the same way. Entries then only ever move a payment forward.
//
// Batches: the entries are cut into runs in which no payment appears twice, and no account of a same-bank
// transfer appears with anything else; each run is one multi-row statement per kind of change (`unnest`), so
// a batch of many legs costs a handful of round trips, not one per entry (a batch of holds, or of decisions,
// over any accounts is one run). Inside a run, several changes of one account are applied as one aggregated
// row update whose guard is the cumulative one: the decisions first (a commit or an abort never lowers what
// an account has available, balance − debit holds, nor raises balance + credit holds), then the holds, their
// debits reserved together only if balance − debit holds ≥ their sum; the commits' balance must come out as
// the run's last commit on that account says (each entry's after-balance is checked against the one before
// it in planEntry, so the chain is exact once its end is). Equivalent to applying them one by one, since
// amounts are positive, the final state is the same, and any refusal rolls the whole transaction back.
import type { DatabaseClient } from "../../../durable/postgres/database.js";
import type { LedgerEntry, LegKind } from "../../../domain/ledger.js";
import { LedgerWriteRefused, readMs, readMinor } from "./ledger-rows.js";

type HoldEntry = Extract<LedgerEntry, { op: "hold" }>;
type CommitEntry = Extract<LedgerEntry, { op: "commit" }>;
export type DecidedEntry = Exclude<LedgerEntry, { op: "hold" }>;

interface KnownHold {
  username: string;
  kind: LegKind;
  amountMinor: bigint;
  preparedAtMs: number;
  expiresAtMs: number;
}

/**
 * One run: no payment appears twice in it, and a transfer's accounts appear in nothing else, so its changes of
 * one account may be summed (decisions before holds).
 */
interface Run {
  accounts: Set<string>;
  /** The accounts of the run's same-bank transfers (compare-and-set: nothing else of the run may touch them). */
  transferAccounts: Set<string>;
  payments: Set<string>;
  holds: HoldEntry[];
  commits: Array<{ entry: CommitEntry; username: string }>;
  transfers: Array<{ username: string; beforeMinor: bigint; afterMinor: bigint }>;
  aborts: string[];
}

/** What a batch changed, for the store's image of the durable balances once the transaction has committed. */
export interface BatchResult {
  balancesMinor: Map<string, bigint>;
  /** Entries skipped because they were applied already. */
  skipped: number;
}

export class LedgerSql {
  readonly #schema: string;
  readonly #finishedRetainedMax: number;

  constructor(schema: string, finishedRetainedMax: number) {
    this.#schema = schema;
    this.#finishedRetainedMax = finishedRetainedMax;
  }

  /**
   * Applies `entries` in order inside the caller's transaction. `durableBalancesMinor` is this store's image of
   * the balances as last committed (a transfer's compare-and-set values). Throws LedgerWriteRefused (or the
   * server's error) when anything is refused; the caller rolls back.
   */
  async applyBatch(
    client: DatabaseClient,
    entries: readonly LedgerEntry[],
    durableBalancesMinor: ReadonlyMap<string, bigint>,
  ): Promise<BatchResult> {
    const { holds, finished } = await this.#readPayments(client, entries);
    const balancesMinor = new Map<string, bigint>();
    const balanceOf = (username: string): bigint => {
      const balanceMinor = balancesMinor.get(username) ?? durableBalancesMinor.get(username);
      if (balanceMinor === undefined) throw new LedgerWriteRefused(`unknown account ${username}`);
      return balanceMinor;
    };
    const runs: Run[] = [];
    const decided: DecidedEntry[] = [];
    let skipped = 0;
    for (const entry of entries) {
      const plan = planEntry(entry, holds, finished, balanceOf);
      if (plan === "skip") {
        skipped += 1;
        continue;
      }
      let run = runs.at(-1);
      if (
        run === undefined ||
        run.payments.has(entry.paymentId) ||
        plan.accounts.some((a) => (plan.transfer ? run!.accounts : run!.transferAccounts).has(a))
      ) {
        run = {
          accounts: new Set(),
          transferAccounts: new Set(),
          payments: new Set(),
          holds: [],
          commits: [],
          transfers: [],
          aborts: [],
        };
        runs.push(run);
      }
      for (const username of plan.accounts) {
        run.accounts.add(username);
        if (plan.transfer) run.transferAccounts.add(username);
      }
      run.payments.add(entry.paymentId);
      plan.add(run);
      if (entry.op === "hold") {
        holds.set(entry.paymentId, entry);
      } else {
        holds.delete(entry.paymentId);
        finished.set(entry.paymentId, entry.op === "commit" ? "committed" : "aborted");
        if (entry.op === "commit")
          for (const [username, afterMinor] of Object.entries(entry.balancesMinor))
            balancesMinor.set(username, afterMinor);
        decided.push(entry);
      }
    }
    for (const run of runs) await this.#applyRun(client, run);
    if (decided.length > 0) await this.#recordFinished(client, decided);
    return { balancesMinor, skipped };
  }

  /** The holds and finished rows of the batch's payments, as the database has them now. */
  async #readPayments(
    client: DatabaseClient,
    entries: readonly LedgerEntry[],
  ): Promise<{ holds: Map<string, KnownHold>; finished: Map<string, "committed" | "aborted"> }> {
    const paymentIds = [...new Set(entries.map((entry) => entry.paymentId))];
    const result = await client.query<{
      source: "hold" | "finished";
      payment_id: string;
      username: string | null;
      kind: string | null;
      amount_minor: string | null;
      prepared_at_ms: string | null;
      expires_at_ms: string | null;
    }>(
      `SELECT 'hold' AS source, payment_id, username, kind, amount_minor, prepared_at_ms, expires_at_ms
         FROM ${this.#schema}.holds WHERE payment_id = ANY($1::text[])
       UNION ALL
       SELECT 'finished', payment_id, NULL, outcome, NULL, NULL, NULL
         FROM ${this.#schema}.finished WHERE payment_id = ANY($1::text[])`,
      [paymentIds],
    );
    const holds = new Map<string, KnownHold>();
    const finished = new Map<string, "committed" | "aborted">();
    for (const row of result.rows) {
      if (row.source === "finished") {
        finished.set(row.payment_id, row.kind as "committed" | "aborted");
        continue;
      }
      holds.set(row.payment_id, {
        username: row.username!,
        kind: row.kind as LegKind,
        amountMinor: readMinor(row.amount_minor!, "holds.amount_minor"),
        preparedAtMs: readMs(row.prepared_at_ms!, "holds.prepared_at_ms"),
        expiresAtMs: readMs(row.expires_at_ms!, "holds.expires_at_ms"),
      });
    }
    return { holds, finished };
  }

  /** Decisions first (they never lower what an account has available), then the holds; see the header. */
  async #applyRun(client: DatabaseClient, run: Run): Promise<void> {
    if (run.aborts.length > 0) await this.#releaseHolds(client, run.aborts);
    if (run.commits.length > 0) await this.#commitHolds(client, run.commits);
    if (run.transfers.length > 0) await this.#transfer(client, run.transfers);
    if (run.holds.length > 0) await this.#insertHolds(client, run.holds);
  }

  /**
   * Reserves the holds' amounts, summed per account, guarded by the funds (debits: balance − debit holds ≥ their
   * sum) or the limit (credits, the table's CHECK), then inserts them; an account refused refuses all its holds.
   */
  async #insertHolds(client: DatabaseClient, holds: readonly HoldEntry[]): Promise<void> {
    const result = await client.query<{ payment_id: string }>(
      `WITH input AS (
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[], $5::int8[], $6::int8[])
           AS t(payment_id, username, kind, amount_minor, prepared_at_ms, expires_at_ms)
       ), summed AS (
         SELECT username,
                sum(CASE WHEN kind = 'debit' THEN amount_minor ELSE 0 END)::int8 AS debit_minor,
                sum(CASE WHEN kind = 'credit' THEN amount_minor ELSE 0 END)::int8 AS credit_minor
           FROM input
          GROUP BY username
         HAVING bool_and(amount_minor > 0 AND kind IN ('debit', 'credit'))
       ), reserved AS (
         UPDATE ${this.#schema}.accounts a
            SET held_debit_minor = a.held_debit_minor + s.debit_minor,
                held_credit_minor = a.held_credit_minor + s.credit_minor
           FROM summed s
          WHERE a.username = s.username
            AND a.balance_minor - a.held_debit_minor >= s.debit_minor
         RETURNING a.username
       )
       INSERT INTO ${this.#schema}.holds (payment_id, username, kind, amount_minor, prepared_at_ms, expires_at_ms)
       SELECT i.payment_id, i.username, i.kind, i.amount_minor, i.prepared_at_ms, i.expires_at_ms
         FROM input i JOIN reserved r USING (username)
       RETURNING payment_id`,
      [
        holds.map((hold) => hold.paymentId),
        holds.map((hold) => hold.username),
        holds.map((hold) => hold.kind),
        holds.map((hold) => hold.amountMinor.toString()),
        holds.map((hold) => hold.preparedAtMs),
        holds.map((hold) => hold.expiresAtMs),
      ],
    );
    if (result.rowCount !== holds.length) {
      const made = new Set(result.rows.map((row) => row.payment_id));
      const refused = holds.filter((hold) => !made.has(hold.paymentId)).map((hold) => hold.paymentId);
      throw new LedgerWriteRefused(
        `the database refused the hold of ${refused.join(", ")}: not enough available funds on the account as the database has it (another writer?)`,
      );
    }
  }

  /**
   * Deletes each committed payment's hold and applies the amounts, summed per account, in one update of its
   * row; each account's balance must come out as the run's last commit on it says.
   */
  async #commitHolds(
    client: DatabaseClient,
    commits: ReadonlyArray<{ entry: CommitEntry; username: string }>,
  ): Promise<void> {
    const result = await client.query<{ payment_id: string; username: string; balance_minor: string | null }>(
      `WITH gone AS (
         DELETE FROM ${this.#schema}.holds h USING unnest($1::text[]) AS i(payment_id)
          WHERE h.payment_id = i.payment_id
         RETURNING h.payment_id, h.username, h.kind, h.amount_minor
       ), summed AS (
         SELECT username,
                sum(CASE WHEN kind = 'credit' THEN amount_minor ELSE -amount_minor END)::int8 AS delta_minor,
                sum(CASE WHEN kind = 'debit' THEN amount_minor ELSE 0 END)::int8 AS debit_minor,
                sum(CASE WHEN kind = 'credit' THEN amount_minor ELSE 0 END)::int8 AS credit_minor
           FROM gone
          GROUP BY username
       ), applied AS (
         UPDATE ${this.#schema}.accounts a
            SET balance_minor = a.balance_minor + s.delta_minor,
                held_debit_minor = a.held_debit_minor - s.debit_minor,
                held_credit_minor = a.held_credit_minor - s.credit_minor
           FROM summed s
          WHERE a.username = s.username
         RETURNING a.username, a.balance_minor
       )
       SELECT g.payment_id, g.username, p.balance_minor FROM gone g LEFT JOIN applied p USING (username)`,
      [commits.map((commit) => commit.entry.paymentId)],
    );
    const applied = new Map(result.rows.map((row) => [row.payment_id, row]));
    const lastMinor = new Map<string, bigint | undefined>();
    for (const { entry, username } of commits) lastMinor.set(username, entry.balancesMinor[username]);
    for (const { entry, username } of commits) {
      const row = applied.get(entry.paymentId);
      if (row === undefined)
        throw new LedgerWriteRefused(`commit ${entry.paymentId}: its hold is gone from the database (another writer?)`);
      const balanceMinor = row.balance_minor === null ? null : readMinor(row.balance_minor, "accounts.balance_minor");
      const expectedMinor = lastMinor.get(username);
      if (row.username !== username || balanceMinor !== expectedMinor)
        throw new LedgerWriteRefused(
          `commit ${entry.paymentId}: the database's balance of ${row.username} came out ${balanceMinor}, the batch's commits say ${username}=${expectedMinor} (another writer?)`,
        );
    }
  }

  /** Sets a same-bank transfer's balances where they still are what this store last wrote (compare-and-set). */
  async #transfer(
    client: DatabaseClient,
    changes: ReadonlyArray<{ username: string; beforeMinor: bigint; afterMinor: bigint }>,
  ): Promise<void> {
    const result = await client.query<{ username: string }>(
      `UPDATE ${this.#schema}.accounts a
          SET balance_minor = i.after_minor
         FROM unnest($1::text[], $2::int8[], $3::int8[]) AS i(username, before_minor, after_minor)
        WHERE a.username = i.username
          AND a.balance_minor = i.before_minor
          AND i.after_minor >= a.held_debit_minor
       RETURNING a.username`,
      [
        changes.map((change) => change.username),
        changes.map((change) => change.beforeMinor.toString()),
        changes.map((change) => change.afterMinor.toString()),
      ],
    );
    if (result.rowCount !== changes.length) {
      const set = new Set(result.rows.map((row) => row.username));
      const refused = changes.filter((change) => !set.has(change.username)).map((change) => change.username);
      throw new LedgerWriteRefused(
        `a transfer's balances of ${refused.join(", ")} are not what this store last wrote, or would not cover their debit holds (another writer?)`,
      );
    }
  }

  /** Deletes each aborted payment's hold and releases what they reserved, summed per account. */
  async #releaseHolds(client: DatabaseClient, paymentIds: readonly string[]): Promise<void> {
    const result = await client.query<{ payment_id: string }>(
      `WITH gone AS (
         DELETE FROM ${this.#schema}.holds h USING unnest($1::text[]) AS i(payment_id)
          WHERE h.payment_id = i.payment_id
         RETURNING h.payment_id, h.username, h.kind, h.amount_minor
       ), summed AS (
         SELECT username,
                sum(CASE WHEN kind = 'debit' THEN amount_minor ELSE 0 END)::int8 AS debit_minor,
                sum(CASE WHEN kind = 'credit' THEN amount_minor ELSE 0 END)::int8 AS credit_minor
           FROM gone
          GROUP BY username
       ), released AS (
         UPDATE ${this.#schema}.accounts a
            SET held_debit_minor = a.held_debit_minor - s.debit_minor,
                held_credit_minor = a.held_credit_minor - s.credit_minor
           FROM summed s
          WHERE a.username = s.username
         RETURNING a.username
       )
       SELECT g.payment_id FROM gone g JOIN released r USING (username)`,
      [paymentIds],
    );
    if (result.rowCount !== paymentIds.length)
      throw new LedgerWriteRefused(
        `abort of ${paymentIds.join(", ")}: a hold is gone from the database (another writer?)`,
      );
  }

  #recordFinished(client: DatabaseClient, decided: readonly DecidedEntry[]): Promise<void> {
    return recordFinished(client, this.#schema, this.#finishedRetainedMax, decided);
  }
}

/**
 * Records the decided payments as the newest finished rows, in the caller's transaction (seq dense, from the meta
 * row, which also serializes writers), then forgets the oldest beyond the retention, raising the watermark of forgotten
 * same-bank transfers by their start times exactly as retainNewest does.
 */
export async function recordFinished(
  client: DatabaseClient,
  schema: string,
  finishedRetainedMax: number,
  decided: readonly DecidedEntry[],
): Promise<void> {
  // One statement takes the seqs from the meta row and inserts the rows; a second (which sees them) forgets
  // the oldest. Two, not one: a statement's CTEs share one snapshot, and the meta row is updated by both.
  const meta = await client.query<{ next_seq: string; inserted: number }>(
    `WITH meta AS (
       UPDATE ${schema}.meta SET next_finished_seq = next_finished_seq + $1
        WHERE id = 1 RETURNING next_finished_seq - $1 AS first_seq, next_finished_seq AS next_seq
     ), inserted AS (
       INSERT INTO ${schema}.finished (payment_id, seq, outcome, at_ms, reply_balance_minor, begun_at_ms)
       SELECT t.payment_id, m.first_seq + t.position - 1, t.outcome, t.at_ms, t.reply_balance_minor, t.begun_at_ms
         FROM meta m,
              unnest($2::text[], $3::text[], $4::int8[], $5::int8[], $6::int8[]) WITH ORDINALITY
                AS t(payment_id, outcome, at_ms, reply_balance_minor, begun_at_ms, position)
       RETURNING 1
     )
     SELECT m.next_seq, (SELECT count(*) FROM inserted)::int AS inserted FROM meta m`,
    [
      decided.length,
      decided.map((entry) => entry.paymentId),
      decided.map((entry) => (entry.op === "commit" ? "committed" : "aborted")),
      decided.map((entry) => entry.atMs),
      decided.map((entry) => (entry.op === "commit" ? entry.replyBalanceMinor.toString() : null)),
      decided.map((entry) => (entry.op === "commit" ? (entry.begunAtMs ?? null) : null)),
    ],
  );
  const row = meta.rows[0];
  if (row === undefined) throw new LedgerWriteRefused(`${schema}.meta has no row`);
  if (row.inserted !== decided.length)
    throw new LedgerWriteRefused(`${schema}.finished: ${row.inserted} of ${decided.length} rows inserted`);
  // Seqs start at 1: while next − retention ≤ 1 no row can be beyond the retention, and the round trip is saved.
  if (readMinor(row.next_seq, "meta.next_finished_seq") - BigInt(finishedRetainedMax) <= 1n) return;
  await client.query(
    `WITH forgotten AS (
       DELETE FROM ${schema}.finished WHERE seq < $1::int8 - $2::int8 RETURNING begun_at_ms
     )
     UPDATE ${schema}.meta
        SET transfers_forgotten_through_ms =
              GREATEST(transfers_forgotten_through_ms, COALESCE((SELECT max(begun_at_ms) FROM forgotten), 0))
      WHERE id = 1`,
    [row.next_seq, finishedRetainedMax],
  );
}

interface Plan {
  accounts: string[];
  /** A same-bank transfer (compare-and-set of its balances): its accounts take nothing else in its run. */
  transfer?: boolean;
  add(run: Run): void;
}

/** What one entry does, given the payments as the database (and the batch so far) has them; "skip" if applied already. */
function planEntry(
  entry: LedgerEntry,
  holds: ReadonlyMap<string, KnownHold>,
  finished: ReadonlyMap<string, "committed" | "aborted">,
  balanceOf: (username: string) => bigint,
): Plan | "skip" {
  const { paymentId } = entry;
  const known = holds.get(paymentId);
  const outcome = finished.get(paymentId);
  if (entry.op === "hold") {
    if (outcome !== undefined) return "skip"; // held and decided already
    if (known !== undefined) {
      if (!sameHold(known, entry)) throw new LedgerWriteRefused(`hold ${paymentId}: held already with other details`);
      return "skip";
    }
    balanceOf(entry.username); // an unknown account is refused here
    return { accounts: [entry.username], add: (run) => run.holds.push(entry) };
  }
  if (entry.op === "abort") {
    if (outcome === "committed") throw new LedgerWriteRefused(`abort ${paymentId}: committed already`);
    if (outcome === "aborted") return "skip";
    if (known === undefined) return { accounts: [], add: () => undefined };
    return { accounts: [known.username], add: (run) => run.aborts.push(paymentId) };
  }
  if (outcome === "aborted") throw new LedgerWriteRefused(`commit ${paymentId}: aborted already`);
  if (outcome === "committed") return "skip";
  const usernames = Object.keys(entry.balancesMinor);
  if (known !== undefined) {
    if (usernames.length !== 1 || usernames[0] !== known.username)
      throw new LedgerWriteRefused(`commit ${paymentId}: its balances must name exactly its hold's account`);
    const beforeMinor = balanceOf(known.username);
    const expectedMinor = known.kind === "credit" ? beforeMinor + known.amountMinor : beforeMinor - known.amountMinor;
    if (entry.balancesMinor[known.username] !== expectedMinor)
      throw new LedgerWriteRefused(
        `commit ${paymentId}: the entry's balance ${entry.balancesMinor[known.username]} is not the hold applied to ${beforeMinor}`,
      );
    return { accounts: usernames, add: (run) => run.commits.push({ entry, username: known.username }) };
  }
  if (entry.begunAtMs === undefined) throw new LedgerWriteRefused(`commit ${paymentId}: no hold, and not a transfer`);
  const changes = usernames.map((username) => ({
    username,
    beforeMinor: balanceOf(username),
    afterMinor: entry.balancesMinor[username]!,
  }));
  const netMinor = changes.reduce((sum, change) => sum + change.afterMinor - change.beforeMinor, 0n);
  if (netMinor !== 0n) throw new LedgerWriteRefused(`transfer ${paymentId}: its balances create or destroy money`);
  return { accounts: usernames, transfer: true, add: (run) => run.transfers.push(...changes) };
}

function sameHold(known: KnownHold, entry: HoldEntry): boolean {
  return (
    known.username === entry.username &&
    known.kind === entry.kind &&
    known.amountMinor === entry.amountMinor &&
    known.preparedAtMs === entry.preparedAtMs &&
    known.expiresAtMs === entry.expiresAtMs
  );
}
