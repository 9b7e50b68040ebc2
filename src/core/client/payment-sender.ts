// The client's side of a payment's life. A payment is written to the offline queue (with its id) before
// anything is sent, and leaves the queue only with a final answer, which goes to the history. An unknown
// outcome keeps it queued; sending it again reuses the same id, so the gateway never applies it twice.
import { crashPoint } from "../faults/crash.js";
import { PaymentError, isAmbiguous, type Reason } from "../domain/errors.js";
import { CertificateError } from "../transport/certificate-error.js";
import type { GatewayClient } from "./gateway-client.js";
import type { HistoryEntry, OfflineQueue, PaymentHistory, QueuedPayment } from "./client-files.js";

export type SendOutcome =
  | { status: "committed"; payment: QueuedPayment; balanceAfterMinor: bigint | null }
  | { status: "aborted"; payment: QueuedPayment; reason: Reason; message: string }
  | { status: "queued"; payment: QueuedPayment; reason: Reason; message: string };

export interface RetryPolicy {
  attemptsMax: number;
  delayMinMs: number;
  delayMaxMs: number;
}

/** Refusals that say nothing about the payment itself: it stays queued until they clear. */
const notAboutThePayment: ReadonlySet<Reason> = new Set([
  "UNAUTHENTICATED",
  "PERMISSION_DENIED",
  "THROTTLED",
  "INTERNAL",
]);

function keepsQueued(error: PaymentError): boolean {
  return !error.final && (isAmbiguous(error) || notAboutThePayment.has(error.code));
}

export class PaymentSender {
  readonly #client: GatewayClient;
  readonly #queue: OfflineQueue;
  readonly #history: PaymentHistory;
  readonly #nowMs: () => number;

  constructor(client: GatewayClient, queue: OfflineQueue, history: PaymentHistory, nowMs: () => number = Date.now) {
    this.#client = client;
    this.#queue = queue;
    this.#history = history;
    this.#nowMs = nowMs;
  }

  /** One attempt to send a queued payment; a final answer removes it from the queue. */
  async send(payment: QueuedPayment): Promise<SendOutcome> {
    let outcome: SendOutcome;
    try {
      const result = await this.#client.pay(payment.id, payment.to, payment.toBank, payment.amountMinor);
      outcome = { status: "committed", payment, balanceAfterMinor: result.balanceAfterMinor };
    } catch (thrown) {
      if (thrown instanceof CertificateError) throw thrown; // nothing was sent, and waiting never fixes it
      const error = thrown instanceof PaymentError ? thrown : PaymentError.fromGrpc(thrown);
      if (keepsQueued(error)) return { status: "queued", payment, reason: error.code, message: error.message };
      outcome = { status: "aborted", payment, reason: error.code, message: error.message };
    }
    crashPoint("client-before-dequeue");
    // Only the process that removes it records it, so two flushing processes write one history entry.
    if (await this.#queue.remove(payment.id)) await this.#history.record(this.#historyEntry(outcome));
    return outcome;
  }

  /** Sends a payment, retrying an unknown outcome with capped, jittered backoff, at most attemptsMax times. */
  async sendWithRetries(payment: QueuedPayment, policy: RetryPolicy): Promise<SendOutcome> {
    let delayMs = policy.delayMinMs;
    for (let attempt = 1; ; attempt += 1) {
      const outcome = await this.send(payment);
      if (outcome.status !== "queued" || attempt >= policy.attemptsMax) return outcome;
      if (outcome.reason === "UNAUTHENTICATED") return outcome; // a new login is needed, not a wait
      await new Promise((resolve) => setTimeout(resolve, delayMs * (0.5 + Math.random() / 2)));
      delayMs = Math.min(delayMs * 2, policy.delayMaxMs);
    }
  }

  /**
   * Sends this user's queued payments in order. Stops at the first that stays queued, so that later
   * payments never overtake an earlier one.
   */
  async flush(
    user: string,
    bank: string,
    policy: RetryPolicy,
    onOutcome: (outcome: SendOutcome) => void,
  ): Promise<{ remaining: number }> {
    const mine = (await this.#queue.list()).filter((payment) => payment.user === user && payment.bank === bank);
    for (const [index, payment] of mine.entries()) {
      const outcome = await this.sendWithRetries(payment, policy);
      onOutcome(outcome);
      if (outcome.status === "queued") return { remaining: mine.length - index };
    }
    return { remaining: 0 };
  }

  #historyEntry(outcome: Exclude<SendOutcome, { status: "queued" }>): HistoryEntry {
    const base = { ...outcome.payment, finishedAtMs: this.#nowMs() };
    return outcome.status === "committed"
      ? { ...base, status: "committed", reason: null, message: null, balanceAfterMinor: outcome.balanceAfterMinor }
      : { ...base, status: "aborted", reason: outcome.reason, message: outcome.message, balanceAfterMinor: null };
  }
}
