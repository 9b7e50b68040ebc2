// A payment record as a row of `payments` and back, and the checks that keep a bad value out of a batch.
// node-postgres hands int8 columns over as strings: they become bigint (money) or a safe-integer number (times)
// here, at the boundary, and a value that is neither refuses the row rather than rounding it.
//
// Every value a call brings is checked before it joins a transaction: the transaction carries the changes of
// many payments, and a value the server refused (a NUL in a text, an amount beyond int8) would fail all of
// them and stop the store. A bad value is refused alone, to its caller.
import { isReason } from "../../../domain/errors.js";
import {
  legsProblem,
  noLegs,
  type LegRole,
  type LegVote,
  type PaymentChange,
  type PaymentDetails,
  type PaymentLeg,
  type PaymentRecord,
  type PaymentState,
} from "../../../domain/payment.js";

/** The columns of `payments` a record is read from, in the order of PaymentRow. */
export const paymentColumns =
  "payment_id, from_user, from_bank, to_user, to_bank, amount_minor, state, reason, reason_message, finished, " +
  "balance_after_minor, created_at_ms, decided_at_ms, finished_at_ms, version, " +
  "payer_vote, payer_voted_at_ms, payer_acked_at_ms, payee_vote, payee_voted_at_ms, payee_acked_at_ms";

/** A row of `payments` as node-postgres gives it (int8 as text). */
export interface PaymentRow {
  payment_id: string;
  from_user: string;
  from_bank: string;
  to_user: string;
  to_bank: string;
  amount_minor: string;
  state: string;
  reason: string | null;
  reason_message: string | null;
  finished: boolean;
  balance_after_minor: string | null;
  created_at_ms: string;
  decided_at_ms: string | null;
  finished_at_ms: string | null;
  version: number;
  // Migration 3: each leg, null in a row written before and until known.
  payer_vote: string | null;
  payer_voted_at_ms: string | null;
  payer_acked_at_ms: string | null;
  payee_vote: string | null;
  payee_voted_at_ms: string | null;
  payee_acked_at_ms: string | null;
  /** Selected only where ownership matters (lockRows, claims). */
  owner?: string | null;
}

/** A record as the database holds it, with the count of changes written to its row. */
export interface StoredPayment {
  record: PaymentRecord;
  version: number;
  /** The gateway driving it (see migrations.ts, gateways), where read; null for a row of an earlier build. */
  owner?: string | null;
}

/** The database holds something this build cannot read as a payment: a damaged or foreign row. */
export class PaymentRowError extends Error {
  override readonly name = "PaymentRowError";
}

/** A value a call brought that the store refuses (the call is refused; the store goes on). */
export class PaymentInputError extends Error {
  override readonly name = "PaymentInputError";
}

const int8Min = -(2n ** 63n);
const int8Max = 2n ** 63n - 1n;
const states: ReadonlySet<string> = new Set<PaymentState>(["preparing", "prepared", "committed", "aborted"]);
/** Longer than any id, name or message the gateway accepts (domain/validate.ts), far below a row's limits. */
export const textCharsMax = 4_096;
/** A UTF-16 surrogate without its other half (String.prototype.isWellFormed is ES2024, past this build's lib). */
const loneSurrogate = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
const loneSurrogates = new RegExp(loneSurrogate.source, "g");

function int8Text(row: PaymentRow, column: string, text: string): bigint {
  if (!/^-?[0-9]{1,19}$/.test(text))
    throw new PaymentRowError(`payment ${row.payment_id}: ${column} ${JSON.stringify(text)} is not an integer`);
  return BigInt(text);
}

function timeMs(row: PaymentRow, column: string, text: string): number {
  const value = int8Text(row, column, text);
  if (value < 0n || value > BigInt(Number.MAX_SAFE_INTEGER))
    throw new PaymentRowError(`payment ${row.payment_id}: ${column} ${text} is not a time in milliseconds`);
  return Number(value);
}

function nullableTimeMs(row: PaymentRow, column: string, text: string | null): number | null {
  return text === null ? null : timeMs(row, column, text);
}

const votes: ReadonlySet<string> = new Set<LegVote>(["yes", "no", "unanswered"]);

/** One leg's columns as a leg, or null when they are all null (not known). */
function legFromRow(
  row: PaymentRow,
  role: LegRole,
  vote: string | null,
  votedAtMs: string | null,
  ackedAtMs: string | null,
): PaymentLeg | null {
  if (vote === null && votedAtMs === null && ackedAtMs === null) return null;
  if (vote !== null && !votes.has(vote))
    throw new PaymentRowError(`payment ${row.payment_id}: unknown ${role} vote ${JSON.stringify(vote)}`);
  return Object.freeze({
    role,
    vote: vote as LegVote | null,
    votedAtMs: nullableTimeMs(row, `${role}_voted_at_ms`, votedAtMs),
    ackedAtMs: nullableTimeMs(row, `${role}_acked_at_ms`, ackedAtMs),
  });
}

