// The invariants `paynet verify` checks once a network under faults has healed and recovered. Pure: it
// sees only the final state (balances, each bank's holds and finished records, the gateway's log) and
// what the clients observed; it says for each invariant whether it holds, with counterexamples.
//
// A bank's finished records say what it applied: `committed` for a payment id means its leg (or, for a
// same-bank payment, both legs) changed the balances there once. The ledger invariant checks that the
// balances are exactly the initial ones plus those legs, so "applied" below means "applied exactly once".
import type { PaymentDetails, PaymentState } from "../domain/payment.js";
import type { LegKind } from "../domain/ledger.js";
import { formatMinor } from "../domain/money.js";

/** One answer a client got for a payment id. `afterRun`: asked again after the faults were healed. */
export type Attempt = (
  | { result: "committed" }
  | { result: "aborted"; reason: string; final: boolean }
  | { result: "ambiguous"; reason: string }
) & {
  afterRun?: boolean;
};

/** Everything the clients saw of one payment id: its details and every answer to it. */
export interface Observation {
  details: PaymentDetails;
  attempts: readonly Attempt[];
}

export type OutcomeSeen = { kind: "committed" } | { kind: "aborted"; reason: string } | { kind: "ambiguous" };

export interface BankHoldView {
  paymentId: string;
  username: string;
  kind: LegKind;
  amountMinor: bigint;
}

export interface BankFinalState {
  holds: readonly BankHoldView[];
  /** Ids of balance changes recorded as applying but not finished. */
  applying: readonly string[];
  /** The bank's finished records: what it committed (applied) and what it aborted. */
  outcomes: ReadonlyMap<string, "committed" | "aborted">;
}

export type GatewayRecordView = PaymentDetails & { state: PaymentState; finished: boolean; reason: string | null };

export interface CheckInput {
  /** Balances by `user@BANK`, in minor units. */
  initialBalancesMinor: ReadonlyMap<string, bigint>;
  finalBalancesMinor: ReadonlyMap<string, bigint>;
  banks: ReadonlyMap<string, BankFinalState>;
  gatewayRecords: readonly GatewayRecordView[];
  observations: readonly Observation[];
  /** Processes that died on their own (not killed, not at an armed crash point) or could not restart. */
  processFailures?: readonly string[];
  /** What was still unrecovered when the wait for recovery after healing timed out (empty: it recovered). */
  recoveryFailures?: readonly string[];
  /** Gateways that stopped owning unfinished payments (PostgreSQL), and how long until another had them all. */
  takeovers?: readonly TakeoverView[];
  /** The longest a takeover may take (lease + renewal + measured slack). */
  takeoverBoundMs?: number;
}

export interface TakeoverView {
  gateway: string;
  payments: number;
  /** null: not taken over within the watch's limit. */
  takenOverMs: number | null;
}

export const invariantTitles = {
  conservation: "the sum of all balances equals the initial sum",
  "no-negative-balance": "no balance is negative",
  "no-hold-left": "no hold or half-applied change is left at any bank",
  recovered: "after healing, every payment finished at the gateway within the recovery timeout",
  "committed-applied-at-both-banks": "every payment seen committed is applied at both banks",
  "aborted-applied-nowhere": "every payment seen aborted is applied nowhere",
  "ambiguous-all-or-nothing": "every payment left unanswered during the run is applied at both banks or at neither",
  atomic: "every payment is applied at all of its banks or at none",
  "one-outcome-per-key": "each idempotency key has one outcome and one set of details",
  "decision-matches-banks": "every decision in the gateway log is what the banks applied",
  "applied-exactly-once": "every balance is its initial balance plus exactly the payments applied to it",
  "processes-healthy": "no process died unless killed or at an armed crash point, and every one restarted",
  "takeover-bounded": "every unfinished payment of a stopped gateway was taken over by another within the bound",
} as const;

export type InvariantId = keyof typeof invariantTitles;

export interface InvariantResult {
  id: InvariantId;
  title: string;
  ok: boolean;
  /** How many items (accounts, payments, banks) the invariant was checked over. */
  checked: number;
  violations: number;
  /** The first counterexamples, at most counterexamplesMax. */
  counterexamples: string[];
}

export const counterexamplesMax = 50;

class Finding {
  checked = 0;
  violations = 0;
  readonly counterexamples: string[] = [];

  fail(text: string): void {
    this.violations += 1;
    if (this.counterexamples.length < counterexamplesMax) this.counterexamples.push(text);
  }

  result(id: InvariantId): InvariantResult {
    return {
      id,
      title: invariantTitles[id],
      ok: this.violations === 0,
      checked: this.checked,
      violations: this.violations,
      counterexamples: this.counterexamples,
    };
  }
}

