// The coordinator's store in memory, for tests and the power-loss simulator (src/core/testing). Records live in
// a map, the "volatile" view every call sees at once; each write (a begin, an advance, a tombstone) goes to a
// simulated disk and is durable only when its flush completes, the writes of one turn sharing one flush (group
// commit). crash() is a power loss: it keeps the durable writes only, makes every pending and later call hang
// forever, and returns the image that fromImage() restarts from. Every record handed out is frozen.
import { assert } from "../../../domain/assert.js";
import {
  advancedRecord,
  beganRecord,
  isDecided,
  paymentStateRank,
  sameDetails,
  tombstoneRecord,
  type PaymentChange,
  type PaymentDetails,
  type PaymentRecord,
} from "../../../domain/payment.js";
import {
  SimulatedDisk,
  hangForever,
  type CrashOptions,
  type DiskEvent,
  type DiskImage,
} from "../../../testing/simulated-disk.js";
import { countsKey, type Begun, type CoordinatorStore, type PaymentCounts } from "../coordinator-store.js";

/** What the store's disk holds: every durable write (a whole record each), and a torn last one to drop. */
export type CoordinatorImage = DiskImage<PaymentRecord>;

export interface MemoryCoordinatorStoreOptions {
  nowMs?: () => number;
  /** A deliberately broken store whose writes resolve before they are durable (see SimulatedDisk). Tests only. */
  unsafeAckBeforeDurable?: boolean;
  /** Told of every write and flush, synchronously (a simulator counts them to choose its crash points). */
  onEvent?: (event: DiskEvent) => void;
}

export class MemoryCoordinatorStore implements CoordinatorStore {
  readonly #records = new Map<string, PaymentRecord>();
  readonly #disk: SimulatedDisk<PaymentRecord>;
  readonly #nowMs: () => number;
  #closed = false;

  constructor(options: MemoryCoordinatorStoreOptions = {}, image: CoordinatorImage = { items: [], torn: null }) {
    this.#nowMs = options.nowMs ?? Date.now;
    for (const record of image.items) this.#replay(record);
    // The torn write is dropped: it was cut short before its flush returned, so no reply depended on it.
    this.#disk = new SimulatedDisk(image.items, options);
  }

  /** A restart: a new store over what a crash left (its torn write dropped). */
  static fromImage(image: CoordinatorImage, options: MemoryCoordinatorStoreOptions = {}): MemoryCoordinatorStore {
    return new MemoryCoordinatorStore(options, image);
  }

  /** Power loss (see SimulatedDisk.crash): returns the durable image; this instance hangs from now on. */
  crash(options: CrashOptions = {}): CoordinatorImage {
    return this.#disk.crash(options);
  }

  get crashed(): boolean {
    return this.#disk.dead;
  }

