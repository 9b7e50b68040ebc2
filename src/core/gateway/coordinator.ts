// The life of a payment at the gateway, top to bottom. One path for every payment: a MakePayment call is a
// MakePayments call of one order. Cross-bank payments run strict two-phase commit, the new ones of a call
// through each step together (one durable write per step covers all of them, and each bank's legs travel
// in one batched call):
//   1. record `preparing` (store.beginOrGetAll); its write runs beside step 2 (crash point
//      gateway-after-preparing, once durable)
//   2. Prepare every debit and credit in parallel, each bank's legs batched, with a deadline
//                                                                          (gateway-after-prepares)
//   3. record the decisions durably: commit only where both banks voted yes (gateway-after-commit-logged)
//   4. send Commit/Abort to every bank until each acknowledges             (gateway-after-first-commit)
//   5. answer; record `finished` in the background
// The client hears "committed" only after step 3 is durable. A Prepare may reach a bank before the
// `preparing` record is durable: if the gateway dies then, it has no record, and a bank asking about its
// hold is answered abort (presumed abort), the id tombstoned so that it can never commit afterwards.
// Same-bank payments are one bank-local step. The coordinator talks to its log only through
// CoordinatorStore, whose records are values: every change is a store call that returns the new record.
import { assert } from "../domain/assert.js";
import { PaymentError, isAmbiguous, type Reason } from "../domain/errors.js";
import { crashPoint } from "../faults/crash.js";
import { validateAmountMinor } from "../domain/money.js";
import { validateBankName, validatePaymentId, validateUsername } from "../domain/validate.js";
import {
  advancedRecord,
  isDecided,
  isTombstone,
  legRoles,
  noLegs,
  sameDetails,
  withProgress,
  type LegRole,
  type LegVote,
  type PaymentChange,
  type PaymentDetails,
  type PaymentLeg,
  type PaymentRecord,
} from "../domain/payment.js";
import type { CoordinatorStore } from "./store/coordinator-store.js";
import type { BankDirectory, BankLink, PrepareLeg } from "./bank-link.js";
import { silentLogger, type Logger } from "../observability/log.js";
import { inDoubtPayments, paymentsTotal, phaseSeconds } from "../observability/metrics.js";

export type { BankDirectory, BankLink, PrepareLeg };

export interface CoordinatorOptions {
  prepareTimeoutMs: number;
  /** Deadline of one Commit/Abort/Transaction attempt. */
  decisionCallTimeoutMs: number;
  /** How long a reply waits for phase 2 before answering from the durable decision alone. */
  replyWaitMs: number;
  retryDelayMinMs: number;
  retryDelayMaxMs: number;
  /**
   * A deliberately broken mode, for proving that `paynet verify` and the power-loss tests catch a real bug:
   * a commit decision is recorded only once phase 2 has reached the banks (with `finished`), so a crash in
   * between loses it. Never in production.
   */
  unsafeLogDecisionLate?: boolean;
  /** The clock of the legs' vote and acknowledgement times (default Date.now; a simulated one in the simulator). */
  nowMs?: () => number;
}

export interface PaymentRequest {
  paymentId: string;
  toUser: string;
  toBank: string;
  amountMinor: bigint;
}

export interface Payer {
  username: string;
  bank: string;
}

export interface PaymentOutcome {
  paymentId: string;
  balanceAfterMinor: bigint | null;
}

type Decision = "commit" | "abort";

/** How often a payment another gateway drives is looked up while its answer is awaited (doubling, capped). */
const awaitDecisionPollMinMs = 25;
const awaitDecisionPollMaxMs = 400;
type Answer = PaymentOutcome | PaymentError;

/** Step 2's answers: two votes per payment, [2i] its debit's (payer), [2i + 1] its credit's (payee). */
interface Votes {
  /** A refusal, or null for yes. */
  refusals: Array<PaymentError | null>;
  /** When each answer (or its failure) reached the gateway. */
  atMs: number[];
}

/** When each bank acknowledged a payment's decision, by payment id (phase 2 fills it, `finished` records it). */
type Acks = Map<string, { payer: number | null; payee: number | null }>;

/** A payment this process is driving: duplicates wait for the record it will be answered from. */
interface Driving {
  promise: Promise<PaymentRecord>;
  resolve: (record: PaymentRecord) => void;
}

