// Owns server/finished_transactions_<BANK>.jsonl: the bank's recently finished payments (committed with the
// balance it answered, or aborted), one JSON object per line, append-only. They answer repeated Commit/Abort
// calls and refuse a Prepare that comes after an Abort. Records reach it from the bank's journal at each
// checkpoint; each bank appends only to its own (the bank process holds its lock for its life).
import { readFile, truncate } from "node:fs/promises";
import { AppendOnlyFile, writeFileAtomic } from "./durable.js";
import type { Finished } from "./pending-file.js";

export class FinishedLogError extends Error {
  override readonly name = "FinishedLogError";
}

function encode(finished: Finished): string {
  return JSON.stringify({ ...finished, replyBalanceMinor: finished.replyBalanceMinor === null ? null : finished.replyBalanceMinor.toString() });
}

function decode(line: string, where: string): Finished {
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(line) as Record<string, unknown>;
  } catch (error) {
    throw new FinishedLogError(`${where}: not JSON (${(error as Error).message})`);
  }
  const { paymentId, outcome, atMs, replyBalanceMinor } = raw;
  if (typeof paymentId !== "string" || paymentId === "") throw new FinishedLogError(`${where}: paymentId must be a non-empty string`);
  if (outcome !== "committed" && outcome !== "aborted") throw new FinishedLogError(`${where}: outcome must be committed or aborted`);
  if (typeof atMs !== "number" || !Number.isSafeInteger(atMs)) throw new FinishedLogError(`${where}: atMs must be an integer`);
  if (replyBalanceMinor !== null && (typeof replyBalanceMinor !== "string" || !/^[0-9]{1,19}$/.test(replyBalanceMinor))) throw new FinishedLogError(`${where}: replyBalanceMinor must be an integer string or null`);
  return { paymentId, outcome, atMs, replyBalanceMinor: replyBalanceMinor === null ? null : BigInt(replyBalanceMinor) };
}

function parse(text: string, path: string): Finished[] {
  const lines = text.split("\n");
  lines.pop();
  const records = new Map<string, Finished>();
  lines.forEach((line, index) => {
    try {
      const finished = decode(line, `${path}:${index + 1}`);
      records.delete(finished.paymentId);
      records.set(finished.paymentId, finished);
    } catch (error) {
      throw new FinishedLogError(`${(error as Error).message}; refusing to start, fix or restore the file`);
    }
  });
  return [...records.values()];
}

async function readText(path: string): Promise<string> {
  return readFile(path, "utf8").catch((error: NodeJS.ErrnoException) => {
    if (error.code === "ENOENT") return "";
    throw error;
  });
}

/** Every record of the log, oldest first, for readers other than the bank (a torn last line is skipped, not cut). */
export async function readFinishedLog(path: string): Promise<Finished[]> {
  const text = await readText(path);
  return parse(text.slice(0, text.lastIndexOf("\n") + 1), path);
}

export class FinishedLog {
  readonly path: string;
  readonly #file: AppendOnlyFile;
  readonly #retainedMax: number;
  /** What the log holds, bounded: what a compaction keeps. */
  readonly #retained = new Map<string, Finished>();
  #lines: number;

  private constructor(path: string, retainedMax: number, lines: number, records: readonly Finished[]) {
    this.path = path;
    this.#file = new AppendOnlyFile(path);
    this.#retainedMax = retainedMax;
    this.#lines = lines;
    for (const finished of records) this.#retain(finished);
  }

  /**
   * Opens the log and reads all its records, oldest first (a later line for the same payment wins); the log
   * retains the newest `retainedMax`. A final line without its newline is an append cut short by a crash
   * before its fsync returned: it is cut off.
   */
  static async open(path: string, retainedMax: number): Promise<{ log: FinishedLog; records: Finished[] }> {
    const text = await readText(path);
    const completeEnd = text.lastIndexOf("\n") + 1;
    if (completeEnd < text.length) await truncate(path, Buffer.byteLength(text.slice(0, completeEnd)));
    const complete = text.slice(0, completeEnd);
    const records = parse(complete, path);
    const lines = complete === "" ? 0 : complete.split("\n").length - 1;
    return { log: new FinishedLog(path, retainedMax, lines, records.slice(-retainedMax)), records };
  }

  /** Appends records durably; rewrites the log down to the newest `retainedMax` once it holds twice that. */
  async append(records: readonly Finished[]): Promise<void> {
    if (records.length === 0) return;
    await this.#file.append(records.map((finished) => `${encode(finished)}\n`).join(""));
    for (const finished of records) this.#retain(finished);
    this.#lines += records.length;
    if (this.#lines < 2 * this.#retainedMax) return;
    const kept = [...this.#retained.values()].map((finished) => `${encode(finished)}\n`);
    await writeFileAtomic(this.path, kept.join(""));
    await this.#file.reopen();
    this.#lines = kept.length;
  }

  async close(): Promise<void> {
    await this.#file.close();
  }

  #retain(finished: Finished): void {
    this.#retained.delete(finished.paymentId);
    this.#retained.set(finished.paymentId, finished);
    while (this.#retained.size > this.#retainedMax) this.#retained.delete(this.#retained.keys().next().value as string);
  }
}
