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
// Batches: the entries are cut into runs in which no account and no payment appears twice (order inside a run
// does not matter then), and each run is one multi-row statement per kind of change (`unnest`), so a batch of
// many legs costs a handful of round trips, not one per entry.
import type { DatabaseClient } from "../../../durable/postgres/database.js";
import type { LedgerEntry, LegKind } from "../../../domain/ledger.js";
import { LedgerWriteRefused, readMs, readMinor } from "./ledger-rows.js";

type HoldEntry = Extract<LedgerEntry, { op: "hold" }>;
type CommitEntry = Extract<LedgerEntry, { op: "commit" }>;
type DecidedEntry = Exclude<LedgerEntry, { op: "hold" }>;

interface KnownHold {
  username: string;
  kind: LegKind;
  amountMinor: bigint;
  preparedAtMs: number;
  expiresAtMs: number;
}

/** One run: no account and no payment appears twice in it, so its statements may apply in any order. */
interface Run {
  accounts: Set<string>;
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
      if (run === undefined || plan.accounts.some((a) => run!.accounts.has(a)) || run.payments.has(entry.paymentId)) {
        run = { accounts: new Set(), payments: new Set(), holds: [], commits: [], transfers: [], aborts: [] };
        runs.push(run);
      }
      for (const username of plan.accounts) run.accounts.add(username);
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

