// A disk that can lose power, under the memory stores (gateway/store/memory, bank/store/memory). It keeps an
// append-only list of items: an item written is "undurable" until its simulated fsync completes, then
// "durable". Group commit as the real stores do it: the items written in one turn of the event loop share one
// flush, which completes on a later macrotask (setImmediate), so a crash can fall between a write and its
// durability. A crash keeps only what is durable (plus, on request, a prefix the OS had written back, and a
// torn last item that a reader must drop) and makes the instance hang forever, as a dead process does.
import { assert } from "../domain/assert.js";

/**
 * What a store tells its observer, synchronously: an item was written (undurable), a flush is starting (its
 * items still undurable: the power may go during the fsync), a flush has completed (durable, nobody told yet).
 */
export type DiskEvent = "write" | "sync-start" | "synced";

export interface DiskOptions {
  /**
   * A deliberately broken disk: a write's promise resolves at once, before its flush (a dropped
   * fsync-before-reply). The flush still happens later; a crash before it loses what was acknowledged.
   * Only for proving that the power-loss simulator catches such a bug.
   */
  unsafeAckBeforeDurable?: boolean;
  /** Told of every write and flush, synchronously; it may crash the disk from inside (see crash()). */
  onEvent?: (event: DiskEvent) => void;
}

export interface CrashOptions {
  /** The first undurable item after the kept ones was half written: the image holds it as `torn`. */
  tear?: boolean;
  /** How many undurable items the OS had written back anyway before the power went (default none). */
  keep?: number;
}

/** What a power loss leaves on the disk. */
export interface DiskImage<T> {
  /** Every durable item, in the order written. */
  readonly items: readonly T[];
  /** A half-written item after them, which a reader must drop; null when the last write was whole. */
  readonly torn: T | null;
}

/** A promise that never settles: what a call on a dead process gets. */
export function hangForever<T>(): Promise<T> {
  return new Promise<T>(() => undefined);
}

interface Flush {
  promise: Promise<void>;
  resolve: () => void;
}

export class SimulatedDisk<T> {
  readonly #durable: T[];
  #undurable: T[] = [];
  /** The flush that will carry the undurable items, scheduled at the first write after the last flush. */
  #next: Flush | null = null;
  #dead = false;
  readonly #unsafeAckBeforeDurable: boolean;
  readonly #onEvent: (event: DiskEvent) => void;

  constructor(durable: readonly T[], options: DiskOptions = {}) {
    this.#durable = [...durable];
    this.#unsafeAckBeforeDurable = options.unsafeAckBeforeDurable ?? false;
    this.#onEvent = options.onEvent ?? (() => undefined);
  }

  get dead(): boolean {
    return this.#dead;
  }

  /** The durable items so far (the image a crash now would leave, without tearing or keeping). */
  get durableItems(): readonly T[] {
    return this.#durable;
  }

  get undurableCount(): number {
    return this.#undurable.length;
  }

  /** Writes `items` (visible to the caller's memory at once); resolves once they are durable. */
  write(items: readonly T[]): Promise<void> {
    if (this.#dead) return hangForever();
    assert(items.length > 0, "a write carries at least one item");
    for (const item of items) this.#undurable.push(item);
    const flush = this.#schedule();
    this.#onEvent("write");
    if (this.#dead) return hangForever();
    return this.#unsafeAckBeforeDurable ? Promise.resolve() : flush.promise;
  }

  /** Resolves once every item written so far is durable (at once when nothing is on its way). */
  settled(): Promise<void> {
    if (this.#dead) return hangForever();
    if (this.#next === null || this.#unsafeAckBeforeDurable) return Promise.resolve();
    return this.#next.promise;
  }

  /**
   * Power loss: every undurable item is lost (but the first `keep`), and every pending and later call on this
   * disk hangs forever. Returns what the disk holds.
   */
  crash(options: CrashOptions = {}): DiskImage<T> {
    assert(!this.#dead, "a disk loses power once");
    this.#dead = true;
    const keep = Math.min(options.keep ?? 0, this.#undurable.length);
    assert(keep >= 0, "crash: keep must not be negative");
    const items = [...this.#durable, ...this.#undurable.slice(0, keep)];
    const torn = options.tear === true ? (this.#undurable[keep] ?? null) : null;
    this.#undurable = [];
    this.#next = null;
    return { items, torn };
  }

  #schedule(): Flush {
    if (this.#next !== null) return this.#next;
    let resolve: () => void = () => undefined;
    const promise = new Promise<void>((settle) => (resolve = settle));
    const flush = { promise, resolve };
    this.#next = flush;
    setImmediate(() => this.#flush(flush));
    return flush;
  }

  #flush(flush: Flush): void {
    if (this.#dead || this.#next !== flush) return;
    this.#onEvent("sync-start");
    if (this.#dead) return;
    // Writes made from inside the event (none today) would join this flush: it has not taken its items yet.
    this.#next = null;
    for (const item of this.#undurable) this.#durable.push(item);
    this.#undurable = [];
    this.#onEvent("synced");
    if (this.#dead) return;
    flush.resolve();
  }
}
