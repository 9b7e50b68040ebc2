// The life of a payment at the gateway, top to bottom. Cross-bank payments run strict two-phase commit:
//   1. log `preparing`; its fsync runs beside step 2 (crash point gateway-after-preparing, once durable)
//   2. Prepare debit and credit in parallel, each with a deadline   (gateway-after-prepares)
//   3. log the decision durably: committed only if both voted yes   (gateway-after-commit-logged)
//   4. send Commit/Abort to both banks until each acknowledges       (gateway-after-first-commit)
//   5. answer; log `finished` in the background
// The client hears "committed" only after step 3 is durable. A Prepare may reach a bank before the
// `preparing` record is durable: if the gateway dies then, it has no record, and a bank asking about its
// hold is answered abort (presumed abort), the id tombstoned so that it can never commit afterwards.
// Same-bank payments are one bank-local step. A MakePayments call's new cross-bank payments take the same
// steps together (makePayments): one group commit per step covers all of them.
import { assert } from "../domain/assert.js";
import { PaymentError, isAmbiguous, type Reason } from "../domain/errors.js";
import { crashPoint } from "../faults/crash.js";
import { validateAmountMinor } from "../domain/money.js";
import { validateBankName, validatePaymentId, validateUsername } from "../domain/validate.js";
import { sameDetails, type GatewayLog, type PaymentChange, type PaymentDetails, type PaymentRecord } from "./store/file/gateway-log.js";
import type { LegKind } from "../bank/store/file/pending-file.js";
import { silentLogger, type Logger } from "../observability/log.js";
import { inDoubtPayments, paymentsTotal, phaseSeconds } from "../observability/metrics.js";

/** The gateway's view of one bank; every call has a deadline and rejects with a PaymentError. */
export interface BankLink {
  prepare(paymentId: string, username: string, kind: LegKind, amountMinor: bigint, timeoutMs: number): Promise<void>;
  commit(paymentId: string, timeoutMs: number): Promise<bigint>;
  abort(paymentId: string, timeoutMs: number): Promise<void>;
  /** A same-bank payment; `begunAtMs` is when this gateway began it (its record's createdAtMs). */
  transfer(paymentId: string, fromUser: string, toUser: string, amountMinor: bigint, begunAtMs: number, timeoutMs: number): Promise<bigint>;
  /** Settles a transfer whose answer was lost: resolves if it will never apply, IDEMPOTENCY_CONFLICT if it applied. */
  settleTransfer(paymentId: string, begunAtMs: number, timeoutMs: number): Promise<void>;
  /** Many payments' legs at once (a MakePayments call's): each leg's refusal, or null for a yes; never rejects. */
  prepareAll(legs: readonly PrepareLeg[], timeoutMs: number): Promise<Array<PaymentError | null>>;
  /** Each payment's balance after (of its account at this bank), or the error; never rejects. */
  commitAll(paymentIds: readonly string[], timeoutMs: number): Promise<Array<bigint | PaymentError>>;
  abortAll(paymentIds: readonly string[], timeoutMs: number): Promise<Array<PaymentError | null>>;
}

export interface PrepareLeg {
  paymentId: string;
  username: string;
  kind: LegKind;
  amountMinor: bigint;
}

export interface BankDirectory {
  /** The bank's link, or null when no bank of that name has registered. */
  link(bank: string): BankLink | null;
}

export interface CoordinatorOptions {
  prepareTimeoutMs: number;
  /** Deadline of one Commit/Abort/Transaction attempt. */
  decisionCallTimeoutMs: number;
  /** How long a reply waits for phase 2 before answering from the durable decision alone. */
  replyWaitMs: number;
  retryDelayMinMs: number;
  retryDelayMaxMs: number;
  /**
   * A deliberately broken mode, for proving that `paynet verify` catches a real bug: the commit decision
   * is logged only after phase 2 has reached the banks, so a crash in between loses it. Never in production.
   */
  unsafeLogDecisionLate?: boolean;
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

/** A payment driven as one of a MakePayments call's: its answer is ready once the call's `done` settles. */
interface BatchMember {
  done: Promise<void>;
  record: PaymentRecord;
}

export class Coordinator {
  readonly #log: GatewayLog;
  readonly #banks: BankDirectory;
  readonly #options: CoordinatorOptions;
  /** Payments being driven by this process, so a duplicate request waits for the same outcome. */
  readonly #inFlight = new Map<string, Promise<PaymentOutcome> | BatchMember>();
  /** Phase-2 drivers running in the background, one per payment. */
  readonly #drivers = new Map<string, Promise<void>>();
  readonly #logger: Logger;
  #stopping = false;

