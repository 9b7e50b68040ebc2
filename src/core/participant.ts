// A bank: its accounts and its side of two-phase commit.
//
// Every operation checks and changes the in-memory state in one synchronous step, then waits until a write
// of the pending file covering that change is durable before it answers (group commit: changes that
// arrive while a write is in flight share the next one). A balance change is written in this order:
//   1. pending file: an `applying` entry with the absolute after-balances   (the commit point; then the reply)
//   2. accounts CSV, at the next checkpoint (soon after, once for many changes), from durable balances only
//   3. pending file: the checkpointed `applying` entries become `finished` records, with the next write
// A crash anywhere redoes the `applying` entries still in the file, in order, by writing the same absolute
// balances again: nothing is applied twice, and the CSV never holds a balance that is not already durable.
import { assert } from "./assert.js";
import { PaymentError } from "./errors.js";
import { balanceMinorMax, formatMinor } from "./money.js";
import { crashPoint } from "./crash.js";
import { hashPassword, isPasswordHash, verifyPassword } from "./passwords.js";
import { loadBankAccounts, rewriteBankRows, type BankAccount } from "./accounts-csv.js";
import { silentLogger, type Logger } from "./log.js";
import { groupCommitBatchSize, holdsGauge } from "./metrics.js";
import { FinishedLog } from "./finished-log.js";
import { readBankPending, writeBankPending, type Applying, type BankPending, type Hold, type LegKind, type Finished } from "./pending-file.js";

export interface ParticipantOptions {
  bank: string;
  accountsCsvPath: string;
  pendingJsonPath: string;
  /** This bank's finished payments (see finished-log.ts). */
  finishedLogPath: string;
  /** How long a prepared hold waits for the decision before the bank asks the coordinator. */
  holdTimeoutMs: number;
  /** Finished payments remembered to answer repeated Commit/Abort/Transaction calls. */
  finishedRetainedMax: number;
  nowMs?: () => number;
  logger?: Logger;
  /** Called when a durable write fails: memory is then ahead of disk, and the process must stop. */
  onWriteFailure?: (error: unknown) => void;
  /** How soon after a durable balance change the accounts CSV is rewritten (one rewrite covers many). */
  csvCheckpointDelayMs?: number;
}

const csvCheckpointDelayMsDefault = 50;

export interface BalanceView {
  balanceMinor: bigint;
  availableMinor: bigint;
}

interface Snapshot {
  version: number;
  /** Holds and applying entries; the pending file carries no finished records (they have their own log). */
  pending: BankPending;
  finished: Finished[];
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
  /** Each account's balance as the pending file makes durable (what a CSV checkpoint may write). */
  readonly #durableBalances = new Map<string, bigint>();
  /** Applying entries durable in the pending file, in order, not yet in the CSV. */
  #toCheckpoint: Applying[] = [];
  #checkpointTimer: NodeJS.Timeout | null = null;
  #checkpointing: Promise<void> | null = null;
  readonly #finishedLog: FinishedLog;
  /** Finished records made since the last write began. */
  #unwrittenFinished: Finished[] = [];

  private constructor(options: ParticipantOptions, accounts: Map<string, BankAccount>, pending: BankPending, finishedLog: FinishedLog) {
    this.bank = options.bank;
    this.#finishedLog = finishedLog;
    this.#options = options;
    this.#accounts = accounts;
    this.#pending = pending;
    this.#nowMs = options.nowMs ?? Date.now;
    this.#logger = options.logger ?? silentLogger;
    for (const hold of pending.holds.values()) this.#adjustHeld(hold, hold.amountMinor);
    for (const [username, account] of accounts) this.#durableBalances.set(username, account.balanceMinor);
    holdsGauge.set(pending.holds.size);
  }

