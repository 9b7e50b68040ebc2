// The port between a bank's participant and whatever keeps its ledger (files today; a database server
// later), in the protocol's words. The participant keeps the working state in memory and checks every
// operation there; the store makes its entries durable (each entry carries absolute after-balances) and,
// at a start, gives back the state they add up to. How it gets there (journal generations, checkpoints,
// CSV rewrites, transactions) is the adapter's business, invisible to the participant.
import type { Account, Finished, Hold, LedgerEntry } from "../../domain/ledger.js";

export interface LedgerState {
  /** Every account of the bank, by username, with its durable balance. */
  accounts: Map<string, Account>;
  /** The prepared holds: votes yes that await their decision. */
  holds: Map<string, Hold>;
  /** Finished payments the store remembers, oldest first (at most the retention the store was opened with). */
  finished: Map<string, Finished>;
  /**
   * At least the latest gateway start time of a same-bank transfer the store no longer remembers (0: none).
   * Higher is safe (the participant is only more careful about a transfer it does not know): a file store
   * that folds an interrupted checkpoint in again may raise it past what it strictly has to.
   */
  transfersForgottenThroughMs: number;
}

export interface LedgerStore {
  /** The durable state, everything recovered (called once, before any append). */
  load(): Promise<LedgerState>;
  /**
   * Makes `entries` durable, after every entry appended before them; entries appended while a write is in
   * flight share the next one. Rejects if the write failed: memory is then ahead of disk, and the owner
   * must stop (the store refuses every later append).
   */
  append(entries: readonly LedgerEntry[]): Promise<void>;
  /** Resolves once every entry appended so far is durable (at once when nothing is on its way). */
  settled(): Promise<void>;
  /** Every append durable, and whatever the adapter folds or compacts done; nothing may be called after. */
  close(): Promise<void>;
}
