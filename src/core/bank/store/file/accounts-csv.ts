// Owns the format of server/dummydata.csv: `username,balance,password,bank`, one account per row.
// Balances are decimals in major units ("1000" or "12.50"); passwords are scrypt hashes once migrated.
import { writeFileAtomic } from "../../../durable/files.js";
import { nodeDisk, type Disk } from "../../../durable/disk.js";
import { balanceMinorMax, parseDecimalMinor } from "../../../domain/money.js";
import { validateBankName, validateUsername } from "../../../domain/validate.js";
import type { Account } from "../../../domain/ledger.js";

export interface AccountRow {
  username: string;
  balanceMinor: bigint;
  /** An scrypt hash, or plaintext not yet migrated. */
  password: string;
  bank: string;
}

export const accountsHeader = "username,balance,password,bank";
export const accountsFileBytesMax = 256 * 1024 * 1024;

export class AccountsFileError extends Error {
  override readonly name = "AccountsFileError";
}

function fail(path: string, line: number, message: string): never {
  throw new AccountsFileError(`${path}:${line}: ${message}`);
}

/**
 * Parses the whole file; any malformed row rejects the file, naming the line. Blank lines (a hand-edited
 * file's trailing or separating ones) hold nothing and are skipped, as CSV readers do; the header, if any,
 * is the first line that is not blank.
 */
