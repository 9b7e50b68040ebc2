// Specification of src/core/gateway/sessions.ts (signed tokens with an expiry, on an injected clock, checked
// by any store holding the same key) and src/core/transport/session-key.ts (the key's file); then the
// gateway process: a token outlives a restart, and a bad key file stops the start.
import { afterEach, beforeEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SessionStore, tokenLengthMax } from "../src/core/gateway/sessions.js";
import {
  ensureSessionKey,
  linkNewSessionKey,
  sessionKeyBytes,
  sessionKeyPath,
} from "../src/core/transport/session-key.js";
import { CertificateError } from "../src/core/transport/certificate-error.js";
import { PaymentError } from "../src/core/domain/errors.js";
import { Network, Proc, passwords } from "./helpers/network.js";

function unauthenticated(error: unknown): true {
  assert.ok(error instanceof PaymentError, `expected a PaymentError, got ${String(error)}`);
  assert.equal(error.code, "UNAUTHENTICATED");
  assert.match(error.message, /log in (again|first)/);
  return true;
}

/** A key of 32 copies of one byte: distinct keys for distinct bytes. */
function keyOf(byte: number): Buffer {
  return Buffer.alloc(sessionKeyBytes, byte);
}

function store(options: { ttlMs?: number; startMs?: number; key?: Buffer } = {}) {
  const clock = { nowMs: options.startMs ?? 1_000_000 };
  const sessions = new SessionStore({
    key: options.key ?? keyOf(1),
    ttlMs: options.ttlMs ?? 60_000,
    nowMs: () => clock.nowMs,
  });
  return { clock, sessions };
}

/** The token's payload part decoded, changed by `edit`, encoded again; the MAC kept. */
function withPayload(token: string, edit: (payload: Record<string, unknown>) => void): string {
  const [payloadText, macText] = token.split(".") as [string, string];
  const payload = JSON.parse(Buffer.from(payloadText, "base64url").toString("utf8")) as Record<string, unknown>;
  edit(payload);
  return `${Buffer.from(JSON.stringify(payload)).toString("base64url")}.${macText}`;
}

/** `text` with the character at `index` replaced by another base64url character. */
function flipAt(text: string, index: number): string {
  return text.slice(0, index) + (text[index] === "A" ? "B" : "A") + text.slice(index + 1);
}

