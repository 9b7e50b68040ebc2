// The port between the coordinator and whatever keeps its log (files today; a database server later). It is
// written in the protocol's words, not in files' or SQL's. Every method that changes a record resolves only
// once the change is durable; every record handed out is a value the coordinator never mutates, and every
// record it hands out as already known (beginOrGet's existing one, find's, tombstone's) is durable: an
// answer to a client, or a decision told to a bank, may rest on it, so it waits for a write in flight.
//
// The idempotency decision lives here: beginOrGet creates a payment or returns the one already recorded under
// its id, atomically, so that however many callers (or, with a shared database, gateways) race on one id,
// exactly one payment exists for it.
import type { PaymentChange, PaymentDetails, PaymentRecord, PaymentState } from "../../domain/payment.js";

export type Begun =
  /** A new payment, `preparing`; visible to every later call at once, durable once `durable` resolves. */
  | { created: true; record: PaymentRecord; durable: Promise<void> }
  /** The payment already recorded under this id (any state; a tombstone too); its details may differ. */
  | { created: false; record: PaymentRecord };

export interface PaymentCounts {
  preparing: number;
  /** Decided commit, not yet acknowledged by every bank. */
  committing: number;
  aborting: number;
  committed: number;
  aborted: number;
}

export interface CoordinatorStore {
  /**
   * The payment recorded under `details.paymentId`, or a new `preparing` one. A new record's write starts at
   * once; the caller may begin phase 1 before `durable` resolves (see the coordinator's header).
   */
  beginOrGet(details: PaymentDetails): Promise<Begun>;
  /** beginOrGet for many payments, in order (an id given twice is created once); one durable write covers the new ones. */
  beginOrGetAll(details: readonly PaymentDetails[]): Promise<Begun[]>;
  /** Moves one payment forward (see domain/payment.ts advancedRecord); resolves with its new record once durable. */
  advance(change: PaymentChange): Promise<PaymentRecord>;
  /** advance for many payments, made durable together; their new records, in order (none for none). */
  advanceAll(changes: readonly PaymentChange[]): Promise<PaymentRecord[]>;
  /** The record of any payment this store ever recorded, however old. */
  find(paymentId: string): Promise<PaymentRecord | undefined>;
  /** Up to `limit` ids of recorded payments that start with `prefix`, in id order (for lookups by a short id). */
  idsWithPrefix(prefix: string, limit: number): Promise<string[]>;
  /**
   * The record of `paymentId`; if there is none, a durable tombstone (aborted, final) recorded atomically in
   * its place, so that the id can never be committed afterwards (presumed abort for a bank's question).
   */
  tombstone(paymentId: string): Promise<PaymentRecord>;
  /** Every payment not finished (undecided, or decided and not yet acknowledged by every bank). */
  unfinished(): Promise<PaymentRecord[]>;
  /** How many payments are in each state, for the operator. */
  counts(): Promise<PaymentCounts>;
  /** Durable state stays; nothing may be called after. */
  close(): Promise<void>;
}

/** The counts' bucket of one record. */
export function countsKey(record: { state: PaymentState; finished: boolean }): keyof PaymentCounts {
  if (record.finished) return record.state === "committed" ? "committed" : "aborted";
  if (record.state === "committed") return "committing";
  if (record.state === "aborted") return "aborting";
  return "preparing";
}
