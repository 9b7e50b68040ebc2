// Owns payment_gateway/transaction_logs.json (each payment's state) and transactions.txt (its idempotency
// keys, append-only). Both are durable before the promise of a change resolves; the JSON is group-committed.
import { readFile, truncate } from "node:fs/promises";
import { assert } from "./assert.js";
import { AppendOnlyFile, writeFileAtomic } from "./durable.js";
import { CoalescingWriter } from "./coalescing-writer.js";
import { holdFileLock } from "./file-lock.js";
import { isReason, type Reason } from "./errors.js";
import { groupCommitBatchSize } from "./metrics.js";

/** A payment's state only moves forward: preparing → prepared → committed | aborted. */
export type PaymentState = "preparing" | "prepared" | "committed" | "aborted";
const stateRank: Record<PaymentState, number> = { preparing: 0, prepared: 1, committed: 2, aborted: 2 };

export interface PaymentDetails {
  paymentId: string;
  fromUser: string;
  fromBank: string;
  toUser: string;
  toBank: string;
  amountMinor: bigint;
}

export interface PaymentRecord extends PaymentDetails {
  state: PaymentState;
  reason: Reason | null;
  reasonMessage: string | null;
  /** Every bank has acknowledged the decision: nothing is left to drive. */
  finished: boolean;
  balanceAfterMinor: bigint | null;
  createdAtMs: number;
  decidedAtMs: number | null;
  finishedAtMs: number | null;
}

const formatTag = "paynet-gateway-log/1";

export class GatewayLogError extends Error {
  override readonly name = "GatewayLogError";
}

export function sameDetails(a: PaymentDetails, b: PaymentDetails): boolean {
  return a.fromUser === b.fromUser && a.fromBank === b.fromBank && a.toUser === b.toUser && a.toBank === b.toBank && a.amountMinor === b.amountMinor;
}

function encode(record: PaymentRecord): Record<string, unknown> {
  return { ...record, amountMinor: record.amountMinor.toString(), balanceAfterMinor: record.balanceAfterMinor?.toString() ?? null };
}

function decode(raw: Record<string, unknown>, where: string): PaymentRecord {
  const text = (key: string): string => {
    const value = raw[key];
    if (typeof value !== "string") throw new GatewayLogError(`${where}.${key} must be a string`);
    return value;
  };
  const optionalNumber = (key: string): number | null => {
    const value = raw[key];
    if (value === null) return null;
    if (typeof value !== "number" || !Number.isSafeInteger(value)) throw new GatewayLogError(`${where}.${key} must be an integer or null`);
    return value;
  };
  const state = raw.state;
  if (state !== "preparing" && state !== "prepared" && state !== "committed" && state !== "aborted") throw new GatewayLogError(`${where}.state is not a payment state`);
  const reason = raw.reason;
  if (reason !== null && (typeof reason !== "string" || !isReason(reason))) throw new GatewayLogError(`${where}.reason is not a known reason`);
  if (text("paymentId") === "") throw new GatewayLogError(`${where}.paymentId must not be empty`);
  const amountText = text("amountMinor");
  if (!/^[0-9]{1,20}$/.test(amountText)) throw new GatewayLogError(`${where}.amountMinor must be an integer string`);
  const balanceAfter = raw.balanceAfterMinor;
  if (balanceAfter !== null && (typeof balanceAfter !== "string" || !/^[0-9]{1,20}$/.test(balanceAfter))) throw new GatewayLogError(`${where}.balanceAfterMinor must be an integer string or null`);
  const createdAtMs = optionalNumber("createdAtMs");
  if (createdAtMs === null) throw new GatewayLogError(`${where}.createdAtMs is required`);
  if (typeof raw.finished !== "boolean") throw new GatewayLogError(`${where}.finished must be a boolean`);
  return {
    paymentId: text("paymentId"),
    fromUser: text("fromUser"),
    fromBank: text("fromBank"),
    toUser: text("toUser"),
    toBank: text("toBank"),
    amountMinor: BigInt(amountText),
    state,
    reason: reason as Reason | null,
    reasonMessage: typeof raw.reasonMessage === "string" ? raw.reasonMessage : null,
    finished: raw.finished,
    balanceAfterMinor: balanceAfter === null ? null : BigInt(balanceAfter as string),
    createdAtMs,
    decidedAtMs: optionalNumber("decidedAtMs"),
    finishedAtMs: optionalNumber("finishedAtMs"),
  };
}

export interface GatewayLogPaths {
  transactionLogsJson: string;
  transactionLogsJournal: string;
  transactionsTxt: string;
}

/** The journal is folded into the snapshot once it holds this many lines (and at every orderly close). */
export const journalLinesCompactAfter = 20_000;

interface LoadedRecords {
  records: Map<string, PaymentRecord>;
  journalLines: number;
  /** Bytes of complete lines in the journal; anything after them is a torn final append. */
  journalCompleteBytes: number;
  tornBytes: number;
}

