// Coalesces the gateway's 2PC legs bound for one bank into batch RPCs: a leg that arrives while
// `inFlightMax` batches are already on the wire waits for the next one, which carries up to `legsMax` legs.
// While the line is busy (the last call carried more than one leg), a batch that is not full also waits
// `lingerMs` for more. Under light load a leg goes out alone at once; under heavy load many legs share one
// round trip.
import { assert } from "../domain/assert.js";
import { PaymentError } from "../domain/errors.js";

export interface BatcherOptions {
  legsMax: number;
  inFlightMax: number;
  /**
   * How long a batch that is not full waits for more legs before it goes, while the line is busy: the
   * previous call carried more than one leg (0 or absent: never). A lone leg on a quiet line goes at once.
   */
  lingerMs?: number;
}

/** Legs submitted together (one payment's leg, or a MakePayments call's legs for this bank): one promise for all. */
class Group<Result> {
  readonly results: Array<Result | PaymentError>;
  #remaining: number;
  readonly #resolve: (results: Array<Result | PaymentError>) => void;

  constructor(size: number, resolve: (results: Array<Result | PaymentError>) => void) {
    this.results = new Array<Result | PaymentError>(size);
    this.#remaining = size;
    this.#resolve = resolve;
  }

  deliver(index: number, result: Result | PaymentError): void {
    this.results[index] = result;
    this.#remaining -= 1;
    assert(this.#remaining >= 0, "a leg answered twice");
    if (this.#remaining === 0) this.#resolve(this.results);
  }
}

interface Waiting<Leg, Result> {
  leg: Leg;
  timeoutMs: number;
  group: Group<Result>;
  index: number;
}

/** Sends one batch; resolves with one result or one error per leg, in order. */
export type SendBatch<Leg, Result> = (legs: Leg[], timeoutMs: number) => Promise<Array<Result | PaymentError>>;

export class LegBatcher<Leg, Result> {
  readonly #send: SendBatch<Leg, Result>;
  readonly #options: BatcherOptions;
  #queue: Array<Waiting<Leg, Result>> = [];
  #inFlight = 0;
  #previousBatchLegs = 0;
  /** Set while a batch that is not full waits for more legs. */
  #lingerTimer: NodeJS.Timeout | null = null;
  /** The wait is over: the next batch goes with what is queued. */
  #lingered = false;

  constructor(send: SendBatch<Leg, Result>, options: BatcherOptions) {
    assert(options.legsMax >= 1 && options.inFlightMax >= 1, "batch bounds must be positive");
    assert((options.lingerMs ?? 0) >= 0, "the linger time must not be negative");
    this.#send = send;
    this.#options = options;
  }

  async submit(leg: Leg, timeoutMs: number): Promise<Result> {
    const [result] = await this.submitAll([leg], timeoutMs);
    if (result instanceof PaymentError) throw result;
    return result!;
  }

  /** Every leg's result or refusal, in order; never rejects (a failed call is each of its legs' error). */
  submitAll(legs: readonly Leg[], timeoutMs: number): Promise<Array<Result | PaymentError>> {
    if (legs.length === 0) return Promise.resolve([]);
    return new Promise((resolve) => {
      const group = new Group<Result>(legs.length, resolve);
      for (let index = 0; index < legs.length; index += 1)
        this.#queue.push({ leg: legs[index]!, timeoutMs, group, index });
      this.#pump();
    });
  }

  #pump(): void {
    while (this.#inFlight < this.#options.inFlightMax && this.#queue.length > 0) {
      if (this.#queue.length < this.#options.legsMax && this.#waitsForMoreLegs()) return;
      this.#stopLingering();
      const batch = this.#queue.splice(0, this.#options.legsMax);
      this.#previousBatchLegs = batch.length;
      this.#inFlight += 1;
      // The batch's deadline is its most patient leg's: every leg shares the round trip.
      let timeoutMs = 0;
      for (const waiting of batch) timeoutMs = Math.max(timeoutMs, waiting.timeoutMs);
      this.#send(
        batch.map((waiting) => waiting.leg),
        timeoutMs,
      )
        .then(
          (results) => {
            assert(results.length === batch.length, `a batch of ${batch.length} legs got ${results.length} results`);
            for (let index = 0; index < batch.length; index += 1)
              batch[index]!.group.deliver(batch[index]!.index, results[index]!);
          },
          (thrown: unknown) => {
            const error = PaymentError.fromGrpc(thrown);
            for (const waiting of batch) waiting.group.deliver(waiting.index, error);
          },
        )
        .finally(() => {
          this.#inFlight -= 1;
          this.#pump();
        });
    }
  }

  /** Whether the next batch, not full, waits for more legs; starts the wait when the line is busy. */
  #waitsForMoreLegs(): boolean {
    if (this.#lingerTimer !== null) return true;
    const lingerMs = this.#options.lingerMs ?? 0;
    if (this.#lingered || lingerMs === 0 || this.#previousBatchLegs <= 1) return false;
    this.#lingerTimer = setTimeout(() => {
      this.#lingerTimer = null;
      this.#lingered = true;
      this.#pump();
    }, lingerMs);
    return true;
  }

  #stopLingering(): void {
    if (this.#lingerTimer !== null) clearTimeout(this.#lingerTimer);
    this.#lingerTimer = null;
    this.#lingered = false;
  }
}