export class Coordinator {
  readonly #store: CoordinatorStore;
  readonly #banks: BankDirectory;
  readonly #options: CoordinatorOptions;
  /** Payments being begun or driven by this process, so that a duplicate request waits for the same outcome. */
  readonly #inFlight = new Map<string, Driving>();
  readonly #logger: Logger;
  readonly #nowMs: () => number;
  #stopping = false;

  constructor(
    store: CoordinatorStore,
    banks: BankDirectory,
    options: CoordinatorOptions,
    logger: Logger = silentLogger,
  ) {
    this.#store = store;
    this.#banks = banks;
    this.#options = options;
    this.#logger = logger;
    this.#nowMs = options.nowMs ?? Date.now;
  }

  /** One payment: a MakePayments call of one order. Rejects with the refusal (or "still in doubt"). */
  async makePayment(payer: Payer, request: PaymentRequest): Promise<PaymentOutcome> {
    const [answer] = await this.makePayments(payer, [request]);
    assert(answer !== undefined, "one order, one answer");
    if (answer instanceof PaymentError) throw answer;
    return answer;
  }

  /**
   * A MakePayments call. Each order is a payment of its own, with its own answer, in order. An id repeated
   * (within the call, or while another call drives it) is one payment: the repeat waits for its answer.
   */
  async makePayments(payer: Payer, requests: readonly PaymentRequest[]): Promise<Answer[]> {
    const answers = new Array<Answer | Promise<Answer>>(requests.length);
    const toBegin: PaymentDetails[] = [];
    const toBeginSlots: number[] = [];
    requests.forEach((request, slot) => {
      let details: PaymentDetails;
      try {
        details = this.#validate(payer, request);
      } catch (thrown) {
        answers[slot] = PaymentError.fromGrpc(thrown);
        return;
      }
      const driving = this.#inFlight.get(details.paymentId);
      if (driving !== undefined) {
        answers[slot] = driving.promise.then((record) => this.#replay(record, details));
        return;
      }
      // Claimed before the store is asked: a duplicate arriving meanwhile waits for this one's answer.
      this.#claim(details.paymentId);
      toBegin.push(details);
      toBeginSlots.push(slot);
    });
    if (toBegin.length > 0) {
      let begun;
      try {
        begun = await this.#store.beginOrGetAll(toBegin);
      } catch (thrown) {
        for (const details of toBegin) this.#release(details.paymentId, null);
        throw thrown;
      }
      const fresh: PaymentRecord[] = [];
      const freshSlots: number[] = [];
      const durable: Array<Promise<void>> = [];
      begun.forEach((one, index) => {
        const details = toBegin[index]!;
        const slot = toBeginSlots[index]!;
        if (!one.created && !isDecided(one.record.state)) {
          // Begun by another gateway on the same database, and not decided yet: its answer is this one's.
          answers[slot] = this.#awaitDecision(one.record).then((record) => {
            this.#release(details.paymentId, record);
            return this.#replay(record, details);
          });
        } else if (!one.created) {
          this.#release(details.paymentId, one.record);
          answers[slot] = this.#replay(one.record, details);
        } else if (details.fromBank === details.toBank) {
          answers[slot] = this.#runLocal(one.record, one.durable);
        } else {
          fresh.push(one.record);
          freshSlots.push(slot);
          durable.push(one.durable);
        }
      });
      if (fresh.length > 0) {
        const decided = await this.#runTwoPhase(fresh, Promise.all(durable));
        decided.forEach((answer, index) => (answers[freshSlots[index]!] = answer));
      }
    }
    // eslint-disable-next-line @typescript-eslint/await-thenable -- answers mix ready values and promises; all awaits the promises
    return Promise.all(answers);
  }

  /**
   * The coordinator's answer to a bank asking about a prepared hold. Abort only when no commit was ever
   * recorded; an id never seen is first recorded as aborted (a tombstone), so it can never commit afterwards.
   */
  async decisionFor(paymentId: string): Promise<"commit" | "abort" | "pending"> {
    const record = await this.#store.tombstone(paymentId);
    if (record.state === "committed") return "commit";
    if (record.state === "aborted") return "abort";
    return "pending";
  }

  /**
   * On start, before serving: every undecided cross-bank payment is decided abort (presumed abort: no commit
   * was recorded, so none was sent), then every unfinished payment is driven to its end in the background.
   */
  async recover(): Promise<number> {
    const unfinished = await this.#store.unfinished();
    inDoubtPayments.set(unfinished.length);
    await this.#redrive(unfinished, "the gateway restarted");
    return unfinished.length;
  }

  /**
   * Payments this gateway has just claimed from one whose lease expired (several gateways on one database):
   * driven by the same rules as at a restart, since their owner's memory of them is gone with its lease.
   */
  async takeOver(records: readonly PaymentRecord[]): Promise<void> {
    inDoubtPayments.inc(records.length);
    await this.#redrive(records, "their gateway stopped");
  }

  /** Every undecided payment of `unfinished` is decided abort (no commit was recorded, so none was sent); the rest driven to their end. */
  async #redrive(unfinished: readonly PaymentRecord[], why: string): Promise<void> {
    const presumedAborts: PaymentChange[] = [];
    const decided: PaymentRecord[] = [];
    for (const record of unfinished) {
      if (record.fromBank === record.toBank) {
        if (record.state !== "preparing") {
          decided.push(record);
          continue;
        }
        this.#claim(record.paymentId);
        void this.#resolveLocal(record, new PaymentError("PAYMENT_ABORTED", `${why} before the bank answered`)).then(
          (final) => this.#release(record.paymentId, final),
          () => this.#release(record.paymentId, record),
        );
      } else if (record.state === "preparing" || record.state === "prepared") {
        presumedAborts.push({
          paymentId: record.paymentId,
          state: "aborted",
          outcome: { reason: "PAYMENT_ABORTED", reasonMessage: `${why} before deciding` },
        });
        this.#logger.warn({ paymentId: record.paymentId }, `presumed abort: undecided when ${why}`);
      } else {
        decided.push(record);
        this.#logger.info(
          { paymentId: record.paymentId, state: record.state },
          "recovering: driving the logged decision to every bank",
        );
      }
    }
    if (presumedAborts.length > 0) decided.push(...(await this.#store.advanceAll(presumedAborts)));
    // Same-bank payments whose transfer is decided only need their `finished` record: phase 2 has no leg for them.
    const crossBank = decided.filter((record) => record.fromBank !== record.toBank);
    const local = decided.filter((record) => record.fromBank === record.toBank);
    if (local.length > 0) void this.#recordFinished(local, process.hrtime.bigint(), new Map());
    if (crossBank.length > 0) void this.#phase2(crossBank, new Map());
  }

  /** Stops retry loops (for shutdown); durable state lets the next start finish them. */
  stop(): void {
    this.#stopping = true;
  }

  #validate(payer: Payer, request: PaymentRequest): PaymentDetails {
    validatePaymentId(request.paymentId, "payment id");
    validateUsername(request.toUser, "receiver");
    validateBankName(request.toBank, "receiver bank");
    validateAmountMinor(request.amountMinor);
    if (payer.username === request.toUser && payer.bank === request.toBank) {
      throw new PaymentError("SELF_PAYMENT", "sender and receiver are the same account");
    }
    for (const bank of [payer.bank, request.toBank]) {
      if (this.#banks.link(bank) === null)
        throw new PaymentError("UNKNOWN_BANK", `no bank named ${bank} is registered`);
    }
    return {
      paymentId: request.paymentId,
      fromUser: payer.username,
      fromBank: payer.bank,
      toUser: request.toUser,
      toBank: request.toBank,
      amountMinor: request.amountMinor,
    };
  }

  #claim(paymentId: string): void {
    let resolve!: (record: PaymentRecord) => void;
    const promise = new Promise<PaymentRecord>((settle) => (resolve = settle));
    this.#inFlight.set(paymentId, { promise, resolve });
  }

  /** Ends a claim: its waiters answer from `record` (null: the begin failed, and they retry). */
  #release(paymentId: string, record: PaymentRecord | null): void {
    const driving = this.#inFlight.get(paymentId);
    if (driving === undefined) return;
    this.#inFlight.delete(paymentId);
    driving.resolve(record ?? inDoubtRecord(paymentId));
  }

  /**
   * The record of a payment another gateway drives, once finished (a commit's balance is known then), or as
   * it is after replyWaitMs: decided, it answers as the other gateway did; undecided, the client hears it is
   * in doubt and retries with the same id. Polled: a few reads of one row by its key.
   */
  async #awaitDecision(record: PaymentRecord): Promise<PaymentRecord> {
    const deadlineMs = Date.now() + this.#options.replyWaitMs;
    let delayMs = awaitDecisionPollMinMs;
    let latest = record;
    while (!latest.finished && !this.#stopping) {
      const leftMs = deadlineMs - Date.now();
      if (leftMs <= 0) break;
      await new Promise((resolve) => setTimeout(resolve, Math.min(delayMs, leftMs)));
      delayMs = Math.min(delayMs * 2, awaitDecisionPollMaxMs);
      latest = (await this.#store.find(record.paymentId)) ?? latest;
    }
    return latest;
  }

  /** The answer to a repeated id, from the record it was recorded with. */
  #replay(existing: PaymentRecord, details: PaymentDetails): Answer {
    if (isTombstone(existing)) {
      return new PaymentError(
        "PAYMENT_ABORTED",
        `payment ${details.paymentId} was aborted: the gateway restarted before recording it`,
        { paymentId: details.paymentId, final: true },
      );
    }
    if (!sameDetails(existing, details)) {
      return new PaymentError(
        "IDEMPOTENCY_CONFLICT",
        `payment id ${details.paymentId} was already used for a different payment`,
        { paymentId: details.paymentId },
      );
    }
    return answerOf(existing);
  }

  /**
   * Steps 1–5 for a call's new cross-bank payments, all begun (step 1) by the caller, `durable` once their
   * records are. Crash points are passed once per call, where the first of its payments passes them.
   */
  async #runTwoPhase(records: readonly PaymentRecord[], durable: Promise<unknown>): Promise<Answer[]> {
    inDoubtPayments.inc(records.length);
    const begun = durable.then(() => {
      for (const record of records) this.#logBegun(record);
      crashPoint("gateway-after-preparing");
    });
    let decided: PaymentRecord[];
    try {
      const prepareStartedNs = process.hrtime.bigint();
      const votes = await this.#prepareAll(records);
      // The decisions follow the `preparing` records: a failed write of those fails the payments here.
      await begun;
      observePhase("prepare", prepareStartedNs, records.length);
      crashPoint("gateway-after-prepares");
      const decisionStartedNs = process.hrtime.bigint();
      decided = await this.#recordDecisions(records, votes);
      observePhase("decision_log", decisionStartedNs, records.length);
    } catch (thrown) {
      // Nothing was decided durably: each payment stays in doubt until a restart decides it (presumed abort).
      const error = PaymentError.fromGrpc(thrown);
      for (const record of records) this.#release(record.paymentId, null);
      return records.map(() => error);
    }
    for (const record of decided) this.#logDecision(record);
    const balancesMinor = new Map<string, bigint>();
    const phase2 = this.#phase2(decided, balancesMinor);
    if (this.#options.unsafeLogDecisionLate === true) await phase2;
    else await waitAtMost(phase2, this.#options.replyWaitMs);
    return decided.map((record) => {
      const balanceAfterMinor = balancesMinor.get(record.paymentId);
      const answered = balanceAfterMinor === undefined ? record : withBalance(record, balanceAfterMinor);
      this.#release(record.paymentId, answered);
      return answerOf(answered);
    });
  }

  /** Step 2: each bank's legs in one batched call; each vote with the time its bank's answer came. */
  async #prepareAll(records: readonly PaymentRecord[]): Promise<Votes> {
    const votes: Votes = {
      refusals: new Array<PaymentError | null>(records.length * 2).fill(null),
      atMs: new Array<number>(records.length * 2).fill(0),
    };
    const legsByBank = new Map<string, { legs: PrepareLeg[]; voteSlots: number[] }>();
    const addLeg = (bank: string, leg: PrepareLeg, voteSlot: number) => {
      let group = legsByBank.get(bank);
      if (group === undefined) legsByBank.set(bank, (group = { legs: [], voteSlots: [] }));
      group.legs.push(leg);
      group.voteSlots.push(voteSlot);
    };
    records.forEach((record, index) => {
      addLeg(
        record.fromBank,
        { paymentId: record.paymentId, username: record.fromUser, kind: "debit", amountMinor: record.amountMinor },
        2 * index,
      );
      addLeg(
        record.toBank,
        { paymentId: record.paymentId, username: record.toUser, kind: "credit", amountMinor: record.amountMinor },
        2 * index + 1,
      );
    });
    await Promise.all(
      [...legsByBank].map(async ([bank, { legs, voteSlots }]) => {
        const results = await this.#requireLink(bank).prepareAll(legs, this.#options.prepareTimeoutMs);
        const atMs = this.#nowMs();
        results.forEach((result, index) => {
          votes.refusals[voteSlots[index]!] = result;
          votes.atMs[voteSlots[index]!] = atMs;
        });
      }),
    );
    return votes;
  }

  /**
   * Step 3: commit where both votes are yes, abort with the better refusal elsewhere, each decision with its
   * legs' votes (in the same write); durable before it returns.
   */
  async #recordDecisions(records: readonly PaymentRecord[], votes: Votes): Promise<PaymentRecord[]> {
    const changes: PaymentChange[] = records.map((record, index) => {
      const payer = votes.refusals[2 * index]!;
      const payee = votes.refusals[2 * index + 1]!;
      const legs = [
        votedLeg("payer", payer, votes.atMs[2 * index]!),
        votedLeg("payee", payee, votes.atMs[2 * index + 1]!),
      ];
      const refusal = chooseRefusal([payer, payee].filter((vote): vote is PaymentError => vote !== null));
      if (refusal === null) return { paymentId: record.paymentId, state: "committed", outcome: { legs } };
      return {
        paymentId: record.paymentId,
        state: "aborted",
        outcome: { reason: refusal.code, reasonMessage: refusal.message, legs },
      };
    });
    if (this.#options.unsafeLogDecisionLate === true) {
      // The bug under test: commits are decided in memory only; phase 2's `finished` record is their first.
      const aborts = changes.filter((change) => change.state === "aborted");
      const recorded = new Map((await this.#store.advanceAll(aborts)).map((record) => [record.paymentId, record]));
      return records.map(
        (record, index) => recorded.get(record.paymentId) ?? advancedRecord(record, changes[index]!, Date.now()),
      );
    }
    const decided = await this.#store.advanceAll(changes);
    if (decided.some((record) => record.state === "committed")) crashPoint("gateway-after-commit-logged");
    return decided;
  }

  /**
   * Step 4 for decided cross-bank payments: each bank's commits and aborts handed to its link at once; a leg
   * that fails is then retried on its own until acknowledged. The payer's bank answers a commit with the
   * payer's balance after, put in `balancesMinor`. Then step 5's `finished` records, with when each bank
   * acknowledged, in the background.
   */
  async #phase2(records: readonly PaymentRecord[], balancesMinor: Map<string, bigint>): Promise<void> {
    const startedNs = process.hrtime.bigint();
    const legsByBank = new Map<
      string,
      { commits: PaymentRecord[]; commitRoles: LegRole[]; aborts: PaymentRecord[]; abortRoles: LegRole[] }
    >();
    const addLeg = (bank: string, record: PaymentRecord, role: LegRole) => {
      let group = legsByBank.get(bank);
      if (group === undefined)
        legsByBank.set(bank, (group = { commits: [], commitRoles: [], aborts: [], abortRoles: [] }));
      if (record.state === "committed") {
        group.commits.push(record);
        group.commitRoles.push(role);
      } else {
        group.aborts.push(record);
        group.abortRoles.push(role);
      }
    };
    for (const record of records) {
      assert(
        record.state === "committed" || record.state === "aborted",
        `phase 2 of undecided payment ${record.paymentId}`,
      );
      addLeg(record.fromBank, record, "payer");
      addLeg(record.toBank, record, "payee");
    }
    const acks: Acks = new Map();
    let anyCommitAcknowledged = false;
    const acknowledged = (record: PaymentRecord, role: LegRole, atMs: number) => {
      let times = acks.get(record.paymentId);
      if (times === undefined) acks.set(record.paymentId, (times = { payer: null, payee: null }));
      times[role] = atMs;
      if (record.state !== "committed" || anyCommitAcknowledged) return;
      anyCommitAcknowledged = true;
      crashPoint("gateway-after-first-commit");
    };
    const retries: Array<Promise<void>> = [];
    const retry = (record: PaymentRecord, bank: string, role: LegRole): void => {
      retries.push(
        this.#retryUntilAcknowledged(record.paymentId, bank, async (link) => {
          const balanceAfterMinor = await deliver(link, record, this.#options.decisionCallTimeoutMs);
          if (role === "payer" && balanceAfterMinor !== null) balancesMinor.set(record.paymentId, balanceAfterMinor);
          acknowledged(record, role, this.#nowMs());
        }),
      );
    };
    await Promise.all(
      [...legsByBank].map(async ([bank, { commits, commitRoles, aborts, abortRoles }]) => {
        const link = this.#banks.link(bank);
        const timeoutMs = this.#options.decisionCallTimeoutMs;
        const [commitResults, abortResults] = await Promise.all([
          link === null || commits.length === 0
            ? null
            : link.commitAll(
                commits.map((record) => record.paymentId),
                timeoutMs,
              ),
          link === null || aborts.length === 0
            ? null
            : link.abortAll(
                aborts.map((record) => record.paymentId),
                timeoutMs,
              ),
        ]);
        const atMs = this.#nowMs();
        commits.forEach((record, index) => {
          const result = commitResults?.[index];
          const role = commitRoles[index]!;
          if (typeof result !== "bigint") return retry(record, bank, role);
          if (role === "payer") balancesMinor.set(record.paymentId, result);
          acknowledged(record, role, atMs);
        });
        aborts.forEach((record, index) => {
          const role = abortRoles[index]!;
          if (abortResults?.[index] !== null) retry(record, bank, role);
          else acknowledged(record, role, atMs);
        });
      }),
    );
    await Promise.all(retries);
    if (this.#stopping) return;
    // The reply need not wait for the `finished` records: the decisions are durable and every bank has them.
    // If they are lost, a restart drives phase 2 again, and the banks answer the repeat as the first time.
    const finished = records.map((record) => {
      const balanceAfterMinor = balancesMinor.get(record.paymentId);
      return balanceAfterMinor === undefined ? record : withBalance(record, balanceAfterMinor);
    });
    void this.#recordFinished(finished, startedNs, acks);
  }

  /**
   * Step 5: the payments' `finished` records, with their final state and balance, and when each bank
   * acknowledged (never rejects).
   */
  async #recordFinished(records: readonly PaymentRecord[], startedNs: bigint, acks: Acks): Promise<void> {
    const changes: PaymentChange[] = records.map((record) => {
      const times = acks.get(record.paymentId);
      return {
        paymentId: record.paymentId,
        state: record.state,
        outcome: {
          finished: true,
          balanceAfterMinor: record.balanceAfterMinor,
          ...(times === undefined ? {} : { legs: acknowledgedLegs(record.legs, times) }),
        },
      };
    });
    try {
      await this.#store.advanceAll(changes);
    } catch (error) {
      this.#logger.error(
        { payments: records.length, error: String(error) },
        "could not record payments as finished; a restart will finish them",
      );
      return;
    }
    const committed = records.filter((record) => record.state === "committed").length;
    observePhase("commit", startedNs, committed);
    observePhase("abort", startedNs, records.length - committed);
    for (const record of records) this.#finished(record);
  }

  /** A same-bank payment: one step at its bank once its record is durable. */
  async #runLocal(record: PaymentRecord, durable: Promise<void>): Promise<Answer> {
    inDoubtPayments.inc();
    let final: PaymentRecord = record;
    try {
      // A same-bank transfer is applied by the bank in one step: its record must be durable first.
      await durable;
      this.#logBegun(record);
      crashPoint("gateway-after-preparing");
      final = await this.#transferLocal(record);
      return answerOf(final);
    } catch (thrown) {
      return PaymentError.fromGrpc(thrown);
    } finally {
      this.#release(record.paymentId, final);
    }
  }

  async #transferLocal(record: PaymentRecord): Promise<PaymentRecord> {
    const bank = this.#requireLink(record.fromBank);
    const stopTimer = phaseSeconds.startTimer({ phase: "same_bank" });
    let balanceAfterMinor: bigint;
    try {
      balanceAfterMinor = await bank.transfer(
        record.paymentId,
        record.fromUser,
        record.toUser,
        record.amountMinor,
        record.createdAtMs,
        this.#options.decisionCallTimeoutMs,
      );
    } catch (thrown) {
      const error = PaymentError.fromGrpc(thrown);
      if (isAmbiguous(error)) {
        this.#logger.warn(
          { paymentId: record.paymentId, reason: error.code },
          "same-bank transfer unanswered; settling it with the bank",
        );
        const resolution = this.#resolveLocal(record, error);
        let settled: PaymentRecord | null = null;
        await waitAtMost(
          resolution.then((final) => (settled = final)),
          this.#options.replyWaitMs,
        );
        return settled ?? record;
      }
      const aborted = await this.#store.advance({
        paymentId: record.paymentId,
        state: "aborted",
        outcome: { reason: error.code, reasonMessage: error.message, finished: true },
      });
      this.#finished(aborted);
      return aborted;
    }
    const committed = await this.#store.advance({
      paymentId: record.paymentId,
      state: "committed",
      outcome: { balanceAfterMinor, finished: true },
    });
    stopTimer();
    this.#finished(committed);
    return committed;
  }

  /**
   * The bank may or may not have applied a same-bank transfer. An Abort settles it: either the bank records
   * that the payment must never apply, or it answers that it already committed it.
   */
  async #resolveLocal(record: PaymentRecord, cause: PaymentError): Promise<PaymentRecord> {
    let final = record;
    await this.#retryUntilAcknowledged(record.paymentId, record.fromBank, async (bank) => {
      try {
        await bank.settleTransfer(record.paymentId, record.createdAtMs, this.#options.decisionCallTimeoutMs);
        final = await this.#store.advance({
          paymentId: record.paymentId,
          state: "aborted",
          outcome: {
            reason: cause.code === "PAYMENT_ABORTED" ? cause.code : "BANK_UNAVAILABLE",
            reasonMessage: cause.message,
            finished: true,
          },
        });
      } catch (thrown) {
        const error = PaymentError.fromGrpc(thrown);
        if (error.code !== "IDEMPOTENCY_CONFLICT") throw error;
        final = await this.#store.advance({
          paymentId: record.paymentId,
          state: "committed",
          outcome: { finished: true },
        });
      }
    });
    if (final.finished) this.#finished(final);
    return final;
  }

  #logBegun(record: PaymentRecord): void {
    this.#logger.debug(
      {
        paymentId: record.paymentId,
        from: `${record.fromUser}@${record.fromBank}`,
        to: `${record.toUser}@${record.toBank}`,
        amountMinor: record.amountMinor.toString(),
      },
      "payment begun",
    );
  }

  #logDecision(record: PaymentRecord): void {
    this.#logger.debug(
      {
        paymentId: record.paymentId,
        decision: record.state === "committed" ? "commit" : "abort",
        ...(record.state === "committed" ? {} : { reason: record.reason }),
      },
      "decision logged",
    );
  }

  #finished(record: PaymentRecord): void {
    inDoubtPayments.dec();
    paymentsTotal.inc({ outcome: record.state, kind: record.fromBank === record.toBank ? "same_bank" : "cross_bank" });
    this.#logger.debug(
      {
        paymentId: record.paymentId,
        outcome: record.state,
        ...(record.reason === null ? {} : { reason: record.reason }),
      },
      "payment finished",
    );
  }

  /**
   * Repeats `attempt` against `bank` with capped exponential backoff until it succeeds. A decision must
   * reach every bank, so there is no attempt limit; each attempt has its own deadline.
   */
  async #retryUntilAcknowledged(
    paymentId: string,
    bank: string,
    attempt: (link: BankLink) => Promise<void>,
  ): Promise<void> {
    let delayMs = this.#options.retryDelayMinMs;
    for (;;) {
      if (this.#stopping) return;
      const link = this.#banks.link(bank);
      try {
        if (link === null) throw new PaymentError("BANK_UNAVAILABLE", `bank ${bank} has not registered`);
        await attempt(link);
        return;
      } catch (thrown) {
        const error = PaymentError.fromGrpc(thrown);
        if (!isAmbiguous(error)) {
          // A bank that refuses a decision contradicts its own vote: an operator must look.
          this.#logger.error({ paymentId, bank, reason: error.code }, `bank refused a decision: ${error.message}`);
        }
      }
      await sleep(delayMs * (0.5 + Math.random() / 2));
      delayMs = Math.min(delayMs * 2, this.#options.retryDelayMaxMs);
    }
  }

  #requireLink(bank: string): BankLink {
    const link = this.#banks.link(bank);
    assert(link !== null, `bank ${bank} validated but not registered`);
    return link;
  }
}