/** The most a client learned: committed if any answer said so, else aborted if any did, else ambiguous. */
export function outcomeSeen(attempts: readonly Attempt[]): OutcomeSeen {
  if (attempts.some((attempt) => attempt.result === "committed")) return { kind: "committed" };
  const aborts = attempts.filter((attempt) => attempt.result === "aborted");
  if (aborts.length === 0) return { kind: "ambiguous" };
  const final = aborts.find((attempt) => attempt.final) ?? aborts[0]!;
  return { kind: "aborted", reason: final.reason };
}

export function describePayment(details: PaymentDetails): string {
  return `${details.paymentId} (${formatMinor(details.amountMinor)} ${details.fromUser}@${details.fromBank} → ${details.toUser}@${details.toBank})`;
}

function isTombstone(record: GatewayRecordView): boolean {
  return record.fromBank === "" && record.toBank === "";
}

function banksOfPayment(details: PaymentDetails): string[] {
  return details.fromBank === details.toBank ? [details.fromBank] : [details.fromBank, details.toBank];
}

function signed(amountMinor: bigint): string {
  return amountMinor < 0n ? formatMinor(amountMinor) : `+${formatMinor(amountMinor)}`;
}

/** What the checks share: the known details of every payment id, and each bank's outcome for it. */
class Evidence {
  readonly input: CheckInput;
  readonly details = new Map<string, PaymentDetails>();
  readonly records = new Map<string, GatewayRecordView>();

  constructor(input: CheckInput) {
    this.input = input;
    for (const record of input.gatewayRecords) {
      this.records.set(record.paymentId, record);
      if (!isTombstone(record)) this.details.set(record.paymentId, record);
    }
    for (const observation of input.observations) {
      if (!this.details.has(observation.details.paymentId))
        this.details.set(observation.details.paymentId, observation.details);
    }
  }

  outcomeAt(bank: string, paymentId: string): "committed" | "aborted" | undefined {
    return this.input.banks.get(bank)?.outcomes.get(paymentId);
  }

  /** The payment's banks that applied it. */
  appliedAt(details: PaymentDetails): string[] {
    return banksOfPayment(details).filter((bank) => this.outcomeAt(bank, details.paymentId) === "committed");
  }

  /** "B1 committed, B2 aborted", for counterexamples. */
  bankStates(details: PaymentDetails): string {
    return banksOfPayment(details)
      .map((bank) => `${bank} ${this.outcomeAt(bank, details.paymentId) ?? "no record"}`)
      .join(", ");
  }

  /** Every bank (of any payment) that committed this id. */
  committedAnywhere(paymentId: string): string[] {
    return [...this.input.banks.entries()]
      .filter(([, state]) => state.outcomes.get(paymentId) === "committed")
      .map(([bank]) => bank);
  }
}

function sum(balances: ReadonlyMap<string, bigint>): bigint {
  let total = 0n;
  for (const value of balances.values()) total += value;
  return total;
}

function checkConservation(evidence: Evidence): Finding {
  const finding = new Finding();
  const { initialBalancesMinor, finalBalancesMinor } = evidence.input;
  finding.checked = finalBalancesMinor.size;
  const before = sum(initialBalancesMinor);
  const after = sum(finalBalancesMinor);
  if (before !== after)
    finding.fail(
      `total ${formatMinor(before)} at the start, ${formatMinor(after)} at the end (${signed(after - before)})`,
    );
  return finding;
}

function checkNoNegative(evidence: Evidence): Finding {
  const finding = new Finding();
  for (const [account, balanceMinor] of evidence.input.finalBalancesMinor) {
    finding.checked += 1;
    if (balanceMinor < 0n) finding.fail(`${account}: ${formatMinor(balanceMinor)}`);
  }
  return finding;
}

function checkNoHoldLeft(evidence: Evidence): Finding {
  const finding = new Finding();
  for (const [bank, state] of evidence.input.banks) {
    finding.checked += 1;
    for (const hold of state.holds)
      finding.fail(
        `${bank}: hold ${hold.paymentId} (${hold.kind} ${formatMinor(hold.amountMinor)} of ${hold.username})`,
      );
    for (const paymentId of state.applying) finding.fail(`${bank}: half-applied change ${paymentId}`);
  }
  return finding;
}

function checkRecovered(evidence: Evidence): Finding {
  const finding = new Finding();
  for (const failure of evidence.input.recoveryFailures ?? []) finding.fail(failure);
  for (const record of evidence.input.gatewayRecords) {
    finding.checked += 1;
    if (!record.finished) finding.fail(`${describePayment(record)}: ${record.state}, not finished`);
  }
  return finding;
}

