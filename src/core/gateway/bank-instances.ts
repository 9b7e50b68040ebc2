// The live processes ("instances") of one bank, as one link: several `paynet bank --id B --multi-instance` on
// one PostgreSQL schema each register with their own address. Calls go round robin over the instances heard
// from lately; a call (or a batch's legs) that fails for want of an answer (UNAVAILABLE, deadline) is sent
// again to the next instance. That is safe because every leg is idempotent by its payment id, at any instance
// of the bank (the shared ledger serializes one id's operations in the database). A bank of one process is
// the case of one instance: nothing to fail over to, and the calls behave as before.
import { PaymentError, isAmbiguous } from "../domain/errors.js";
import type { BankLink, PrepareLeg } from "./bank-link.js";

/** What one instance can be asked; bank-registry.ts builds it over a gRPC client. */
export interface InstanceCalls extends BankLink {
  holds(timeoutMs: number): Promise<Array<{ paymentId: string; preparedAtMs: number }>>;
  authenticate(username: string, password: string, timeoutMs: number): Promise<void>;
  balance(username: string, timeoutMs: number): Promise<{ balanceMinor: bigint; availableMinor: bigint }>;
}

export interface Instance {
  address: string;
  calls: InstanceCalls;
  /** When it last registered with this process (0: only restored from banks.json). */
  lastSeenMs: number;
  /** After a call found it unreachable: skipped by the round robin until then, while another is live. */
  avoidUntilMs: number;
  close(): void;
}

export const instanceBounds = Object.freeze({
  /** Instances of one bank a gateway keeps: a registration beyond it is refused. */
  instancesMax: 8,
  /**
   * An instance not heard from for this long is dropped (at the next registration of its bank) while another
   * of its instances is heard from: three of the banks' 2 s heartbeats missed.
   */
  silenceMsMax: 6_000,
  /** How long an instance that did not answer is passed over, before it is tried again. */
  avoidMs: 1_000,
});

/** A failure that says nothing of the bank's answer: another instance may give it. */
function failsOver(result: unknown): boolean {
  return result instanceof PaymentError && isAmbiguous(result);
}

export class BankInstances implements InstanceCalls {
  readonly bank: string;
  readonly #instances: Instance[] = [];
  readonly #nowMs: () => number;
  #next = 0;

  constructor(bank: string, nowMs: () => number) {
    this.bank = bank;
    this.#nowMs = nowMs;
  }

  list(): readonly Instance[] {
    return this.#instances;
  }

  find(address: string): Instance | undefined {
    return this.#instances.find((instance) => instance.address === address);
  }

  /** Adds an instance (the caller checked the bound); the silent ones are dropped if it was heard from. */
  add(instance: Instance): void {
    this.#instances.push(instance);
    this.dropSilent();
  }

