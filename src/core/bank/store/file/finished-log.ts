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
import { AppendOnlyFile, writeFileAtomic } from "../../../durable/files.js";
import { nodeDisk, readOptionalFile, type Disk } from "../../../durable/disk.js";
import {
  decodeJsonLines,
  fitsOneLine,
  JsonLinesError,
  minorUnits,
  nonEmptyString,
  nullable,
  object,
  oneOf,
  optional,
  safeInteger,
  type Decoder,
} from "../../../durable/jsonl.js";
import { assert } from "../../../domain/assert.js";
import { retainNewest, type Finished } from "../../../domain/ledger.js";

export class FinishedLogError extends Error {
  override readonly name = "FinishedLogError";
}

function encode(finished: Finished): string {
  const text = JSON.stringify({
    ...finished,
    replyBalanceMinor: finished.replyBalanceMinor === null ? null : finished.replyBalanceMinor.toString(),
  });
  // A payment id is bounded where it enters (domain/validate.ts), so a line is a few hundred bytes: this guards that bound.
  assert(fitsOneLine(text), "a finished record's line must fit the reader's bound (maxLineBytesDefault)");
  return text;
}

const watermarkKey = "transfersForgottenThroughMs";

/** A finished payment's line (encode). */
const finishedRecord: Decoder<Finished> = object({
  paymentId: nonEmptyString(),
  outcome: oneOf(["committed", "aborted"]),
  atMs: safeInteger(),
  replyBalanceMinor: nullable(minorUnits()),
  begunAtMs: optional(safeInteger({ min: 0 })),
});

/** The mark forgotten transfers leave, the first line of a rewritten log: `{"transfersForgottenThroughMs": N}`. */
const watermark = object({ [watermarkKey]: safeInteger({ min: 0 }) });
type Watermark = { [watermarkKey]: number };

/** A line of the log: the mark (told apart by its one key) or a finished payment. */
const finishedLine: Decoder<Finished | Watermark> = (value) =>
  typeof value === "object" && value !== null && Object.hasOwn(value, watermarkKey)
    ? watermark(value)
    : finishedRecord(value);

/**
 * Decodes the log's complete lines (a torn last line is left out, not decoded): its records, a later line
 * for the same payment replacing an earlier one, and the highest mark. A bad complete line is refused by
 * file and line.
 */
function decodeLog(
  buffer: Buffer,
  path: string,
): { records: Finished[]; lines: number; completeBytes: number; tornBytes: number; forgottenThroughMs: number } {
  let read;
  try {
    read = decodeJsonLines(buffer, path, finishedLine);
  } catch (error) {
    // Its message names the file and the line, and says to refuse to start, fix or restore the file.
    if (error instanceof JsonLinesError) throw new FinishedLogError(error.message, { cause: error });
    throw error;
  }
  const records = new Map<string, Finished>();
  let watermarkMs = 0;
  for (const entry of read.entries) {
    if (watermarkKey in entry) {
      watermarkMs = Math.max(watermarkMs, entry[watermarkKey]);
      continue;
    }
    records.delete(entry.paymentId);
    records.set(entry.paymentId, entry);
  }
  return {
    records: [...records.values()],
    lines: read.lines,
    completeBytes: read.completeBytes,
    tornBytes: read.tornBytes,
    forgottenThroughMs: watermarkMs,
  };
}

async function readOptional(disk: Disk, path: string): Promise<Buffer> {
  return (await readOptionalFile(disk, path)) ?? Buffer.alloc(0);
}

/** Every record of the log, oldest first, for readers other than the bank (a torn last line is skipped, not cut). */
export async function readFinishedLog(path: string, disk: Disk = nodeDisk): Promise<Finished[]> {
  return decodeLog(await readOptional(disk, path), path).records;
}

export class FinishedLog {
  readonly path: string;
  readonly #disk: Disk;
  readonly #file: AppendOnlyFile;
  readonly #retainedMax: number;
  /** What the log holds, bounded: what a compaction keeps. */
  readonly #retained = new Map<string, Finished>();
  #lines: number;
  #forgottenThroughMs: number;

  private constructor(
    disk: Disk,
    path: string,
    retainedMax: number,
    lines: number,
    records: readonly Finished[],
    forgottenThroughMs: number,
  ) {
    this.path = path;
    this.#disk = disk;
    this.#file = new AppendOnlyFile(path, { disk });
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
  static async open(
    path: string,
    retainedMax: number,
    disk: Disk = nodeDisk,
  ): Promise<{ log: FinishedLog; records: Finished[] }> {
    const { records, lines, completeBytes, tornBytes, forgottenThroughMs } = decodeLog(
      await readOptional(disk, path),
      path,
    );
    // Cut off only once the rest is known good: a log refused is left as it was, for the operator.
    if (tornBytes > 0) await disk.truncate(path, completeBytes);
    return { log: new FinishedLog(disk, path, retainedMax, lines, records, forgottenThroughMs), records };
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
    await writeFileAtomic(this.path, kept.join(""), { disk: this.#disk });
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
