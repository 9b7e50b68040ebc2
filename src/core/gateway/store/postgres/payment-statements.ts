// The SQL of the gateway's store, one function per statement. Each statement covers every payment of a
// batch at once (unnest over one array per column), so a transaction costs a few round trips however many
// payments it carries. `schema` is always a name checked by checkedSchemaName.
import type { PaymentCounts } from "../coordinator-store.js";
import type { DatabaseClient } from "../../../durable/postgres/database.js";
import {
  paymentArrays,
  paymentColumns,
  storedFromRow,
  type PaymentArrays,
  type PaymentRow,
  type StoredPayment,
} from "./payment-rows.js";

/** Anything that runs a query: the pool (one statement, its own transaction) or a client inside a transaction. */
export type Queryable = Pick<DatabaseClient, "query">;

/**
 * Inserts the payments whose ids are not taken, in id order, and returns the ids inserted. An id taken by a
 * committed row is skipped; one being inserted by a transaction still open waits for it to end (PostgreSQL's
 * speculative insertion), then is skipped if it committed, inserted if it rolled back. Never both.
 */
export async function insertNew(
  client: Queryable,
  schema: string,
  payments: StoredPayment[],
  owner: string | null = null,
): Promise<Set<string>> {
  if (payments.length === 0) return new Set();
  // One order for every gateway: two batches inserting the same ids wait for each other, never in a cycle.
  const sorted = [...payments].sort((a, b) => compareIds(a.record.paymentId, b.record.paymentId));
  const arrays = paymentArrays(sorted);
  const result = await client.query<{ payment_id: string }>(
    `INSERT INTO ${schema}.payments (${paymentColumns}, owner)
     SELECT u.*, $22::text FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int8[],
       $7::text[], $8::text[], $9::text[], $10::bool[], $11::int8[], $12::int8[], $13::int8[], $14::int8[],
       $15::int4[], $16::text[], $17::int8[], $18::int8[], $19::text[], $20::int8[], $21::int8[]) AS u
     ON CONFLICT (payment_id) DO NOTHING
     RETURNING payment_id`,
    [
      arrays.paymentId,
      arrays.fromUser,
      arrays.fromBank,
      arrays.toUser,
      arrays.toBank,
      arrays.amountMinor,
      arrays.state,
      arrays.reason,
      arrays.reasonMessage,
      arrays.finished,
      arrays.balanceAfterMinor,
      arrays.createdAtMs,
      arrays.decidedAtMs,
      arrays.finishedAtMs,
      arrays.version,
      ...legArrays(arrays),
      owner,
    ],
  );
  return new Set(result.rows.map((row) => row.payment_id));
}

/**
 * The rows of `ids` as they are now, locked until this transaction ends (FOR UPDATE, in key order, so that
 * two gateways locking the same rows queue instead of deadlocking). A separate statement from the insert:
 * under READ COMMITTED it takes a new snapshot, so it sees a row whose concurrent insert made ours skip.
 */
export async function lockRows(client: Queryable, schema: string, ids: string[]): Promise<Map<string, StoredPayment>> {
  const found = new Map<string, StoredPayment>();
  if (ids.length === 0) return found;
  const result = await client.query<PaymentRow>(
    `SELECT ${paymentColumns}, owner FROM ${schema}.payments WHERE payment_id = ANY($1::text[])
     ORDER BY payment_id FOR UPDATE`,
    [ids],
  );
  for (const row of result.rows) found.set(row.payment_id, storedFromRow(row));
  return found;
}

/** One payment's new progress and the version it replaces. */
export interface RowUpdate {
  payment: StoredPayment;
  expectedVersion: number;
}

/**
 * Writes each payment's progress where its row is still at the version it was read at and the change moves
 * it forward (the same rule as advancedRecord, and the table's trigger), and adds `deltas` (the non-zero ones,
 * buckets in one order) to this store's stripe of payment_counts, in one statement; returns how many payment
 * rows it wrote. Fewer than asked means a row was not as read: the caller fails the transaction.
 *
 * With an `owner`, a row is written only if that gateway owns it and its lease is live at this statement
 * (the database's clock): a gateway that lost its lease, or whose payment another claimed, writes nothing.
 */
