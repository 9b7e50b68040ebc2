// Owns server/finished_transactions_<BANK>.jsonl: the bank's recently finished payments (committed with the
// balance it answered, or aborted), one JSON object per line, append-only. They answer repeated Commit/Abort
// calls and refuse a Prepare that comes after an Abort. Kept out of the shared pending file so that a write
// there stays small; each bank appends only to its own (the bank process holds its lock for its life).
import { readFile, truncate } from "node:fs/promises";
import { appendDurable, writeFileAtomic } from "./durable.js";
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

export class FinishedLog {
  readonly path: string;
  readonly #retainedMax: number;
  #lines: number;

  private constructor(path: string, retainedMax: number, lines: number) {
    this.path = path;
    this.#retainedMax = retainedMax;
    this.#lines = lines;
  }

  /**
   * Opens the log and reads its records, oldest first (a later line for the same payment wins). A final line
   * without its newline is an append cut short by a crash before its fsync returned: it is cut off.
   */
  static async open(path: string, retainedMax: number): Promise<{ log: FinishedLog; records: Finished[] }> {
    const text = await readFile(path, "utf8").catch((error: NodeJS.ErrnoException) => {
      if (error.code === "ENOENT") return "";
      throw error;
    });
    const completeEnd = text.lastIndexOf("\n") + 1;
    if (completeEnd < text.length) await truncate(path, Buffer.byteLength(text.slice(0, completeEnd)));
    const lines = text.slice(0, completeEnd).split("\n");
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
    return { log: new FinishedLog(path, retainedMax, lines.length), records: [...records.values()].slice(-retainedMax) };
  }

  /** Appends records durably; rewrites the log down to `retained` once it holds twice the bound. */
  async append(records: readonly Finished[], retained: () => Iterable<Finished>): Promise<void> {
    if (records.length === 0) return;
    await appendDurable(this.path, records.map((finished) => `${encode(finished)}\n`).join(""));
    this.#lines += records.length;
    if (this.#lines < 2 * this.#retainedMax) return;
    const kept = [...retained()].map((finished) => `${encode(finished)}\n`);
    await writeFileAtomic(this.path, kept.join(""));
    this.#lines = kept.length;
  }
}
