// Specification of src/core/sessions.ts: bearer tokens with an expiry, bounded in number, on an injected clock.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { SessionStore } from "../src/core/gateway/sessions.js";
import { PaymentError } from "../src/core/domain/errors.js";

function unauthenticated(error: unknown): true {
  assert.ok(error instanceof PaymentError, `expected a PaymentError, got ${String(error)}`);
  assert.equal(error.code, "UNAUTHENTICATED");
  return true;
}

function store(options: { ttlMs?: number; sessionsMax?: number; startMs?: number } = {}) {
  const clock = { nowMs: options.startMs ?? 1_000_000 };
  const sessions = new SessionStore({
    ttlMs: options.ttlMs ?? 60_000,
    sessionsMax: options.sessionsMax ?? 100,
    nowMs: () => clock.nowMs,
  });
  return { clock, sessions };
}

describe("SessionStore", () => {
  it("opens a session whose token resolves to its user and bank", () => {
    const { clock, sessions } = store({ ttlMs: 60_000 });
    const { token, expiresAtMs } = sessions.open("alice", "SBI");
    assert.match(token, /^[A-Za-z0-9_-]{43}$/);
    assert.equal(expiresAtMs, clock.nowMs + 60_000);
    assert.deepEqual(sessions.resolve(token), { username: "alice", bank: "SBI", expiresAtMs });
  });

  it("gives every session its own token", () => {
    const { sessions } = store();
    const first = sessions.open("alice", "SBI");
    const second = sessions.open("alice", "SBI");
    const third = sessions.open("bob", "HDFC");
    assert.notEqual(first.token, second.token);
    assert.equal(sessions.resolve(first.token).username, "alice");
    assert.equal(sessions.resolve(second.token).username, "alice");
    assert.equal(sessions.resolve(third.token).bank, "HDFC");
  });

  it("resolves until just before the expiry and refuses from the expiry on", () => {
    const { clock, sessions } = store({ ttlMs: 60_000 });
    const { token, expiresAtMs } = sessions.open("alice", "SBI");
    clock.nowMs = expiresAtMs - 1;
    assert.equal(sessions.resolve(token).username, "alice");
    clock.nowMs = expiresAtMs;
    assert.throws(() => sessions.resolve(token), unauthenticated);
  });

  it("forgets an expired session: turning the clock back does not revive it", () => {
    const { clock, sessions } = store({ ttlMs: 60_000 });
    const { token, expiresAtMs } = sessions.open("alice", "SBI");
    const openedAtMs = clock.nowMs;
    clock.nowMs = expiresAtMs + 1;
    assert.throws(() => sessions.resolve(token), unauthenticated);
    clock.nowMs = openedAtMs;
    assert.throws(() => sessions.resolve(token), unauthenticated);
  });

  it("refuses an unknown well-formed token", () => {
    const { sessions } = store();
    sessions.open("alice", "SBI");
    assert.throws(() => sessions.resolve("A".repeat(43)), unauthenticated);
  });

  const malformed: readonly string[] = [
    "",
    "abc",
    "A".repeat(42),
    "A".repeat(44),
    `${"A".repeat(42)}=`,
    `${"A".repeat(42)}+`,
    `${"A".repeat(42)}/`,
    ` ${"A".repeat(42)}`,
    `${"A".repeat(43)}\n`,
    `Bearer ${"A".repeat(43)}`,
  ];
  for (const token of malformed) {
    it(`refuses the malformed token ${JSON.stringify(token.length > 12 ? `${token.slice(0, 8)}…(${token.length})` : token)}`, () => {
      const { sessions } = store();
      assert.throws(() => sessions.resolve(token), unauthenticated);
    });
  }

  it("refuses a real token with a character changed", () => {
    const { sessions } = store();
    const { token } = sessions.open("alice", "SBI");
    const altered = (token[0] === "A" ? "B" : "A") + token.slice(1);
    assert.throws(() => sessions.resolve(altered), unauthenticated);
  });

  it("bounds the number of sessions by evicting the oldest", () => {
    const { sessions } = store({ sessionsMax: 3 });
    const tokens = ["u1", "u2", "u3", "u4", "u5"].map((username) => sessions.open(username, "SBI").token);
    assert.throws(() => sessions.resolve(tokens[0]!), unauthenticated);
    assert.throws(() => sessions.resolve(tokens[1]!), unauthenticated);
    assert.equal(sessions.resolve(tokens[2]!).username, "u3");
    assert.equal(sessions.resolve(tokens[3]!).username, "u4");
    assert.equal(sessions.resolve(tokens[4]!).username, "u5");
  });

  it("with a bound of one keeps only the newest session", () => {
    const { sessions } = store({ sessionsMax: 1 });
    const first = sessions.open("alice", "SBI").token;
    const second = sessions.open("bob", "SBI").token;
    assert.throws(() => sessions.resolve(first), unauthenticated);
    assert.equal(sessions.resolve(second).username, "bob");
  });

  it("drops expired sessions before evicting a live one to make room", () => {
    const { clock, sessions } = store({ ttlMs: 100, sessionsMax: 2, startMs: 0 });
    const old = sessions.open("old", "SBI").token; // expires at 100
    clock.nowMs = 50;
    const live = sessions.open("live", "SBI").token; // expires at 150
    clock.nowMs = 100;
    const fresh = sessions.open("fresh", "SBI").token;
    assert.throws(() => sessions.resolve(old), unauthenticated);
    assert.equal(sessions.resolve(live).username, "live");
    assert.equal(sessions.resolve(fresh).username, "fresh");
  });
});
