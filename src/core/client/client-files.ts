// Owns the client's files: client/offline_payments.json (payments not yet answered, oldest first) and
// client/payment_history.json (final outcomes, newest last). Both are shared by every client process on
// the machine: each change is read-modify-write under the file's lock, written atomically.
// One entry per line, so that a damaged file still yields its intact entries.
import { readFile, copyFile } from "node:fs/promises";
import { writeFileAtomic } from "../durable/files.js";
import { withFileLock } from "../durable/file-lock.js";

export interface QueuedPayment {
  id: string;
  user: string;
  bank: string;
  to: string;
  toBank: string;
  amountMinor: bigint;
  queuedAtMs: number;
}

export interface HistoryEntry extends QueuedPayment {
  status: "committed" | "aborted";
  reason: string | null;
  message: string | null;
  balanceAfterMinor: bigint | null;
  finishedAtMs: number;
}

export const queueEntriesMax = 10_000;
export const historyEntriesMax = 1_000;

/** A damaged file was repaired: its intact entries kept, the original saved beside it. */
export interface Repair {
  path: string;
  backupPath: string;
  badLines: number[];
  kept: number;
}

type Decoder<T> = (raw: Record<string, unknown>) => T | null;

function isText(value: unknown, max = 200): value is string {
  return typeof value === "string" && value.length > 0 && value.length <= max;
}

function decodeQueued(raw: Record<string, unknown>): QueuedPayment | null {
  const { id, user, bank, to, toBank, amountMinor, queuedAtMs } = raw;
  if (!isText(id) || !isText(user) || !isText(bank) || !isText(to) || !isText(toBank)) return null;
  if (typeof amountMinor !== "string" || !/^[1-9][0-9]{0,17}$/.test(amountMinor)) return null;
  if (typeof queuedAtMs !== "number" || !Number.isSafeInteger(queuedAtMs)) return null;
  return { id, user, bank, to, toBank, amountMinor: BigInt(amountMinor), queuedAtMs };
}

function decodeHistory(raw: Record<string, unknown>): HistoryEntry | null {
  const queued = decodeQueued(raw);
  const { status, reason, message, balanceAfterMinor, finishedAtMs } = raw;
  if (queued === null || (status !== "committed" && status !== "aborted")) return null;
  if (typeof finishedAtMs !== "number") return null;
  const balance =
    typeof balanceAfterMinor === "string" && /^[0-9]{1,19}$/.test(balanceAfterMinor) ? BigInt(balanceAfterMinor) : null;
  return {
    ...queued,
    status,
    reason: typeof reason === "string" ? reason : null,
    message: typeof message === "string" ? message : null,
    balanceAfterMinor: balance,
    finishedAtMs,
  };
}

function encode(entry: QueuedPayment | HistoryEntry): string {
  return JSON.stringify(entry, (_key, value: unknown) => (typeof value === "bigint" ? value.toString() : value));
}

const header = (format: string) => `{"format":"${format}","payments":[`;

function serialize(format: string, entries: ReadonlyArray<QueuedPayment | HistoryEntry>): string {
  return `${header(format)}\n${entries.map(encode).join(",\n")}\n]}\n`;
}

/** Parses the file; on damage, salvages every line that is a whole valid entry and lists the others. */
function parse<T>(text: string, format: string, decode: Decoder<T>): { entries: T[]; badLines: number[] } {
  if (text.trim() === "") return { entries: [], badLines: [] };
  try {
    const document = JSON.parse(text) as { format?: unknown; payments?: unknown };
    if (document.format === format && Array.isArray(document.payments)) {
      const entries: T[] = [];
      const badLines: number[] = [];
      document.payments.forEach((raw, index) => {
        const entry = typeof raw === "object" && raw !== null ? decode(raw as Record<string, unknown>) : null;
        if (entry === null) badLines.push(index + 2);
        else entries.push(entry);
      });
      return { entries, badLines };
    }
  } catch {
    // Fall through to line-by-line salvage.
  }
  const entries: T[] = [];
  const badLines: number[] = [];
  text.split("\n").forEach((line, index) => {
    const trimmed = line.trim().replace(/,$/, "");
    if (trimmed === "" || trimmed === header(format) || trimmed === "]}") return;
    try {
      const entry = decode(JSON.parse(trimmed) as Record<string, unknown>);
      if (entry === null) badLines.push(index + 1);
      else entries.push(entry);
    } catch {
      badLines.push(index + 1);
    }
  });
  return { entries, badLines };
}

