// Specification of src/core/gateway/sessions.ts (bearer tokens with an expiry, bounded in number, on an injected
// clock) and src/core/transport/session-key.ts (the key's file).
import { afterEach, beforeEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SessionStore } from "../src/core/gateway/sessions.js";
import {
  ensureSessionKey,
  linkNewSessionKey,
  sessionKeyBytes,
  sessionKeyPath,
} from "../src/core/transport/session-key.js";
import { CertificateError } from "../src/core/transport/certificate-error.js";
import { PaymentError } from "../src/core/domain/errors.js";

/** A key of 32 copies of one byte. */
function keyOf(byte: number): Buffer {
  return Buffer.alloc(sessionKeyBytes, byte);
}

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

describe("session key file", () => {
  let dir = "";
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "paynet-session-key-"));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("is created with mode 0600 and 32 bytes, then reused", async () => {
    const first = await ensureSessionKey(dir);
    assert.equal(first.created, true);
    assert.equal(first.key.length, sessionKeyBytes);
    const stats = await stat(sessionKeyPath(dir));
    assert.equal(stats.mode & 0o777, 0o600);
    assert.deepEqual(await readFile(sessionKeyPath(dir)), first.key);
    const second = await ensureSessionKey(dir);
    assert.equal(second.created, false);
    assert.deepEqual(second.key, first.key);
    assert.deepEqual(await readdir(dir), ["gateway_session.key"]);
  });

  it("creates the certificate folder when missing", async () => {
    const nested = join(dir, "data", "certificate");
    const { created } = await ensureSessionKey(nested);
    assert.equal(created, true);
    assert.equal((await stat(nested)).mode & 0o777, 0o700);
  });

  it("gives racing creators one key: exactly one creates it, every one reads it", async () => {
    const results = await Promise.all(Array.from({ length: 8 }, () => ensureSessionKey(dir)));
    assert.equal(results.filter((result) => result.created).length, 1);
    for (const result of results) assert.deepEqual(result.key, results[0]!.key);
    assert.deepEqual(await readFile(sessionKeyPath(dir)), results[0]!.key);
    assert.deepEqual(await readdir(dir), ["gateway_session.key"], "no temp file left behind");
  });

  it("never replaces a key already there: the late creator loses and leaves no temp file", async () => {
    const path = sessionKeyPath(dir);
    assert.equal(await linkNewSessionKey(path), true);
    const winner = await readFile(path);
    assert.equal(await linkNewSessionKey(path), false);
    assert.deepEqual(await readFile(path), winner);
    assert.deepEqual(await readdir(dir), ["gateway_session.key"]);
  });

  for (const sizeBytes of [0, 16, 31, 33, 64]) {
    it(`refuses a key file of ${sizeBytes} bytes, naming it, and leaves it as it is`, async () => {
      const path = sessionKeyPath(dir);
      await writeFile(path, Buffer.alloc(sizeBytes, 9), { mode: 0o600 });
      await assert.rejects(ensureSessionKey(dir), (error: unknown) => {
        assert.ok(error instanceof CertificateError, String(error));
        assert.match(error.message, new RegExp(`${path.replace(/[.]/g, "\\.")} holds ${sizeBytes} bytes, not 32`));
        assert.doesNotMatch(error.message, /\n/);
        return true;
      });
      assert.equal((await readFile(path)).length, sizeBytes);
    });
  }

  for (const mode of [0o640, 0o604, 0o644, 0o660, 0o666]) {
    it(`refuses a key file of mode ${mode.toString(8)}`, async () => {
      const path = sessionKeyPath(dir);
      await writeFile(path, keyOf(5), { mode: 0o600 });
      await chmod(path, mode);
      await assert.rejects(ensureSessionKey(dir), (error: unknown) => {
        assert.ok(error instanceof CertificateError, String(error));
        assert.match(error.message, new RegExp(`mode ${mode.toString(8)}\\); run chmod 600`));
        return true;
      });
    });
  }

  it("accepts a key file of mode 0400", async () => {
    const path = sessionKeyPath(dir);
    await writeFile(path, keyOf(5), { mode: 0o600 });
    await chmod(path, 0o400);
    assert.deepEqual((await ensureSessionKey(dir)).key, keyOf(5));
  });

  it("refuses a directory in the key's place", async () => {
    await mkdir(sessionKeyPath(dir));
    await assert.rejects(ensureSessionKey(dir), (error: unknown) => {
      assert.ok(error instanceof CertificateError, String(error));
      assert.match(error.message, /is not a regular file/);
      return true;
    });
  });
});
