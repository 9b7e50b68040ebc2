// A bank: its accounts and its side of two-phase commit.
//
// Every operation checks and changes the in-memory state in one synchronous step, hands the change to the
// bank's ledger store as one entry (each entry carries absolute after-balances), and answers only once the
// store has made it durable. How the store does that (the files' journal, group commit and checkpoints, in
// store/file/file-ledger-store.ts) is not the participant's business. A repeat of an operation whose change is
// already recorded waits until everything recorded so far is durable: the first answer may still be on its
// way to disk. Once an append fails, memory is ahead of disk, and the participant answers nothing more.
import { assert } from "../domain/assert.js";
import { asError, PaymentError } from "../domain/errors.js";
import {
  finishedOf,
  retainNewest,
  type Account,
  type Finished,
  type Hold,
  type LedgerEntry,
  type LegKind,
} from "../domain/ledger.js";
import { balanceMinorMax, formatMinor } from "../domain/money.js";
import { crashPoint } from "../faults/crash.js";
import { verifyPassword } from "./passwords.js";
import type { LedgerStore } from "./store/ledger-store.js";
import { silentLogger, type Logger } from "../observability/log.js";
import { holdsGauge } from "../observability/metrics.js";
import { isRepeatedPrepare, type BalanceView, type BankLedger } from "./bank-ledger.js";

export interface ParticipantOptions {
  bank: string;
  /** How long a prepared hold waits for the decision before the bank asks the coordinator. */
  holdTimeoutMs: number;
  /** Finished payments remembered to answer repeated Commit/Abort/Transaction calls. */
  finishedRetainedMax: number;
  nowMs?: () => number;
  logger?: Logger;
}

export class Participant implements BankLedger {
  readonly bank: string;
  readonly #options: ParticipantOptions;
  readonly #store: LedgerStore;
  readonly #accounts: Map<string, Account>;
  readonly #holds: Map<string, Hold>;
  /** Finished payments, oldest first, at most finishedRetainedMax. */
  readonly #finished = new Map<string, Finished>();
  /** The latest gateway start time of a same-bank transfer forgotten from #finished (0: none). */
  #transfersForgottenThroughMs: number;
  /** Sums of held amounts per account and kind, kept in step with #holds. */
  readonly #heldMinor = { debit: new Map<string, bigint>(), credit: new Map<string, bigint>() };
  readonly #nowMs: () => number;
  readonly #logger: Logger;
  /** The error of the append that failed: from then on every operation is refused with it. */
  #broken: Error | null = null;

  private constructor(
    store: LedgerStore,
    options: ParticipantOptions,
    accounts: Map<string, Account>,
    holds: Map<string, Hold>,
    transfersForgottenThroughMs: number,
  ) {
    this.bank = options.bank;
    this.#options = options;
    this.#store = store;
    this.#accounts = accounts;
    this.#holds = holds;
    this.#transfersForgottenThroughMs = transfersForgottenThroughMs;
    this.#nowMs = options.nowMs ?? Date.now;
    this.#logger = options.logger ?? silentLogger;
    for (const hold of holds.values()) {
      assert(accounts.has(hold.username), `hold ${hold.paymentId} names unknown account ${hold.username}`);
      this.#adjustHeld(hold, hold.amountMinor);
    }
    holdsGauge.set(holds.size);
  }

  /** Loads the bank's durable state from its store (everything recovered) and serves from memory. */
  static async open(store: LedgerStore, options: ParticipantOptions): Promise<Participant> {
    const state = await store.load();
    const participant = new Participant(store, options, state.accounts, state.holds, state.transfersForgottenThroughMs);
    for (const finished of state.finished.values()) participant.#remember(finished);
    return participant;
  }

  /** An orderly stop: every change durable, and whatever the store folds or compacts done. */
  async close(): Promise<void> {
    await this.#store.close();
  }

  get accountCount(): number {
    return this.#accounts.size;
  }

