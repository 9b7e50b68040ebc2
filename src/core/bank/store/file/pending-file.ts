// Owns the format of server/pending_transactions.json: per bank, its prepared holds as of its last checkpoint
// and the first journal generation not folded in yet (see bank-journal.ts). Sections written by earlier
// builds may also carry balance changes being applied (absolute after-balances, so redoing one is harmless)
// and finished payments; a bank folds those in when it opens. One file is shared by all bank processes;
// each rewrites only its own section, under the file's lock, at checkpoints (never on a payment's path).
import { writeFileAtomic } from "../../../durable/files.js";
import { isMissing, nodeDisk, type Disk } from "../../../durable/disk.js";
import {
  array,
  decodeRecord,
  literal,
  minorUnits,
  nonEmptyString,
  nullWhenAbsent,
  object,
  oneOf,
  optional,
  record,
  safeInteger,
  type DecodedBy,
  type Decoder,
} from "../../../durable/jsonl.js";
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

// The schemas of a bank's section (encodeSection), and of the document that holds the sections.

const pendingHold: Decoder<Hold> = object({
  paymentId: nonEmptyString(),
  username: nonEmptyString(),
  kind: oneOf(["debit", "credit"]),
  amountMinor: minorUnits(),
  preparedAtMs: safeInteger(),
  expiresAtMs: safeInteger(),
});

const pendingApplying: Decoder<Applying> = object({
  paymentId: nonEmptyString(),
  balancesMinor: record(minorUnits()),
  replyBalanceMinor: minorUnits(),
});

/** As earlier builds wrote them (none wrote begunAtMs here); a left-out reply balance is none. */
const pendingFinished: Decoder<Finished> = object({
  paymentId: nonEmptyString(),
  outcome: oneOf(["committed", "aborted"]),
  atMs: safeInteger(),
  replyBalanceMinor: nullWhenAbsent(minorUnits()),
});

const bankSection = object({
  holds: array(pendingHold),
  applying: array(pendingApplying),
  finished: array(pendingFinished),
  journalGeneration: optional(safeInteger({ min: 0 })),
});

/** Other banks' sections are carried over as they are: only a bank's own is decoded, by that bank. */
const pendingDocument = object({ format: literal(formatTag), banks: record((section: unknown) => section) });

function pendingOf(section: DecodedBy<typeof bankSection>): BankPending {
  const { holds, applying, finished, journalGeneration } = section;
  return {
    holds: new Map(holds.map((hold) => [hold.paymentId, hold])),
    applying: new Map(applying.map((entry) => [entry.paymentId, entry])),
    finished: new Map(finished.map((entry) => [entry.paymentId, entry])),
    journalGeneration: journalGeneration ?? 0,
  };
}

function encodeSection(pending: BankPending): Json {
  return {
    holds: [...pending.holds.values()].map((hold) => ({ ...hold, amountMinor: hold.amountMinor.toString() })),
    applying: [...pending.applying.values()].map((applying) => ({
      paymentId: applying.paymentId,
      balancesMinor: Object.fromEntries(
        Object.entries(applying.balancesMinor).map(([username, value]) => [username, value.toString()]),
      ),
      replyBalanceMinor: applying.replyBalanceMinor.toString(),
    })),
    finished: [...pending.finished.values()].map((finished) => ({
      ...finished,
      replyBalanceMinor: finished.replyBalanceMinor === null ? null : finished.replyBalanceMinor.toString(),
    })),
    journalGeneration: pending.journalGeneration,
  };
}

async function readWholeFile(disk: Disk, path: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = (await disk.readFile(path)).toString("utf8");
  } catch (error) {
    if (isMissing(error)) return {};
    throw error;
  }
  if (text.trim() === "") return {};
  let document: unknown;
  try {
    document = JSON.parse(text);
  } catch (error) {
    throw new PendingFileError(
      `${path}: not valid JSON (truncated or corrupt?): ${(error as Error).message}; refusing to start, fix or restore the file`,
    );
  }
  const decoded = decodeRecord(pendingDocument, document);
  if (!decoded.ok)
    throw new PendingFileError(
      `${path}: not a ${formatTag} document (${decoded.error.message}); refusing to start, fix or restore the file`,
    );
  return decoded.value.banks;
}

export async function readBankPending(path: string, bank: string, disk: Disk = nodeDisk): Promise<BankPending> {
  return disk.withLock(path, async () => {
    const banks = await readWholeFile(disk, path);
    // An own key only: a bank named "constructor" has no section from Object's prototype.
    if (!Object.hasOwn(banks, bank)) return emptyPending();
    const section = banks[bank];
    const decoded = decodeRecord(bankSection, section);
    if (!decoded.ok)
      throw new PendingFileError(
        `${path}: ${decoded.error.within(bank).within("banks").message}; refusing to start, fix or restore the file`,
        { cause: decoded.error },
      );
    return pendingOf(decoded.value);
  });
}

/** Rewrites this bank's section durably; other banks' sections are carried over as they are on disk. */
export async function writeBankPending(
  path: string,
  bank: string,
  pending: BankPending,
  disk: Disk = nodeDisk,
): Promise<void> {
  await disk.withLock(path, async () => {
    const banks = await readWholeFile(disk, path);
    banks[bank] = encodeSection(pending);
    await writeFileAtomic(path, JSON.stringify({ format: formatTag, banks }) + "\n", {
      crashName: "pending-temp-written",
      disk,
    });
  });
}
