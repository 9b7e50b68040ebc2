// A simulated disk (simulated-file-system.ts) that loses power at a seeded operation: the schedules of the
// file adapters (file-store-schedules.ts) arm it with "the Nth operation from now", and when that operation
// starts, the disk in use dies and `current` becomes what a restart finds, with a seeded part of each file's
// unsynced appends written back (none, some, a torn line, or all). Test-only.
import type { Prng } from "./prng.js";
import { SimulatedFileSystem } from "./simulated-file-system.js";

/** One seeded schedule of a store on a PowerLossDisk. */
export interface StoreScheduleResult {
  seed: number;
  /** What broke the store's promise (empty: the schedule holds). */
  failures: string[];
  stats: { lives: number; powerLosses: number; records: number };
}

export interface StoreScheduleOptions {
  /** A deliberately broken disk: fsyncs of files (and directories) whose path matches do nothing. */
  unsafeSkipSyncOf?: RegExp;
}

/** Waits `count` turns of the event loop (a schedule's gap between two calls). */
export async function turns(count: number): Promise<void> {
  for (let turn = 0; turn < count; turn += 1) await new Promise((resolve) => setImmediate(resolve));
}

export class PowerLossDisk {
  current: SimulatedFileSystem;
  crashes = 0;
  readonly #prng: Prng;
  readonly #unsafeSkipSyncOf: RegExp | undefined;
  #operations = 0;
  #crashAt = Number.POSITIVE_INFINITY;

  constructor(prng: Prng, options: { unsafeSkipSyncOf?: RegExp } = {}) {
    this.#prng = prng;
    this.#unsafeSkipSyncOf = options.unsafeSkipSyncOf;
    this.current = this.#newDisk();
  }

  /** The power goes when the `operations`-th operation from now starts (never: Infinity). */
  arm(operations: number): void {
    this.#operations = 0;
    this.#crashAt = operations;
  }

  /** Keeps the power on until rearm(); returns how many operations were left before the power would go. */
  disarm(): number {
    const left = this.#crashAt - this.#operations;
    this.#crashAt = Number.POSITIVE_INFINITY;
    return left;
  }

  /** Arms again with what disarm() returned. */
  rearm(operationsLeft: number): void {
    this.arm(operationsLeft);
  }

  /** The power goes now. */
  powerLoss(): void {
    this.crashes += 1;
    this.#crashAt = Number.POSITIVE_INFINITY;
    this.current = this.current.crash(
      { writtenBack: (_path, unsyncedBytes) => this.#writtenBack(unsyncedBytes) },
      this.#options(),
    );
  }

  #writtenBack(unsyncedBytes: number): number {
    const choice = this.#prng.weighted({ none: 4, some: 3, all: 2 });
    if (choice === "none") return 0;
    return choice === "all" ? unsyncedBytes : this.#prng.int(0, unsyncedBytes);
  }

  #newDisk(): SimulatedFileSystem {
    return new SimulatedFileSystem(this.#options());
  }

  #options() {
    return {
      onOperation: () => {
        this.#operations += 1;
        if (this.#operations >= this.#crashAt) this.powerLoss();
      },
      ...(this.#unsafeSkipSyncOf === undefined ? {} : { unsafeSkipSyncOf: this.#unsafeSkipSyncOf }),
    };
  }
}