  /** Loads the bank's rows and pending state, migrating plaintext passwords and redoing interrupted changes. */
  static async open(options: ParticipantOptions): Promise<Participant> {
    const accounts = await loadBankAccounts(options.accountsCsvPath, options.bank, hashPassword, isPasswordHash);
    const pending = await readBankPending(options.pendingJsonPath, options.bank);
    const { log, records } = await FinishedLog.open(options.finishedLogPath, options.finishedRetainedMax);
    // Finished records found in the pending file (its earlier format) count as well; the log's are newer.
    for (const finished of records) {
      pending.finished.delete(finished.paymentId);
      pending.finished.set(finished.paymentId, finished);
    }
    for (const [paymentId, finished] of pending.finished) if (finished.outcome === "aborted") pending.holds.delete(paymentId);
    const participant = new Participant(options, accounts, pending, log);
    participant.#unwrittenFinished = [...pending.finished.values()].filter((finished) => !records.includes(finished));
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
      for (const [username, afterMinor] of Object.entries(applying.balancesMinor)) this.#durableBalances.set(username, afterMinor);
      this.#toCheckpoint.push(applying);
    }
    await this.#runCheckpoint();
    await this.#durable(this.#changed());
  }

  /** Writes the durable balances to the CSV now, e.g. before an orderly stop. */
  async flushCheckpoint(): Promise<void> {
    await this.#writing;
    if (this.#checkpointTimer !== null) clearTimeout(this.#checkpointTimer);
    this.#checkpointTimer = null;
    await this.#runCheckpoint();
    if (this.#durableVersion < this.#version) await this.#durable(this.#version);
  }

  /** An orderly stop: everything durable and checkpointed. */
  async close(): Promise<void> {
    await this.flushCheckpoint();
  }

  get accountCount(): number {
    return this.#accounts.size;
  }

  holds(): Hold[] {
    return [...this.#pending.holds.values()];
  }

  /** The finished payments remembered to answer repeats, oldest first. */
  finishedIds(): string[] {
    return [...this.#pending.finished.keys()];
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
    if (finished?.outcome === "committed" || this.#pending.applying.has(paymentId) || existing !== undefined) {
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
      this.#noteDurableApplying(snapshot);
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
      finished: new Map(),
    };
    const finished = this.#unwrittenFinished;
    this.#unwrittenFinished = [];
    return { version: this.#version, pending, finished };
  }

  async #writeSnapshot(snapshot: Snapshot): Promise<void> {
    // Finished records first: an abort's tombstone is on disk before its hold leaves the pending file.
    await this.#finishedLog.append(snapshot.finished, () => this.#pending.finished.values());
    await writeBankPending(this.#options.pendingJsonPath, this.bank, snapshot.pending);
    holdsGauge.set(snapshot.pending.holds.size);
    if (snapshot.pending.applying.size > 0) crashPoint("bank-after-commit-logged");
  }

  /** The applying entries of a durable snapshot: their balances may now reach the CSV. */
  #noteDurableApplying(snapshot: Snapshot): void {
    const known = new Set(this.#toCheckpoint.map((applying) => applying.paymentId));
    let added = false;
    for (const applying of snapshot.pending.applying.values()) {
      if (known.has(applying.paymentId) || !this.#pending.applying.has(applying.paymentId)) continue;
      for (const [username, afterMinor] of Object.entries(applying.balancesMinor)) this.#durableBalances.set(username, afterMinor);
      this.#toCheckpoint.push(applying);
      added = true;
    }
    if (added && this.#checkpointTimer === null) {
      this.#checkpointTimer = setTimeout(() => {
        this.#checkpointTimer = null;
        void this.#runCheckpoint();
      }, this.#options.csvCheckpointDelayMs ?? csvCheckpointDelayMsDefault);
    }
  }

  /**
   * Checkpoints run one after another, never side by side: two at once would race for the CSV's lock,
   * and the older could write its balances last, over the newer ones.
   */
  #runCheckpoint(): Promise<void> {
    const next = (this.#checkpointing ?? Promise.resolve()).then(() => this.#checkpoint());
    this.#checkpointing = next;
    void next.finally(() => {
      if (this.#checkpointing === next) this.#checkpointing = null;
    });
    return next;
  }

  /**
   * Rewrites this bank's CSV rows from durable balances, then turns the checkpointed applying entries into
   * finished records (persisted by the next pending write; until then, redoing them is harmless).
   */
  async #checkpoint(): Promise<void> {
    const batch = this.#toCheckpoint;
    if (batch.length === 0) return;
    this.#toCheckpoint = [];
    const rows = new Map([...this.#accounts].map(([username, account]) => [username, { password: account.password, balanceMinor: this.#durableBalances.get(username) ?? account.balanceMinor }]));
    try {
      await rewriteBankRows(this.#options.accountsCsvPath, this.bank, rows);
    } catch (error) {
      this.#broken = error;
      this.#options.onWriteFailure?.(error);
      return;
    }
    crashPoint("bank-after-commit-csv");
    const atMs = this.#nowMs();
    for (const applying of batch) {
      if (this.#pending.applying.delete(applying.paymentId)) {
        this.#recordFinished({ paymentId: applying.paymentId, outcome: "committed", atMs, replyBalanceMinor: applying.replyBalanceMinor });
      }
    }
    void this.#durable(this.#changed()).catch(() => undefined);
  }

  #recordFinished(finished: Finished): void {
    this.#pending.finished.delete(finished.paymentId);
    this.#pending.finished.set(finished.paymentId, finished);
    this.#unwrittenFinished.push(finished);
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
