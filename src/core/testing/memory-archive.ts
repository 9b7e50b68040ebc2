// The gateway log's archive (PaymentArchive, gateway/store/file/payment-archive.ts) in memory, for the
// power-loss schedule of the gateway log, whose simulated disk SQLite cannot run on. It keeps SQLite's promise
// under synchronous = FULL: an insert is durable once it returns. It outlives the simulated power losses: the
// schedule makes one and gives each life of the gateway log a view of it (forLife), through which a life whose
// power went changes nothing, as a dead process's writes land nowhere. Test-only.
import { assert } from "../domain/assert.js";
import type { ArchivedCounts, ArchivedPayment, PaymentArchive } from "../gateway/store/file/payment-archive.js";

export interface MemoryArchiveOptions {
  /**
   * A deliberately broken archive, for proving that the schedule catches it: inserts are durable only at an
   * orderly close, and a power loss before it forgets them (as SQLite with synchronous = OFF may). Never
   * outside those tests.
   */
  unsafeVolatileInserts?: boolean;
}

export class MemoryArchive {
  readonly #durable = new Map<string, ArchivedPayment>();
  /** Inserts not yet durable (only with unsafeVolatileInserts). */
  #volatile = new Map<string, ArchivedPayment>();
  readonly #unsafeVolatileInserts: boolean;

  constructor(options: MemoryArchiveOptions = {}) {
    this.#unsafeVolatileInserts = options.unsafeVolatileInserts ?? false;
  }

  /**
   * The archive as one life of the gateway log sees it. A new life begins after the power went or after an
   * orderly close: only what was durable is left.
   */
  forLife(life: { readonly dead: boolean }): PaymentArchive {
    this.#volatile = new Map();
    let closed = false;
    // Arrow functions: `this` stays this archive inside the handle's methods.
    return {
      insertMany: (payments: readonly ArchivedPayment[]): number => {
        assert(!closed, "the archive is closed");
        // The process is gone: nothing it does lands, whatever it is told (it never reaches its next disk operation).
        if (life.dead) return payments.length;
        return this.#insertMany(payments);
      },
      lineOf: (paymentId: string): string | undefined => {
        assert(!closed, "the archive is closed");
        return this.#find(paymentId)?.line;
      },
      idsWithPrefix: (prefix: string, limit: number): string[] => {
        assert(!closed, "the archive is closed");
        const ids = new Set([...this.#durable.keys(), ...this.#volatile.keys()]);
        return [...ids]
          .filter((id) => id.startsWith(prefix))
          .sort()
          .slice(0, limit);
      },
      counts: (): ArchivedCounts => {
        assert(!closed, "the archive is closed");
        return this.#counts();
      },
      close: (): void => {
        closed = true;
        if (life.dead) return;
        for (const [paymentId, payment] of this.#volatile) this.#durable.set(paymentId, payment);
        this.#volatile = new Map();
      },
    };
  }

  #find(paymentId: string): ArchivedPayment | undefined {
    return this.#durable.get(paymentId) ?? this.#volatile.get(paymentId);
  }

  #insertMany(payments: readonly ArchivedPayment[]): number {
    let inserted = 0;
    for (const payment of payments) {
      if (this.#find(payment.paymentId) !== undefined) continue;
      (this.#unsafeVolatileInserts ? this.#volatile : this.#durable).set(payment.paymentId, payment);
      inserted += 1;
    }
    return inserted;
  }

  #counts(): ArchivedCounts {
    const counts = { committed: 0, aborted: 0 };
    for (const archived of [this.#durable, this.#volatile])
      for (const payment of archived.values()) counts[payment.committed ? "committed" : "aborted"] += 1;
    return counts;
  }
}
