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

/** A cross-bank payment's two legs: the payer's debit at its fromBank, the payee's credit at its toBank. */
export type LegRole = "payer" | "payee";
/** The roles in the order a record keeps its legs. */
export const legRoles: readonly LegRole[] = Object.freeze(["payer", "payee"]);
/** A bank's answer to Prepare: yes (its hold is durable), no (a refusal), or none in time (unreachable, deadline). */
export type LegVote = "yes" | "no" | "unanswered";
export const legVotes: readonly LegVote[] = Object.freeze(["yes", "no", "unanswered"]);

/**
 * One bank's part in a cross-bank payment as the coordinator saw it, times by the gateway's clock. Its bank is
 * the payment's fromBank (payer) or toBank (payee). The vote is recorded with the decision, the bank's
 * acknowledgement of the decision (its Commit or Abort answered) with `finished`: no write of its own. A field
 * is null until known, and a payment decided at a restart (presumed abort) never knows its votes.
 */
export interface PaymentLeg {
  readonly role: LegRole;
  /** Null with votedAtMs null: not recorded. */
  readonly vote: LegVote | null;
  readonly votedAtMs: number | null;
  readonly ackedAtMs: number | null;
}

/** A payment has a debit and a credit: a record keeps at most one leg per role. */
export const legsMax = 2;

/** The legs of a record that has none: a new payment, a same-bank one, a tombstone, one recorded before legs were kept. */
export const noLegs: readonly PaymentLeg[] = Object.freeze([]);

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
  /** Cross-bank only: each leg's vote and acknowledgement, payer first; empty when none is known. */
  readonly legs: readonly PaymentLeg[];
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
  /** Each leg as the coordinator knows it now; merged into the record's (see mergedLegs). Decided payments only. */
  legs?: readonly PaymentLeg[];
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
    legs: noLegs,
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
    legs: noLegs,
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
  const legs = outcome.legs === undefined ? record.legs : mergedLegs(record, state, outcome.legs);
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
    legs,
  });
}

/**
 * Whether `legs` is a shape a record may hold: at most one leg per role, payer first; each with a vote or an
 * acknowledgement, a vote with its time and a time with its vote; times non-negative integers. Null when it
 * is, else what is wrong (for a reader of untrusted bytes to report).
 */
export function legsProblem(legs: readonly PaymentLeg[]): string | null {
  if (legs.length > legsMax) return `at most ${legsMax} legs, got ${legs.length}`;
  let previousRank = -1;
  for (const leg of legs) {
    const rank = legRoles.indexOf(leg.role);
    if (rank === -1) return `unknown leg role ${String(leg.role)}`;
    if (rank <= previousRank) return "one leg per role, payer first";
    previousRank = rank;
    if (leg.vote !== null && !legVotes.includes(leg.vote)) return `unknown vote ${String(leg.vote)}`;
    if ((leg.vote === null) !== (leg.votedAtMs === null)) return `the ${leg.role}'s vote and its time go together`;
    if (leg.vote === null && leg.ackedAtMs === null) return `the ${leg.role}'s leg records nothing`;
    for (const timeMs of [leg.votedAtMs, leg.ackedAtMs])
      if (timeMs !== null && !(Number.isSafeInteger(timeMs) && timeMs >= 0))
        return `the ${leg.role}'s times must be non-negative integers`;
  }
  return null;
}

/**
 * The record's legs with `given` merged in: what a leg has recorded stays (a vote never changes, a time is
 * the first recorded), what it lacks is taken from `given`. Only a decided cross-bank payment has legs.
 */
function mergedLegs(record: PaymentRecord, state: PaymentState, given: readonly PaymentLeg[]): readonly PaymentLeg[] {
  if (given.length === 0) return record.legs;
  const id = record.paymentId;
  assert(record.fromBank !== record.toBank, `payment ${id}: only a cross-bank payment has legs`);
  assert(isDecided(state), `payment ${id}: legs are recorded with the decision or after it`);
  const problem = legsProblem(given);
  assert(problem === null, `payment ${id}: ${problem}`);
  const merged: PaymentLeg[] = [];
  for (const role of legRoles) {
    const known = record.legs.find((leg) => leg.role === role);
    const told = given.find((leg) => leg.role === role);
    if (known === undefined || told === undefined) {
      const only = known ?? told;
      if (only !== undefined) merged.push(only);
      continue;
    }
    assert(
      known.vote === null || told.vote === null || known.vote === told.vote,
      `payment ${id}: the ${role}'s vote may not change from ${known.vote} to ${told.vote}`,
    );
    const voted = known.vote === null ? told : known;
    merged.push(
      Object.freeze({
        role,
        vote: voted.vote,
        votedAtMs: voted.votedAtMs,
        ackedAtMs: known.ackedAtMs ?? told.ackedAtMs,
      }),
    );
  }
  return Object.freeze(merged);
}

/** What changes in a payment's record as it moves on: everything but its details and its start. */
export type PaymentProgress = Pick<
  PaymentRecord,
  "state" | "reason" | "reasonMessage" | "finished" | "balanceAfterMinor" | "decidedAtMs" | "finishedAtMs" | "legs"
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
    legs: progress.legs,
  };
}
