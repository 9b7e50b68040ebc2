// A bank: its accounts and its side of two-phase commit. Every state change is serialized in-process and
// durable before the reply. The write order of a balance change is:
//   1. pending file: hold removed, `applying` entry with the absolute after-balances   (the commit point)
//   2. accounts CSV rewritten with those balances
//   3. pending file: `applying` entry replaced by a `finished` record (kept to answer repeats)
// A crash after 1 is redone on start by writing the same absolute balances again, so nothing is applied twice.
import { assert } from "./assert.js";
import { PaymentError } from "./errors.js";
import { balanceMinorMax, formatMinor } from "./money.js";
import { Mutex } from "./mutex.js";
import { crashPoint } from "./crash.js";
import { hashPassword, isPasswordHash, verifyPassword } from "./passwords.js";
import { loadBankAccounts, rewriteBankRows, type BankAccount } from "./accounts-csv.js";
import { silentLogger, type Logger } from "./log.js";
import { holdsGauge } from "./metrics.js";
import { readBankPending, writeBankPending, type BankPending, type Hold, type LegKind, type Finished } from "./pending-file.js";

export interface ParticipantOptions {
  bank: string;
  accountsCsvPath: string;
  pendingJsonPath: string;
  /** How long a prepared hold waits for the decision before the bank asks the coordinator. */
  holdTimeoutMs: number;
  /** Finished payments remembered to answer repeated Commit/Abort/Transaction calls. */
  finishedRetainedMax: number;
  nowMs?: () => number;
  logger?: Logger;
}

export interface BalanceView {
  balanceMinor: bigint;
  availableMinor: bigint;
}

export class Participant {
  readonly bank: string;
  readonly #options: ParticipantOptions;
  readonly #accounts: Map<string, BankAccount>;
  readonly #pending: BankPending;
  readonly #mutex = new Mutex();
  readonly #nowMs: () => number;
  readonly #logger: Logger;

  private constructor(options: ParticipantOptions, accounts: Map<string, BankAccount>, pending: BankPending) {
    this.bank = options.bank;
    this.#options = options;
    this.#accounts = accounts;
    this.#pending = pending;
    this.#nowMs = options.nowMs ?? Date.now;
    this.#logger = options.logger ?? silentLogger;
    holdsGauge.set(pending.holds.size);
  }

  /** Loads the bank's rows and pending state, migrating plaintext passwords and redoing interrupted changes. */
  static async open(options: ParticipantOptions): Promise<Participant> {
    const accounts = await loadBankAccounts(options.accountsCsvPath, options.bank, hashPassword, isPasswordHash);
    const pending = await readBankPending(options.pendingJsonPath, options.bank);
    const participant = new Participant(options, accounts, pending);
    await participant.#mutex.run(() => participant.#recover());
    return participant;
  }