/** One attempt to tell one bank one payment's decision; a commit's balance after, or null for an abort. */
async function deliver(link: BankLink, record: PaymentRecord, timeoutMs: number): Promise<bigint | null> {
  if (record.state === "committed") {
    const [result] = await link.commitAll([record.paymentId], timeoutMs);
    if (typeof result !== "bigint") throw result ?? new PaymentError("INTERNAL", "a commit of one leg got no result");
    return result;
  }
  const [result] = await link.abortAll([record.paymentId], timeoutMs);
  if (result !== null) throw result ?? new PaymentError("INTERNAL", "an abort of one leg got no result");
  return null;
}

/** The record with the payer's balance after, as the payer's bank answered the commit. */
function withBalance(record: PaymentRecord, balanceAfterMinor: bigint): PaymentRecord {
  return withProgress(record, {
    state: record.state,
    reason: record.reason,
    reasonMessage: record.reasonMessage,
    finished: record.finished,
    balanceAfterMinor,
    decidedAtMs: record.decidedAtMs,
    finishedAtMs: record.finishedAtMs,
    legs: record.legs,
  });
}

/** A leg as step 2 answered it: yes, a definite refusal, or no answer in time (an ambiguous error). */
function votedLeg(role: LegRole, refusal: PaymentError | null, votedAtMs: number): PaymentLeg {
  const vote: LegVote = refusal === null ? "yes" : isAmbiguous(refusal) ? "unanswered" : "no";
  return { role, vote, votedAtMs, ackedAtMs: null };
}

