// Password hashes: scrypt with a per-user salt, stored as `scrypt$N$r$p$salt$hash` (base64url, CSV-safe).
import { scrypt, randomBytes, timingSafeEqual } from "node:crypto";

const costN = 16384;
const blockSizeR = 8;
const parallelP = 1;
const saltBytes = 16;
const hashBytes = 32;
const prefix = "scrypt$";
const scryptMemoryBytesMax = 64 * 1024 * 1024;

function derive(password: string, salt: Buffer, n: number, r: number, p: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scrypt(password, salt, hashBytes, { N: n, r, p, maxmem: scryptMemoryBytesMax }, (error, key) =>
      error ? reject(error) : resolve(key),
    );
  });
}

export function isPasswordHash(stored: string): boolean {
  return parsePasswordHash(stored) !== null;
}

function parsePasswordHash(stored: string): { n: number; r: number; p: number; salt: Buffer; hash: Buffer } | null {
  if (!stored.startsWith(prefix)) return null;
  const parts = stored.split("$");
  if (parts.length !== 6) return null;
  const [, nText, rText, pText, saltText, hashText] = parts as [string, string, string, string, string, string];
  const n = Number(nText);
  const r = Number(rText);
  const p = Number(pText);
  if (![n, r, p].every((value) => Number.isInteger(value) && value > 0) || n > 1 << 20 || r > 32 || p > 16) return null;
  // scrypt needs N a power of two above 1, and its memory (128·N·r bytes) within our bound.
  if (n < 2 || (n & (n - 1)) !== 0 || 128 * n * r > scryptMemoryBytesMax / 2) return null;
  const salt = Buffer.from(saltText, "base64url");
  const hash = Buffer.from(hashText, "base64url");
  if (salt.length < 8 || hash.length !== hashBytes) return null;
  return { n, r, p, salt, hash };
}

export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(saltBytes);
  const hash = await derive(password, salt, costN, blockSizeR, parallelP);
  return `${prefix}${costN}$${blockSizeR}$${parallelP}$${salt.toString("base64url")}$${hash.toString("base64url")}`;
}

export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const parsed = parsePasswordHash(stored);
  if (parsed === null) return false;
  const candidate = await derive(password, parsed.salt, parsed.n, parsed.r, parsed.p);
  return timingSafeEqual(candidate, parsed.hash);
}
