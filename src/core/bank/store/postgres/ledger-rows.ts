// The boundary between a bank's ledger rows and the protocol's values: int8 columns arrive from node-postgres
// as strings and become bigint (money) or checked safe-integer numbers (milliseconds) here, nowhere else; the
// state load() gives back is read in one snapshot; and the entries an append takes are checked before they
// reach SQL.
import type { Database } from "../../../durable/postgres/database.js";
import { DatabaseError } from "../../../durable/postgres/database.js";
import { amountMinorMax, balanceMinorMax } from "../../../domain/money.js";
import type { Account, Finished, Hold, LedgerEntry, LegKind } from "../../../domain/ledger.js";
import type { LedgerState } from "../ledger-store.js";

/** An entry the store refuses: malformed, or contradicted by the database (another writer on the schema). */
export class LedgerWriteRefused extends Error {
  override name = "LedgerWriteRefused";
}

const int8Pattern = /^-?\d{1,19}$/;

/** An int8 column of minor units, as node-postgres gives it (a string), as a bigint. */
export function readMinor(value: string, column: string): bigint {
  if (typeof value !== "string" || !int8Pattern.test(value))
    throw new DatabaseError(`${column}: expected an int8, got ${JSON.stringify(value)}`);
  return BigInt(value);
}

/** An int8 column of milliseconds as a number, refused beyond the safe integers. */
export function readMs(value: string, column: string): number {
  const ms = Number(readMinor(value, column));
  if (!Number.isSafeInteger(ms)) throw new DatabaseError(`${column}: ${value} is beyond a safe integer`);
  return ms;
}

/**
 * The bank's durable state in one REPEATABLE READ snapshot: accounts, holds, and the newest
 * `finishedRetainedMax` finished payments, oldest first. Rows beyond the retention (left by a run with a larger
 * one) are not returned, and the watermark of forgotten transfers is raised by them as if forgotten now; the
 * next write deletes them. Also checks that each account's held sums are its holds' (a broken schema is
 * refused, not served).
 */
export async function readLedgerState(
  database: Database,
  schema: string,
  finishedRetainedMax: number,
): Promise<LedgerState> {
  const client = await database.connect();
  let broken: Error | undefined;
  try {
    await client.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
    const meta = await client.query<{ next_finished_seq: string; transfers_forgotten_through_ms: string }>(
      `SELECT next_finished_seq, transfers_forgotten_through_ms FROM ${schema}.meta WHERE id = 1`,
    );
    const metaRow = meta.rows[0];
    if (metaRow === undefined) throw new DatabaseError(`${schema}.meta has no row`);
    const firstRetainedSeq =
      readMinor(metaRow.next_finished_seq, "meta.next_finished_seq") - BigInt(finishedRetainedMax);
    const accounts = await client.query<{ username: string; balance_minor: string; password_hash: string }>(
      `SELECT username, balance_minor, password_hash FROM ${schema}.accounts ORDER BY seed_position`,
    );
    const holds = await client.query<{
      payment_id: string;
      username: string;
      kind: LegKind;
      amount_minor: string;
      prepared_at_ms: string;
      expires_at_ms: string;
    }>(
      `SELECT payment_id, username, kind, amount_minor, prepared_at_ms, expires_at_ms FROM ${schema}.holds ORDER BY prepared_at_ms, payment_id`,
    );
    const finished = await client.query<{
      payment_id: string;
      outcome: "committed" | "aborted";
      at_ms: string;
      reply_balance_minor: string | null;
      begun_at_ms: string | null;
    }>(
      `SELECT payment_id, outcome, at_ms, reply_balance_minor, begun_at_ms FROM ${schema}.finished WHERE seq >= $1 ORDER BY seq`,
      [firstRetainedSeq.toString()],
    );
    const forgotten = await client.query<{ through_ms: string | null }>(
      `SELECT max(begun_at_ms) AS through_ms FROM ${schema}.finished WHERE seq < $1`,
      [firstRetainedSeq.toString()],
    );
    const unbalanced = await client.query<{ username: string }>(
      `SELECT a.username FROM ${schema}.accounts a
         LEFT JOIN (SELECT username,
                           sum(amount_minor) FILTER (WHERE kind = 'debit') AS debit_minor,
                           sum(amount_minor) FILTER (WHERE kind = 'credit') AS credit_minor
                      FROM ${schema}.holds GROUP BY username) h USING (username)
        WHERE a.held_debit_minor <> COALESCE(h.debit_minor, 0) OR a.held_credit_minor <> COALESCE(h.credit_minor, 0)
        LIMIT 1`,
    );
    await client.query("COMMIT");
    if (unbalanced.rows[0] !== undefined)
      throw new DatabaseError(`${schema}: the held sums of ${unbalanced.rows[0].username} are not its holds'`);
    let transfersForgottenThroughMs = readMs(
      metaRow.transfers_forgotten_through_ms,
      "meta.transfers_forgotten_through_ms",
    );
    const forgottenThrough = forgotten.rows[0]?.through_ms ?? null;
    if (forgottenThrough !== null)
      transfersForgottenThroughMs = Math.max(
        transfersForgottenThroughMs,
        readMs(forgottenThrough, "finished.begun_at_ms"),
      );
    return {
      accounts: new Map(
        accounts.rows.map((row): [string, Account] => [
          row.username,
          { balanceMinor: readMinor(row.balance_minor, "accounts.balance_minor"), password: row.password_hash },
        ]),
      ),
      holds: new Map(
        holds.rows.map((row): [string, Hold] => [
          row.payment_id,
          {
            paymentId: row.payment_id,
            username: row.username,
            kind: row.kind,
            amountMinor: readMinor(row.amount_minor, "holds.amount_minor"),
            preparedAtMs: readMs(row.prepared_at_ms, "holds.prepared_at_ms"),
            expiresAtMs: readMs(row.expires_at_ms, "holds.expires_at_ms"),
          },
        ]),
      ),
      finished: new Map(finished.rows.map((row): [string, Finished] => [row.payment_id, finishedOfRow(row)])),
      transfersForgottenThroughMs,
    };
  } catch (error) {
    broken = error instanceof Error ? error : new Error(String(error));
    await client.query("ROLLBACK").catch(() => undefined);
    throw error;
  } finally {
    client.release(broken);
  }
}

