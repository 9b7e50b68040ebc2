// A bank: its accounts and its side of two-phase commit.
//
// Every operation checks and changes the in-memory state in one synchronous step, then waits until a write
// covering that change is durable before it answers (group commit: changes that arrive while a write is in
// flight share the next one). A write covers a consistent snapshot, taken synchronously, in this order:
//   1. pending file: holds, and `applying` entries with the absolute after-balances   (the commit point)
//   2. accounts CSV rewritten with the snapshot's balances
//   3. pending file: those `applying` entries replaced by `finished` records (kept to answer repeats)
// A crash after 1 is redone on start by writing the same absolute balances again, so nothing is applied
// twice; the CSV never holds a balance whose `applying` entry is not already durable.
import { assert } from "./assert.js";
import { PaymentError } from "./errors.js";
import { balanceMinorMax, formatMinor } from "./money.js";
import { crashPoint } from "./crash.js";
import { hashPassword, isPasswordHash, verifyPassword } from "./passwords.js";
import { loadBankAccounts, rewriteBankRows, type BankAccount } from "./accounts-csv.js";
import { silentLogger, type Logger } from "./log.js";
import { groupCommitBatchSize, holdsGauge } from "./metrics.js";
import { readBankPending, writeBankPending, type Applying, type BankPending, type Hold, type LegKind, type Finished } from "./pending-file.js";

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
  /** Called when a durable write fails: memory is then ahead of disk, and the process must stop. */
  onWriteFailure?: (error: unknown) => void;
}

export interface BalanceView {
  balanceMinor: bigint;
  availableMinor: bigint;
}

interface Snapshot {
  version: number;
  pending: BankPending;
  /** Balances to write to the CSV; only taken when there is something to apply. */
  accounts: Map<string, BankAccount> | null;
  /** Filled by the write: the applied entries it turned into finished records. */
  retired: Finished[];
}

interface Waiter {
  version: number;
  resolve: () => void;
  reject: (error: unknown) => void;
}

export class Participant {
  readonly bank: string;
  readonly #options: ParticipantOptions;
  readonly #accounts: Map<string, BankAccount>;
  readonly #pending: BankPending;
  /** Sums of held amounts per account and kind, kept in step with #pending.holds. */
  readonly #heldMinor = { debit: new Map<string, bigint>(), credit: new Map<string, bigint>() };
  readonly #nowMs: () => number;
  readonly #logger: Logger;
  /** Bumped by every change; a change is durable once #durableVersion reaches its version. */
  #version = 0;
  #durableVersion = 0;
  #waiters: Waiter[] = [];
  #writing: Promise<void> | null = null;
  #broken: unknown = null;

  private constructor(options: ParticipantOptions, accounts: Map<string, BankAccount>, pending: BankPending) {
    this.bank = options.bank;
    this.#options = options;
    this.#accounts = accounts;
    this.#pending = pending;
    this.#nowMs = options.nowMs ?? Date.now;
    this.#logger = options.logger ?? silentLogger;
    for (const hold of pending.holds.values()) this.#adjustHeld(hold, hold.amountMinor);
    holdsGauge.set(pending.holds.size);
  }