  /** Drops the instances not heard from for silenceMsMax while another was heard from since; returns how many. */
  dropSilent(): number {
    const nowMs = this.#nowMs();
    const heard = (instance: Instance) =>
      instance.lastSeenMs > 0 && nowMs - instance.lastSeenMs <= instanceBounds.silenceMsMax;
    if (!this.#instances.some(heard)) return 0;
    let dropped = 0;
    for (let index = this.#instances.length - 1; index >= 0; index -= 1) {
      const instance = this.#instances[index]!;
      if (heard(instance)) continue;
      instance.close();
      this.#instances.splice(index, 1);
      dropped += 1;
    }
    return dropped;
  }

  close(): void {
    for (const instance of this.#instances) instance.close();
    this.#instances.length = 0;
  }

  prepareAll(legs: readonly PrepareLeg[], timeoutMs: number): Promise<Array<PaymentError | null>> {
    return this.#legs(legs, (calls, some) => calls.prepareAll(some, timeoutMs));
  }

  commitAll(paymentIds: readonly string[], timeoutMs: number): Promise<Array<bigint | PaymentError>> {
    return this.#legs(paymentIds, (calls, some) => calls.commitAll(some, timeoutMs));
  }

  abortAll(paymentIds: readonly string[], timeoutMs: number): Promise<Array<PaymentError | null>> {
    return this.#legs(paymentIds, (calls, some) => calls.abortAll(some, timeoutMs));
  }

  transfer(
    paymentId: string,
    fromUser: string,
    toUser: string,
    amountMinor: bigint,
    begunAtMs: number,
    timeoutMs: number,
  ): Promise<bigint> {
    return this.#call((calls) => calls.transfer(paymentId, fromUser, toUser, amountMinor, begunAtMs, timeoutMs));
  }

  settleTransfer(paymentId: string, begunAtMs: number, timeoutMs: number): Promise<void> {
    return this.#call((calls) => calls.settleTransfer(paymentId, begunAtMs, timeoutMs));
  }

  holds(timeoutMs: number): Promise<Array<{ paymentId: string; preparedAtMs: number }>> {
    return this.#call((calls) => calls.holds(timeoutMs));
  }

  authenticate(username: string, password: string, timeoutMs: number): Promise<void> {
    return this.#call((calls) => calls.authenticate(username, password, timeoutMs));
  }

  balance(username: string, timeoutMs: number): Promise<{ balanceMinor: bigint; availableMinor: bigint }> {
    return this.#call((calls) => calls.balance(username, timeoutMs));
  }

  /**
   * The next instance in turn that was not tried yet, preferring those heard from lately and not passed over;
   * null once every instance was tried. Each instance is tried at most once per call: the retries are bounded
   * by instancesMax, and so is the time (each attempt its own deadline).
   */
  #pick(tried: ReadonlySet<Instance>): Instance | null {
    const nowMs = this.#nowMs();
    const candidates = this.#instances.filter((instance) => !tried.has(instance));
    if (candidates.length === 0) return null;
    const fresh = candidates.filter(
      (instance) => instance.avoidUntilMs <= nowMs && nowMs - instance.lastSeenMs <= instanceBounds.silenceMsMax,
    );
    const pool = fresh.length > 0 ? fresh : candidates;
    this.#next = (this.#next + 1) % Number.MAX_SAFE_INTEGER;
    return pool[this.#next % pool.length]!;
  }

  #avoid(instance: Instance): void {
    instance.avoidUntilMs = this.#nowMs() + instanceBounds.avoidMs;
  }

  async #call<T>(call: (calls: InstanceCalls) => Promise<T>): Promise<T> {
    const tried = new Set<Instance>();
    for (let instance = this.#pick(tried); ;) {
      if (instance === null) throw new PaymentError("BANK_UNAVAILABLE", `bank ${this.bank}: no instance registered`);
      try {
        return await call(instance.calls);
      } catch (error) {
        const failure = PaymentError.fromGrpc(error);
        if (!failsOver(failure)) throw failure;
        this.#avoid(instance);
        tried.add(instance);
        instance = this.#pick(tried);
        if (instance === null) throw failure;
      }
    }
  }

  /** The legs at one instance, and those that got no answer there at the next, until each has one or all were tried. */
  async #legs<Leg, Result>(
    legs: readonly Leg[],
    send: (calls: InstanceCalls, legs: Leg[]) => Promise<Array<Result | PaymentError>>,
  ): Promise<Array<Result | PaymentError>> {
    const results = new Array<Result | PaymentError>(legs.length);
    let pending = legs.map((_, index) => index);
    const tried = new Set<Instance>();
    while (pending.length > 0) {
      const instance = this.#pick(tried);
      if (instance === null) {
        if (tried.size === 0)
          for (const index of pending)
            results[index] = new PaymentError("BANK_UNAVAILABLE", `bank ${this.bank}: no instance registered`);
        break;
      }
      tried.add(instance);
      const answered = await send(
        instance.calls,
        pending.map((index) => legs[index]!),
      );
      const unanswered: number[] = [];
      answered.forEach((result, position) => {
        results[pending[position]!] = result;
        if (failsOver(result)) unanswered.push(pending[position]!);
      });
      if (unanswered.length > 0) this.#avoid(instance);
      pending = unanswered;
    }
    return results;
  }
}