/**
 * The legs of a decided payment with when each bank acknowledged the decision: its votes as recorded (none
 * for a payment decided at a restart, or recorded before legs were kept), and each acknowledgement.
 */
function acknowledgedLegs(
  legs: readonly PaymentLeg[],
  acks: { payer: number | null; payee: number | null },
): PaymentLeg[] {
  const acknowledged: PaymentLeg[] = [];
  for (const role of legRoles) {
    const leg = legs.find((known) => known.role === role);
    const ackedAtMs = leg?.ackedAtMs ?? acks[role];
    if (leg === undefined && ackedAtMs === null) continue;
    acknowledged.push({ role, vote: leg?.vote ?? null, votedAtMs: leg?.votedAtMs ?? null, ackedAtMs });
  }
  return acknowledged;
}

/** The record a waiter answers from when the payment it waited for could not be begun: still in doubt. */
function inDoubtRecord(paymentId: string): PaymentRecord {
  return {
    paymentId,
    fromUser: "",
    fromBank: "",
    toUser: "",
    toBank: "",
    amountMinor: 0n,
    state: "preparing",
    reason: null,
    reasonMessage: null,
    finished: false,
    balanceAfterMinor: null,
    createdAtMs: 0,
    decidedAtMs: null,
    finishedAtMs: null,
    legs: noLegs,
  };
}