  async #applyRun(client: DatabaseClient, run: Run): Promise<void> {
    if (run.holds.length > 0) await this.#insertHolds(client, run.holds);
    if (run.commits.length > 0) await this.#commitHolds(client, run.commits);
    if (run.transfers.length > 0) await this.#transfer(client, run.transfers);
    if (run.aborts.length > 0) await this.#releaseHolds(client, run.aborts);
  }

  /** Reserves each hold's amount on its account, guarded by the funds (debit) or the limit (credit), then inserts it. */
  async #insertHolds(client: DatabaseClient, holds: readonly HoldEntry[]): Promise<void> {
    const result = await client.query<{ payment_id: string }>(
      `WITH input AS (
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[], $5::int8[], $6::int8[])
           AS t(payment_id, username, kind, amount_minor, prepared_at_ms, expires_at_ms)
       ), reserved AS (
         UPDATE ${this.#schema}.accounts a
            SET held_debit_minor = a.held_debit_minor + CASE WHEN i.kind = 'debit' THEN i.amount_minor ELSE 0 END,
                held_credit_minor = a.held_credit_minor + CASE WHEN i.kind = 'credit' THEN i.amount_minor ELSE 0 END
           FROM input i
          WHERE a.username = i.username
            AND i.amount_minor > 0
            AND CASE WHEN i.kind = 'debit' THEN a.balance_minor - a.held_debit_minor >= i.amount_minor
                     WHEN i.kind = 'credit' THEN true
                     ELSE false END
         RETURNING i.payment_id
       )
       INSERT INTO ${this.#schema}.holds (payment_id, username, kind, amount_minor, prepared_at_ms, expires_at_ms)
       SELECT i.payment_id, i.username, i.kind, i.amount_minor, i.prepared_at_ms, i.expires_at_ms
         FROM input i JOIN reserved r USING (payment_id)
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

  /** Deletes each committed payment's hold and applies its amount; the balance must come out as the entry says. */
  async #commitHolds(
    client: DatabaseClient,
    commits: ReadonlyArray<{ entry: CommitEntry; username: string }>,
  ): Promise<void> {
    const result = await client.query<{ payment_id: string; username: string; balance_minor: string }>(
      `WITH gone AS (
         DELETE FROM ${this.#schema}.holds h USING unnest($1::text[]) AS i(payment_id)
          WHERE h.payment_id = i.payment_id
         RETURNING h.payment_id, h.username, h.kind, h.amount_minor
       )
       UPDATE ${this.#schema}.accounts a
          SET balance_minor = a.balance_minor + CASE WHEN g.kind = 'credit' THEN g.amount_minor ELSE -g.amount_minor END,
              held_debit_minor = a.held_debit_minor - CASE WHEN g.kind = 'debit' THEN g.amount_minor ELSE 0 END,
              held_credit_minor = a.held_credit_minor - CASE WHEN g.kind = 'credit' THEN g.amount_minor ELSE 0 END
         FROM gone g
        WHERE a.username = g.username
       RETURNING g.payment_id, a.username, a.balance_minor`,
      [commits.map((commit) => commit.entry.paymentId)],
    );
    const applied = new Map(result.rows.map((row) => [row.payment_id, row]));
    for (const { entry, username } of commits) {
      const row = applied.get(entry.paymentId);
      if (row === undefined)
        throw new LedgerWriteRefused(`commit ${entry.paymentId}: its hold is gone from the database (another writer?)`);
      const balanceMinor = readMinor(row.balance_minor, "accounts.balance_minor");
      const expectedMinor = entry.balancesMinor[username];
      if (row.username !== username || balanceMinor !== expectedMinor)
        throw new LedgerWriteRefused(
          `commit ${entry.paymentId}: the database's balance of ${row.username} came out ${balanceMinor}, the entry says ${username}=${expectedMinor} (another writer?)`,
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

  /** Deletes each aborted payment's hold and releases what it reserved. */
  async #releaseHolds(client: DatabaseClient, paymentIds: readonly string[]): Promise<void> {
    const result = await client.query(
      `WITH gone AS (
         DELETE FROM ${this.#schema}.holds h USING unnest($1::text[]) AS i(payment_id)
          WHERE h.payment_id = i.payment_id
         RETURNING h.username, h.kind, h.amount_minor
       )
       UPDATE ${this.#schema}.accounts a
          SET held_debit_minor = a.held_debit_minor - CASE WHEN g.kind = 'debit' THEN g.amount_minor ELSE 0 END,
              held_credit_minor = a.held_credit_minor - CASE WHEN g.kind = 'credit' THEN g.amount_minor ELSE 0 END
         FROM gone g
        WHERE a.username = g.username`,
      [paymentIds],
    );
    if (result.rowCount !== paymentIds.length)
      throw new LedgerWriteRefused(
        `abort of ${paymentIds.join(", ")}: a hold is gone from the database (another writer?)`,
      );
  }

  /**
   * Records the decided payments as the newest finished rows (seq dense, from the meta row, which also
   * serializes writers), then forgets the oldest beyond the retention, raising the watermark of forgotten
   * same-bank transfers by their start times exactly as retainNewest does.
   */
  async #recordFinished(client: DatabaseClient, decided: readonly DecidedEntry[]): Promise<void> {
    const meta = await client.query<{ first_seq: string; next_seq: string }>(
      `UPDATE ${this.#schema}.meta SET next_finished_seq = next_finished_seq + $1
        WHERE id = 1 RETURNING next_finished_seq - $1 AS first_seq, next_finished_seq AS next_seq`,
      [decided.length],
    );
    const row = meta.rows[0];
    if (row === undefined) throw new LedgerWriteRefused(`${this.#schema}.meta has no row`);
    await client.query(
      `INSERT INTO ${this.#schema}.finished (payment_id, seq, outcome, at_ms, reply_balance_minor, begun_at_ms)
       SELECT t.payment_id, $6::int8 + t.position - 1, t.outcome, t.at_ms, t.reply_balance_minor, t.begun_at_ms
         FROM unnest($1::text[], $2::text[], $3::int8[], $4::int8[], $5::int8[]) WITH ORDINALITY
           AS t(payment_id, outcome, at_ms, reply_balance_minor, begun_at_ms, position)`,
      [
        decided.map((entry) => entry.paymentId),
        decided.map((entry) => (entry.op === "commit" ? "committed" : "aborted")),
        decided.map((entry) => entry.atMs),
        decided.map((entry) => (entry.op === "commit" ? entry.replyBalanceMinor.toString() : null)),
        decided.map((entry) => (entry.op === "commit" ? (entry.begunAtMs ?? null) : null)),
        row.first_seq,
      ],
    );
    await client.query(
      `WITH forgotten AS (
         DELETE FROM ${this.#schema}.finished WHERE seq < $1::int8 - $2::int8 RETURNING begun_at_ms
       )
       UPDATE ${this.#schema}.meta
          SET transfers_forgotten_through_ms =
                GREATEST(transfers_forgotten_through_ms, COALESCE((SELECT max(begun_at_ms) FROM forgotten), 0))
        WHERE id = 1`,
      [row.next_seq, this.#finishedRetainedMax],
    );
  }
}

interface Plan {
  accounts: string[];
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
  return { accounts: usernames, add: (run) => run.transfers.push(...changes) };
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
