// Slows password guessing: after a few failures a user (and, more loosely, a peer address) is locked out
// for a time that doubles with every further failure. While locked, even the right password is refused.
import { assert } from "../domain/assert.js";
import { PaymentError } from "../domain/errors.js";

export interface LoginThrottleOptions {
  /** Failures allowed before the first lockout, per user and per peer. */
  userFailuresFree: number;
  peerFailuresFree: number;
  lockBaseMs: number;
  lockMaxMs: number;
  /** Failures older than this are forgotten. */
  forgetAfterMs: number;
  entriesMax: number;
  nowMs?: () => number;
}

interface Failures {
  count: number;
  lastFailureMs: number;
  lockedUntilMs: number;
}

export class LoginThrottle {
  readonly #options: LoginThrottleOptions;
  readonly #nowMs: () => number;
  readonly #entries = new Map<string, Failures>();

  constructor(options: LoginThrottleOptions) {
    assert(options.userFailuresFree >= 1 && options.peerFailuresFree >= 1, "failure allowances must be at least 1");
    assert(
      options.lockBaseMs > 0 && options.lockMaxMs >= options.lockBaseMs,
      "lock durations must be positive and ordered",
    );
    assert(options.entriesMax >= 1, "entriesMax must be positive");
    this.#options = options;
    this.#nowMs = options.nowMs ?? Date.now;
  }

  /** Refuses with THROTTLED while the user or the peer is locked out. */
  check(userKey: string, peerKey: string): void {
    const nowMs = this.#nowMs();
    for (const key of [`user:${userKey}`, `peer:${peerKey}`]) {
      const entry = this.#current(key, nowMs);
      if (entry !== undefined && entry.lockedUntilMs > nowMs) {
        const seconds = Math.ceil((entry.lockedUntilMs - nowMs) / 1000);
        throw new PaymentError("THROTTLED", `too many failed logins; try again in ${seconds} s`);
      }
    }
  }

  failure(userKey: string, peerKey: string): void {
    const nowMs = this.#nowMs();
    this.#count(`user:${userKey}`, this.#options.userFailuresFree, nowMs);
    this.#count(`peer:${peerKey}`, this.#options.peerFailuresFree, nowMs);
  }

  success(userKey: string): void {
    this.#entries.delete(`user:${userKey}`);
  }

  #current(key: string, nowMs: number): Failures | undefined {
    const entry = this.#entries.get(key);
    if (
      entry !== undefined &&
      nowMs - entry.lastFailureMs > this.#options.forgetAfterMs &&
      entry.lockedUntilMs <= nowMs
    ) {
      this.#entries.delete(key);
      return undefined;
    }
    return entry;
  }

  #count(key: string, free: number, nowMs: number): void {
    const entry = this.#current(key, nowMs) ?? { count: 0, lastFailureMs: nowMs, lockedUntilMs: 0 };
    entry.count += 1;
    entry.lastFailureMs = nowMs;
    if (entry.count >= free) {
      const doublings = Math.min(entry.count - free, 30);
      entry.lockedUntilMs = nowMs + Math.min(this.#options.lockBaseMs * 2 ** doublings, this.#options.lockMaxMs);
    }
    this.#entries.delete(key);
    this.#entries.set(key, entry);
    // Bounded: the least recently failed entries go first.
    while (this.#entries.size > this.#options.entriesMax)
      this.#entries.delete(this.#entries.keys().next().value as string);
  }
}