function legsFromRow(row: PaymentRow): readonly PaymentLeg[] {
  const payer = legFromRow(row, "payer", row.payer_vote, row.payer_voted_at_ms, row.payer_acked_at_ms);
  const payee = legFromRow(row, "payee", row.payee_vote, row.payee_voted_at_ms, row.payee_acked_at_ms);
  if (payer === null && payee === null) return noLegs;
  const legs = Object.freeze([payer, payee].filter((leg): leg is PaymentLeg => leg !== null));
  const problem = legsProblem(legs);
  if (problem !== null) throw new PaymentRowError(`payment ${row.payment_id}: ${problem}`);
  return legs;
}

/** A row as its (frozen) record and version; refuses a row no store of this build wrote. */
export function storedFromRow(row: PaymentRow): StoredPayment {
  if (!states.has(row.state))
    throw new PaymentRowError(`payment ${row.payment_id}: unknown state ${JSON.stringify(row.state)}`);
  if (row.reason !== null && !isReason(row.reason))
    throw new PaymentRowError(`payment ${row.payment_id}: unknown reason ${JSON.stringify(row.reason)}`);
  const record: PaymentRecord = {
    paymentId: row.payment_id,
    fromUser: row.from_user,
    fromBank: row.from_bank,
    toUser: row.to_user,
    toBank: row.to_bank,
    amountMinor: int8Text(row, "amount_minor", row.amount_minor),
    state: row.state as PaymentState,
    reason: row.reason,
    reasonMessage: row.reason_message,
    finished: row.finished,
    balanceAfterMinor:
      row.balance_after_minor === null ? null : int8Text(row, "balance_after_minor", row.balance_after_minor),
    createdAtMs: timeMs(row, "created_at_ms", row.created_at_ms),
    decidedAtMs: nullableTimeMs(row, "decided_at_ms", row.decided_at_ms),
    finishedAtMs: nullableTimeMs(row, "finished_at_ms", row.finished_at_ms),
    legs: legsFromRow(row),
  };
  return row.owner === undefined
    ? { record: Object.freeze(record), version: row.version }
    : { record: Object.freeze(record), version: row.version, owner: row.owner };
}

/** The columns of a record as unnest() arrays take them: int8 as decimal text, the rest as they are. */
export interface PaymentArrays {
  paymentId: string[];
  fromUser: string[];
  fromBank: string[];
  toUser: string[];
  toBank: string[];
  amountMinor: string[];
  state: string[];
  reason: Array<string | null>;
  reasonMessage: Array<string | null>;
  finished: boolean[];
  balanceAfterMinor: Array<string | null>;
  createdAtMs: string[];
  decidedAtMs: Array<string | null>;
  finishedAtMs: Array<string | null>;
  version: number[];
  payerVote: Array<string | null>;
  payerVotedAtMs: Array<string | null>;
  payerAckedAtMs: Array<string | null>;
  payeeVote: Array<string | null>;
  payeeVotedAtMs: Array<string | null>;
  payeeAckedAtMs: Array<string | null>;
}

const timeText = (timeMs: number | null | undefined) =>
  timeMs === null || timeMs === undefined ? null : String(timeMs);

export function paymentArrays(payments: readonly StoredPayment[]): PaymentArrays {
  const arrays: PaymentArrays = {
    paymentId: [],
    fromUser: [],
    fromBank: [],
    toUser: [],
    toBank: [],
    amountMinor: [],
    state: [],
    reason: [],
    reasonMessage: [],
    finished: [],
    balanceAfterMinor: [],
    createdAtMs: [],
    decidedAtMs: [],
    finishedAtMs: [],
    version: [],
    payerVote: [],
    payerVotedAtMs: [],
    payerAckedAtMs: [],
    payeeVote: [],
    payeeVotedAtMs: [],
    payeeAckedAtMs: [],
  };
  for (const { record, version } of payments) {
    arrays.paymentId.push(record.paymentId);
    arrays.fromUser.push(record.fromUser);
    arrays.fromBank.push(record.fromBank);
    arrays.toUser.push(record.toUser);
    arrays.toBank.push(record.toBank);
    arrays.amountMinor.push(record.amountMinor.toString());
    arrays.state.push(record.state);
    arrays.reason.push(record.reason);
    arrays.reasonMessage.push(record.reasonMessage);
    arrays.finished.push(record.finished);
    arrays.balanceAfterMinor.push(record.balanceAfterMinor?.toString() ?? null);
    arrays.createdAtMs.push(String(record.createdAtMs));
    arrays.decidedAtMs.push(record.decidedAtMs === null ? null : String(record.decidedAtMs));
    arrays.finishedAtMs.push(record.finishedAtMs === null ? null : String(record.finishedAtMs));
    arrays.version.push(version);
    const payer = record.legs.find((leg) => leg.role === "payer");
    const payee = record.legs.find((leg) => leg.role === "payee");
    arrays.payerVote.push(payer?.vote ?? null);
    arrays.payerVotedAtMs.push(timeText(payer?.votedAtMs));
    arrays.payerAckedAtMs.push(timeText(payer?.ackedAtMs));
    arrays.payeeVote.push(payee?.vote ?? null);
    arrays.payeeVotedAtMs.push(timeText(payee?.votedAtMs));
    arrays.payeeAckedAtMs.push(timeText(payee?.ackedAtMs));
  }
  return arrays;
}