export async function updateProgress(
  client: Queryable,
  schema: string,
  updates: RowUpdate[],
  stripe: number,
  deltas: PaymentCounts,
  owner: string | null = null,
): Promise<number> {
  const buckets = (Object.keys(deltas) as Array<keyof PaymentCounts>).filter((bucket) => deltas[bucket] !== 0).sort();
  if (updates.length === 0 && buckets.length === 0) return 0;
  const arrays = paymentArrays(updates.map((update) => update.payment));
  const result = await client.query<{ written: number }>(
    `WITH written AS (
       UPDATE ${schema}.payments AS p
       SET state = c.state, reason = c.reason, reason_message = c.reason_message, finished = c.finished,
           balance_after_minor = c.balance_after_minor, decided_at_ms = c.decided_at_ms,
           finished_at_ms = c.finished_at_ms, version = c.version,
           payer_vote = c.payer_vote, payer_voted_at_ms = c.payer_voted_at_ms, payer_acked_at_ms = c.payer_acked_at_ms,
           payee_vote = c.payee_vote, payee_voted_at_ms = c.payee_voted_at_ms, payee_acked_at_ms = c.payee_acked_at_ms
       FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bool[], $6::int8[], $7::int8[], $8::int8[],
         $9::int4[], $10::int4[], $15::text[], $16::int8[], $17::int8[], $18::text[], $19::int8[], $20::int8[])
         AS c(payment_id, state, reason, reason_message, finished, balance_after_minor, decided_at_ms, finished_at_ms,
           version, expected_version, payer_vote, payer_voted_at_ms, payer_acked_at_ms, payee_vote, payee_voted_at_ms,
           payee_acked_at_ms)
       WHERE p.payment_id = c.payment_id
         AND p.version = c.expected_version
         AND c.version > p.version
         AND (p.state = c.state OR ${schema}.payment_state_rank(c.state) > ${schema}.payment_state_rank(p.state))
         AND (${schema}.payment_state_rank(p.state) < 2 OR p.state = c.state)
         AND (c.finished OR NOT p.finished)
         AND ($14::text IS NULL OR (p.owner = $14::text AND EXISTS (
           SELECT 1 FROM ${schema}.gateways g WHERE g.gateway_id = $14::text AND g.lease_expires_at > clock_timestamp())))
       RETURNING 1
     ), counted AS (
       INSERT INTO ${schema}.payment_counts (stripe, bucket, payments)
       SELECT $11::int2, bucket, delta FROM unnest($12::text[], $13::int8[]) AS d(bucket, delta)
       ON CONFLICT (stripe, bucket) DO UPDATE SET payments = payment_counts.payments + EXCLUDED.payments
     )
     SELECT count(*)::int AS written FROM written`,
    [
      arrays.paymentId,
      arrays.state,
      arrays.reason,
      arrays.reasonMessage,
      arrays.finished,
      arrays.balanceAfterMinor,
      arrays.decidedAtMs,
      arrays.finishedAtMs,
      arrays.version,
      updates.map((update) => update.expectedVersion),
      stripe,
      buckets,
      buckets.map((bucket) => String(deltas[bucket])),
      owner,
      ...legArrays(arrays),
    ],
  );
  return result.rows[0]?.written ?? 0;
}

export async function readCounts(client: Queryable, schema: string): Promise<PaymentCounts> {
  const result = await client.query<{ bucket: keyof PaymentCounts; payments: string }>(
    `SELECT bucket, sum(payments)::int8::text AS payments FROM ${schema}.payment_counts GROUP BY bucket`,
  );
  const counts: PaymentCounts = { preparing: 0, committing: 0, aborting: 0, committed: 0, aborted: 0 };
  for (const row of result.rows) {
    const value = Number(row.payments);
    if (!Object.hasOwn(counts, row.bucket) || !Number.isSafeInteger(value) || value < 0)
      throw new Error(`${schema}.payment_counts: ${row.bucket} sums to ${row.payments}`);
    counts[row.bucket] = value;
  }
  return counts;
}