  constructor(log: GatewayLog, banks: BankDirectory, options: CoordinatorOptions, logger: Logger = silentLogger) {
    this.#log = log;
    this.#banks = banks;
    this.#options = options;
    this.#logger = logger;
  }

  async makePayment(payer: Payer, request: PaymentRequest): Promise<PaymentOutcome> {
    const details = this.#validate(payer, request);
    let existing = this.#log.get(details.paymentId);
    // Reading the archive yields: a call with the same id may begin it meanwhile, so memory is asked again.
    if (existing === undefined && this.#log.mayBeArchived(details.paymentId)) existing = (await this.#log.find(details.paymentId)) ?? this.#log.get(details.paymentId);
    if (existing !== undefined) return this.#replay(existing, details);
    const outcome = this.#drive(details);
    this.#inFlight.set(details.paymentId, outcome);
    try {
      return await outcome;
    } finally {
      this.#inFlight.delete(details.paymentId);
    }
  }

  /**
   * A MakePayments call. Each order is a payment of its own, with its own answer, and goes through the same
   * steps as in makePayment. The fresh cross-bank orders go through them together: one group commit per step
   * covers all of them, and each bank's legs are handed to its batcher at once, instead of a chain of
   * promises and timers per payment. Any other order (a repeated id, a same-bank payment) takes makePayment.
   */
  async makePayments(payer: Payer, requests: readonly PaymentRequest[]): Promise<Array<PaymentOutcome | PaymentError>> {
    const answers: Array<PaymentOutcome | PaymentError | Promise<PaymentOutcome | PaymentError>> = new Array(requests.length);
    const batch: PaymentRecord[] = [];
    const batchSlots: number[] = [];
    let durable: Promise<void> | null = null;
    let settle: () => void = () => undefined;
    const done = new Promise<void>((resolve) => (settle = resolve));
    for (let index = 0; index < requests.length; index += 1) {
      const request = requests[index]!;
      let details: PaymentDetails;
      try {
        details = this.#validate(payer, request);
      } catch (thrown) {
        answers[index] = PaymentError.fromGrpc(thrown);
        continue;
      }
      const known = this.#log.get(details.paymentId) !== undefined || this.#log.mayBeArchived(details.paymentId);
      if (known || details.fromBank === details.toBank || this.#options.unsafeLogDecisionLate === true) {
        answers[index] = this.makePayment(payer, request).catch((thrown: unknown) => PaymentError.fromGrpc(thrown));
        continue;
      }
      // Begun here, one by one, so that a later order with the same id finds it (and waits for its answer).
      const begun = this.#log.begin(details);
      durable = begun.durable;
      this.#inFlight.set(details.paymentId, { done, record: begun.record });
      batch.push(begun.record);
      batchSlots.push(index);
    }
    if (durable !== null) {
      try {
        const outcomes = await this.#runTwoPhaseAll(batch, durable);
        batchSlots.forEach((slot, index) => (answers[slot] = outcomes[index]!));
      } catch (thrown) {
        const error = PaymentError.fromGrpc(thrown);
        for (const slot of batchSlots) answers[slot] = error;
      } finally {
        for (const record of batch) this.#inFlight.delete(record.paymentId);
        settle();
      }
    }
    return Promise.all(answers);
  }

  /**
   * The coordinator's answer to a bank asking about a prepared hold. Abort only when no commit was ever
   * logged; an id never seen is first recorded as aborted, so it can never be committed afterwards.
   */
  async decisionFor(paymentId: string): Promise<"commit" | "abort" | "pending"> {
    // find() may read the archive and yield; a payment begun meanwhile is then in memory.
    const record = this.#log.get(paymentId) ?? (await this.#log.find(paymentId)) ?? this.#log.get(paymentId);
    if (record === undefined) {
      await this.#log.tombstone(paymentId);
      return "abort";
    }
    if (record.state === "committed") return "commit";
    if (record.state === "aborted") return "abort";
    return "pending";
  }

  /**
   * On start, before serving: every undecided cross-bank payment is decided abort (presumed abort: no commit
   * was logged, so none was sent), then every unfinished payment is driven to its end in the background.
   */
  async recover(): Promise<number> {
    const unfinished = this.#log.unfinished();
    inDoubtPayments.set(unfinished.length);
    for (const record of unfinished) {
      if (record.fromBank !== record.toBank && (record.state === "preparing" || record.state === "prepared")) {
        await this.#log.advance(record.paymentId, "aborted", { reason: "PAYMENT_ABORTED", reasonMessage: "the gateway restarted before deciding" });
        this.#logger.warn({ paymentId: record.paymentId }, "presumed abort: undecided when the gateway restarted");
      } else {
        this.#logger.info({ paymentId: record.paymentId, state: record.state }, "recovering: driving the logged decision to every bank");
      }
    }
    for (const record of unfinished) {
      const outcome = this.#recoverOne(record);
      this.#inFlight.set(record.paymentId, outcome);
      outcome.then(
        () => this.#inFlight.delete(record.paymentId),
        () => this.#inFlight.delete(record.paymentId),
      );
    }
    return unfinished.length;
  }

  /** Stops retry loops (for shutdown); durable state lets the next start finish them. */
  stop(): void {
    this.#stopping = true;
  }

  async #recoverOne(record: PaymentRecord): Promise<PaymentOutcome> {
    if (record.fromBank === record.toBank) {
      if (record.state === "preparing") return this.#resolveLocal(record, new PaymentError("PAYMENT_ABORTED", "the gateway restarted before the bank answered"));
      return this.#outcomeOf(record);
    }
    this.#startPhase2(record, record.state === "committed" ? "commit" : "abort");
    return this.#outcomeOf(record);
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
      if (this.#banks.link(bank) === null) throw new PaymentError("UNKNOWN_BANK", `no bank named ${bank} is registered`);
    }
    return { paymentId: request.paymentId, fromUser: payer.username, fromBank: payer.bank, toUser: request.toUser, toBank: request.toBank, amountMinor: request.amountMinor };
  }

