// Owns server/finished_transactions_<BANK>.jsonl: the bank's recently finished payments (committed with the
// balance it answered, or aborted), one JSON object per line, append-only. They answer repeated Commit/Abort
// calls and refuse a Prepare that comes after an Abort. Records reach it from the bank's journal at each
// checkpoint; each bank appends only to its own (the bank process holds its lock for its life).
//
// It is bounded: once it holds twice `retainedMax` lines it is rewritten with the newest `retainedMax`. The
// forgotten records leave a mark, the latest gateway start time of a forgotten same-bank transfer, written
// as the first line of the rewritten log ({"transfersForgottenThroughMs": N}). A question about a transfer
// the bank does not know, begun no later than that, may be about one it forgot: it gets no answer that
// could be wrong (see Participant.settleTransfer).
import { readFile, truncate } from "node:fs/promises";
import { AppendOnlyFile, writeFileAtomic } from "../../../durable/files.js";
import { retainNewest, type Finished } from "../../../domain/ledger.js";

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
  const { paymentId, outcome, atMs, replyBalanceMinor, begunAtMs } = raw;
  if (typeof paymentId !== "string" || paymentId === "") throw new FinishedLogError(`${where}: paymentId must be a non-empty string`);
  if (outcome !== "committed" && outcome !== "aborted") throw new FinishedLogError(`${where}: outcome must be committed or aborted`);
  if (typeof atMs !== "number" || !Number.isSafeInteger(atMs)) throw new FinishedLogError(`${where}: atMs must be an integer`);
  if (replyBalanceMinor !== null && (typeof replyBalanceMinor !== "string" || !/^[0-9]{1,19}$/.test(replyBalanceMinor))) throw new FinishedLogError(`${where}: replyBalanceMinor must be an integer string or null`);
  if (begunAtMs !== undefined && (typeof begunAtMs !== "number" || !Number.isSafeInteger(begunAtMs) || begunAtMs < 0)) throw new FinishedLogError(`${where}: begunAtMs must be a non-negative integer`);
  const finished: Finished = { paymentId, outcome, atMs, replyBalanceMinor: replyBalanceMinor === null ? null : BigInt(replyBalanceMinor) };
  if (begunAtMs !== undefined) finished.begunAtMs = begunAtMs;
  return finished;
}

const watermarkKey = "transfersForgottenThroughMs";

function parse(text: string, path: string): { records: Finished[]; forgottenThroughMs: number } {
  const lines = text.split("\n");
  lines.pop();
  const records = new Map<string, Finished>();
  let watermarkMs = 0;
  lines.forEach((line, index) => {
    try {
      if (line.startsWith(`{"${watermarkKey}":`)) {
        const value = (JSON.parse(line) as Record<string, unknown>)[watermarkKey];
        if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) throw new FinishedLogError(`${path}:${index + 1}: ${watermarkKey} must be a non-negative integer`);
        watermarkMs = Math.max(watermarkMs, value);
        return;
      }
      const finished = decode(line, `${path}:${index + 1}`);
      records.delete(finished.paymentId);
      records.set(finished.paymentId, finished);
    } catch (error) {
      throw new FinishedLogError(`${(error as Error).message}; refusing to start, fix or restore the file`);
    }
  });
  return { records: [...records.values()], forgottenThroughMs: watermarkMs };
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
  return parse(text.slice(0, text.lastIndexOf("\n") + 1), path).records;
}

export class FinishedLog {
  readonly path: string;
  readonly #file: AppendOnlyFile;
  readonly #retainedMax: number;
  /** What the log holds, bounded: what a compaction keeps. */
  readonly #retained = new Map<string, Finished>();
  #lines: number;
  #forgottenThroughMs: number;

  private constructor(path: string, retainedMax: number, lines: number, records: readonly Finished[], forgottenThroughMs: number) {
    this.path = path;
    this.#file = new AppendOnlyFile(path);
    this.#retainedMax = retainedMax;
    this.#lines = lines;
    this.#forgottenThroughMs = forgottenThroughMs;
    for (const finished of records) this.#retain(finished);
  }

  /** The latest gateway start time of a same-bank transfer this log no longer holds (0: none). */
  get transfersForgottenThroughMs(): number {
    return this.#forgottenThroughMs;
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
    const { records, forgottenThroughMs: watermarkMs } = parse(complete, path);
    const lines = complete === "" ? 0 : complete.split("\n").length - 1;
    return { log: new FinishedLog(path, retainedMax, lines, records, watermarkMs), records };
  }

  /** Appends records durably; rewrites the log down to the newest `retainedMax` once it holds twice that. */
  async append(records: readonly Finished[]): Promise<void> {
    if (records.length === 0) return;
    await this.#file.append(records.map((finished) => `${encode(finished)}\n`).join(""));
    for (const finished of records) this.#retain(finished);
    this.#lines += records.length;
    if (this.#lines < 2 * this.#retainedMax) return;
    const kept = [...this.#retained.values()].map((finished) => `${encode(finished)}\n`);
    // The mark goes first: the records it stands for are dropped by the same atomic rewrite.
    if (this.#forgottenThroughMs > 0) kept.unshift(`${JSON.stringify({ [watermarkKey]: this.#forgottenThroughMs })}\n`);
    await writeFileAtomic(this.path, kept.join(""));
    await this.#file.reopen();
    this.#lines = kept.length;
  }

  async close(): Promise<void> {
    await this.#file.close();
  }

  #retain(finished: Finished): void {
    this.#forgottenThroughMs = retainNewest(this.#retained, finished, this.#retainedMax, this.#forgottenThroughMs);
  }
}