/** The three client-view invariants: committed → applied at its banks; aborted → nowhere; unanswered → all or nothing. */
function checkSeenOutcomes(evidence: Evidence): { committed: Finding; aborted: Finding; ambiguous: Finding } {
  const committed = new Finding();
  const aborted = new Finding();
  const ambiguous = new Finding();
  for (const observation of evidence.input.observations) {
    const details = observation.details;
    const seen = outcomeSeen(observation.attempts);
    const applied = evidence.appliedAt(details);
    const everywhere = applied.length === banksOfPayment(details).length;
    if (seen.kind === "committed") {
      committed.checked += 1;
      if (!everywhere) committed.fail(`${describePayment(details)}: seen committed; ${evidence.bankStates(details)}`);
    } else if (seen.kind === "aborted") {
      aborted.checked += 1;
      const anywhere = evidence.committedAnywhere(details.paymentId);
      if (anywhere.length > 0)
        aborted.fail(`${describePayment(details)}: seen aborted (${seen.reason}); committed at ${anywhere.join(", ")}`);
    }
    if (outcomeSeen(observation.attempts.filter((attempt) => attempt.afterRun !== true)).kind === "ambiguous") {
      ambiguous.checked += 1;
      if (applied.length > 0 && !everywhere)
        ambiguous.fail(`${describePayment(details)}: no answer during the run; ${evidence.bankStates(details)}`);
    }
  }
  return { committed, aborted, ambiguous };
}

function checkAtomic(evidence: Evidence): Finding {
  const finding = new Finding();
  for (const details of evidence.details.values()) {
    finding.checked += 1;
    const applied = evidence.appliedAt(details);
    if (applied.length > 0 && applied.length < banksOfPayment(details).length)
      finding.fail(`${describePayment(details)}: ${evidence.bankStates(details)}`);
  }
  return finding;
}

function sameDetails(a: PaymentDetails, b: PaymentDetails): boolean {
  return (
    a.fromUser === b.fromUser &&
    a.fromBank === b.fromBank &&
    a.toUser === b.toUser &&
    a.toBank === b.toBank &&
    a.amountMinor === b.amountMinor
  );
}

/** One idempotency key: never both committed and aborted, one reason for its final aborts, the gateway's record agrees. */
function checkOneOutcomePerKey(evidence: Evidence): Finding {
  const finding = new Finding();
  for (const observation of evidence.input.observations) {
    finding.checked += 1;
    const details = observation.details;
    const answers = observation.attempts.map((attempt) =>
      attempt.result === "aborted" ? `aborted ${attempt.reason}${attempt.final ? "" : " (not final)"}` : attempt.result,
    );
    const finalReasons = new Set(
      observation.attempts.flatMap((attempt) =>
        attempt.result === "aborted" && attempt.final ? [attempt.reason] : [],
      ),
    );
    const committed = observation.attempts.some((attempt) => attempt.result === "committed");
    const aborted = observation.attempts.some((attempt) => attempt.result === "aborted");
    if ((committed && aborted) || finalReasons.size > 1)
      finding.fail(`${describePayment(details)}: answered ${answers.join(", ")}`);
    const record = evidence.records.get(details.paymentId);
    if (record === undefined) {
      if (committed || finalReasons.size > 0)
        finding.fail(
          `${describePayment(details)}: answered ${committed ? "committed" : "aborted (final)"} but the gateway has no record of it`,
        );
      continue;
    }
    if (isTombstone(record)) {
      // The gateway died before its `preparing` record was durable and a bank then asked about the hold: the id
      // was recorded aborted without details, and every later answer is the final PAYMENT_ABORTED.
      if (committed)
        finding.fail(
          `${describePayment(details)}: answered committed; the gateway tombstoned the id (aborted, never recorded)`,
        );
      else if ([...finalReasons].some((reason) => reason !== "PAYMENT_ABORTED"))
        finding.fail(
          `${describePayment(details)}: answered ${answers.join(", ")}; the gateway tombstoned the id (PAYMENT_ABORTED)`,
        );
      continue;
    }
    if (!sameDetails(record, details))
      finding.fail(`${describePayment(details)}: the gateway recorded it as ${describePayment(record)}`);
    const recorded = `the gateway recorded ${record.state}${record.reason === null ? "" : ` (${record.reason})`}`;
    if (committed && record.state !== "committed")
      finding.fail(`${describePayment(details)}: answered committed; ${recorded}`);
    else if (
      !committed &&
      finalReasons.size > 0 &&
      (record.state !== "aborted" || (record.reason !== null && !finalReasons.has(record.reason)))
    ) {
      finding.fail(`${describePayment(details)}: answered ${answers.join(", ")}; ${recorded}`);
    } else if (aborted && !committed && record.state === "committed")
      finding.fail(`${describePayment(details)}: answered ${answers.join(", ")}; ${recorded}`);
  }
  return finding;
}