describe("SessionStore", () => {
  it("opens a session whose token resolves to its user and bank", () => {
    const { clock, sessions } = store({ ttlMs: 60_000 });
    const { token, expiresAtMs } = sessions.open("alice", "SBI");
    assert.match(token, /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}$/);
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

  it("keeps the longest username and bank within the token length bound", () => {
    const { sessions } = store({ startMs: 8_000_000_000_000 });
    const username = `u${"x".repeat(63)}`;
    const bank = `B${"9".repeat(31)}`;
    const { token } = sessions.open(username, bank);
    assert.ok(token.length <= tokenLengthMax, `${token.length} characters`);
    assert.equal(sessions.resolve(token).username, username);
  });

  it("is accepted by another store with the same key, refused by one with another key", () => {
    const issuer = store({ key: keyOf(7) });
    const sameKey = store({ key: keyOf(7) });
    const otherKey = store({ key: keyOf(8) });
    const { token, expiresAtMs } = issuer.sessions.open("carol", "SBI");
    assert.deepEqual(sameKey.sessions.resolve(token), { username: "carol", bank: "SBI", expiresAtMs });
    assert.throws(() => otherKey.sessions.resolve(token), unauthenticated);
  });

  it("resolves until just before the expiry and refuses from the expiry on", () => {
    const { clock, sessions } = store({ ttlMs: 60_000 });
    const { token, expiresAtMs } = sessions.open("alice", "SBI");
    clock.nowMs = expiresAtMs - 1;
    assert.equal(sessions.resolve(token).username, "alice");
    clock.nowMs = expiresAtMs;
    assert.throws(
      () => sessions.resolve(token),
      (error) => {
        unauthenticated(error);
        assert.match((error as Error).message, /expired/);
        return true;
      },
    );
    clock.nowMs = expiresAtMs + 3_600_000;
    assert.throws(() => sessions.resolve(token), unauthenticated);
  });

  it("refuses a token another store issued once it expired, on that store's clock", () => {
    const issuer = store({ ttlMs: 60_000, startMs: 0 });
    const later = store({ ttlMs: 60_000, startMs: 60_000 });
    const { token } = issuer.sessions.open("alice", "SBI");
    assert.throws(() => later.sessions.resolve(token), unauthenticated);
  });

  const tampered: ReadonlyArray<[string, (token: string) => string]> = [
    ["the user changed", (token) => withPayload(token, (payload) => (payload.user = "bob"))],
    ["the bank changed", (token) => withPayload(token, (payload) => (payload.bank = "HDFC"))],
    ["the expiry moved later", (token) => withPayload(token, (payload) => (payload.exp = Number(payload.exp) + 1))],
    ["a payload character changed", (token) => flipAt(token, 0)],
    ["a MAC character changed", (token) => flipAt(token, token.indexOf(".") + 1)],
    ["the MAC of another token", (token) => `${token.split(".")[0]!}.${"A".repeat(43)}`],
    ["the parts swapped", (token) => token.split(".").reverse().join(".")],
  ];
  for (const [label, alter] of tampered) {
    it(`refuses a token with ${label}`, () => {
      const { sessions } = store();
      const { token } = sessions.open("alice", "SBI");
      const altered = alter(token);
      assert.notEqual(altered, token);
      assert.throws(() => sessions.resolve(altered), unauthenticated);
    });
  }

  it("refuses another spelling of the right MAC: its last character's 2 unused bits set", () => {
    const { sessions } = store();
    const { token } = sessions.open("alice", "SBI");
    const base64url = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const respelled = token.slice(0, -1) + base64url[base64url.indexOf(token.at(-1)!) + 1]!;
    const macOf = (text: string) => Buffer.from(text.split(".")[1]!, "base64url");
    assert.notEqual(respelled, token);
    assert.deepEqual(macOf(respelled), macOf(token));
    assert.throws(() => sessions.resolve(respelled), unauthenticated);
  });

  it("refuses a token whose MAC is another token's", () => {
    const { sessions } = store();
    const alice = sessions.open("alice", "SBI").token;
    const bob = sessions.open("bob", "HDFC").token;
    const spliced = `${bob.split(".")[0]!}.${alice.split(".")[1]!}`;
    assert.throws(() => sessions.resolve(spliced), unauthenticated);
  });

  const mac43 = "A".repeat(43);
  const malformed: ReadonlyArray<[string, string]> = [
    ["empty", ""],
    ["no dot", "abc"],
    ["an earlier build's 43-character token", "A".repeat(43)],
    ["an empty payload", `.${mac43}`],
    ["an empty MAC", "eyJ2IjoxfQ."],
    ["a MAC of 42 characters", `eyJ2IjoxfQ.${"A".repeat(42)}`],
    ["a MAC of 44 characters", `eyJ2IjoxfQ.${"A".repeat(44)}`],
    ["padding", `eyJ2IjoxfQ==.${mac43}`],
    ["a + in the payload", `eyJ2+joxfQ.${mac43}`],
    ["a / in the MAC", `eyJ2IjoxfQ.${"A".repeat(42)}/`],
    ["three parts", `eyJ2IjoxfQ.${mac43}.${mac43}`],
    ["a leading space", ` eyJ2IjoxfQ.${mac43}`],
    ["a trailing newline", `eyJ2IjoxfQ.${mac43}\n`],
    ["a Bearer prefix", `Bearer eyJ2IjoxfQ.${mac43}`],
    ["one character over the bound", `${"A".repeat(tokenLengthMax - 44)}.${mac43}`],
    ["10,000 characters", `${"A".repeat(10_000)}.${mac43}`],
  ];
  for (const [label, token] of malformed) {
    it(`refuses a malformed token: ${label}`, () => {
      const { sessions } = store();
      assert.throws(() => sessions.resolve(token), unauthenticated);
    });
  }

  describe("payloads signed with the key but not written by open()", () => {
    // What only the key's holder could make (a gateway with a bug, or a test): signed like open() signs.
    const key = keyOf(3);
    const signed = (payload: unknown): string => {
      const payloadText = Buffer.from(typeof payload === "string" ? payload : JSON.stringify(payload)).toString(
        "base64url",
      );
      return `${payloadText}.${createHmac("sha256", key).update(payloadText).digest("base64url")}`;
    };
    const valid = { v: 1, user: "alice", bank: "SBI", exp: 2_000_000, nonce: "n" };

    it("accepts a payload of the right shape (the signer here signs as open() does)", () => {
      const { sessions } = store({ key });
      assert.deepEqual(sessions.resolve(signed(valid)), { username: "alice", bank: "SBI", expiresAtMs: 2_000_000 });
    });

    const shapes: ReadonlyArray<[string, unknown]> = [
      ["not JSON", "alice@SBI"],
      ["null", null],
      ["an array", [1, "alice", "SBI", 2_000_000]],
      ["an empty object", {}],
      ["another version", { ...valid, v: 2 }],
      ["no user", { ...valid, user: undefined }],
      ["a numeric user", { ...valid, user: 7 }],
      ["no bank", { ...valid, bank: undefined }],
      ["an expiry as text", { ...valid, exp: "2000000" }],
      ["a fractional expiry", { ...valid, exp: 2_000_000.5 }],
      ["an expiry beyond safe integers", { ...valid, exp: 2 ** 60 }],
    ];
    for (const [label, payload] of shapes) {
      it(`refuses ${label}`, () => {
        const { sessions } = store({ key });
        assert.throws(() => sessions.resolve(signed(payload)), unauthenticated);
      });
    }

    it("accepts a signed token of exactly the length bound and refuses one just over it", () => {
      const { sessions } = store({ key });
      const byLength = new Map<number, string>();
      for (let padding = 200; padding < 400; padding += 1)
        byLength.set(signed({ ...valid, nonce: "n".repeat(padding) }).length, "n".repeat(padding));
      // Unpadded base64url never has a length of 4k + 1: 512 + 1 = 468 + 1 + 44 cannot occur, 512 + 2 can.
      const atBound = byLength.get(tokenLengthMax);
      const overBound = byLength.get(tokenLengthMax + 2);
      assert.ok(atBound !== undefined && overBound !== undefined);
      assert.equal(sessions.resolve(signed({ ...valid, nonce: atBound })).username, "alice");
      assert.throws(() => sessions.resolve(signed({ ...valid, nonce: overBound })), unauthenticated);
    });
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

describe("the gateway process and its session key", () => {
  const call = { timeoutMs: 10_000 };

  it("accepts a token issued before a restart, and one signed with the data dir's key, with no new login", async () => {
    const network = await Network.create();
    try {
      await network.start(["SBI"]);
      const first = await network.gatewayClient();
      const login = await first.registerClient({ username: "alice", password: passwords.alice!, bank: "SBI" }, call);
      first.close();

      const loggedIn = (proc: Proc) => proc.lines.filter((line) => /\blogin\b/.test(line));
      const before = network.gateway!;
      assert.equal(loggedIn(before).length, 1, before.lines.join("\n"));
      await before.stop();
      await network.startGateway();
      await network.gatewayReady();
      const second = await network.gatewayClient();
      try {
        const balance = await second.viewBalance({ token: login.token }, call);
        assert.equal(balance.username, "alice");
        assert.equal(balance.bank, "SBI");
        assert.equal(balance.balanceMinor, 100_000n);
        // Any holder of the file's key is a gateway of this network; another key is not.
        const { key } = await ensureSessionKey(network.paths.certificateDir);
        const sameKey = new SessionStore({ key, ttlMs: 60_000 }).open("carol", "SBI").token;
        assert.equal((await second.viewBalance({ token: sameKey }, call)).username, "carol");
        const otherKey = new SessionStore({ key: keyOf(4), ttlMs: 60_000 }).open("carol", "SBI").token;
        await assert.rejects(second.viewBalance({ token: otherKey }, call), unauthenticated);
      } finally {
        second.close();
      }
      assert.deepEqual(loggedIn(network.gateway!), [], "the restarted gateway saw no login");
    } finally {
      await network.destroy();
    }
  });

  it("refuses to start with a key file of the wrong size, in one line naming the file", async () => {
    const network = await Network.create();
    const path = sessionKeyPath(network.paths.certificateDir);
    await writeFile(path, Buffer.alloc(16, 1), { mode: 0o600 });
    const gateway = new Proc("gateway", ["gateway", "--data-dir", network.dir, "--port", "0"]);
    try {
      const exit = await Promise.race([
        gateway.exited,
        new Promise<null>((resolve) => setTimeout(() => resolve(null), 30_000).unref()),
      ]);
      assert.deepEqual(exit, { code: 1, signal: null }, gateway.lines.join("\n"));
      assert.deepEqual(gateway.lines, [
        `paynet: session key ${path} holds 16 bytes, not 32; copy the key of the network's other gateways over it, or remove it and run \`paynet certs\``,
      ]);
    } finally {
      await gateway.stop();
      await network.destroy();
    }
  });
});