export async function readPayment(
  client: Queryable,
  schema: string,
  paymentId: string,
): Promise<StoredPayment | undefined> {
  const result = await client.query<PaymentRow>(
    `SELECT ${paymentColumns} FROM ${schema}.payments WHERE payment_id = $1`,
    [paymentId],
  );
  const row = result.rows[0];
  return row === undefined ? undefined : storedFromRow(row);
}

/** The query of readUnfinished (exported for a test of its plan). */
export function unfinishedQuery(schema: string): string {
  return `SELECT ${paymentColumns} FROM ${schema}.payments WHERE NOT finished ORDER BY created_at_ms, payment_id`;
}

/**
 * Every unfinished payment, oldest first, through the partial index payments_unfinished: the table keeps every
 * payment for good, and the unfinished are a handful among them.
 */
export async function readUnfinished(client: Queryable, schema: string): Promise<StoredPayment[]> {
  const result = await client.query<PaymentRow>(unfinishedQuery(schema));
  return result.rows.map(storedFromRow);
}

/** The leg columns' arrays, in the order of paymentColumns. */
function legArrays(arrays: PaymentArrays): Array<Array<string | null>> {
  return [
    arrays.payerVote,
    arrays.payerVotedAtMs,
    arrays.payerAckedAtMs,
    arrays.payeeVote,
    arrays.payeeVotedAtMs,
    arrays.payeeAckedAtMs,
  ];
}

/** A fixed order of ids (code units), the same in every gateway. */
export function compareIds(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** A payment claimed from a gateway whose lease had expired (claimOrphans). */
export interface ClaimedPayment {
  payment: StoredPayment;
  /** The owner it was claimed from (null: a row of an earlier build). */
  previousOwner: string | null;
}

/**
 * Makes `owner` the owner of up to `limit` unfinished payments whose owner's lease has expired (or that have
 * none), oldest first, if `owner`'s own lease is live; returns them as they are now. Rows another transaction
 * holds are skipped (SKIP LOCKED: another gateway claiming, or the old owner writing; the next look gets them),
 * so gateways claiming at once share the work instead of queueing. The version is raised: the old owner's
 * compare-and-set on the row fails even before its lease check does.
 */
export async function claimOrphans(
  client: Queryable,
  schema: string,
  owner: string,
  limit: number,
): Promise<ClaimedPayment[]> {
  const result = await client.query<PaymentRow & { previous_owner: string | null }>(
    `WITH orphans AS (
       SELECT p.payment_id, p.owner AS previous_owner FROM ${schema}.payments p
       WHERE NOT p.finished
         AND EXISTS (SELECT 1 FROM ${schema}.gateways g WHERE g.gateway_id = $1 AND g.lease_expires_at > clock_timestamp())
         AND (p.owner IS NULL OR NOT EXISTS (
           SELECT 1 FROM ${schema}.gateways g WHERE g.gateway_id = p.owner AND g.lease_expires_at > clock_timestamp()))
       ORDER BY p.created_at_ms, p.payment_id
       LIMIT $2
       FOR UPDATE OF p SKIP LOCKED
     )
     UPDATE ${schema}.payments AS p SET owner = $1, version = p.version + 1
     FROM orphans o WHERE p.payment_id = o.payment_id
     RETURNING ${paymentColumns
       .split(", ")
       .map((column) => `p.${column}`)
       .join(", ")}, p.owner, o.previous_owner`,
    [owner, limit],
  );
  return result.rows.map((row) => ({ payment: storedFromRow(row), previousOwner: row.previous_owner }));
}