class EntryFile<T extends QueuedPayment> {
  readonly path: string;
  readonly #format: string;
  readonly #decode: Decoder<T>;
  readonly #entriesMax: number;
  readonly #onRepair: (repair: Repair) => void;

  constructor(
    path: string,
    format: string,
    decode: Decoder<T>,
    entriesMax: number,
    onRepair: (repair: Repair) => void,
  ) {
    this.path = path;
    this.#format = format;
    this.#decode = decode;
    this.#entriesMax = entriesMax;
    this.#onRepair = onRepair;
  }

  async #load(): Promise<T[]> {
    const text = await readFile(this.path, "utf8").catch((error: NodeJS.ErrnoException) => {
      if (error.code === "ENOENT") return "";
      throw error;
    });
    const { entries, badLines } = parse(text, this.#format, this.#decode);
    if (badLines.length > 0) {
      const backupPath = `${this.path}.damaged-${Date.now()}`;
      await copyFile(this.path, backupPath);
      await writeFileAtomic(this.path, serialize(this.#format, entries));
      this.#onRepair({ path: this.path, backupPath, badLines, kept: entries.length });
    }
    return entries;
  }

  list(): Promise<T[]> {
    return withFileLock(this.path, () => this.#load());
  }

  /** Applies `change` to the entries under the lock and writes the result durably; returns change's result. */
  update<R>(change: (entries: T[]) => { entries: T[]; result: R }): Promise<R> {
    return withFileLock(this.path, async () => {
      const { entries, result } = change(await this.#load());
      await writeFileAtomic(this.path, serialize(this.#format, entries.slice(-this.#entriesMax)));
      return result;
    });
  }
}

export class OfflineQueue {
  readonly #file: EntryFile<QueuedPayment>;

  constructor(path: string, onRepair: (repair: Repair) => void) {
    this.#file = new EntryFile(path, "paynet-offline/1", decodeQueued, Number.MAX_SAFE_INTEGER, onRepair);
  }

  get path(): string {
    return this.#file.path;
  }

  list(): Promise<QueuedPayment[]> {
    return this.#file.list();
  }

  /** Durably appends a payment; refuses when the queue is full rather than dropping anything. */
  enqueue(payment: QueuedPayment): Promise<void> {
    return this.#file.update((entries) => {
      if (entries.some((entry) => entry.id === payment.id)) return { entries, result: undefined };
      if (entries.length >= queueEntriesMax)
        throw new Error(`the offline queue holds ${queueEntriesMax} payments already; sync before queuing more`);
      return { entries: [...entries, payment], result: undefined };
    });
  }

  /** Removes a payment; resolves true only for the process that removed it. */
  remove(id: string): Promise<boolean> {
    return this.#file.update((entries) => {
      const kept = entries.filter((entry) => entry.id !== id);
      return { entries: kept, result: kept.length !== entries.length };
    });
  }
}

export class PaymentHistory {
  readonly #file: EntryFile<HistoryEntry>;

  constructor(path: string, onRepair: (repair: Repair) => void) {
    this.#file = new EntryFile(path, "paynet-history/1", decodeHistory, historyEntriesMax, onRepair);
  }

  list(): Promise<HistoryEntry[]> {
    return this.#file.list();
  }

  record(entry: HistoryEntry): Promise<void> {
    return this.#file.update((entries) => ({
      entries: [...entries.filter((existing) => existing.id !== entry.id), entry],
      result: undefined,
    }));
  }
}