  /** The durable image now, without a crash. */
  image(): CoordinatorImage {
    return { items: [...this.#disk.durableItems], torn: null };
  }

  /** Every record, as the volatile view has it. */
  records(): PaymentRecord[] {
    return [...this.#records.values()];
  }

  /** Resolves once every write so far is durable. */
  settled(): Promise<void> {
    return this.#disk.settled();
  }

  async beginOrGet(details: PaymentDetails): Promise<Begun> {
    const [begun] = await this.beginOrGetAll([details]);
    assert(begun !== undefined, "beginOrGetAll answers one Begun per payment");
    return begun;
  }

  async beginOrGetAll(details: readonly PaymentDetails[]): Promise<Begun[]> {
    if (this.#disk.dead) return hangForever();
    this.#refuseIfClosed();
    // One synchronous step: whoever calls first with an id creates it, and every later call finds it.
    const created: PaymentRecord[] = [];
    const answers: Array<{ created: boolean; record: PaymentRecord }> = details.map((one) => {
      const known = this.#records.get(one.paymentId);
      if (known !== undefined) return { created: false, record: known };
      const record = Object.freeze(beganRecord(one, this.#nowMs()));
      this.#records.set(record.paymentId, record);
      created.push(record);
      return { created: true, record };
    });
    const durable = created.length === 0 ? null : this.#disk.write(created);
    // A known record is handed out only once durable (the port's rule): an answer may rest on it.
    if (answers.some((answer) => !answer.created)) await this.#disk.settled();
    return answers.map(({ created: isNew, record }) =>
      isNew && durable !== null ? { created: true, record, durable } : { created: false, record },
    );
  }

  async advance(change: PaymentChange): Promise<PaymentRecord> {
    const [record] = await this.advanceAll([change]);
    assert(record !== undefined, "advanceAll answers one record per change");
    return record;
  }

  async advanceAll(changes: readonly PaymentChange[]): Promise<PaymentRecord[]> {
    if (this.#disk.dead) return hangForever();
    this.#refuseIfClosed();
    if (changes.length === 0) return [];
    const records = changes.map((change) => {
      const record = this.#records.get(change.paymentId);
      assert(record !== undefined, `advance: unknown payment ${change.paymentId}`);
      const next = Object.freeze(advancedRecord(record, change, this.#nowMs()));
      this.#records.set(next.paymentId, next);
      return next;
    });
    await this.#disk.write(records);
    return records;
  }

  async find(paymentId: string): Promise<PaymentRecord | undefined> {
    if (this.#disk.dead) return hangForever();
    this.#refuseIfClosed();
    const record = this.#records.get(paymentId);
    if (record !== undefined) await this.#disk.settled();
    return record;
  }

  async idsWithPrefix(prefix: string, limit: number): Promise<string[]> {
    this.#refuseIfClosed();
    return [...this.#records.keys()]
      .filter((id) => id.startsWith(prefix))
      .sort()
      .slice(0, limit);
  }

  async tombstone(paymentId: string): Promise<PaymentRecord> {
    if (this.#disk.dead) return hangForever();
    this.#refuseIfClosed();
    const known = this.#records.get(paymentId);
    if (known !== undefined) {
      await this.#disk.settled();
      return known;
    }
    const record = Object.freeze(tombstoneRecord(paymentId, this.#nowMs()));
    this.#records.set(paymentId, record);
    await this.#disk.write([record]);
    return record;
  }

  async unfinished(): Promise<PaymentRecord[]> {
    if (this.#disk.dead) return hangForever();
    this.#refuseIfClosed();
    return [...this.#records.values()].filter((record) => !record.finished);
  }

  async counts(): Promise<PaymentCounts> {
    if (this.#disk.dead) return hangForever();
    this.#refuseIfClosed();
    const counts: PaymentCounts = { preparing: 0, committing: 0, aborting: 0, committed: 0, aborted: 0 };
    for (const record of this.#records.values()) counts[countsKey(record)] += 1;
    return counts;
  }

  async close(): Promise<void> {
    if (this.#disk.dead) return hangForever();
    this.#refuseIfClosed();
    await this.#disk.settled();
    this.#closed = true;
  }

  /** Applies one durable write at a start, checking twice what the coordinator checked before writing it. */
  #replay(record: PaymentRecord): void {
    const known = this.#records.get(record.paymentId);
    if (known !== undefined) {
      assert(sameDetails(known, record), `payment ${record.paymentId}: a later write changes its details`);
      assert(
        paymentStateRank[record.state] >= paymentStateRank[known.state],
        `payment ${record.paymentId}: a later write moves it from ${known.state} back to ${record.state}`,
      );
      assert(
        !(isDecided(known.state) && record.state !== known.state),
        `payment ${record.paymentId}: a later write changes its decision`,
      );
      assert(!(known.finished && !record.finished), `payment ${record.paymentId}: a later write unfinishes it`);
    }
    this.#records.set(record.paymentId, Object.freeze({ ...record }));
  }

  #refuseIfClosed(): void {
    assert(!this.#closed, "the coordinator store is closed");
  }
}