  async #replay(existing: PaymentRecord, details: PaymentDetails): Promise<PaymentOutcome> {
    if (isTombstone(existing)) {
      throw new PaymentError("PAYMENT_ABORTED", `payment ${details.paymentId} was aborted: the gateway restarted before recording it`, { paymentId: details.paymentId, final: true });
    }
    if (!sameDetails(existing, details)) {
      throw new PaymentError("IDEMPOTENCY_CONFLICT", `payment id ${details.paymentId} was already used for a different payment`, { paymentId: details.paymentId });
    }
    const inFlight = this.#inFlight.get(details.paymentId);
    if (inFlight instanceof Promise) return inFlight;
    if (inFlight !== undefined) {
      await inFlight.done;
      return this.#outcomeOf(inFlight.record);
    }
    return this.#outcomeOf(existing);
  }

  /** The final answer for a decided payment: its result, or the refusal it was aborted with (thrown). */
  #outcomeOf(record: PaymentRecord): PaymentOutcome {
    const answer = answerOf(record);
    if (answer instanceof PaymentError) throw answer;
    return answer;
  }

  async #drive(details: PaymentDetails): Promise<PaymentOutcome> {
    const { record, durable } = this.#log.begin(details);
    inDoubtPayments.inc();
    const begun = durable.then(() => {
      this.#logBegun(record);
      crashPoint("gateway-after-preparing");
    });
    if (details.fromBank === details.toBank) {
      // A same-bank transfer is applied by the bank in one step: its record must be durable first.
      await begun;
      return this.#runLocal(record);
    }
    return this.#runTwoPhase(record, begun);
  }

  async #runTwoPhase(record: PaymentRecord, begun: Promise<void>): Promise<PaymentOutcome> {
    const source = this.#requireLink(record.fromBank);
    const target = this.#requireLink(record.toBank);
    const timeoutMs = this.#options.prepareTimeoutMs;
    const stopPrepareTimer = phaseSeconds.startTimer({ phase: "prepare" });
    const votes = await Promise.allSettled([
      source.prepare(record.paymentId, record.fromUser, "debit", record.amountMinor, timeoutMs),
      target.prepare(record.paymentId, record.toUser, "credit", record.amountMinor, timeoutMs),
    ]);
    // The decision record follows the `preparing` one: a failed write of that one fails the payment here.
    await begun;
    stopPrepareTimer();
    crashPoint("gateway-after-prepares");
    const refusal = chooseRefusal(votes.flatMap((vote) => (vote.status === "rejected" ? [PaymentError.fromGrpc(vote.reason)] : [])));
    const stopDecisionTimer = phaseSeconds.startTimer({ phase: "decision_log" });
    if (refusal === null && this.#options.unsafeLogDecisionLate === true) {
      record.state = "committed"; // in memory only: the bug under test
      await this.#startPhase2(record, "commit");
      return this.#outcomeOf(record);
    }
    if (refusal === null) {
      await this.#log.advance(record.paymentId, "committed");
      crashPoint("gateway-after-commit-logged");
    } else {
      await this.#log.advance(record.paymentId, "aborted", { reason: refusal.code, reasonMessage: refusal.message });
    }
    stopDecisionTimer();
    this.#logDecision(record);
    const phase2 = this.#startPhase2(record, refusal === null ? "commit" : "abort");
    await waitAtMost(phase2, this.#options.replyWaitMs);
    return this.#outcomeOf(record);
  }

  /**
   * Steps 1–5 for a MakePayments call's fresh cross-bank payments, all begun (step 1) by the caller. Crash
   * points are passed once per call, where the first of its payments would pass them.
   */
  async #runTwoPhaseAll(records: readonly PaymentRecord[], durable: Promise<void>): Promise<Array<PaymentOutcome | PaymentError>> {
    inDoubtPayments.inc(records.length);
    const begun = durable.then(() => {
      for (const record of records) this.#logBegun(record);
      crashPoint("gateway-after-preparing");
    });
    const prepareStartedNs = process.hrtime.bigint();
    // Votes, two per payment: [2i] the debit's, [2i + 1] the credit's, each null for yes or the refusal.
    const votes: Array<PaymentError | null> = new Array(records.length * 2).fill(null);
    const legsByBank = new Map<string, { legs: PrepareLeg[]; voteSlots: number[] }>();
    const addLeg = (bank: string, leg: PrepareLeg, voteSlot: number) => {
      let group = legsByBank.get(bank);
      if (group === undefined) legsByBank.set(bank, (group = { legs: [], voteSlots: [] }));
      group.legs.push(leg);
      group.voteSlots.push(voteSlot);
    };
    records.forEach((record, index) => {
      addLeg(record.fromBank, { paymentId: record.paymentId, username: record.fromUser, kind: "debit", amountMinor: record.amountMinor }, 2 * index);
      addLeg(record.toBank, { paymentId: record.paymentId, username: record.toUser, kind: "credit", amountMinor: record.amountMinor }, 2 * index + 1);
    });
    await Promise.all(
      [...legsByBank].map(async ([bank, { legs, voteSlots }]) => {
        const results = await this.#requireLink(bank).prepareAll(legs, this.#options.prepareTimeoutMs);
        results.forEach((result, index) => (votes[voteSlots[index]!] = result));
      }),
    );
    await begun;
    observePhase("prepare", prepareStartedNs, records.length);
    crashPoint("gateway-after-prepares");
    const decisionStartedNs = process.hrtime.bigint();
    const changes: PaymentChange[] = records.map((record, index) => {
      const refusal = chooseRefusal([votes[2 * index], votes[2 * index + 1]].filter((vote): vote is PaymentError => vote !== null));
      if (refusal === null) return { paymentId: record.paymentId, state: "committed" };
      return { paymentId: record.paymentId, state: "aborted", outcome: { reason: refusal.code, reasonMessage: refusal.message } };
    });
    await this.#log.advanceAll(changes);
    if (changes.some((change) => change.state === "committed")) crashPoint("gateway-after-commit-logged");
    observePhase("decision_log", decisionStartedNs, records.length);
    for (const record of records) this.#logDecision(record);
    await waitAtMost(this.#phase2All(records), this.#options.replyWaitMs);
    return records.map(answerOf);
  }

  async #runLocal(record: PaymentRecord): Promise<PaymentOutcome> {
    const bank = this.#requireLink(record.fromBank);
    const stopTimer = phaseSeconds.startTimer({ phase: "same_bank" });
    try {
      const balanceAfterMinor = await bank.transfer(record.paymentId, record.fromUser, record.toUser, record.amountMinor, record.createdAtMs, this.#options.decisionCallTimeoutMs);
      await this.#log.advance(record.paymentId, "committed", { balanceAfterMinor, finished: true });
      stopTimer();
      this.#finished(record);
      return this.#outcomeOf(record);
    } catch (thrown) {
      const error = PaymentError.fromGrpc(thrown);
      if (!isAmbiguous(error)) {
        await this.#log.advance(record.paymentId, "aborted", { reason: error.code, reasonMessage: error.message, finished: true });
        this.#finished(record);
        return this.#outcomeOf(record);
      }
      this.#logger.warn({ paymentId: record.paymentId, reason: error.code }, "same-bank transfer unanswered; settling it with the bank");
      const resolution = this.#resolveLocal(record, error);
      return waitAtMost(resolution, this.#options.replyWaitMs).then(() => this.#outcomeOf(record));
    }
  }

  /**
   * The bank may or may not have applied a same-bank transfer. An Abort settles it: either the bank records
   * that the payment must never apply, or it answers that it already committed it.
   */
  async #resolveLocal(record: PaymentRecord, cause: PaymentError): Promise<PaymentOutcome> {
    await this.#retryUntilAcknowledged(record.paymentId, record.fromBank, async (bank) => {
      try {
        await bank.settleTransfer(record.paymentId, record.createdAtMs, this.#options.decisionCallTimeoutMs);
        await this.#log.advance(record.paymentId, "aborted", { reason: cause.code === "PAYMENT_ABORTED" ? cause.code : "BANK_UNAVAILABLE", reasonMessage: cause.message, finished: true });
      } catch (thrown) {
        const error = PaymentError.fromGrpc(thrown);
        if (error.code !== "IDEMPOTENCY_CONFLICT") throw error;
        await this.#log.advance(record.paymentId, "committed", { finished: true });
      }
    });
    this.#finished(record);
    return this.#outcomeOf(record);
  }

  #startPhase2(record: PaymentRecord, decision: Decision): Promise<void> {
    const running = this.#drivers.get(record.paymentId);
    if (running !== undefined) return running;
    const driver = this.#phase2(record, decision).finally(() => this.#drivers.delete(record.paymentId));
    this.#drivers.set(record.paymentId, driver);
    return driver;
  }

  async #phase2(record: PaymentRecord, decision: Decision): Promise<void> {
    let acknowledged = 0;
    const stopTimer = phaseSeconds.startTimer({ phase: decision });
    const legs = [
      { bank: record.fromBank, isSource: true },
      { bank: record.toBank, isSource: false },
    ];
    await Promise.all(
      legs.map(({ bank, isSource }) =>
        this.#retryUntilAcknowledged(record.paymentId, bank, async (link) => {
          await this.#deliver(link, record, decision, isSource);
          acknowledged += 1;
          if (acknowledged === 1 && decision === "commit") crashPoint("gateway-after-first-commit");
        }),
      ),
    );
    if (this.#stopping) return;
    // The reply need not wait for this record: the decision is durable and every bank has it. If it is lost,
    // a restart drives phase 2 again, and the banks answer the repeat as they did the first time.
    this.#log.advance(record.paymentId, record.state, { finished: true, balanceAfterMinor: record.balanceAfterMinor }).then(
      () => {
        stopTimer();
        this.#finished(record);
      },
      (error: unknown) => this.#logger.error({ paymentId: record.paymentId, error: String(error) }, "could not record the payment as finished; a restart will finish it"),
    );
  }

  /**
   * Step 4 for a MakePayments call's payments: each bank's commits and aborts handed to its batcher at once.
   * A leg that fails is then retried on its own until acknowledged, as in #phase2.
   */
  async #phase2All(records: readonly PaymentRecord[]): Promise<void> {
    const startedNs = process.hrtime.bigint();
    const legsByBank = new Map<string, { commits: PaymentRecord[]; commitsAtSource: boolean[]; aborts: PaymentRecord[] }>();
    const addLeg = (bank: string, record: PaymentRecord, isSource: boolean) => {
      let group = legsByBank.get(bank);
      if (group === undefined) legsByBank.set(bank, (group = { commits: [], commitsAtSource: [], aborts: [] }));
      if (record.state === "committed") {
        group.commits.push(record);
        group.commitsAtSource.push(isSource);
      } else {
        group.aborts.push(record);
      }
    };
    for (const record of records) {
      addLeg(record.fromBank, record, true);
      addLeg(record.toBank, record, false);
    }
    const retries: Array<Promise<void>> = [];
    const retry = (record: PaymentRecord, bank: string, isSource: boolean): void => {
      const decision = record.state === "committed" ? "commit" : "abort";
      retries.push(this.#retryUntilAcknowledged(record.paymentId, bank, (link) => this.#deliver(link, record, decision, isSource)));
    };
    let anyCommitAcknowledged = false;
    await Promise.all(
      [...legsByBank].map(async ([bank, { commits, commitsAtSource, aborts }]) => {
        const link = this.#banks.link(bank);
        const timeoutMs = this.#options.decisionCallTimeoutMs;
        const [commitResults, abortResults] = await Promise.all([
          link === null || commits.length === 0 ? null : link.commitAll(commits.map((record) => record.paymentId), timeoutMs),
          link === null || aborts.length === 0 ? null : link.abortAll(aborts.map((record) => record.paymentId), timeoutMs),
        ]);
        commits.forEach((record, index) => {
          const result = commitResults?.[index];
          if (typeof result !== "bigint") {
            retry(record, bank, commitsAtSource[index]!);
            return;
          }
          if (commitsAtSource[index]!) record.balanceAfterMinor = result;
          if (!anyCommitAcknowledged) {
            anyCommitAcknowledged = true;
            crashPoint("gateway-after-first-commit");
          }
        });
        aborts.forEach((record, index) => {
          if (abortResults?.[index] !== null) retry(record, bank, false);
        });
      }),
    );
    await Promise.all(retries);
    if (this.#stopping) return;
    // As in #phase2, the reply need not wait for the `finished` records.
    const finished: PaymentChange[] = records.map((record) => ({ paymentId: record.paymentId, state: record.state, outcome: { finished: true, balanceAfterMinor: record.balanceAfterMinor } }));
    this.#log.advanceAll(finished).then(
      () => {
        const committed = records.filter((record) => record.state === "committed").length;
        observePhase("commit", startedNs, committed);
        observePhase("abort", startedNs, records.length - committed);
        for (const record of records) this.#finished(record);
      },
      (error: unknown) => this.#logger.error({ payments: records.length, error: String(error) }, "could not record a batch of payments as finished; a restart will finish them"),
    );
  }

  /** One attempt to tell one bank the decision; the payer's bank answers a Commit with the balance after. */
  async #deliver(link: BankLink, record: PaymentRecord, decision: Decision, isSource: boolean): Promise<void> {
    if (decision === "commit") {
      const balanceAfterMinor = await link.commit(record.paymentId, this.#options.decisionCallTimeoutMs);
      if (isSource) record.balanceAfterMinor = balanceAfterMinor;
    } else {
      await link.abort(record.paymentId, this.#options.decisionCallTimeoutMs);
    }
  }

  #logBegun(record: PaymentRecord): void {
    this.#logger.debug(
      { paymentId: record.paymentId, from: `${record.fromUser}@${record.fromBank}`, to: `${record.toUser}@${record.toBank}`, amountMinor: record.amountMinor.toString() },
      "payment begun",
    );
  }

  #logDecision(record: PaymentRecord): void {
    this.#logger.debug({ paymentId: record.paymentId, decision: record.state === "committed" ? "commit" : "abort", ...(record.state === "committed" ? {} : { reason: record.reason }) }, "decision logged");
  }

  #finished(record: PaymentRecord): void {
    inDoubtPayments.dec();
    paymentsTotal.inc({ outcome: record.state, kind: record.fromBank === record.toBank ? "same_bank" : "cross_bank" });
    this.#logger.debug({ paymentId: record.paymentId, outcome: record.state, ...(record.reason === null ? {} : { reason: record.reason }) }, "payment finished");
  }

  /**
   * Repeats `attempt` against `bank` with capped exponential backoff until it succeeds. A decision must
   * reach every bank, so there is no attempt limit; each attempt has its own deadline.
   */
  async #retryUntilAcknowledged(paymentId: string, bank: string, attempt: (link: BankLink) => Promise<void>): Promise<void> {
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

/** The record of an id a bank asked about before the gateway had recorded it (see GatewayLog.tombstone). */
function isTombstone(record: PaymentRecord): boolean {
  return record.fromUser === "" && record.state === "aborted";
}

/** A decided payment's answer: its result, or the refusal it was aborted with; "in progress" otherwise. */
function answerOf(record: PaymentRecord): PaymentOutcome | PaymentError {
  if (record.state === "committed") return { paymentId: record.paymentId, balanceAfterMinor: record.balanceAfterMinor };
  if (record.state === "aborted") {
    return new PaymentError(record.reason ?? "PAYMENT_ABORTED", record.reasonMessage ?? "payment aborted", { paymentId: record.paymentId, final: true });
  }
  return new PaymentError("BANK_UNAVAILABLE", `payment ${record.paymentId} is still in progress; retry with the same id`, { paymentId: record.paymentId });
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
  return new PaymentError("BANK_UNAVAILABLE", `a bank did not answer in time: ${first.message}`, { cause: first });
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