  holds(): Hold[] {
    return [...this.#holds.values()];
  }

  listHolds(): Promise<Hold[]> {
    return Promise.resolve(this.holds().sort((a, b) => a.preparedAtMs - b.preparedAtMs));
  }

  /** The finished payments remembered to answer repeats, oldest first. */
  finishedIds(): string[] {
    return [...this.#finished.keys()];
  }

  async authenticate(username: string, password: string): Promise<void> {
    const account = this.#accounts.get(username);
    // Hash even for unknown users so that timing does not tell which usernames exist.
    const stored =
      account?.password ?? "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    const ok = await verifyPassword(password, stored);
    if (!ok || account === undefined) throw new PaymentError("UNAUTHENTICATED", "wrong username or password");
  }

  balance(username: string): BalanceView {
    const account = this.#account(username);
    return { balanceMinor: account.balanceMinor, availableMinor: account.balanceMinor - this.#held(username, "debit") };
  }

  /** Votes yes by making a durable hold, or refuses with a reason. A repeat of a yes vote is a yes. */
  async prepare(paymentId: string, username: string, kind: LegKind, amountMinor: bigint): Promise<void> {
    this.#refuseIfBroken();
    const repeat = isRepeatedPrepare(paymentId, this.#finished.get(paymentId)?.outcome, this.#holds.get(paymentId), {
      username,
      kind,
      amountMinor,
    });
    if (repeat) {
      await this.#store.settled(); // the first vote may still be on its way to disk
      return;
    }
    const account = this.#account(username);
    if (kind === "debit") {
      const availableMinor = account.balanceMinor - this.#held(username, "debit");
      if (availableMinor < amountMinor) {
        throw new PaymentError(
          "INSUFFICIENT_FUNDS",
          `insufficient funds: available ${formatMinor(availableMinor)}, needed ${formatMinor(amountMinor)}`,
        );
      }
    } else if (account.balanceMinor + this.#held(username, "credit") + amountMinor > balanceMinorMax) {
      throw new PaymentError("BALANCE_LIMIT", `the payee's balance would exceed ${formatMinor(balanceMinorMax)}`);
    }
    const nowMs = this.#nowMs();
    const hold: Hold = {
      paymentId,
      username,
      kind,
      amountMinor,
      preparedAtMs: nowMs,
      expiresAtMs: nowMs + this.#options.holdTimeoutMs,
    };
    this.#holds.set(paymentId, hold);
    this.#adjustHeld(hold, amountMinor);
    try {
      await this.#store.append([
        {
          op: "hold",
          paymentId,
          username,
          kind,
          amountMinor,
          preparedAtMs: hold.preparedAtMs,
          expiresAtMs: hold.expiresAtMs,
        },
      ]);
    } catch (error) {
      throw this.#stop(error);
    }
    holdsGauge.set(this.#holds.size);
    this.#logger.debug({ paymentId, username, kind, amountMinor: amountMinor.toString() }, "voted yes: hold recorded");
    crashPoint("bank-after-hold");
  }

  /** Applies a prepared hold. Idempotent: a repeat returns the first result. */
  async commit(paymentId: string): Promise<bigint> {
    crashPoint("bank-before-commit");
    this.#refuseIfBroken();
    const repeated = this.#repeatedCommit(paymentId);
    if (repeated !== undefined) return repeated;
    const hold = this.#holds.get(paymentId);
    if (hold === undefined) throw new PaymentError("UNKNOWN_PAYMENT", `payment ${paymentId} is not prepared here`);
    const account = this.#account(hold.username);
    const afterMinor =
      hold.kind === "debit" ? account.balanceMinor - hold.amountMinor : account.balanceMinor + hold.amountMinor;
    this.#holds.delete(paymentId);
    this.#adjustHeld(hold, -hold.amountMinor);
    const entry = this.#applyDecided(paymentId, { [hold.username]: afterMinor }, afterMinor);
    try {
      await this.#store.append([entry]);
    } catch (error) {
      throw this.#stop(error);
    }
    holdsGauge.set(this.#holds.size);
    crashPoint("bank-after-commit-logged");
    this.#logger.debug({ paymentId, username: hold.username, kind: hold.kind }, "committed");
    return afterMinor;
  }

  /** Releases a hold, or records that the payment must never be prepared here. Idempotent. */
  async abort(paymentId: string): Promise<void> {
    this.#refuseIfBroken();
    const done = this.#finishedOutcome(paymentId, "aborted");
    if (done !== undefined) {
      // An "already committed" refusal tells the gateway the payment applied: only once that is durable.
      await this.#store.settled();
      if (done instanceof PaymentError) throw done;
      return;
    }
    const hold = this.#holds.get(paymentId);
    if (hold !== undefined) {
      this.#holds.delete(paymentId);
      this.#adjustHeld(hold, -hold.amountMinor);
    }
    const atMs = this.#nowMs();
    this.#remember({ paymentId, outcome: "aborted", atMs, replyBalanceMinor: null });
    try {
      await this.#store.append([{ op: "abort", paymentId, atMs }]);
    } catch (error) {
      throw this.#stop(error);
    }
    if (hold !== undefined) holdsGauge.set(this.#holds.size);
    this.#logger.debug(
      { paymentId },
      hold !== undefined ? "aborted: hold released" : "aborted before any prepare: it will be refused",
    );
  }

  /**
   * A same-bank transfer in one local step. Idempotent by payment id. `begunAtMs` is when the gateway began
   * it (by the gateway's clock), kept so that the transfer can be told apart once forgotten (settleTransfer).
   */
  async transfer(
    paymentId: string,
    fromUser: string,
    toUser: string,
    amountMinor: bigint,
    begunAtMs: number,
  ): Promise<bigint> {
    this.#refuseIfBroken();
    const repeated = this.#repeatedCommit(paymentId);
    if (repeated !== undefined) return repeated;
    if (this.#holds.has(paymentId))
      throw new PaymentError("IDEMPOTENCY_CONFLICT", `payment ${paymentId} is prepared here as a 2PC leg`);
    if (fromUser === toUser) throw new PaymentError("SELF_PAYMENT", "sender and receiver are the same account");
    const from = this.#account(fromUser);
    const to = this.#account(toUser);
    const availableMinor = from.balanceMinor - this.#held(fromUser, "debit");
    if (availableMinor < amountMinor) {
      throw new PaymentError(
        "INSUFFICIENT_FUNDS",
        `insufficient funds: available ${formatMinor(availableMinor)}, needed ${formatMinor(amountMinor)}`,
      );
    }
    if (to.balanceMinor + this.#held(toUser, "credit") + amountMinor > balanceMinorMax) {
      throw new PaymentError("BALANCE_LIMIT", `the payee's balance would exceed ${formatMinor(balanceMinorMax)}`);
    }
    const fromAfterMinor = from.balanceMinor - amountMinor;
    const entry = this.#applyDecided(
      paymentId,
      { [fromUser]: fromAfterMinor, [toUser]: to.balanceMinor + amountMinor },
      fromAfterMinor,
      begunAtMs,
    );
    try {
      await this.#store.append([entry]);
    } catch (error) {
      throw this.#stop(error);
    }
    crashPoint("bank-after-commit-logged");
    this.#logger.debug(
      { paymentId, from: fromUser, to: toUser, amountMinor: amountMinor.toString() },
      "same-bank transfer applied",
    );
    return fromAfterMinor;
  }

  /**
   * Settles a same-bank transfer whose answer the gateway never got: answers IDEMPOTENCY_CONFLICT if it was
   * applied, or records that it must never apply (as abort does). A transfer this bank does not know may
   * be one it applied and then forgot (it remembers finishedRetainedMax payments): if the gateway began it
   * no later than the latest forgotten transfer, recording an abort could contradict what was applied, so
   * it is refused with UNKNOWN_PAYMENT and the gateway keeps asking (and logs it for an operator).
   */
  async settleTransfer(paymentId: string, begunAtMs: number): Promise<void> {
    if (
      !this.#finished.has(paymentId) &&
      !this.#holds.has(paymentId) &&
      begunAtMs <= this.#transfersForgottenThroughMs
    ) {
      throw new PaymentError(
        "UNKNOWN_PAYMENT",
        `payment ${paymentId} is unknown here, but began (${begunAtMs}) no later than a same-bank transfer this bank has forgotten (${this.#transfersForgottenThroughMs}): it may have been applied; an operator must check the accounts`,
      );
    }
    await this.abort(paymentId);
  }

  /** Makes every hold due at once, so that a restarted bank asks the coordinator about each. */
  expireAllHolds(): void {
    const nowMs = this.#nowMs();
    for (const hold of this.#holds.values()) hold.expiresAtMs = Math.min(hold.expiresAtMs, nowMs);
  }

  /** Holds whose decision is overdue: the caller asks the coordinator about each. */
  expiredHolds(): Hold[] {
    const nowMs = this.#nowMs();
    return this.holds().filter((hold) => hold.expiresAtMs <= nowMs);
  }

  claimOverdueHolds(recheckMs: number, holdsMax: number): Promise<Hold[]> {
    const claimed = this.expiredHolds().slice(0, holdsMax);
    for (const hold of claimed) this.deferHold(hold.paymentId, recheckMs);
    return Promise.resolve(claimed);
  }

  /** Pushes an overdue hold's next question later, bounding how often the coordinator is asked. */
  deferHold(paymentId: string, delayMs: number): void {
    const hold = this.#holds.get(paymentId);
    if (hold !== undefined) hold.expiresAtMs = this.#nowMs() + delayMs;
  }

  totalBalanceMinor(): bigint {
    let total = 0n;
    for (const account of this.#accounts.values()) total += account.balanceMinor;
    return total;
  }

  /** Sets the decided balances in memory and remembers the outcome; returns the entry that records it. */
  #applyDecided(
    paymentId: string,
    balancesMinor: Record<string, bigint>,
    replyBalanceMinor: bigint,
    begunAtMs?: number,
  ): LedgerEntry {
    for (const [username, afterMinor] of Object.entries(balancesMinor)) {
      assert(afterMinor >= 0n, `apply: balance of ${username} would be negative`);
      assert(afterMinor <= balanceMinorMax, `apply: balance of ${username} would exceed the limit`);
      this.#account(username).balanceMinor = afterMinor;
    }
    const entry: LedgerEntry = { op: "commit", paymentId, balancesMinor, replyBalanceMinor, atMs: this.#nowMs() };
    if (begunAtMs !== undefined) entry.begunAtMs = begunAtMs;
    this.#remember(finishedOf(entry));
    return entry;
  }

  /** Remembers the failure of an append (memory is now ahead of disk) and returns it, to be thrown. */
  #stop(error: unknown): Error {
    const failure = asError(error);
    this.#broken ??= failure;
    return failure;
  }

  /** Once an append failed, memory may be ahead of disk: no answer may rest on it. */
  #refuseIfBroken(): void {
    if (this.#broken !== null) throw this.#broken;
  }

  /** Maps iterate in insertion order: the first entries are the oldest. */
  #remember(finished: Finished): void {
    this.#transfersForgottenThroughMs = retainNewest(
      this.#finished,
      finished,
      this.#options.finishedRetainedMax,
      this.#transfersForgottenThroughMs,
    );
  }

