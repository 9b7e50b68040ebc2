// Owns the format of server/pending_transactions.json: per bank, its prepared holds as of its last checkpoint
// and the first journal generation not folded in yet (see bank-journal.ts). Sections written by earlier
// builds may also carry balance changes being applied (absolute after-balances, so redoing one is harmless)
// and finished payments; a bank folds those in when it opens. One file is shared by all bank processes;
// each rewrites only its own section, under the file's lock, at checkpoints (never on a payment's path).
import { readFile } from "node:fs/promises";
import { writeFileAtomic } from "../../../durable/files.js";
import { withFileLock } from "../../../durable/file-lock.js";
import type { Finished, Hold } from "../../../domain/ledger.js";

/** A decided balance change, recorded before the accounts file is rewritten. */
export interface Applying {
  paymentId: string;
  balancesMinor: Record<string, bigint>;
  /** The balance returned to the caller (the payer's after a debit, the payee's after a credit). */
  replyBalanceMinor: bigint;
}

export interface BankPending {
  holds: Map<string, Hold>;
  applying: Map<string, Applying>;
  finished: Map<string, Finished>;
  /** The first journal generation whose changes this section (and the accounts CSV) does not include. */
  journalGeneration: number;
}

const formatTag = "paynet-pending/1";

export class PendingFileError extends Error {
  override readonly name = "PendingFileError";
}

export function emptyPending(): BankPending {
  return { holds: new Map(), applying: new Map(), finished: new Map(), journalGeneration: 0 };
}

type Json = Record<string, unknown>;

function bigintField(value: unknown, what: string): bigint {
  if (typeof value !== "string" || !/^-?[0-9]{1,20}$/.test(value)) throw new PendingFileError(`${what} must be an integer string`);
  return BigInt(value);
}
function stringField(value: unknown, what: string): string {
  if (typeof value !== "string" || value === "") throw new PendingFileError(`${what} must be a non-empty string`);
  return value;
}
function numberField(value: unknown, what: string): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value)) throw new PendingFileError(`${what} must be an integer`);
  return value;
}
function arrayField(value: unknown, what: string): Json[] {
  if (!Array.isArray(value)) throw new PendingFileError(`${what} must be an array`);
  return value as Json[];
}

function decodeSection(section: Json, where: string): BankPending {
  const pending = emptyPending();
  if (section.journalGeneration !== undefined) {
    pending.journalGeneration = numberField(section.journalGeneration, `${where}.journalGeneration`);
    if (pending.journalGeneration < 0) throw new PendingFileError(`${where}.journalGeneration must not be negative`);
  }
  for (const [index, hold] of arrayField(section.holds, `${where}.holds`).entries()) {
    const at = `${where}.holds[${index}]`;
    const kind = hold.kind;
    if (kind !== "debit" && kind !== "credit") throw new PendingFileError(`${at}.kind must be debit or credit`);
    const decoded: Hold = {
      paymentId: stringField(hold.paymentId, `${at}.paymentId`),
      username: stringField(hold.username, `${at}.username`),
      kind,
      amountMinor: bigintField(hold.amountMinor, `${at}.amountMinor`),
      preparedAtMs: numberField(hold.preparedAtMs, `${at}.preparedAtMs`),
      expiresAtMs: numberField(hold.expiresAtMs, `${at}.expiresAtMs`),
    };
    pending.holds.set(decoded.paymentId, decoded);
  }
  for (const [index, applying] of arrayField(section.applying, `${where}.applying`).entries()) {
    const at = `${where}.applying[${index}]`;
    const balances = applying.balancesMinor;
    if (typeof balances !== "object" || balances === null) throw new PendingFileError(`${at}.balancesMinor must be an object`);
    const balancesMinor: Record<string, bigint> = {};
    for (const [username, value] of Object.entries(balances)) balancesMinor[username] = bigintField(value, `${at}.balancesMinor.${username}`);
    const paymentId = stringField(applying.paymentId, `${at}.paymentId`);
    pending.applying.set(paymentId, { paymentId, balancesMinor, replyBalanceMinor: bigintField(applying.replyBalanceMinor, `${at}.replyBalanceMinor`) });
  }
  for (const [index, finished] of arrayField(section.finished, `${where}.finished`).entries()) {
    const at = `${where}.finished[${index}]`;
    const outcome = finished.outcome;
    if (outcome !== "committed" && outcome !== "aborted") throw new PendingFileError(`${at}.outcome must be committed or aborted`);
    const paymentId = stringField(finished.paymentId, `${at}.paymentId`);
    const reply = finished.replyBalanceMinor;
    pending.finished.set(paymentId, {
      paymentId,
      outcome,
      atMs: numberField(finished.atMs, `${at}.atMs`),
      replyBalanceMinor: reply === null || reply === undefined ? null : bigintField(reply, `${at}.replyBalanceMinor`),
    });
  }
  return pending;
}

function encodeSection(pending: BankPending): Json {
  return {
    holds: [...pending.holds.values()].map((hold) => ({ ...hold, amountMinor: hold.amountMinor.toString() })),
    applying: [...pending.applying.values()].map((applying) => ({
      paymentId: applying.paymentId,
      balancesMinor: Object.fromEntries(Object.entries(applying.balancesMinor).map(([username, value]) => [username, value.toString()])),
      replyBalanceMinor: applying.replyBalanceMinor.toString(),
    })),
    finished: [...pending.finished.values()].map((finished) => ({
      ...finished,
      replyBalanceMinor: finished.replyBalanceMinor === null ? null : finished.replyBalanceMinor.toString(),
    })),
    journalGeneration: pending.journalGeneration,
  };
}

async function readWholeFile(path: string): Promise<Record<string, Json>> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return {};
    throw error;
  }
  if (text.trim() === "") return {};
  let document: unknown;
  try {
    document = JSON.parse(text);
  } catch (error) {
    throw new PendingFileError(`${path}: not valid JSON (truncated or corrupt?): ${(error as Error).message}; refusing to start, fix or restore the file`);
  }
  const banks = (document as Json)?.banks;
  if ((document as Json)?.format !== formatTag || typeof banks !== "object" || banks === null) {
    throw new PendingFileError(`${path}: not a ${formatTag} document; refusing to start`);
  }
  return banks as Record<string, Json>;
}

export async function readBankPending(path: string, bank: string): Promise<BankPending> {
  return withFileLock(path, async () => {
    const banks = await readWholeFile(path);
    const section = banks[bank];
    if (section === undefined) return emptyPending();
    try {
      return decodeSection(section, `banks.${bank}`);
    } catch (error) {
      throw new PendingFileError(`${path}: ${(error as Error).message}; refusing to start`);
    }
  });
}

/** Rewrites this bank's section durably; other banks' sections are carried over as they are on disk. */
export async function writeBankPending(path: string, bank: string, pending: BankPending): Promise<void> {
  await withFileLock(path, async (stillHeld) => {
    const banks = await readWholeFile(path);
    banks[bank] = encodeSection(pending);
    await writeFileAtomic(path, JSON.stringify({ format: formatTag, banks }) + "\n", { crashName: "pending-temp-written", beforeRename: stillHeld });
  });
}