  /** Loads the bank's rows and pending state, migrating plaintext passwords and redoing interrupted changes. */
  static async open(options: ParticipantOptions): Promise<Participant> {
    const accounts = await loadBankAccounts(options.accountsCsvPath, options.bank, hashPassword, isPasswordHash);
    const pending = await readBankPending(options.pendingJsonPath, options.bank);
    const participant = new Participant(options, accounts, pending);
    await participant.#recover();
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
    await this.#durable(this.#changed());
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
    return { balanceMinor: account.balanceMinor, availableMinor: account.balanceMinor - this.#held(username, "debit") };
  }

  /** Votes yes by making a durable hold, or refuses with a reason. A repeat of a yes vote is a yes. */
  async prepare(paymentId: string, username: string, kind: LegKind, amountMinor: bigint): Promise<void> {
    const finished = this.#pending.finished.get(paymentId);
    if (finished?.outcome === "aborted") throw new PaymentError("PAYMENT_ABORTED", `payment ${paymentId} was already aborted here`);
    const existing = this.#pending.holds.get(paymentId);
    if (finished?.outcome === "committed" || existing !== undefined) {
      if (existing !== undefined && (existing.username !== username || existing.kind !== kind || existing.amountMinor !== amountMinor)) {
        throw new PaymentError("IDEMPOTENCY_CONFLICT", `payment ${paymentId} is already prepared here with other details`);
      }
      await this.#durable(this.#version); // the first vote may still be on its way to disk
      return;
    }
    const account = this.#account(username);
    if (kind === "debit") {
      const availableMinor = account.balanceMinor - this.#held(username, "debit");
      if (availableMinor < amountMinor) {
        throw new PaymentError("INSUFFICIENT_FUNDS", `insufficient funds: available ${formatMinor(availableMinor)}, needed ${formatMinor(amountMinor)}`);
      }
    } else if (account.balanceMinor + this.#held(username, "credit") + amountMinor > balanceMinorMax) {
      throw new PaymentError("BALANCE_LIMIT", `the payee's balance would exceed ${formatMinor(balanceMinorMax)}`);
    }
    const nowMs = this.#nowMs();
    const hold: Hold = { paymentId, username, kind, amountMinor, preparedAtMs: nowMs, expiresAtMs: nowMs + this.#options.holdTimeoutMs };
    this.#pending.holds.set(paymentId, hold);
    this.#adjustHeld(hold, amountMinor);
    await this.#durable(this.#changed());
    this.#logger.info({ paymentId, username, kind, amountMinor: amountMinor.toString() }, "voted yes: hold recorded");
    crashPoint("bank-after-hold");
  }

  /** Applies a prepared hold. Idempotent: a repeat returns the first result. */
  async commit(paymentId: string): Promise<bigint> {
    crashPoint("bank-before-commit");
    const done = this.#finishedOutcome(paymentId, "committed") ?? this.#pending.applying.get(paymentId);
    if (done !== undefined) {
      await this.#durable(this.#version);
      return done.replyBalanceMinor ?? 0n;
    }
    const hold = this.#pending.holds.get(paymentId);
    if (hold === undefined) throw new PaymentError("UNKNOWN_PAYMENT", `payment ${paymentId} is not prepared here`);
    const account = this.#account(hold.username);
    const afterMinor = hold.kind === "debit" ? account.balanceMinor - hold.amountMinor : account.balanceMinor + hold.amountMinor;
    this.#pending.holds.delete(paymentId);
    this.#adjustHeld(hold, -hold.amountMinor);
    this.#apply({ paymentId, balancesMinor: { [hold.username]: afterMinor }, replyBalanceMinor: afterMinor });
    await this.#durable(this.#changed());
    this.#logger.info({ paymentId, username: hold.username, kind: hold.kind }, "committed");
    return afterMinor;
  }

  /** Releases a hold, or records that the payment must never be prepared here. Idempotent. */
  async abort(paymentId: string): Promise<void> {
    if (this.#finishedOutcome(paymentId, "aborted") !== undefined) {
      await this.#durable(this.#version);
      return;
    }
    if (this.#pending.applying.has(paymentId)) throw new PaymentError("IDEMPOTENCY_CONFLICT", `cannot abort payment ${paymentId}: it is already committed here`);
    const hold = this.#pending.holds.get(paymentId);
    if (hold !== undefined) {
      this.#pending.holds.delete(paymentId);
      this.#adjustHeld(hold, -hold.amountMinor);
    }
    this.#recordFinished({ paymentId, outcome: "aborted", atMs: this.#nowMs(), replyBalanceMinor: null });
    await this.#durable(this.#changed());
    this.#logger.info({ paymentId }, hold !== undefined ? "aborted: hold released" : "aborted before any prepare: it will be refused");
  }

  /** A same-bank transfer in one local step. Idempotent by payment id. */
  async transfer(paymentId: string, fromUser: string, toUser: string, amountMinor: bigint): Promise<bigint> {
    const done = this.#finishedOutcome(paymentId, "committed") ?? this.#pending.applying.get(paymentId);
    if (done !== undefined) {
      await this.#durable(this.#version);
      return done.replyBalanceMinor ?? 0n;
    }
    if (this.#pending.holds.has(paymentId)) throw new PaymentError("IDEMPOTENCY_CONFLICT", `payment ${paymentId} is prepared here as a 2PC leg`);
    if (fromUser === toUser) throw new PaymentError("SELF_PAYMENT", "sender and receiver are the same account");
    const from = this.#account(fromUser);
    const to = this.#account(toUser);
    const availableMinor = from.balanceMinor - this.#held(fromUser, "debit");
    if (availableMinor < amountMinor) {
      throw new PaymentError("INSUFFICIENT_FUNDS", `insufficient funds: available ${formatMinor(availableMinor)}, needed ${formatMinor(amountMinor)}`);
    }
    if (to.balanceMinor + this.#held(toUser, "credit") + amountMinor > balanceMinorMax) {
      throw new PaymentError("BALANCE_LIMIT", `the payee's balance would exceed ${formatMinor(balanceMinorMax)}`);
    }
    const fromAfterMinor = from.balanceMinor - amountMinor;
    this.#apply({ paymentId, balancesMinor: { [fromUser]: fromAfterMinor, [toUser]: to.balanceMinor + amountMinor }, replyBalanceMinor: fromAfterMinor });
    await this.#durable(this.#changed());
    this.#logger.info({ paymentId, from: fromUser, to: toUser, amountMinor: amountMinor.toString() }, "same-bank transfer applied");
    return fromAfterMinor;
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

  /** Records a decided balance change in memory; the next write journals it, then applies it to the CSV. */
  #apply(applying: Applying): void {
    for (const [username, afterMinor] of Object.entries(applying.balancesMinor)) {
      assert(this.#accounts.has(username), `apply: unknown account ${username}`);
      assert(afterMinor >= 0n, `apply: balance of ${username} would be negative`);
      assert(afterMinor <= balanceMinorMax, `apply: balance of ${username} would exceed the limit`);
    }
    this.#pending.applying.set(applying.paymentId, applying);
    this.#setBalances(applying.balancesMinor);
  }

  #setBalances(balancesMinor: Record<string, bigint>): void {
    for (const [username, afterMinor] of Object.entries(balancesMinor)) {
      const account = this.#account(username);
      assert(afterMinor >= 0n, `balance of ${username} would be negative`);
      account.balanceMinor = afterMinor;
    }
  }

  #changed(): number {
    this.#version += 1;
    return this.#version;
  }

  /** Resolves once every change up to `version` is durable, starting a write if none is running. */
  #durable(version: number): Promise<void> {
    if (this.#broken !== null) return Promise.reject(this.#broken);
    if (this.#durableVersion >= version) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.#waiters.push({ version, resolve, reject });
      this.#writing ??= this.#writeLoop().finally(() => (this.#writing = null));
    });
  }

  async #writeLoop(): Promise<void> {
    while (this.#durableVersion < this.#version) {
      const snapshot = this.#snapshot();
      groupCommitBatchSize.observe({ file: "pending_transactions.json" }, this.#waiters.filter((waiter) => waiter.version <= snapshot.version).length);
      try {
        await this.#writeSnapshot(snapshot);
      } catch (error) {
        this.#broken = error;
        for (const waiter of this.#waiters) waiter.reject(error);
        this.#waiters = [];
        this.#options.onWriteFailure?.(error);
        return;
      }
      this.#durableVersion = snapshot.version;
      this.#retire(snapshot);
      const ready = this.#waiters.filter((waiter) => waiter.version <= snapshot.version);
      this.#waiters = this.#waiters.filter((waiter) => waiter.version > snapshot.version);
      for (const waiter of ready) waiter.resolve();
    }
  }

  /** A consistent copy of everything a write needs, taken in one synchronous step. */
  #snapshot(): Snapshot {
    const pending: BankPending = {
      holds: new Map([...this.#pending.holds].map(([id, hold]) => [id, { ...hold }])),
      applying: new Map(this.#pending.applying),
      finished: new Map(this.#pending.finished),
    };
    const accounts = pending.applying.size === 0 ? null : new Map([...this.#accounts].map(([username, account]) => [username, { ...account }]));
    return { version: this.#version, pending, accounts, retired: [] };
  }

  async #writeSnapshot(snapshot: Snapshot): Promise<void> {
    await writeBankPending(this.#options.pendingJsonPath, this.bank, snapshot.pending);
    holdsGauge.set(snapshot.pending.holds.size);
    if (snapshot.accounts === null) return;
    crashPoint("bank-after-commit-logged");
    await rewriteBankRows(this.#options.accountsCsvPath, this.bank, snapshot.accounts);
    crashPoint("bank-after-commit-csv");
    for (const applying of snapshot.pending.applying.values()) {
      const finished: Finished = { paymentId: applying.paymentId, outcome: "committed", atMs: this.#nowMs(), replyBalanceMinor: applying.replyBalanceMinor };
      snapshot.pending.finished.set(applying.paymentId, finished);
      snapshot.retired.push(finished);
    }
    snapshot.pending.applying.clear();
    this.#trimFinished(snapshot.pending.finished);
    await writeBankPending(this.#options.pendingJsonPath, this.bank, snapshot.pending);
  }

  /** In memory, the applied entries of a durable snapshot become finished records, as they are on disk. */
  #retire(snapshot: Snapshot): void {
    for (const finished of snapshot.retired) {
      if (this.#pending.applying.delete(finished.paymentId)) this.#recordFinished(finished);
    }
  }

  #recordFinished(finished: Finished): void {
    this.#pending.finished.delete(finished.paymentId);
    this.#pending.finished.set(finished.paymentId, finished);
    this.#trimFinished(this.#pending.finished);
  }

  /** Maps iterate in insertion order: the first entries are the oldest. */
  #trimFinished(finished: Map<string, Finished>): void {
    while (finished.size > this.#options.finishedRetainedMax) finished.delete(finished.keys().next().value as string);
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
