// Login sessions as signed bearer tokens: base64url(payload) "." base64url(HMAC-SHA256(key, first part)),
// the payload holding the user, the bank, the expiry and a random nonce. Every gateway of a network holds the
// same key (transport/session-key.ts), so a token issued by one is accepted by all, and by the same gateway
// after a restart: a client that fails over or outlives a restart does not log in again.
//
// Why signed tokens rather than a sessions table: checking one costs an HMAC, with no database round trip
// on every call; it works the same on the file store, where gateways share no database; and nothing is kept,
// so there is nothing to bound, expire or clean up. The cost: a token cannot be revoked early; it lives
// until its expiry (the TTL, 30 minutes), and only changing the key (which logs every client out) ends it
// sooner. Gateways on several machines compare expiries with their own clocks, so a skew between them
// shortens or lengthens a token's life by that much.
import { createHmac, createSecretKey, randomBytes, timingSafeEqual, type KeyObject } from "node:crypto";
import { PaymentError } from "../domain/errors.js";
import { assert } from "../domain/assert.js";
import { sessionKeyBytes } from "../transport/session-key.js";

export interface Session {
  username: string;
  bank: string;
  expiresAtMs: number;
}

/** Longer strings are refused before they are decoded; every token issued is far shorter (about 300). */
export const tokenLengthMax = 512;
const nonceBytes = 16;
const payloadVersion = 1;
// The payload, then the MAC: both unpadded base64url, whose 32 bytes are 43 characters.
const tokenPattern = /^([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]{43})$/;

interface Payload {
  v: number;
  user: string;
  bank: string;
  exp: number;
  nonce: string;
}

function malformed(): PaymentError {
  return new PaymentError("UNAUTHENTICATED", "missing or malformed session token; log in first");
}

/** The session a signed, well-formed payload names, or null for any other shape. */
function sessionOf(payloadText: string): Session | null {
  let payload: Partial<Payload>;
  try {
    payload = JSON.parse(Buffer.from(payloadText, "base64url").toString("utf8")) as Partial<Payload>;
  } catch {
    return null;
  }
  if (typeof payload !== "object" || payload === null) return null;
  if (payload.v !== payloadVersion) return null;
  if (typeof payload.user !== "string" || typeof payload.bank !== "string") return null;
  if (typeof payload.exp !== "number" || !Number.isSafeInteger(payload.exp)) return null;
  return { username: payload.user, bank: payload.bank, expiresAtMs: payload.exp };
}

export class SessionStore {
  readonly #key: KeyObject;
  readonly #ttlMs: number;
  readonly #nowMs: () => number;

  /** `key`: the network's session key (sessionKeyBytes random bytes), the same at every gateway. */
  constructor(options: { key: Uint8Array; ttlMs: number; nowMs?: () => number }) {
    assert(options.key.byteLength === sessionKeyBytes, `the session key must be ${sessionKeyBytes} bytes`);
    assert(Number.isSafeInteger(options.ttlMs), "ttlMs must be an integer");
    assert(options.ttlMs > 0, "ttlMs must be positive");
    this.#key = createSecretKey(options.key);
    this.#ttlMs = options.ttlMs;
    this.#nowMs = options.nowMs ?? Date.now;
  }

  open(username: string, bank: string): { token: string; expiresAtMs: number } {
    const expiresAtMs = this.#nowMs() + this.#ttlMs;
    const payload: Payload = {
      v: payloadVersion,
      user: username,
      bank,
      exp: expiresAtMs,
      nonce: randomBytes(nonceBytes).toString("base64url"),
    };
    const payloadText = Buffer.from(JSON.stringify(payload), "utf8").toString("base64url");
    const token = `${payloadText}.${this.#mac(payloadText).toString("base64url")}`;
    assert(token.length <= tokenLengthMax, "a token issued must fit tokenLengthMax (username or bank too long?)");
    return { token, expiresAtMs };
  }

  /** The session of a token, or UNAUTHENTICATED for a malformed, badly signed or expired one. */
  resolve(token: string): Session {
    if (token.length > tokenLengthMax) throw malformed();
    const match = tokenPattern.exec(token);
    if (match === null) throw malformed();
    const [, payloadText, macText] = match as unknown as [string, string, string];
    // Compared as text (43 characters each, by the pattern): a MAC has one spelling, not the four that
    // decode to the same bytes.
    const expected = Buffer.from(this.#mac(payloadText).toString("base64url"), "ascii");
    if (!timingSafeEqual(Buffer.from(macText, "ascii"), expected))
      throw new PaymentError("UNAUTHENTICATED", "unknown session token; log in again");
    // Signed by a gateway of this network: what follows only reads what one of them wrote.
    const session = sessionOf(payloadText);
    if (session === null) throw malformed();
    if (session.expiresAtMs <= this.#nowMs())
      throw new PaymentError("UNAUTHENTICATED", "session expired; log in again");
    return session;
  }

  /** Over the payload's base64url text as sent: a payload too has one spelling. */
  #mac(payloadText: string): Buffer {
    return createHmac("sha256", this.#key).update(payloadText, "ascii").digest();
  }
}