function finishedOfRow(row: {
  payment_id: string;
  outcome: "committed" | "aborted";
  at_ms: string;
  reply_balance_minor: string | null;
  begun_at_ms: string | null;
}): Finished {
  const finished: Finished = {
    paymentId: row.payment_id,
    outcome: row.outcome,
    atMs: readMs(row.at_ms, "finished.at_ms"),
    replyBalanceMinor:
      row.reply_balance_minor === null ? null : readMinor(row.reply_balance_minor, "finished.reply_balance_minor"),
  };
  if (row.begun_at_ms !== null) finished.begunAtMs = readMs(row.begun_at_ms, "finished.begun_at_ms");
  return finished;
}

const paymentIdLengthMax = 128;

/** Refuses a malformed entry, or one naming an account the bank does not have, before it reaches SQL. */
export function checkEntry(entry: LedgerEntry, accounts: ReadonlySet<string> | ReadonlyMap<string, unknown>): void {
  const refuse = (message: string): never => {
    throw new LedgerWriteRefused(`entry ${JSON.stringify(entry.paymentId)} (${entry.op}): ${message}`);
  };
  const checkMs = (ms: unknown, name: string) => {
    if (!Number.isSafeInteger(ms) || (ms as number) < 0) refuse(`${name} must be a non-negative safe integer`);
  };
  if (
    typeof entry.paymentId !== "string" ||
    entry.paymentId.length === 0 ||
    entry.paymentId.length > paymentIdLengthMax
  )
    refuse(`a payment id is 1-${paymentIdLengthMax} characters`);
  if (entry.op === "hold") {
    if (!accounts.has(entry.username)) refuse(`unknown account ${entry.username}`);
    if (entry.kind !== "debit" && entry.kind !== "credit") refuse(`unknown kind ${String(entry.kind)}`);
    if (typeof entry.amountMinor !== "bigint" || entry.amountMinor <= 0n || entry.amountMinor > amountMinorMax)
      refuse(`amount must be a bigint in 1..${amountMinorMax}, got ${String(entry.amountMinor)}`);
    checkMs(entry.preparedAtMs, "preparedAtMs");
    checkMs(entry.expiresAtMs, "expiresAtMs");
    return;
  }
  checkMs(entry.atMs, "atMs");
  if (entry.op === "abort") return;
  if (entry.op !== "commit") refuse("unknown op");
  const balances = Object.entries(entry.balancesMinor);
  if (balances.length === 0) refuse("a commit names at least one balance");
  for (const [username, afterMinor] of balances) {
    if (!accounts.has(username)) refuse(`unknown account ${username}`);
    if (typeof afterMinor !== "bigint" || afterMinor < 0n || afterMinor > balanceMinorMax)
      refuse(`balance of ${username} must be a bigint in 0..${balanceMinorMax}, got ${String(afterMinor)}`);
  }
  if (typeof entry.replyBalanceMinor !== "bigint") refuse("replyBalanceMinor must be a bigint");
  if (entry.begunAtMs !== undefined) checkMs(entry.begunAtMs, "begunAtMs");
}