/** Aborted ⇒ no bank applied it, ever. Committed and finished ⇒ every bank of the payment applied it. */
function checkDecisionMatchesBanks(evidence: Evidence): Finding {
  const finding = new Finding();
  for (const record of evidence.input.gatewayRecords) {
    if (record.state === "aborted") {
      finding.checked += 1;
      const anywhere = evidence.committedAnywhere(record.paymentId);
      if (anywhere.length > 0)
        finding.fail(
          `${describePayment(record)}: the gateway decided abort (${record.reason ?? "no reason"}); committed at ${anywhere.join(", ")}`,
        );
    } else if (record.state === "committed" && record.finished) {
      finding.checked += 1;
      if (evidence.appliedAt(record).length < banksOfPayment(record).length)
        finding.fail(
          `${describePayment(record)}: the gateway decided commit and finished; ${evidence.bankStates(record)}`,
        );
    }
  }
  return finding;
}

/** Expected balance of every account: its initial balance plus the legs its bank committed. */
function checkLedger(evidence: Evidence): Finding {
  const finding = new Finding();
  const { initialBalancesMinor, finalBalancesMinor, banks } = evidence.input;
  const expected = new Map(initialBalancesMinor);
  const credit = (account: string, deltaMinor: bigint, paymentId: string) => {
    const current = expected.get(account);
    if (current === undefined)
      finding.fail(`payment ${paymentId} was applied to ${account}, which did not exist at the start`);
    else expected.set(account, current + deltaMinor);
  };
  for (const [bank, state] of banks) {
    for (const [paymentId, outcome] of state.outcomes) {
      if (outcome !== "committed") continue;
      const details = evidence.details.get(paymentId);
      if (details === undefined) {
        finding.fail(`${bank} applied payment ${paymentId}, which no client sent and the gateway never began`);
        continue;
      }
      if (!banksOfPayment(details).includes(bank))
        finding.fail(`${bank} applied ${describePayment(details)}, which is not its payment`);
      if (details.fromBank === bank) credit(`${details.fromUser}@${bank}`, -details.amountMinor, paymentId);
      if (details.toBank === bank) credit(`${details.toUser}@${bank}`, details.amountMinor, paymentId);
    }
  }
  for (const [account, expectedMinor] of expected) {
    finding.checked += 1;
    const actual = finalBalancesMinor.get(account);
    if (actual === undefined) finding.fail(`${account}: missing from the final accounts file`);
    else if (actual !== expectedMinor)
      finding.fail(
        `${account}: ${formatMinor(actual)}, but its initial balance and applied payments give ${formatMinor(expectedMinor)} (${signed(actual - expectedMinor)})`,
      );
  }
  for (const account of finalBalancesMinor.keys())
    if (!expected.has(account)) finding.fail(`${account}: in the final accounts file but not at the start`);
  return finding;
}

function checkProcesses(evidence: Evidence): Finding {
  const finding = new Finding();
  const failures = evidence.input.processFailures ?? [];
  finding.checked = 1;
  for (const failure of failures) finding.fail(failure);
  return finding;
}

function checkTakeovers(evidence: Evidence): Finding {
  const finding = new Finding();
  const boundMs = evidence.input.takeoverBoundMs ?? Number.POSITIVE_INFINITY;
  for (const takeover of evidence.input.takeovers ?? []) {
    finding.checked += 1;
    if (takeover.takenOverMs === null)
      finding.fail(`${takeover.gateway}: ${takeover.payments} unfinished payments never taken over`);
    else if (takeover.takenOverMs > boundMs)
      finding.fail(
        `${takeover.gateway}: ${takeover.payments} unfinished payments taken over in ${takeover.takenOverMs} ms, over the bound of ${boundMs} ms`,
      );
  }
  return finding;
}

/** Checks every invariant over the final state; the results come in the order of invariantTitles. */
export function checkInvariants(input: CheckInput): InvariantResult[] {
  const evidence = new Evidence(input);
  const seen = checkSeenOutcomes(evidence);
  const findings: Record<InvariantId, Finding> = {
    conservation: checkConservation(evidence),
    "no-negative-balance": checkNoNegative(evidence),
    "no-hold-left": checkNoHoldLeft(evidence),
    recovered: checkRecovered(evidence),
    "committed-applied-at-both-banks": seen.committed,
    "aborted-applied-nowhere": seen.aborted,
    "ambiguous-all-or-nothing": seen.ambiguous,
    atomic: checkAtomic(evidence),
    "one-outcome-per-key": checkOneOutcomePerKey(evidence),
    "decision-matches-banks": checkDecisionMatchesBanks(evidence),
    "applied-exactly-once": checkLedger(evidence),
    "processes-healthy": checkProcesses(evidence),
    "takeover-bounded": checkTakeovers(evidence),
  };
  return (Object.keys(invariantTitles) as InvariantId[]).map((id) => findings[id].result(id));
}
