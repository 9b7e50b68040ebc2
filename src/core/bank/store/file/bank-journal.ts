// Owns server/journal_<BANK>.<generation>.jsonl: a bank's append-only record of every change to its state
// (a hold made, a payment committed with absolute after-balances, a payment aborted), one JSON object per
// line. It is the bank's commit point: a reply waits for the fsync of the append that carries its change.
// Each bank writes only its own journal (the bank process holds its lock), so the hot path takes no
// cross-process lock. A checkpoint folds a finished generation into the shared files (accounts CSV, pending
// section, finished log) and deletes it; the pending section names the first generation not folded in.
import { join } from "node:path";
import { AppendOnlyFile } from "../../../durable/files.js";
import { isMissing, nodeDisk, readOptionalFile, type Disk } from "../../../durable/disk.js";
import {
  decodeJsonLines,
  fitsOneLine,
  JsonLinesError,
  literal,
  minorUnits,
  nonEmptyString,
  object,
  oneOf,
  optional,
  record,
  safeInteger,
  union,
  type Decoder,
} from "../../../durable/jsonl.js";
import { assert } from "../../../domain/assert.js";
import type { LedgerEntry } from "../../../domain/ledger.js";

export class BankJournalError extends Error {
  override readonly name = "BankJournalError";
}

const namePattern = (bank: string) => new RegExp(`^journal_${bank}\\.([0-9]{1,15})\\.jsonl$`);

export function journalPath(directory: string, bank: string, generation: number): string {
  return join(directory, `journal_${bank}.${String(generation).padStart(6, "0")}.jsonl`);
}

/** This bank's journal generations on disk, oldest first. */
export async function listJournalGenerations(
  directory: string,
  bank: string,
  disk: Disk = nodeDisk,
): Promise<number[]> {
  const pattern = namePattern(bank);
  const names = await disk.readdir(directory).catch((error: unknown) => {
    if (isMissing(error)) return [] as string[];
    throw error;
  });
  return names
    .flatMap((name) => {
      const match = pattern.exec(name);
      return match === null ? [] : [Number(match[1])];
    })
    .sort((a, b) => a - b);
}

// Entries are written field by field, not by spreading: one is made for every leg, and a spread object
// falls out of V8's fast representation (as the gateway's records did).
export function encodeEntry(entry: LedgerEntry): string {
  const text = entryText(entry);
  // Ids and names are bounded where they enter (domain/validate.ts) and a commit names the accounts of one
  // payment, so a line is well under a kilobyte: this guards that bound.
  assert(fitsOneLine(text), "a journal entry's line must fit the reader's bound (maxLineBytesDefault)");
  return text;
}

function entryText(entry: LedgerEntry): string {
  switch (entry.op) {
    case "hold":
      return JSON.stringify({
        op: entry.op,
        paymentId: entry.paymentId,
        username: entry.username,
        kind: entry.kind,
        amountMinor: entry.amountMinor.toString(),
        preparedAtMs: entry.preparedAtMs,
        expiresAtMs: entry.expiresAtMs,
      });
    case "commit": {
      const balancesMinor: Record<string, string> = {};
      for (const [username, value] of Object.entries(entry.balancesMinor)) balancesMinor[username] = value.toString();
      return JSON.stringify({
        op: entry.op,
        paymentId: entry.paymentId,
        balancesMinor,
        replyBalanceMinor: entry.replyBalanceMinor.toString(),
        atMs: entry.atMs,
        begunAtMs: entry.begunAtMs,
      });
    }
    case "abort":
      return JSON.stringify(entry);
  }
}

/** A journal line (encodeEntry), one schema per op. */
const journalEntry: Decoder<LedgerEntry> = union("op", {
  hold: object({
    op: literal("hold"),
    paymentId: nonEmptyString(),
    username: nonEmptyString(),
    kind: oneOf(["debit", "credit"]),
    amountMinor: minorUnits(),
    preparedAtMs: safeInteger(),
    expiresAtMs: safeInteger(),
  }),
  commit: object({
    op: literal("commit"),
    paymentId: nonEmptyString(),
    balancesMinor: record(minorUnits()),
    replyBalanceMinor: minorUnits(),
    atMs: safeInteger(),
    begunAtMs: optional(safeInteger()),
  }),
  abort: object({ op: literal("abort"), paymentId: nonEmptyString(), atMs: safeInteger() }),
});

/**
 * Reads one generation, oldest entry first. A last line without its newline is an append cut short by a
 * crash before its fsync returned (nothing was answered on it): it is left out. Any other bad line is
 * refused by file and line: the journal is the only copy of what it records.
 */
export async function readJournal(
  path: string,
  disk: Disk = nodeDisk,
): Promise<{ entries: LedgerEntry[]; completeBytes: number; tornBytes: number }> {
  const buffer = (await readOptionalFile(disk, path)) ?? Buffer.alloc(0);
  try {
    const { entries, completeBytes, tornBytes } = decodeJsonLines(buffer, path, journalEntry);
    return { entries, completeBytes, tornBytes };
  } catch (error) {
    // Its message names the file and the line, and says to refuse to start, fix or restore the file.
    if (error instanceof JsonLinesError) throw new BankJournalError(error.message, { cause: error });
    throw error;
  }
}

/** The writer of the current generation. One per bank process; appends never overlap (the caller serializes them). */
export class BankJournal {
  readonly directory: string;
  readonly bank: string;
  readonly #disk: Disk;
  #generation: number;
  #file: AppendOnlyFile;
  /** Lines appended to the current generation. */
  #lines = 0;

  constructor(directory: string, bank: string, generation: number, disk: Disk = nodeDisk) {
    this.directory = directory;
    this.bank = bank;
    this.#disk = disk;
    this.#generation = generation;
    this.#file = this.#fileOf(generation);
  }

  get generation(): number {
    return this.#generation;
  }

  get lines(): number {
    return this.#lines;
  }

  /** Appends the entries and fsyncs them; resolves only once they are durable. */
  async append(entries: readonly LedgerEntry[]): Promise<void> {
    if (entries.length === 0) return;
    let text = "";
    for (const entry of entries) text += `${encodeEntry(entry)}\n`;
    await this.#file.append(text);
    this.#lines += entries.length;
  }

  /** Starts the next generation; the caller makes sure no append is in flight. Returns the finished one. */
  async rotate(): Promise<number> {
    const finished = this.#generation;
    await this.#file.close();
    this.#generation += 1;
    this.#file = this.#fileOf(this.#generation);
    this.#lines = 0;
    return finished;
  }

  async close(): Promise<void> {
    await this.#file.close();
  }

  #fileOf(generation: number): AppendOnlyFile {
    return new AppendOnlyFile(journalPath(this.directory, this.bank, generation), {
      tornCrashName: "bank-journal-torn",
      metricsName: `journal_${this.bank}`,
      disk: this.#disk,
    });
  }
}

/** Deletes the generations before `firstKept`: they are folded into the shared files. */
export async function deleteJournalsBefore(
  directory: string,
  bank: string,
  firstKept: number,
  disk: Disk = nodeDisk,
): Promise<void> {
  for (const generation of await listJournalGenerations(directory, bank, disk)) {
    if (generation < firstKept) await disk.remove(journalPath(directory, bank, generation));
  }
}
