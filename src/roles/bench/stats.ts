// The arithmetic of `paynet bench`, free of sockets and files: latency percentiles, the resolution of each
// payment's outcome against the gateway's log, and the conservation check over balances before and after.
import { assert } from "../../core/domain/assert.js";

export interface LatencySummary {
  count: number;
  p50Ms: number;
  p95Ms: number;
  p99Ms: number;
  maxMs: number;
  meanMs: number;
}

/**
 * Nearest-rank percentile of an ascending array: the smallest value with at least `fraction` of the values
 * at or below it. 0 for an empty array.
 */
export function percentileOfSorted(sorted: ArrayLike<number>, fraction: number): number {
  assert(fraction > 0 && fraction <= 1, `percentile fraction ${fraction} is not in (0, 1]`);
  if (sorted.length === 0) return 0;
  const rank = Math.ceil(fraction * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}

export function summarizeLatencies(latenciesMs: ArrayLike<number>): LatencySummary {
  const sorted = Float64Array.from(latenciesMs).sort();
  let totalMs = 0;
  for (const value of sorted) {
    assert(Number.isFinite(value) && value >= 0, `latency ${value} is not a finite non-negative number`);
    totalMs += value;
  }
  return {
    count: sorted.length,
    p50Ms: percentileOfSorted(sorted, 0.5),
    p95Ms: percentileOfSorted(sorted, 0.95),
    p99Ms: percentileOfSorted(sorted, 0.99),
    maxMs: sorted.length === 0 ? 0 : sorted[sorted.length - 1]!,
    meanMs: sorted.length === 0 ? 0 : totalMs / sorted.length,
  };
}

/** Money moved by one payment between two accounts, each named `user@BANK`. */
export interface Transfer {
  source: string;
  target: string;
  amountMinor: bigint;
}

/** What the bench heard: committed, refused or decided aborted, or no answer it can trust (a timeout). */
export type SeenOutcome = "committed" | "aborted" | "ambiguous";

export interface SentPayment {
  paymentId: string;
  transfer: Transfer;
  seen: SeenOutcome;
}

/** A payment as the gateway's transaction_logs.json records it. */
export interface LoggedPayment {
  state: "preparing" | "prepared" | "committed" | "aborted";
  finished: boolean;
}

/**
 * The outcomes of this run's payments among the gateway's records (read by gateway-log.ts, which owns their
 * format): the records whose id starts with `idPrefix`.
 */
export function loggedOutcomes(
  records: Iterable<{ paymentId: string } & LoggedPayment>,
  idPrefix: string,
): Map<string, LoggedPayment> {
  const outcomes = new Map<string, LoggedPayment>();
  for (const record of records)
    if (record.paymentId.startsWith(idPrefix))
      outcomes.set(record.paymentId, { state: record.state, finished: record.finished });
  return outcomes;
}

export interface OutcomeDisagreement {
  paymentId: string;
  seen: SeenOutcome;
  logged: LoggedPayment["state"] | "absent";
}

export const disagreementsListedMax = 20;

export interface OutcomeReport {
  committed: number;
  aborted: number;
  ambiguous: number;
  ambiguousCommitted: number;
  ambiguousAborted: number;
  /** Ambiguous payments the log still shows undecided: their effect cannot be checked. */
  ambiguousUnresolved: number;
  /** Committed records among this run's ids in the gateway log. */
  gatewayCommitted: number;
  /** The transfers that must have been applied: seen committed, plus ambiguous ones the log shows committed. */
  committedTransfers: Transfer[];
  disagreementCount: number;
  disagreements: OutcomeDisagreement[];
  /** The gateway log agrees with every answer the bench saw and decides every ambiguous payment. */
  ok: boolean;
}

/**
 * Resolves every payment against `logged` (the gateway log's records of this run's ids only). A payment the
 * log does not know was never begun, so it moved nothing: it reads as aborted.
 */
export function resolveOutcomes(
  sent: readonly SentPayment[],
  logged: ReadonlyMap<string, LoggedPayment>,
): OutcomeReport {
  const report: OutcomeReport = {
    committed: 0,
    aborted: 0,
    ambiguous: 0,
    ambiguousCommitted: 0,
    ambiguousAborted: 0,
    ambiguousUnresolved: 0,
    gatewayCommitted: 0,
    committedTransfers: [],
    disagreementCount: 0,
    disagreements: [],
    ok: true,
  };
  const disagree = (payment: SentPayment, state: LoggedPayment["state"] | "absent") => {
    report.disagreementCount += 1;
    if (report.disagreements.length < disagreementsListedMax)
      report.disagreements.push({ paymentId: payment.paymentId, seen: payment.seen, logged: state });
  };
  for (const payment of sent) {
    const state = logged.get(payment.paymentId)?.state ?? "absent";
    report[payment.seen] += 1;
    if (payment.seen === "committed") {
      report.committedTransfers.push(payment.transfer);
      if (state !== "committed") disagree(payment, state);
    } else if (payment.seen === "aborted") {
      if (state === "committed") disagree(payment, state);
    } else if (state === "committed") {
      report.ambiguousCommitted += 1;
      report.committedTransfers.push(payment.transfer);
    } else if (state === "aborted" || state === "absent") {
      report.ambiguousAborted += 1;
    } else {
      report.ambiguousUnresolved += 1;
    }
  }
  for (const record of logged.values()) if (record.state === "committed") report.gatewayCommitted += 1;
  report.ok =
    report.disagreementCount === 0 &&
    report.ambiguousUnresolved === 0 &&
    report.gatewayCommitted === report.committed + report.ambiguousCommitted;
  return report;
}

export interface AccountMismatch {
  account: string;
  expectedMinor: bigint;
  actualMinor: bigint | null;
}

export const mismatchesListedMax = 20;

export interface ConservationReport {
  sumBeforeMinor: bigint;
  sumAfterMinor: bigint;
  sumsEqual: boolean;
  negativeCount: number;
  /** The first few accounts whose balance is below zero. */
  negativeAccounts: string[];
  noNegative: boolean;
  /** Accounts whose final balance is not initial + credits − debits of the committed transfers. */
  mismatchCount: number;
  mismatches: AccountMismatch[];
  /** Accounts present before but missing after, or the other way round (counted in mismatchCount). */
  appliedOnce: boolean;
  accountsChecked: number;
  ok: boolean;
}

function sumOf(balances: ReadonlyMap<string, bigint>): bigint {
  let total = 0n;
  for (const value of balances.values()) total += value;
  return total;
}

/** The balance every account must have after `committed`, from `before`; unknown accounts are an error value. */
function expectedBalances(before: ReadonlyMap<string, bigint>, committed: readonly Transfer[]): Map<string, bigint> {
  const expected = new Map(before);
  for (const transfer of committed) {
    assert(transfer.amountMinor > 0n, `a transfer of ${transfer.amountMinor} is not positive`);
    expected.set(transfer.source, (expected.get(transfer.source) ?? 0n) - transfer.amountMinor);
    expected.set(transfer.target, (expected.get(transfer.target) ?? 0n) + transfer.amountMinor);
  }
  return expected;
}

/**
 * The three properties of a correct run: the sum of all balances is unchanged, no balance is negative, and
 * every account's final balance is its initial balance plus credits minus debits of the committed transfers
 * (so each committed payment was applied exactly once and no aborted one moved anything).
 */
export function checkConservation(
  before: ReadonlyMap<string, bigint>,
  after: ReadonlyMap<string, bigint>,
  committed: readonly Transfer[],
): ConservationReport {
  const sumBeforeMinor = sumOf(before);
  const sumAfterMinor = sumOf(after);
  const negativeAccounts: string[] = [];
  let negativeCount = 0;
  for (const [account, balance] of after) {
    if (balance >= 0n) continue;
    negativeCount += 1;
    if (negativeAccounts.length < mismatchesListedMax) negativeAccounts.push(account);
  }
  const expected = expectedBalances(before, committed);
  const mismatches: AccountMismatch[] = [];
  let mismatchCount = 0;
  const mismatch = (entry: AccountMismatch) => {
    mismatchCount += 1;
    if (mismatches.length < mismatchesListedMax) mismatches.push(entry);
  };
  for (const [account, expectedMinor] of expected) {
    const actualMinor = after.get(account) ?? null;
    if (actualMinor !== expectedMinor) mismatch({ account, expectedMinor, actualMinor });
  }
  for (const [account, actualMinor] of after)
    if (!expected.has(account)) mismatch({ account, expectedMinor: 0n, actualMinor });
  const sumsEqual = sumBeforeMinor === sumAfterMinor;
  const noNegative = negativeCount === 0;
  const appliedOnce = mismatchCount === 0;
  return {
    sumBeforeMinor,
    sumAfterMinor,
    sumsEqual,
    negativeCount,
    negativeAccounts,
    noNegative,
    mismatchCount,
    mismatches,
    appliedOnce,
    accountsChecked: expected.size,
    ok: sumsEqual && noNegative && appliedOnce,
  };
}

/** Committed payments per second over the load's duration; 0 for an empty duration. */
export function throughputPerS(committed: number, durationMs: number): number {
  assert(committed >= 0, "a count is never negative");
  return durationMs <= 0 ? 0 : (committed * 1000) / durationMs;
}
