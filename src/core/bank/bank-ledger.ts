// What a bank process serves from: its side of two-phase commit and its accounts, in the protocol's words. Two
// implementations: the Participant (participant.ts), which checks every operation in its memory and makes it
// durable through its ledger store, the only process of its bank; and the shared ledger on PostgreSQL
// (store/postgres/shared-ledger.ts), where every operation is one database transaction keyed by the payment id,
// so that several processes of one bank may serve from the same schema at once.
import { PaymentError } from "../domain/errors.js";
import type { FinalOutcome, Hold, LegKind } from "../domain/ledger.js";

/**
 * The rules of a Prepare that this bank has seen before, the same in both implementations: an aborted payment
 * refuses; a hold with other details is a conflict; a committed payment or a matching hold is a repeat of the
 * yes vote (true). False: the payment is new here, and the caller checks the account and makes the hold.
 */
export function isRepeatedPrepare(
  paymentId: string,
  finished: FinalOutcome | undefined,
  hold: Pick<Hold, "username" | "kind" | "amountMinor"> | undefined,
  leg: { username: string; kind: LegKind; amountMinor: bigint },
): boolean {
  if (finished === "aborted")
    throw new PaymentError("PAYMENT_ABORTED", `payment ${paymentId} was already aborted here`);
  if (
    hold !== undefined &&
    (hold.username !== leg.username || hold.kind !== leg.kind || hold.amountMinor !== leg.amountMinor)
  )
    throw new PaymentError("IDEMPOTENCY_CONFLICT", `payment ${paymentId} is already prepared here with other details`);
  return finished === "committed" || hold !== undefined;
}

export interface BalanceView {
  balanceMinor: bigint;
  availableMinor: bigint;
}

export interface BankLedger {
  readonly bank: string;
  /** Accounts when it opened (a log line's figure). */
  readonly accountCount: number;
  authenticate(username: string, password: string): Promise<void>;
  balance(username: string): BalanceView | Promise<BalanceView>;
  /** Votes yes by making a durable hold, or refuses with a reason. A repeat of a yes vote is a yes. */
  prepare(paymentId: string, username: string, kind: LegKind, amountMinor: bigint): Promise<void>;
  /** Applies a prepared hold; a repeat returns the first result. */
  commit(paymentId: string): Promise<bigint>;
  /** Releases a hold, or records that the payment must never be prepared here. Idempotent. */
  abort(paymentId: string): Promise<void>;
  /** A same-bank transfer in one step, idempotent by payment id; `begunAtMs` is when the gateway began it. */
  transfer(
    paymentId: string,
    fromUser: string,
    toUser: string,
    amountMinor: bigint,
    begunAtMs: number,
  ): Promise<bigint>;
  /** Settles a transfer whose answer was lost: resolves if it will never apply, IDEMPOTENCY_CONFLICT if it applied. */
  settleTransfer(paymentId: string, begunAtMs: number): Promise<void>;
  /** Every prepared hold, oldest first. */
  listHolds(): Promise<Hold[]>;
  /**
   * Holds whose decision is overdue, at most `holdsMax`, each pushed `recheckMs` later before it is returned: the
   * caller asks the coordinator about each, and no other caller (or process) asks again before then.
   */
  claimOverdueHolds(recheckMs: number, holdsMax: number): Promise<Hold[]>;
  /** Makes every hold due at once, so that a restarted bank asks the coordinator about each. */
  expireAllHolds(): void;
  /** An orderly stop: every change durable. */
  close(): Promise<void>;
}