function checkText(value: unknown, what: string, options: { empty: boolean }): void {
  if (typeof value !== "string") throw new PaymentInputError(`${what} must be a string, got ${typeof value}`);
  if (!options.empty && value === "") throw new PaymentInputError(`${what} must not be empty`);
  if (value.length > textCharsMax) throw new PaymentInputError(`${what} is longer than ${textCharsMax} characters`);
  // PostgreSQL's text holds no NUL; a lone surrogate would be stored as U+FFFD, another value than was given.
  if (value.includes("\u0000")) throw new PaymentInputError(`${what} contains a NUL character`);
  if (loneSurrogate.test(value)) throw new PaymentInputError(`${what} is not well-formed Unicode`);
}

function checkInt8(value: unknown, what: string, min: bigint): void {
  if (typeof value !== "bigint") throw new PaymentInputError(`${what} must be a bigint, got ${typeof value}`);
  if (value < min || value > int8Max) throw new PaymentInputError(`${what} ${value} is outside ${min}..${int8Max}`);
}

export function checkPaymentId(paymentId: unknown): void {
  checkText(paymentId, "a payment id", { empty: false });
}

/** Refuses details the table cannot hold as given (the gateway's own rules are stricter: domain/validate.ts). */
export function checkDetails(details: PaymentDetails): void {
  if (typeof details !== "object" || details === null) throw new PaymentInputError("payment details must be an object");
  checkPaymentId(details.paymentId);
  const where = `payment ${details.paymentId}`;
  // Only a tombstone's are empty, and a tombstone is never begun.
  checkText(details.fromUser, `${where}: fromUser`, { empty: false });
  checkText(details.fromBank, `${where}: fromBank`, { empty: false });
  checkText(details.toUser, `${where}: toUser`, { empty: false });
  checkText(details.toBank, `${where}: toBank`, { empty: false });
  checkInt8(details.amountMinor, `${where}: amountMinor`, 0n);
}

export function checkChange(change: PaymentChange): void {
  if (typeof change !== "object" || change === null) throw new PaymentInputError("a payment change must be an object");
  checkPaymentId(change.paymentId);
  const where = `payment ${change.paymentId}`;
  if (typeof change.state !== "string" || !states.has(change.state))
    throw new PaymentInputError(`${where}: unknown state ${JSON.stringify(change.state)}`);
  const outcome = change.outcome ?? {};
  if (outcome.reason !== undefined && (typeof outcome.reason !== "string" || !isReason(outcome.reason)))
    throw new PaymentInputError(`${where}: unknown reason ${JSON.stringify(outcome.reason)}`);
  // A message is a bank's words: never a reason to refuse a decision (storableMessage makes any string fit).
  if (outcome.reasonMessage !== undefined && typeof outcome.reasonMessage !== "string")
    throw new PaymentInputError(`${where}: reasonMessage must be a string`);
  if (outcome.balanceAfterMinor !== undefined && outcome.balanceAfterMinor !== null)
    checkInt8(outcome.balanceAfterMinor, `${where}: balanceAfterMinor`, int8Min);
  if (outcome.finished !== undefined && typeof outcome.finished !== "boolean")
    throw new PaymentInputError(`${where}: finished must be a boolean`);
  if (outcome.legs !== undefined) {
    if (!Array.isArray(outcome.legs)) throw new PaymentInputError(`${where}: legs must be an array`);
    const problem = legsProblem(outcome.legs);
    if (problem !== null) throw new PaymentInputError(`${where}: ${problem}`);
  }
}

/**
 * A reason message as PostgreSQL's text can hold it: a NUL, and a lone surrogate (advancedRecord's cut may
 * split a pair), become U+FFFD. The record handed out carries this same text, so it equals what was stored.
 */
export function storableMessage(message: string | null): string | null {
  if (message === null) return null;
  return message.replaceAll("\u0000", "\ufffd").replace(loneSurrogates, "\ufffd");
}
