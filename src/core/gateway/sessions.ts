// Login sessions: random 256-bit bearer tokens, kept in memory only by their SHA-256, with an expiry.
import { createHash, randomBytes } from "node:crypto";
import { PaymentError } from "../domain/errors.js";
import { assert } from "../domain/assert.js";

export interface Session {
  username: string;
  bank: string;
  expiresAtMs: number;
}

const tokenPattern = /^[A-Za-z0-9_-]{43}$/;

function digest(token: string): string {
  return createHash("sha256").update(token).digest("hex");
}

export class SessionStore {
  readonly #sessions = new Map<string, Session>();
  readonly #ttlMs: number;
  readonly #sessionsMax: number;
  readonly #nowMs: () => number;

  constructor(options: { ttlMs: number; sessionsMax: number; nowMs?: () => number }) {
    assert(
      Number.isSafeInteger(options.sessionsMax) && options.sessionsMax >= 1,
      "sessionsMax must be a positive integer",
    );
    assert(options.ttlMs > 0, "ttlMs must be positive");
    this.#ttlMs = options.ttlMs;
    this.#sessionsMax = options.sessionsMax;
    this.#nowMs = options.nowMs ?? Date.now;
  }

  open(username: string, bank: string): { token: string; expiresAtMs: number } {
    this.#evict();
    const token = randomBytes(32).toString("base64url");
    const expiresAtMs = this.#nowMs() + this.#ttlMs;
    this.#sessions.set(digest(token), { username, bank, expiresAtMs });
    return { token, expiresAtMs };
  }

  /** The session of a token, or UNAUTHENTICATED for a malformed, unknown or expired one. */
  resolve(token: string): Session {
    if (!tokenPattern.test(token))
      throw new PaymentError("UNAUTHENTICATED", "missing or malformed session token; log in first");
    const key = digest(token);
    const session = this.#sessions.get(key);
    if (session === undefined) throw new PaymentError("UNAUTHENTICATED", "unknown session token; log in again");
    if (session.expiresAtMs <= this.#nowMs()) {
      this.#sessions.delete(key);
      throw new PaymentError("UNAUTHENTICATED", "session expired; log in again");
    }
    return session;
  }

  #evict(): void {
    const nowMs = this.#nowMs();
    for (const [key, session] of this.#sessions) if (session.expiresAtMs <= nowMs) this.#sessions.delete(key);
    // Bounded: past the limit the oldest sessions (first inserted) are dropped.
    while (this.#sessions.size >= this.#sessionsMax)
      this.#sessions.delete(this.#sessions.keys().next().value as string);
  }
}
