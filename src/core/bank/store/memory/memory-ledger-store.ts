// A bank's ledger store in memory, for tests and the power-loss simulator (src/core/testing). It is seeded with
// the bank's accounts; append() writes entries to a simulated disk, durable only when the flush of their turn
// completes (entries appended in one turn share it: group commit), and load() folds the durable entries over the
// seed as the file store replays its journal: absolute balances set again, holds added and removed, finished
// payments bounded by retainNewest with its watermark. crash() is a power loss: undurable entries are lost (a
// torn one too: the reader drops a partial last record), every later call hangs, and fromImage() restarts.
import { assert } from "../../../domain/assert.js";
import {
  finishedOf,
  holdOf,
  retainNewest,
  type Account,
  type Finished,
  type Hold,
  type LedgerEntry,
} from "../../../domain/ledger.js";
import {
  SimulatedDisk,
  hangForever,
  type CrashOptions,
  type DiskEvent,
  type DiskImage,
} from "../../../testing/simulated-disk.js";
import type { LedgerState, LedgerStore } from "../ledger-store.js";

/** What a bank's disk holds: its seed accounts, every durable entry, and a torn last one to drop. */
export interface LedgerImage extends DiskImage<LedgerEntry> {
  readonly accounts: ReadonlyMap<string, Readonly<Account>>;
}

export interface MemoryLedgerStoreOptions {
  /** Finished payments load() gives back, the newest (as the file store keeps its finished log). */
  finishedRetainedMax: number;
  /** A deliberately broken store whose appends resolve before they are durable (see SimulatedDisk). Tests only. */
  unsafeAckBeforeDurable?: boolean;
  /** Told of every append and flush, synchronously (a simulator counts them to choose its crash points). */
  onEvent?: (event: DiskEvent) => void;
}

export class MemoryLedgerStore implements LedgerStore {
  readonly #accounts: ReadonlyMap<string, Readonly<Account>>;
  readonly #disk: SimulatedDisk<LedgerEntry>;
  readonly #finishedRetainedMax: number;
  #loaded = false;
  #closed = false;

  constructor(
    accounts: ReadonlyMap<string, Readonly<Account>>,
    options: MemoryLedgerStoreOptions,
    entries: readonly LedgerEntry[] = [],
  ) {
    assert(
      Number.isSafeInteger(options.finishedRetainedMax) && options.finishedRetainedMax > 0,
      "finishedRetainedMax must be a positive integer",
    );
    this.#accounts = new Map([...accounts].map(([username, account]) => [username, Object.freeze({ ...account })]));
    this.#finishedRetainedMax = options.finishedRetainedMax;
    this.#disk = new SimulatedDisk(entries, options);
  }

  /** A restart: a new store over what a crash left (its torn entry dropped). */
  static fromImage(image: LedgerImage, options: MemoryLedgerStoreOptions): MemoryLedgerStore {
    return new MemoryLedgerStore(image.accounts, options, image.items);
  }

  /** Power loss (see SimulatedDisk.crash): returns the durable image; this instance hangs from now on. */
  crash(options: CrashOptions = {}): LedgerImage {
    const { items, torn } = this.#disk.crash(options);
    return { accounts: this.#accounts, items, torn };
  }

  get crashed(): boolean {
    return this.#disk.dead;
  }

  /** The durable image now, without a crash. */
  image(): LedgerImage {
    return { accounts: this.#accounts, items: [...this.#disk.durableItems], torn: null };
  }

  async load(): Promise<LedgerState> {
    if (this.#disk.dead) return hangForever();
    assert(!this.#loaded, "load() is called once");
    assert(this.#disk.undurableCount === 0, "load() comes before any append");
    this.#loaded = true;
    return foldLedger(this.image(), this.#finishedRetainedMax);
  }

  async append(entries: readonly LedgerEntry[]): Promise<void> {
    if (this.#disk.dead) return hangForever();
    assert(this.#loaded, "append() before load()");
    assert(!this.#closed, "the ledger store is closed");
    if (entries.length === 0) return this.#disk.settled();
    await this.#disk.write(entries.map(frozenEntry));
  }

  settled(): Promise<void> {
    return this.#disk.settled();
  }

  async close(): Promise<void> {
    if (this.#disk.dead) return hangForever();
    assert(!this.#closed, "the ledger store is closed");
    await this.#disk.settled();
    this.#closed = true;
  }
}

/**
 * The state the durable entries of `image` add up to over its seed accounts (its torn entry dropped), every
 * object a fresh one the caller may change. Checks again what the participant checked before appending.
 */
export function foldLedger(image: LedgerImage, finishedRetainedMax: number): LedgerState {
  const accounts = new Map<string, Account>(
    [...image.accounts].map(([username, account]) => [username, { ...account }]),
  );
  const holds = new Map<string, Hold>();
  const finished = new Map<string, Finished>();
  let transfersForgottenThroughMs = 0;
  for (const entry of image.items) {
    if (entry.op === "hold") {
      assert(accounts.has(entry.username), `hold ${entry.paymentId} names unknown account ${entry.username}`);
      assert(!holds.has(entry.paymentId), `payment ${entry.paymentId} is held twice`);
      holds.set(entry.paymentId, holdOf(entry));
      continue;
    }
    if (entry.op === "commit") {
      assert(
        entry.begunAtMs !== undefined || holds.has(entry.paymentId),
        `payment ${entry.paymentId} committed without a hold`,
      );
      for (const [username, afterMinor] of Object.entries(entry.balancesMinor)) {
        const account = accounts.get(username);
        assert(account !== undefined, `payment ${entry.paymentId} names unknown account ${username}`);
        assert(afterMinor >= 0n, `payment ${entry.paymentId} leaves ${username} negative`);
        account.balanceMinor = afterMinor;
      }
    }
    holds.delete(entry.paymentId);
    transfersForgottenThroughMs = retainNewest(
      finished,
      finishedOf(entry),
      finishedRetainedMax,
      transfersForgottenThroughMs,
    );
  }
  return { accounts, holds, finished, transfersForgottenThroughMs };
}

function frozenEntry(entry: LedgerEntry): LedgerEntry {
  if (entry.op === "commit")
    return Object.freeze({ ...entry, balancesMinor: Object.freeze({ ...entry.balancesMinor }) });
  return Object.freeze({ ...entry });
}