async function readOptional(path: string): Promise<string> {
  return readFile(path, "utf8").catch((error: NodeJS.ErrnoException) => {
    if (error.code === "ENOENT") return "";
    throw error;
  });
}

/**
 * Reads the snapshot (transaction_logs.json), then replays the journal over it: each journal line is a
 * whole record, so the last line of a payment is its state. A final line without its newline is an append
 * that a crash cut short (its fsync never finished, so nothing was answered on it) and is ignored; any
 * other damage refuses to load, naming the file and the line.
 */
async function loadRecords(paths: GatewayLogPaths): Promise<LoadedRecords> {
  const records = new Map<string, PaymentRecord>();
  const snapshotPath = paths.transactionLogsJson;
  const text = await readOptional(snapshotPath);
  if (text.trim() !== "") {
    let document: { format?: unknown; payments?: unknown };
    try {
      document = JSON.parse(text);
    } catch (error) {
      throw new GatewayLogError(`${snapshotPath}: not valid JSON (truncated or corrupt?): ${(error as Error).message}; refusing to start, fix or restore the file`);
    }
    if (document.format !== formatTag || !Array.isArray(document.payments)) throw new GatewayLogError(`${snapshotPath}: not a ${formatTag} document; refusing to start`);
    document.payments.forEach((raw, index) => {
      try {
        const record = decode(raw as Record<string, unknown>, `payments[${index}]`);
        records.set(record.paymentId, record);
      } catch (error) {
        throw new GatewayLogError(`${snapshotPath}: ${(error as Error).message}; refusing to start`);
      }
    });
  }
  const journal = await readOptional(paths.transactionLogsJournal);
  const completeEnd = journal.lastIndexOf("\n") + 1;
  const lines = journal.slice(0, completeEnd).split("\n");
  lines.pop();
  lines.forEach((line, index) => {
    try {
      const record = decode(JSON.parse(line) as Record<string, unknown>, `line ${index + 1}`);
      records.set(record.paymentId, record);
    } catch (error) {
      throw new GatewayLogError(`${paths.transactionLogsJournal}:${index + 1}: not a payment record (${(error as Error).message}); refusing to start, fix or restore the file`);
    }
  });
  return { records, journalLines: lines.length, journalCompleteBytes: Buffer.byteLength(journal.slice(0, completeEnd)), tornBytes: Buffer.byteLength(journal.slice(completeEnd)) };
}

/** Every payment record as the files hold them now, for tools that read a data dir (no lock taken). */
export async function readGatewayRecords(paths: GatewayLogPaths): Promise<Map<string, PaymentRecord>> {
  return (await loadRecords(paths)).records;
}

export class GatewayLog {
  readonly #paths: GatewayLogPaths;
  readonly #records = new Map<string, PaymentRecord>();
  readonly #writer: CoalescingWriter;
  readonly #journal: AppendOnlyFile;
  readonly #transactionsTxt: AppendOnlyFile;
  readonly #nowMs: () => number;
  /** Records changed since the last write began, and ids begun since then (for transactions.txt). */
  #dirty = new Set<PaymentRecord>();
  #newIds: string[] = [];
  #journalLines = 0;
  #releaseLock: (() => Promise<void>) | null = null;
  #onWriteFailure: (error: unknown) => void = () => undefined;
  /** A torn final journal line found (and cut off) at open, in bytes; 0 if none. */
  tornBytesDropped = 0;

