// Owns the format of server/dummydata.csv: `username,balance,password,bank`, one account per row.
// Balances are decimals in major units ("1000" or "12.50"); passwords are scrypt hashes once migrated.
import { readFile } from "node:fs/promises";
import { writeFileAtomic } from "./durable.js";
import { withFileLock } from "./file-lock.js";
import { balanceMinorMax, parseDecimalMinor } from "./money.js";
import { validateBankName, validateUsername } from "./validate.js";

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

/** Parses the whole file; any malformed row rejects the file, naming the line. */
export function parseAccountsCsv(text: string, path: string): AccountRow[] {
  const lines = text.split(/\r?\n/);
  if (lines.at(-1) === "") lines.pop();
  const rows: AccountRow[] = [];
  const seen = new Set<string>();
  lines.forEach((line, index) => {
    const lineNumber = index + 1;
    if (index === 0 && line.trim().toLowerCase().replace(/\s/g, "") === accountsHeader) return;
    if (line.trim() === "") fail(path, lineNumber, "empty line");
    const fields = line.split(",");
    if (fields.length !== 4) fail(path, lineNumber, `expected 4 fields (${accountsHeader}), found ${fields.length}`);
    const [username, balanceText, password, bank] = fields.map((field) => field.trim()) as [string, string, string, string];
    try {
      validateUsername(username);
      validateBankName(bank);
    } catch (error) {
      fail(path, lineNumber, (error as Error).message);
    }
    const balanceMinor = parseDecimalMinor(balanceText);
    if (balanceMinor === null) fail(path, lineNumber, `balance must be a non-negative decimal with at most 2 places, got ${JSON.stringify(balanceText)}`);
    if (balanceMinor > balanceMinorMax) fail(path, lineNumber, `balance exceeds the limit`);
    if (password === "" || /["\s]/.test(password)) fail(path, lineNumber, "password must be non-empty without quotes or spaces");
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

export async function readAccountsCsv(path: string): Promise<AccountRow[]> {
  const text = await readFile(path, "utf8").catch((error: NodeJS.ErrnoException) => {
    throw new AccountsFileError(`${path}: cannot read accounts file: ${error.code ?? error.message}`);
  });
  if (text.length > accountsFileBytesMax) throw new AccountsFileError(`${path}: file larger than ${accountsFileBytesMax} bytes`);
  return parseAccountsCsv(text, path);
}

export function banksOf(rows: readonly AccountRow[]): string[] {
  return [...new Set(rows.map((row) => row.bank))];
}

export interface BankAccount {
  balanceMinor: bigint;
  password: string;
}

/**
 * A row already in canonical form: username, a balance of at most 13 integer digits (below the limit), a
 * password without quotes or spaces, a bank. Checking a line against it is far cheaper than parsing it, and a
 * checkpoint at 100,000 accounts sees 100,000 lines; anything else goes through the full parser.
 */
const canonicalRow = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,63},(?:0|[1-9][0-9]{0,12})(?:\.[0-9]{1,2})?,[^",\s]+,[A-Za-z0-9](?:[A-Za-z0-9-]{0,30}[A-Za-z0-9])?$/;

/**
 * Rewrites the rows of `bank` named in `accounts` (a checkpoint passes only the accounts that changed),
 * under the file's lock, atomically. Every other line is kept as it is on disk. A file any of whose lines is
 * malformed is refused, naming the line, and left as it was.
 */
export async function rewriteBankRows(path: string, bank: string, accounts: ReadonlyMap<string, BankAccount>): Promise<void> {
  await withFileLock(path, async (stillHeld) => {
    const text = await readFile(path, "utf8").catch((error: NodeJS.ErrnoException) => {
      throw new AccountsFileError(`${path}: cannot read accounts file: ${error.code ?? error.message}`);
    });
    if (text.length > accountsFileBytesMax) throw new AccountsFileError(`${path}: file larger than ${accountsFileBytesMax} bytes`);
    const lines = text.split("\n");
    if (lines.at(-1) === "") lines.pop();
    const start = lines[0]?.trim().toLowerCase().replace(/\s/g, "") === accountsHeader ? 1 : 0;
    let canonical = true;
    for (let index = start; index < lines.length && canonical; index += 1) canonical = canonicalRow.test(lines[index]!);
    // Rare (a hand-edited file): parse it all, which names a malformed line, and write it back canonically.
    const rows = canonical ? lines.slice(start) : serializeAccountsCsv(parseAccountsCsv(text, path)).split("\n").slice(1, -1);
    const suffix = `,${bank}`;
    const out: string[] = [accountsHeader];
    for (const row of rows) {
      const account = row.endsWith(suffix) ? accounts.get(row.slice(0, row.indexOf(","))) : undefined;
      out.push(account === undefined ? row : `${row.slice(0, row.indexOf(","))},${formatBalance(account.balanceMinor)},${account.password},${bank}`);
    }
    await writeFileAtomic(path, out.join("\n") + "\n", { crashName: "bank-csv-temp-written", beforeRename: stillHeld });
  });
}

/** Loads the rows of `bank` under the lock, first replacing any plaintext password by its scrypt hash. */
export async function loadBankAccounts(
  path: string,
  bank: string,
  hash: (password: string) => Promise<string>,
  isHashed: (stored: string) => boolean,
): Promise<Map<string, BankAccount>> {
  return withFileLock(path, async (stillHeld) => {
    const rows = await readAccountsCsv(path);
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
    if (migrated) await writeFileAtomic(path, serializeAccountsCsv(updated), { beforeRename: stillHeld });
    return new Map(updated.filter((row) => row.bank === bank).map((row) => [row.username, { balanceMinor: row.balanceMinor, password: row.password }]));
  });
}
