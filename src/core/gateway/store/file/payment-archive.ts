// The port between the gateway log (gateway-log.ts) and where its older finished payments go: each is kept
// under its id with the line of its final record (GatewayLog's format, which GatewayLog alone decodes) and
// whether it committed. Synchronous, so that a lookup never yields: an id asked about is either in the
// gateway log's memory or archived, with no window between the two for a concurrent call to fall into.
//
// Production: sqlite-archive.ts (payment_gateway/transaction_archive.sqlite). The power-loss schedule of the
// gateway log (testing/coordinator-store-schedule.ts) runs on a simulated disk that SQLite cannot use, and
// uses testing/memory-archive.ts, which keeps the same promise.

export interface ArchivedPayment {
  paymentId: string;
  /** The record's JSON text, one line without its newline. */
  line: string;
  committed: boolean;
}

export interface ArchivedCounts {
  committed: number;
  aborted: number;
}

export interface PaymentArchive {
  /**
   * Archives the payments in one transaction, durable when this returns: the caller then drops them from its
   * own files. An id already archived is skipped (its record is final, so the one archived is the same), so
   * archiving again after a crash changes nothing and the counts stay exact. Returns how many were new.
   */
  insertMany(payments: readonly ArchivedPayment[]): number;
  /** The archived line of the payment, or undefined if it was never archived. */
  lineOf(paymentId: string): string | undefined;
  /** Up to `limit` archived ids that start with `prefix`, in id order (a range of the key: never a scan). */
  idsWithPrefix(prefix: string, limit: number): string[];
  /** How many payments are archived, by outcome (kept with the inserts: never a scan). */
  counts(): ArchivedCounts;
  /** Nothing may be called after. */
  close(): void;
}