export function parseAccountsCsv(text: string, path: string): AccountRow[] {
  const lines = text.split(/\r?\n/);
  const rows: AccountRow[] = [];
  const seen = new Set<string>();
  let headerAllowed = true;
  lines.forEach((line, index) => {
    const lineNumber = index + 1;
    if (line.trim() === "") return;
    const firstContent = headerAllowed;
    headerAllowed = false;
    if (firstContent && line.trim().toLowerCase().replace(/\s/g, "") === accountsHeader) return;
    const fields = line.split(",");
    if (fields.length !== 4) fail(path, lineNumber, `expected 4 fields (${accountsHeader}), found ${fields.length}`);
    const [username, balanceText, password, bank] = fields.map((field) => field.trim()) as [
      string,
      string,
      string,
      string,
    ];
    try {
      validateUsername(username);
      validateBankName(bank);
    } catch (error) {
      fail(path, lineNumber, (error as Error).message);
    }
    const balanceMinor = parseDecimalMinor(balanceText);
    if (balanceMinor === null)
      fail(
        path,
        lineNumber,
        `balance must be a non-negative decimal with at most 2 places, got ${JSON.stringify(balanceText)}`,
      );
    if (balanceMinor > balanceMinorMax) fail(path, lineNumber, `balance exceeds the limit`);
    if (password === "" || /["\s]/.test(password))
      fail(path, lineNumber, "password must be non-empty without quotes or spaces");
    const key = `${bank}\u0000${username}`;
    if (seen.has(key)) fail(path, lineNumber, `duplicate account ${username} at bank ${bank}`);
    seen.add(key);
    rows.push({ username, balanceMinor, password, bank });
  });
  return rows;
}

/** Keeps the seed's integer form for whole amounts, two decimals otherwise. */
export function formatBalance(balanceMinor: bigint): string {
  const major = balanceMinor / 100n;
  const cents = balanceMinor % 100n;
  return cents === 0n ? major.toString() : `${major}.${cents.toString().padStart(2, "0")}`;
}

export function serializeAccountsCsv(rows: readonly AccountRow[]): string {
  const body = rows.map((row) => `${row.username},${formatBalance(row.balanceMinor)},${row.password},${row.bank}`);
  return [accountsHeader, ...body].join("\n") + "\n";
}

export async function readAccountsCsv(path: string, disk: Disk = nodeDisk): Promise<AccountRow[]> {
  const text = (await readAccountsFile(disk, path)).toString("utf8");
  if (text.length > accountsFileBytesMax)
    throw new AccountsFileError(`${path}: file larger than ${accountsFileBytesMax} bytes`);
  return parseAccountsCsv(text, path);
}

async function readAccountsFile(disk: Disk, path: string): Promise<Buffer> {
  return disk.readFile(path).catch((error: NodeJS.ErrnoException) => {
    throw new AccountsFileError(`${path}: cannot read accounts file: ${error.code ?? error.message}`);
  });
}

export function banksOf(rows: readonly AccountRow[]): string[] {
  return [...new Set(rows.map((row) => row.bank))];
}

const byte = {
  newline: 0x0a,
  comma: 0x2c,
  dot: 0x2e,
  quote: 0x22,
  zero: 0x30,
  nine: 0x39,
  at: 0x40,
  dash: 0x2d,
  underscore: 0x5f,
  space: 0x20,
  del: 0x7f,
};

/**
 * Each byte's classes as bits, looked up once per byte: the scanner below visits every byte of the file at
 * every checkpoint (10 MB at 100,000 accounts), and one table load is cheaper than a chain of comparisons.
 */
const byteClass = { digit: 1, alphanumeric: 2, username: 4, password: 8, bank: 16 } as const;
const byteClasses = new Uint8Array(256);
for (let b = 0; b < 256; b += 1) {
  const digit = b >= byte.zero && b <= byte.nine;
  const alphanumeric = digit || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a);
  let classes = 0;
  if (digit) classes |= byteClass.digit;
  if (alphanumeric) classes |= byteClass.alphanumeric | byteClass.bank;
  if (alphanumeric || b === byte.dot || b === byte.underscore || b === byte.at || b === byte.dash)
    classes |= byteClass.username;
  if (b === byte.dash) classes |= byteClass.bank;
  // A printable ASCII byte other than a space, a quote or a comma (non-ASCII bytes are left to the full parser).
  if (b > byte.space && b < byte.del && b !== byte.quote && b !== byte.comma) classes |= byteClass.password;
  byteClasses[b] = classes;
}
const is = (b: number, classBit: number) => (byteClasses[b]! & classBit) !== 0;

/**
 * Where the fields of the line data[start, end) begin, if it is a row already in canonical form: a username,
 * a balance of at most 13 integer digits (below the limit), a password of printable ASCII without quotes or
 * spaces, a bank. Checking bytes in place is far cheaper than a string and a parse per line, and a checkpoint
 * at 100,000 accounts sees 100,000 lines; anything else goes through the full parser. Null if not canonical.
 */
function canonicalRowAt(
  data: Uint8Array,
  start: number,
  end: number,
): { usernameEnd: number; bankStart: number } | null {
  let at = start;
  if (at >= end || !is(data[at]!, byteClass.alphanumeric)) return null;
  while (at < end && data[at] !== byte.comma) {
    if (!is(data[at]!, byteClass.username) || at - start >= 64) return null;
    at += 1;
  }
  const usernameEnd = at;
  at += 1;
  const balanceStart = at;
  if (at >= end || !is(data[at]!, byteClass.digit)) return null;
  if (data[at] === byte.zero) at += 1;
  else while (at < end && is(data[at]!, byteClass.digit)) at += 1;
  if (at - balanceStart > 13) return null;
  if (at < end && data[at] === byte.dot) {
    const centsStart = (at += 1);
    while (at < end && is(data[at]!, byteClass.digit)) at += 1;
    if (at - centsStart < 1 || at - centsStart > 2) return null;
  }
  if (at >= end || data[at] !== byte.comma) return null;
  at += 1;
  const passwordStart = at;
  while (at < end && is(data[at]!, byteClass.password)) at += 1;
  if (at === passwordStart || at >= end || data[at] !== byte.comma) return null;
  const bankStart = (at += 1);
  while (at < end && is(data[at]!, byteClass.bank)) at += 1;
  const bankLength = end - bankStart;
  if (at !== end || bankLength < 1 || bankLength > 32 || data[bankStart] === byte.dash || data[end - 1] === byte.dash)
    return null;
  return { usernameEnd, bankStart };
}

/** Whether data[start, end) holds exactly the bytes of `name` (a short bank name: no native call per row). */
function bytesEqual(data: Uint8Array, start: number, end: number, name: Uint8Array): boolean {
  if (end - start !== name.length) return false;
  for (let index = 0; index < name.length; index += 1) if (data[start + index] !== name[index]) return false;
  return true;
}

/**
 * The file with the rows of `bank` named in `accounts` replaced, every other byte kept, or null if some line
 * is not in canonical form. Unchanged stretches are slices of `data`: only the replaced rows are new.
 */
function replaceCanonicalRows(data: Buffer, bank: string, accounts: ReadonlyMap<string, Account>): Buffer | null {
  const firstNewline = data.indexOf(byte.newline);
  const firstLineEnd = firstNewline < 0 ? data.length : firstNewline;
  const hasHeader = data.toString("utf8", 0, firstLineEnd).trim().toLowerCase().replace(/\s/g, "") === accountsHeader;
  const bankBytes = Buffer.from(bank, "latin1");
  const parts: Buffer[] = [Buffer.from(`${accountsHeader}\n`)];
  let position = hasHeader ? Math.min(firstLineEnd + 1, data.length) : 0;
  let copyFrom = position;
  while (position < data.length) {
    const nextNewline = data.indexOf(byte.newline, position);
    const end = nextNewline < 0 ? data.length : nextNewline;
    const row = canonicalRowAt(data, position, end);
    if (row === null) return null;
    if (bytesEqual(data, row.bankStart, end, bankBytes)) {
      const username = data.toString("latin1", position, row.usernameEnd);
      const account = accounts.get(username);
      if (account !== undefined) {
        parts.push(
          data.subarray(copyFrom, position),
          Buffer.from(`${username},${formatBalance(account.balanceMinor)},${account.password},${bank}\n`),
        );
        copyFrom = end + 1;
      }
    }
    position = end + 1;
  }
  if (copyFrom < data.length) {
    parts.push(data.subarray(copyFrom));
    if (data[data.length - 1] !== byte.newline) parts.push(Buffer.from("\n"));
  }
  return Buffer.concat(parts);
}

function replaceParsedRows(rows: readonly AccountRow[], bank: string, accounts: ReadonlyMap<string, Account>): string {
  return serializeAccountsCsv(
    rows.map((row) => {
      const account = row.bank === bank ? accounts.get(row.username) : undefined;
      return account === undefined ? row : { ...row, balanceMinor: account.balanceMinor, password: account.password };
    }),
  );
}

/**
 * Rewrites the rows of `bank` named in `accounts` (a checkpoint passes only the accounts that changed),
 * under the file's lock, atomically. Every other line is kept as it is on disk. A file any of whose lines is
 * malformed is refused, naming the line, and left as it was.
 */
export async function rewriteBankRows(
  path: string,
  bank: string,
  accounts: ReadonlyMap<string, Account>,
  disk: Disk = nodeDisk,
): Promise<void> {
  await disk.withLock(path, async () => {
    const data = await readAccountsFile(disk, path);
    if (data.length > accountsFileBytesMax)
      throw new AccountsFileError(`${path}: file larger than ${accountsFileBytesMax} bytes`);
    // Rare (a hand-edited file): parse it all, which names a malformed line, and write it back canonically.
    const out =
      replaceCanonicalRows(data, bank, accounts) ??
      replaceParsedRows(parseAccountsCsv(data.toString("utf8"), path), bank, accounts);
    await writeFileAtomic(path, out, { crashName: "bank-csv-temp-written", disk });
  });
}

/** Loads the rows of `bank` under the lock, first replacing any plaintext password by its scrypt hash. */
export async function loadBankAccounts(
  path: string,
  bank: string,
  hash: (password: string) => Promise<string>,
  isHashed: (stored: string) => boolean,
  disk: Disk = nodeDisk,
): Promise<Map<string, Account>> {
  return disk.withLock(path, async () => {
    const rows = await readAccountsCsv(path, disk);
    let migrated = false;
    const updated: AccountRow[] = [];
    for (const row of rows) {
      if (row.bank === bank && !isHashed(row.password)) {
        updated.push({ ...row, password: await hash(row.password) });
        migrated = true;
      } else {
        updated.push(row);
      }
    }
    if (migrated) await writeFileAtomic(path, serializeAccountsCsv(updated), { disk });
    return new Map(
      updated
        .filter((row) => row.bank === bank)
        .map((row) => [row.username, { balanceMinor: row.balanceMinor, password: row.password }]),
    );
  });
}