  /**
   * A repeated commit (or transfer) of a payment finished here: the first answer, or the refusal, once the
   * entry it rests on is durable (it may still be on its way to disk); undefined when the payment is not finished.
   */
  #repeatedCommit(paymentId: string): Promise<bigint> | undefined {
    const done = this.#finishedOutcome(paymentId, "committed");
    if (done === undefined) return undefined;
    return this.#store.settled().then(() => {
      if (done instanceof PaymentError) throw done;
      return done.replyBalanceMinor ?? 0n;
    });
  }

  /** The payment's finished record when it is `wanted`, the refusal when it finished otherwise, or undefined. */
  #finishedOutcome(paymentId: string, wanted: "committed" | "aborted"): Finished | PaymentError | undefined {
    const finished = this.#finished.get(paymentId);
    if (finished === undefined) return undefined;
    if (finished.outcome !== wanted) {
      const verb = wanted === "committed" ? "commit" : "abort";
      return new PaymentError(
        finished.outcome === "aborted" ? "PAYMENT_ABORTED" : "IDEMPOTENCY_CONFLICT",
        `cannot ${verb} payment ${paymentId}: it is already ${finished.outcome} here`,
      );
    }
    return finished;
  }

  #account(username: string): Account {
    const account = this.#accounts.get(username);
    if (account === undefined) throw new PaymentError("UNKNOWN_ACCOUNT", `no account ${username} at bank ${this.bank}`);
    return account;
  }

  #held(username: string, kind: LegKind): bigint {
    return this.#heldMinor[kind].get(username) ?? 0n;
  }

  #adjustHeld(hold: Hold, deltaMinor: bigint): void {
    const sums = this.#heldMinor[hold.kind];
    const next = (sums.get(hold.username) ?? 0n) + deltaMinor;
    assert(next >= 0n, `held amount of ${hold.username} would be negative`);
    if (next === 0n) sums.delete(hold.username);
    else sums.set(hold.username, next);
  }
}