/** A decided payment's answer: its result, or the refusal it was aborted with; "in progress" otherwise. */
function answerOf(record: PaymentRecord): Answer {
  if (record.state === "committed") return { paymentId: record.paymentId, balanceAfterMinor: record.balanceAfterMinor };
  if (record.state === "aborted") {
    return new PaymentError(record.reason ?? "PAYMENT_ABORTED", record.reasonMessage ?? "payment aborted", {
      paymentId: record.paymentId,
      final: true,
    });
  }
  return new PaymentError(
    "BANK_UNAVAILABLE",
    `payment ${record.paymentId} is still in progress; retry with the same id`,
    { paymentId: record.paymentId },
  );
}

/** Observes a phase that a batch of payments went through together, once per payment. */
function observePhase(phase: "prepare" | "decision_log" | Decision, startedNs: bigint, payments: number): void {
  const seconds = Number(process.hrtime.bigint() - startedNs) / 1e9;
  const child = phaseSeconds.labels({ phase });
  for (let index = 0; index < payments; index += 1) child.observe(seconds);
}

/** A definite refusal is the better explanation; an unreachable bank otherwise. */
function chooseRefusal(errors: PaymentError[]): PaymentError | null {
  if (errors.length === 0) return null;
  const definite = errors.find((error) => !isAmbiguous(error));
  if (definite !== undefined) return definite;
  const first = errors[0]!;
  // Its message names the bank and its address ("bank HDFC at 127.0.0.1:50052 did not answer"; BankRegistry).
  return new PaymentError("BANK_UNAVAILABLE", first.message, { cause: first });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

function waitAtMost(promise: Promise<unknown>, ms: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    timer.unref();
    promise.then(
      () => {
        clearTimeout(timer);
        resolve();
      },
      () => {
        clearTimeout(timer);
        resolve();
      },
    );
  });
}

export type { Reason };
