// Specification of src/core/passwords.ts: scrypt hashes `scrypt$N$r$p$salt$hash` with a per-password salt.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { hashPassword, isPasswordHash, verifyPassword } from "../src/core/bank/passwords.js";

const salt16 = "AAAAAAAAAAAAAAAAAAAAAA"; // 16 bytes in base64url
const hash32 = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"; // 32 bytes in base64url

describe("passwords", () => {
  it("verifies a password against its own hash", async () => {
    const stored = await hashPassword("correct horse");
    assert.equal(await verifyPassword("correct horse", stored), true);
  });

  it("refuses a wrong password, including near misses", async () => {
    const stored = await hashPassword("correct horse");
    for (const wrong of ["", "correct hors", "correct horse ", "Correct horse", "correct horsf"]) {
      assert.equal(await verifyPassword(wrong, stored), false, `accepted ${JSON.stringify(wrong)}`);
    }
  });

  it("salts: two hashes of the same password differ and both verify", async () => {
    const first = await hashPassword("same");
    const second = await hashPassword("same");
    assert.notEqual(first, second);
    assert.equal(await verifyPassword("same", first), true);
    assert.equal(await verifyPassword("same", second), true);
  });

  it("produces the documented CSV-safe form", async () => {
    const stored = await hashPassword("pw");
    assert.match(stored, /^scrypt\$16384\$8\$1\$[A-Za-z0-9_-]{22}\$[A-Za-z0-9_-]{43}$/);
    assert.equal(isPasswordHash(stored), true);
  });

  it("hashes empty, unicode and long passwords", async () => {
    for (const password of ["", "pässwörd-🔑", "x".repeat(256)]) {
      const stored = await hashPassword(password);
      assert.equal(await verifyPassword(password, stored), true);
    }
  });

  const malformed: ReadonlyArray<[string, string]> = [
    ["empty", ""],
    ["plaintext", "alice123"],
    ["prefix only", "scrypt$"],
    ["other algorithm", `bcrypt$16384$8$1$${salt16}$${hash32}`],
    ["wrong prefix case", `SCRYPT$16384$8$1$${salt16}$${hash32}`],
    ["too few parts", `scrypt$16384$8$${salt16}$${hash32}`],
    ["too many parts", `scrypt$16384$8$1$${salt16}$${hash32}$x`],
    ["N zero", `scrypt$0$8$1$${salt16}$${hash32}`],
    ["N negative", `scrypt$-16384$8$1$${salt16}$${hash32}`],
    ["N fractional", `scrypt$16384.5$8$1$${salt16}$${hash32}`],
    ["N not a number", `scrypt$abc$8$1$${salt16}$${hash32}`],
    ["N above 2^20", `scrypt$${2 ** 21}$8$1$${salt16}$${hash32}`],
    ["r above 32", `scrypt$16384$33$1$${salt16}$${hash32}`],
    ["p above 16", `scrypt$16384$8$17$${salt16}$${hash32}`],
    ["empty salt", `scrypt$16384$8$1$$${hash32}`],
    ["salt shorter than 8 bytes", `scrypt$16384$8$1$AAAAAAA$${hash32}`],
    ["hash shorter than 32 bytes", `scrypt$16384$8$1$${salt16}$${hash32.slice(0, 40)}`],
    ["hash longer than 32 bytes", `scrypt$16384$8$1$${salt16}$${hash32}AAAA`],
  ];
  for (const [what, stored] of malformed) {
    it(`treats a malformed stored string (${what}) as no hash: isPasswordHash false, verify false`, async () => {
      assert.equal(isPasswordHash(stored), false);
      assert.equal(await verifyPassword("alice123", stored), false);
    });
  }

  it("recognizes a well-formed hash with other valid parameters", () => {
    assert.equal(isPasswordHash(`scrypt$1024$8$1$${salt16}$${hash32}`), true);
  });

  // Parameters scrypt itself refuses are not a hash: verifying against them is false, never a crash.
  for (const [what, stored] of [
    ["N not a power of two", `scrypt$3$8$1$${salt16}$${hash32}`],
    ["N*r beyond maxmem", `scrypt$1048576$32$16$${salt16}$${hash32}`],
  ] as const) {
    it(`verifies false for a stored string scrypt cannot use (${what})`, async () => {
      assert.equal(isPasswordHash(stored), false);
      assert.equal(await verifyPassword("alice123", stored), false);
    });
  }
});
