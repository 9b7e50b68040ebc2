// Coalesces the gateway's 2PC legs bound for one bank into batch RPCs: a leg that arrives while
// `inFlightMax` batches are already on the wire waits for the next one, which carries up to `legsMax` legs.
// Under light load a leg goes out alone at once; under heavy load many legs share one round trip.
import { assert } from "./assert.js";
import { PaymentError } from "./errors.js";

export interface BatcherOptions {
  legsMax: number;
  inFlightMax: number;
}

interface Waiting<Leg, Result> {
  leg: Leg;
  timeoutMs: number;
  resolve: (result: Result) => void;
  reject: (error: PaymentError) => void;
}

/** Sends one batch; resolves with one result or one error per leg, in order. */
export type SendBatch<Leg, Result> = (legs: Leg[], timeoutMs: number) => Promise<Array<Result | PaymentError>>;

export class LegBatcher<Leg, Result> {
  readonly #send: SendBatch<Leg, Result>;
  readonly #options: BatcherOptions;
  #queue: Array<Waiting<Leg, Result>> = [];
  #inFlight = 0;

  constructor(send: SendBatch<Leg, Result>, options: BatcherOptions) {
    assert(options.legsMax >= 1 && options.inFlightMax >= 1, "batch bounds must be positive");
    this.#send = send;
    this.#options = options;
  }

  submit(leg: Leg, timeoutMs: number): Promise<Result> {
    return new Promise((resolve, reject) => {
      this.#queue.push({ leg, timeoutMs, resolve, reject });
      this.#pump();
    });
  }

  #pump(): void {
    while (this.#inFlight < this.#options.inFlightMax && this.#queue.length > 0) {
      const batch = this.#queue.splice(0, this.#options.legsMax);
      this.#inFlight += 1;
      // The batch's deadline is its most patient leg's: every leg shares the round trip.
      const timeoutMs = Math.max(...batch.map((waiting) => waiting.timeoutMs));
      this.#send(
        batch.map((waiting) => waiting.leg),
        timeoutMs,
      ).then(
        (results) => {
          assert(results.length === batch.length, `a batch of ${batch.length} legs got ${results.length} results`);
          batch.forEach((waiting, index) => {
            const result = results[index]!;
            if (result instanceof PaymentError) waiting.reject(result);
            else waiting.resolve(result);
          });
        },
        (thrown: unknown) => {
          const error = PaymentError.fromGrpc(thrown);
          for (const waiting of batch) waiting.reject(error);
        },
      ).finally(() => {
        this.#inFlight -= 1;
        this.#pump();
      });
    }
  }
}