  async #recover(): Promise<void> {
    for (const hold of this.#pending.holds.values()) {
      assert(this.#accounts.has(hold.username), `hold ${hold.paymentId} names unknown account ${hold.username}`);
    }
    if (this.#pending.applying.size === 0) return;
    for (const applying of this.#pending.applying.values()) {
      this.#logger.warn({ paymentId: applying.paymentId }, "redoing a balance change interrupted by a crash");
      this.#setBalances(applying.balancesMinor);
    }
    await this.#finishApplying();
  }

  get accountCount(): number {
    return this.#accounts.size;
  }

  holds(): Hold[] {
    return [...this.#pending.holds.values()];
  }

  async authenticate(username: string, password: string): Promise<void> {
    const account = this.#accounts.get(username);
    // Hash even for unknown users so that timing does not tell which usernames exist.
    const stored = account?.password ?? "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    const ok = await verifyPassword(password, stored);
    if (!ok || account === undefined) throw new PaymentError("UNAUTHENTICATED", "wrong username or password");
  }

  balance(username: string): BalanceView {
    const account = this.#account(username);
    return { balanceMinor: account.balanceMinor, availableMinor: account.balanceMinor - this.#heldMinor(username, "debit") };
  }

  /** Votes yes by making a durable hold, or refuses with a reason. A repeat of a yes vote is a yes. */
  prepare(paymentId: string, username: string, kind: LegKind, amountMinor: bigint): Promise<void> {
    return this.#mutex.run(async () => {
      const finished = this.#pending.finished.get(paymentId);
      if (finished?.outcome === "aborted") throw new PaymentError("PAYMENT_ABORTED", `payment ${paymentId} was already aborted here`);
      if (finished?.outcome === "committed") return;
      const existing = this.#pending.holds.get(paymentId);
      if (existing !== undefined) {
        if (existing.username !== username || existing.kind !== kind || existing.amountMinor !== amountMinor) {
          throw new PaymentError("IDEMPOTENCY_CONFLICT", `payment ${paymentId} is already prepared here with other details`);
        }
        return;
      }
      const account = this.#account(username);
      if (kind === "debit") {
        const availableMinor = account.balanceMinor - this.#heldMinor(username, "debit");
        if (availableMinor < amountMinor) {
          throw new PaymentError("INSUFFICIENT_FUNDS", `insufficient funds: available ${formatMinor(availableMinor)}, needed ${formatMinor(amountMinor)}`);
        }
      } else if (account.balanceMinor + this.#heldMinor(username, "credit") + amountMinor > balanceMinorMax) {
        throw new PaymentError("BALANCE_LIMIT", `the payee's balance would exceed ${formatMinor(balanceMinorMax)}`);
      }
      const nowMs = this.#nowMs();
      this.#pending.holds.set(paymentId, { paymentId, username, kind, amountMinor, preparedAtMs: nowMs, expiresAtMs: nowMs + this.#options.holdTimeoutMs });
      await this.#writePending();
      this.#logger.info({ paymentId, username, kind, amountMinor: amountMinor.toString() }, "voted yes: hold recorded");
      crashPoint("bank-after-hold");
    });
  }

  /** Applies a prepared hold. Idempotent: a repeat returns the first result. */
  commit(paymentId: string): Promise<bigint> {
    return this.#mutex.run(async () => {
      crashPoint("bank-before-commit");
      const finished = this.#finishedOutcome(paymentId, "committed");
      if (finished !== undefined) return finished.replyBalanceMinor ?? 0n;
      const hold = this.#pending.holds.get(paymentId);
      if (hold === undefined) throw new PaymentError("UNKNOWN_PAYMENT", `payment ${paymentId} is not prepared here`);
      const account = this.#account(hold.username);
      const afterMinor = hold.kind === "debit" ? account.balanceMinor - hold.amountMinor : account.balanceMinor + hold.amountMinor;
      this.#pending.holds.delete(paymentId);
      await this.#apply(paymentId, { [hold.username]: afterMinor }, afterMinor);
      this.#logger.info({ paymentId, username: hold.username, kind: hold.kind }, "committed");
      return afterMinor;
    });
  }

  /** Releases a hold, or records that the payment must never be prepared here. Idempotent. */
  abort(paymentId: string): Promise<void> {
    return this.#mutex.run(async () => {
      if (this.#finishedOutcome(paymentId, "aborted") !== undefined) return;
      const held = this.#pending.holds.delete(paymentId);
      this.#recordFinished({ paymentId, outcome: "aborted", atMs: this.#nowMs(), replyBalanceMinor: null });
      await this.#writePending();
      this.#logger.info({ paymentId }, held ? "aborted: hold released" : "aborted before any prepare: it will be refused");
    });
  }

  /** A same-bank transfer in one local step. Idempotent by payment id. */
  transfer(paymentId: string, fromUser: string, toUser: string, amountMinor: bigint): Promise<bigint> {
    return this.#mutex.run(async () => {
      const finished = this.#finishedOutcome(paymentId, "committed");
      if (finished !== undefined) return finished.replyBalanceMinor ?? 0n;
      if (this.#pending.holds.has(paymentId)) throw new PaymentError("IDEMPOTENCY_CONFLICT", `payment ${paymentId} is prepared here as a 2PC leg`);
      if (fromUser === toUser) throw new PaymentError("SELF_PAYMENT", "sender and receiver are the same account");
      const from = this.#account(fromUser);
      const to = this.#account(toUser);
      const availableMinor = from.balanceMinor - this.#heldMinor(fromUser, "debit");
      if (availableMinor < amountMinor) {
        throw new PaymentError("INSUFFICIENT_FUNDS", `insufficient funds: available ${formatMinor(availableMinor)}, needed ${formatMinor(amountMinor)}`);
      }
      if (to.balanceMinor + this.#heldMinor(toUser, "credit") + amountMinor > balanceMinorMax) {
        throw new PaymentError("BALANCE_LIMIT", `the payee's balance would exceed ${formatMinor(balanceMinorMax)}`);
      }
      const fromAfterMinor = from.balanceMinor - amountMinor;
      await this.#apply(paymentId, { [fromUser]: fromAfterMinor, [toUser]: to.balanceMinor + amountMinor }, fromAfterMinor);
      this.#logger.info({ paymentId, from: fromUser, to: toUser, amountMinor: amountMinor.toString() }, "same-bank transfer applied");
      return fromAfterMinor;
    });
  }

  /** Makes every hold due at once, so that a restarted bank asks the coordinator about each. */
  expireAllHolds(): void {
    const nowMs = this.#nowMs();
    for (const hold of this.#pending.holds.values()) hold.expiresAtMs = Math.min(hold.expiresAtMs, nowMs);
  }

  /** Holds whose decision is overdue: the caller asks the coordinator about each. */
  expiredHolds(): Hold[] {
    const nowMs = this.#nowMs();
    return this.holds().filter((hold) => hold.expiresAtMs <= nowMs);
  }

  /** Pushes an overdue hold's next question later, bounding how often the coordinator is asked. */
  deferHold(paymentId: string, delayMs: number): void {
    const hold = this.#pending.holds.get(paymentId);
    if (hold !== undefined) hold.expiresAtMs = this.#nowMs() + delayMs;
  }

  totalBalanceMinor(): bigint {
    let total = 0n;
    for (const account of this.#accounts.values()) total += account.balanceMinor;
    return total;
  }

  async #apply(paymentId: string, balancesMinor: Record<string, bigint>, replyBalanceMinor: bigint): Promise<void> {
    for (const [username, afterMinor] of Object.entries(balancesMinor)) {
      assert(this.#accounts.has(username), `apply: unknown account ${username}`);
      assert(afterMinor >= 0n, `apply: balance of ${username} would be negative`);
      assert(afterMinor <= balanceMinorMax, `apply: balance of ${username} would exceed the limit`);
    }
    this.#pending.applying.set(paymentId, { paymentId, balancesMinor, replyBalanceMinor });
    await this.#writePending();
    crashPoint("bank-after-commit-logged");
    this.#setBalances(balancesMinor);
    await this.#finishApplying();
  }

  /** Steps 2 and 3 of the write order, for every recorded `applying` entry. */
  async #finishApplying(): Promise<void> {
    await rewriteBankRows(this.#options.accountsCsvPath, this.bank, this.#accounts);
    crashPoint("bank-after-commit-csv");
    for (const applying of this.#pending.applying.values()) {
      this.#recordFinished({ paymentId: applying.paymentId, outcome: "committed", atMs: this.#nowMs(), replyBalanceMinor: applying.replyBalanceMinor });
    }
    this.#pending.applying.clear();
    await this.#writePending();
  }

  #setBalances(balancesMinor: Record<string, bigint>): void {
    for (const [username, afterMinor] of Object.entries(balancesMinor)) {
      const account = this.#account(username);
      assert(afterMinor >= 0n, `balance of ${username} would be negative`);
      account.balanceMinor = afterMinor;
    }
  }

  #recordFinished(finished: Finished): void {
    this.#pending.finished.delete(finished.paymentId);
    this.#pending.finished.set(finished.paymentId, finished);
    // Maps iterate in insertion order: the first entries are the oldest.
    while (this.#pending.finished.size > this.#options.finishedRetainedMax) {
      const oldest = this.#pending.finished.keys().next().value as string;
      this.#pending.finished.delete(oldest);
    }
  }

  #finishedOutcome(paymentId: string, wanted: "committed" | "aborted"): Finished | undefined {
    const finished = this.#pending.finished.get(paymentId);
    if (finished === undefined) return undefined;
    if (finished.outcome !== wanted) {
      const verb = wanted === "committed" ? "commit" : "abort";
      throw new PaymentError(finished.outcome === "aborted" ? "PAYMENT_ABORTED" : "IDEMPOTENCY_CONFLICT", `cannot ${verb} payment ${paymentId}: it is already ${finished.outcome} here`);
    }
    return finished;
  }

  #account(username: string): BankAccount {
    const account = this.#accounts.get(username);
    if (account === undefined) throw new PaymentError("UNKNOWN_ACCOUNT", `no account ${username} at bank ${this.bank}`);
    return account;
  }

  #heldMinor(username: string, kind: LegKind): bigint {
    let total = 0n;
    for (const hold of this.#pending.holds.values()) if (hold.username === username && hold.kind === kind) total += hold.amountMinor;
    return total;
  }

  async #writePending(): Promise<void> {
    await writeBankPending(this.#options.pendingJsonPath, this.bank, this.#pending);
    holdsGauge.set(this.#pending.holds.size);
  }
}