  private constructor(paths: GatewayLogPaths, nowMs: () => number) {
    this.#paths = paths;
    this.#nowMs = nowMs;
    this.#journal = new AppendOnlyFile(paths.transactionLogsJournal, { tornCrashName: "gateway-journal-torn" });
    this.#transactionsTxt = new AppendOnlyFile(paths.transactionsTxt);
    this.#writer = new CoalescingWriter(
      () => this.#writeBatch(),
      (callers) => groupCommitBatchSize.observe({ file: "transaction_logs.journal" }, callers),
    );
  }

  /** Loads the log, holding its lock for the life of the process: one coordinator per data dir. */
  static async open(paths: GatewayLogPaths, nowMs: () => number = Date.now, onWriteFailure?: (error: unknown) => void): Promise<GatewayLog> {
    const log = new GatewayLog(paths, nowMs);
    if (onWriteFailure !== undefined) log.#onWriteFailure = onWriteFailure;
    log.#releaseLock = await holdFileLock(paths.transactionLogsJson);
    const loaded = await loadRecords(paths);
    for (const [id, record] of loaded.records) log.#records.set(id, record);
    log.#journalLines = loaded.journalLines;
    if (loaded.tornBytes > 0) {
      // Cut the torn append off before anything is appended after it.
      await truncate(paths.transactionLogsJournal, loaded.journalCompleteBytes);
      log.tornBytesDropped = loaded.tornBytes;
    }
    return log;
  }

  async close(): Promise<void> {
    await this.#writer.flush();
    await this.#compact();
    await this.#journal.close();
    await this.#transactionsTxt.close();
    await this.#releaseLock?.();
    this.#releaseLock = null;
  }

  get(paymentId: string): PaymentRecord | undefined {
    return this.#records.get(paymentId);
  }

  all(): IterableIterator<PaymentRecord> {
    return this.#records.values();
  }

  unfinished(): PaymentRecord[] {
    return [...this.#records.values()].filter((record) => !record.finished);
  }

  get size(): number {
    return this.#records.size;
  }

  /**
   * Records a new payment as preparing. The record is visible at once (so a concurrent duplicate finds it);
   * the promise resolves when it is durable.
   */
  begin(details: PaymentDetails): { record: PaymentRecord; durable: Promise<void> } {
    assert(!this.#records.has(details.paymentId), `payment ${details.paymentId} begun twice`);
    const record: PaymentRecord = {
      ...details,
      state: "preparing",
      reason: null,
      reasonMessage: null,
      finished: false,
      balanceAfterMinor: null,
      createdAtMs: this.#nowMs(),
      decidedAtMs: null,
      finishedAtMs: null,
    };
    this.#records.set(record.paymentId, record);
    this.#dirty.add(record);
    this.#newIds.push(record.paymentId);
    return { record, durable: this.#writer.flush() };
  }

  /** Records an id the coordinator never began as aborted, so that it can never be committed later. */
  async tombstone(paymentId: string): Promise<void> {
    assert(!this.#records.has(paymentId), `tombstone over existing payment ${paymentId}`);
    const nowMs = this.#nowMs();
    const record: PaymentRecord = {
      paymentId,
      fromUser: "",
      fromBank: "",
      toUser: "",
      toBank: "",
      amountMinor: 0n,
      state: "aborted",
      reason: "PAYMENT_ABORTED",
      reasonMessage: "a bank asked about a payment this gateway never began",
      finished: true,
      balanceAfterMinor: null,
      createdAtMs: nowMs,
      decidedAtMs: nowMs,
      finishedAtMs: nowMs,
    };
    this.#records.set(paymentId, record);
    this.#dirty.add(record);
    await this.#writer.flush();
  }

  async advance(paymentId: string, state: PaymentState, outcome: { reason?: Reason; reasonMessage?: string; balanceAfterMinor?: bigint | null; finished?: boolean } = {}): Promise<void> {
    const record = this.#records.get(paymentId);
    assert(record !== undefined, `advance: unknown payment ${paymentId}`);
    assert(stateRank[state] >= stateRank[record.state], `payment ${paymentId} may not move from ${record.state} to ${state}`);
    assert(!(stateRank[record.state] === 2 && state !== record.state), `payment ${paymentId} is already ${record.state}`);
    if (record.state !== state && stateRank[state] === 2) record.decidedAtMs = this.#nowMs();
    record.state = state;
    if (outcome.reason !== undefined) record.reason = outcome.reason;
    if (outcome.reasonMessage !== undefined) record.reasonMessage = outcome.reasonMessage;
    if (outcome.balanceAfterMinor !== undefined && outcome.balanceAfterMinor !== null) record.balanceAfterMinor = outcome.balanceAfterMinor;
    if (outcome.finished === true) {
      assert(stateRank[state] === 2, `payment ${paymentId} finished before a decision`);
      record.finished = true;
      record.finishedAtMs = this.#nowMs();
    }
    this.#dirty.add(record);
    await this.#writer.flush();
  }

  /**
   * One group commit: the changed records appended to the journal, new ids to transactions.txt, both
   * fsynced (side by side) before any caller hears back. A failed write leaves memory ahead of disk, and
   * after a failed fsync the file's content is unknown: the owner is told, to stop and recover from disk.
   */
  async #writeBatch(): Promise<void> {
    const changed = [...this.#dirty];
    const newIds = this.#newIds;
    this.#dirty = new Set();
    this.#newIds = [];
    try {
      const journal = async () => {
        if (changed.length === 0) return;
        let lines = "";
        for (const record of changed) lines += `${JSON.stringify(encode(record))}\n`;
        await this.#journal.append(lines);
        this.#journalLines += changed.length;
      };
      const ids = async () => {
        if (newIds.length > 0) await this.#transactionsTxt.append(newIds.map((id) => `${id}\n`).join(""));
      };
      await Promise.all([journal(), ids()]);
      if (this.#journalLines >= journalLinesCompactAfter) await this.#compact();
    } catch (error) {
      this.#onWriteFailure(error);
      throw error;
    }
  }

  /** Folds the journal into a new snapshot: the snapshot first (atomically), then an empty journal. */
  async #compact(): Promise<void> {
    if (this.#journalLines === 0) return;
    const payments = [...this.#records.values()].map(encode);
    await writeFileAtomic(this.#paths.transactionLogsJson, JSON.stringify({ format: formatTag, payments }) + "\n", { crashName: "gateway-log-temp-written" });
    // A crash here replays the journal over a snapshot that already holds it: harmless, lines are whole records.
    await writeFileAtomic(this.#paths.transactionLogsJournal, "");
    await this.#journal.reopen();
    this.#journalLines = 0;
  }

}
