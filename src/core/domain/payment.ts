// A payment as the gateway records it: what was asked (its details, fixed by its idempotency key) and how far
// it has got. These are values: a store hands out a new record for every change, never one it will mutate.
import { assert } from "./assert.js";
import type { Reason } from "./errors.js";

/** A payment's state only moves forward: preparing → prepared → committed | aborted. */
export type PaymentState = "preparing" | "prepared" | "committed" | "aborted";

/** Rank of each state: a change may keep or raise it, never lower it; committed and aborted are final. */
export const paymentStateRank: Readonly<Record<PaymentState, number>> = Object.freeze({
  preparing: 0,
  prepared: 1,
  committed: 2,
  aborted: 2,
});

export function isDecided(state: PaymentState): state is "committed" | "aborted" {
  return paymentStateRank[state] === 2;
}

export interface PaymentDetails {
  readonly paymentId: string;
  readonly fromUser: string;
  readonly fromBank: string;
  readonly toUser: string;
  readonly toBank: string;
  readonly amountMinor: bigint;
}

export interface PaymentRecord extends PaymentDetails {
  readonly state: PaymentState;
  readonly reason: Reason | null;
  readonly reasonMessage: string | null;
  /** Every bank has acknowledged the decision: nothing is left to drive. */
  readonly finished: boolean;
  /** The payer's balance after a commit, as the payer's bank answered it. */
  readonly balanceAfterMinor: bigint | null;
  readonly createdAtMs: number;
  readonly decidedAtMs: number | null;
  readonly finishedAtMs: number | null;
}

/**
 * The longest reason message a record keeps. A refusal's message comes from a bank; cut to this, a record
 * always fits one line of a store's journal, whatever a bank answered.
 */
export const reasonMessageCharsMax = 1_024;

/** What a step of a payment adds to its record (see CoordinatorStore.advance). */
export interface Outcome {
  reason?: Reason;
  reasonMessage?: string;
  balanceAfterMinor?: bigint | null;
  finished?: boolean;
}

export interface PaymentChange {
  paymentId: string;
  state: PaymentState;
  outcome?: Outcome;
}

export function sameDetails(a: PaymentDetails, b: PaymentDetails): boolean {
  return (
    a.fromUser === b.fromUser &&
    a.fromBank === b.fromBank &&
    a.toUser === b.toUser &&
    a.toBank === b.toBank &&
    a.amountMinor === b.amountMinor
  );
}

/** The record of an id a bank asked about before the gateway had recorded it (see CoordinatorStore.tombstone). */
export function isTombstone(record: PaymentRecord): boolean {
  return record.fromUser === "" && record.state === "aborted";
}

/** A new payment's first record. */
export function beganRecord(details: PaymentDetails, createdAtMs: number): PaymentRecord {
  return {
    paymentId: details.paymentId,
    fromUser: details.fromUser,
    fromBank: details.fromBank,
    toUser: details.toUser,
    toBank: details.toBank,
    amountMinor: details.amountMinor,
    state: "preparing",
    reason: null,
    reasonMessage: null,
    finished: false,
    balanceAfterMinor: null,
    createdAtMs,
    decidedAtMs: null,
    finishedAtMs: null,
  };
}

/** The record that stands for an id this gateway never began: aborted for good, so it can never commit. */
export function tombstoneRecord(paymentId: string, nowMs: number): PaymentRecord {
  return {
    paymentId,
    fromUser: "",
    fromBank: "",
    toUser: "",
    toBank: "",
    amountMinor: 0n,
    state: "aborted",
    reason: "PAYMENT_ABORTED",
    reasonMessage: "a bank asked about a payment this gateway never began",
    finished: true,
    balanceAfterMinor: null,
    createdAtMs: nowMs,
    decidedAtMs: nowMs,
    finishedAtMs: nowMs,
  };
}

/**
 * The record after `change`, checking that the state only moves forward. Every store applies changes
 * through this one function, so the rules are the same whatever holds the records. Asserts (a programmer
 * error) against a change that moves backwards or decides a decided payment otherwise.
 */
export function advancedRecord(record: PaymentRecord, change: PaymentChange, nowMs: number): PaymentRecord {
  const { state, outcome = {} } = change;
  assert(
    paymentStateRank[state] >= paymentStateRank[record.state],
    `payment ${record.paymentId} may not move from ${record.state} to ${state}`,
  );
  assert(
    !(isDecided(record.state) && state !== record.state),
    `payment ${record.paymentId} is already ${record.state}`,
  );
  assert(!(outcome.finished === true && !isDecided(state)), `payment ${record.paymentId} finished before a decision`);
  const decidedNow = record.state !== state && isDecided(state);
  return withProgress(record, {
    state,
    reason: outcome.reason ?? record.reason,
    reasonMessage:
      outcome.reasonMessage === undefined
        ? record.reasonMessage
        : outcome.reasonMessage.slice(0, reasonMessageCharsMax),
    finished: record.finished || outcome.finished === true,
    balanceAfterMinor: outcome.balanceAfterMinor ?? record.balanceAfterMinor,
    decidedAtMs: decidedNow ? nowMs : record.decidedAtMs,
    finishedAtMs: !record.finished && outcome.finished === true ? nowMs : record.finishedAtMs,
  });
}

/** What changes in a payment's record as it moves on: everything but its details and its start. */
export type PaymentProgress = Pick<
  PaymentRecord,
  "state" | "reason" | "reasonMessage" | "finished" | "balanceAfterMinor" | "decidedAtMs" | "finishedAtMs"
>;

/**
 * The record with `progress` in place of its own, unchecked (advancedRecord checks a change; a store replaying
 * what it wrote, or a reply adding the payer's balance, does not need to). Built field by field, not spread: a
 * spread object this wide can fall out of V8's fast representation, and one is made for every step of every
 * payment.
 */
export function withProgress(record: PaymentRecord, progress: PaymentProgress): PaymentRecord {
  return {
    paymentId: record.paymentId,
    fromUser: record.fromUser,
    fromBank: record.fromBank,
    toUser: record.toUser,
    toBank: record.toBank,
    amountMinor: record.amountMinor,
    state: progress.state,
    reason: progress.reason,
    reasonMessage: progress.reasonMessage,
    finished: progress.finished,
    balanceAfterMinor: progress.balanceAfterMinor,
    createdAtMs: record.createdAtMs,
    decidedAtMs: progress.decidedAtMs,
    finishedAtMs: progress.finishedAtMs,
  };
}
