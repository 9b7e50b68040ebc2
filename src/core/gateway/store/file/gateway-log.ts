// The coordinator's store on files (CoordinatorStore, ../coordinator-store.ts). Owns
// payment_gateway/transaction_logs.json (a snapshot of each payment's state), transaction_logs.journal (every
// change since, appended) and transactions.txt (its idempotency keys, append-only). All are durable before
// the promise of a change resolves; the journal is group-committed (durable/group-commit.ts).
// Memory and the snapshot hold the unfinished payments and the newest finished ones; older finished
// records move to the archive (a PaymentArchive: transaction_archive.sqlite, sqlite-archive.ts), from which a
// repeated id is still answered, however old. An earlier build's archive (transaction_archive.jsonl and its
// index directory) is imported into it once, at start (legacy-archive.ts).
import {
  array,
  boolean,
  decodeRecord,
  fitsOneLine,
  JsonLinesError,
  literal,
  minorUnits,
  nonEmptyString,
  nullable,
  nullWhenAbsent,
  object,
  oneOf,
  parseRecord,
  readJsonLines,
  RecordDecodeError,
  refine,
  safeInteger,
  string,
  type DecodedBy,
  type Decoder,
  type OnJsonLine,
} from "../../../durable/jsonl.js";
import { SqliteArchive, readArchivedPayments } from "./sqlite-archive.js";
import type { ArchivedPayment, PaymentArchive } from "./payment-archive.js";
import { importLegacyArchive, type LegacyArchiveImport } from "./legacy-archive.js";
import { assert } from "../../../domain/assert.js";
import { crashPoint } from "../../../faults/crash.js";
import { AppendOnlyFile, cutTornLastLine, writeFileAtomic } from "../../../durable/files.js";
import { GroupCommit } from "../../../durable/group-commit.js";
import { nodeDisk, readOptionalFile, type Disk } from "../../../durable/disk.js";
import { isReason } from "../../../domain/errors.js";
import { groupCommitBatchSize } from "../../../observability/metrics.js";
import {
  advancedRecord,
  beganRecord,
  legRoles,
  legsMax,
  legsProblem,
  legVotes,
  noLegs,
  tombstoneRecord,
  withProgress,
  type Outcome,
  type PaymentChange,
  type PaymentDetails,
  type PaymentLeg,
  type PaymentRecord,
  type PaymentState,
} from "../../../domain/payment.js";
import { countsKey, type Begun, type CoordinatorStore, type PaymentCounts } from "../coordinator-store.js";

export type { PaymentChange, PaymentDetails, PaymentRecord, PaymentState, Outcome };

const formatTag = "paynet-gateway-log/1";

export class GatewayLogError extends Error {
  override readonly name = "GatewayLogError";
}

// Records are built field by field, not by spreading: a spread object with this many fields can fall out
// of V8's fast representation, and these are made for every payment.
function encode(record: PaymentRecord): Record<string, unknown> {
  return {
    paymentId: record.paymentId,
    fromUser: record.fromUser,
    fromBank: record.fromBank,
    toUser: record.toUser,
    toBank: record.toBank,
    amountMinor: record.amountMinor.toString(),
    state: record.state,
    reason: record.reason,
    reasonMessage: record.reasonMessage,
    finished: record.finished,
    balanceAfterMinor: record.balanceAfterMinor?.toString() ?? null,
    createdAtMs: record.createdAtMs,
    decidedAtMs: record.decidedAtMs,
    finishedAtMs: record.finishedAtMs,
    legs: encodeLegs(record.legs),
  };
}

/** A record's legs as the files hold them (an empty list for a record without). */
function encodeLegs(legs: readonly PaymentLeg[]): Array<Record<string, unknown>> {
  return legs.map((leg) => ({ role: leg.role, vote: leg.vote, votedAtMs: leg.votedAtMs, ackedAtMs: leg.ackedAtMs }));
}

/** A record as the text of one line (without its newline): a journal's whole record, the archive's record. */
function recordText(record: PaymentRecord): string {
  const text = JSON.stringify(encode(record));
  assert(
    fitsOneLine(text),
    "a payment record's line must fit the reader's bound (maxLineBytesDefault): its reasonMessage is too long",
  );
  return text;
}

/** A record as one line of the journal. */
function recordLine(record: PaymentRecord): string {
  return `${recordText(record)}\n`;
}

/** A finished record as the archive keeps it. */
function archivedPayment(record: PaymentRecord): ArchivedPayment {
  assert(record.finished, `only a finished payment is archived, not ${record.paymentId}`);
  return { paymentId: record.paymentId, line: recordText(record), committed: record.state === "committed" };
}

/**
 * A journal line for a payment whose whole record is already durable (earlier in the journal, or in the
 * snapshot): only what changes, a third of a whole record's bytes. Null fields, and legs when there are none,
 * are left out.
 */
function progressLine(record: PaymentRecord): string {
  let line = `{"progress":${JSON.stringify(record.paymentId)},"state":"${record.state}","finished":${record.finished}`;
  if (record.reason !== null) line += `,"reason":"${record.reason}"`;
  if (record.reasonMessage !== null) line += `,"reasonMessage":${JSON.stringify(record.reasonMessage)}`;
  if (record.balanceAfterMinor !== null) line += `,"balanceAfterMinor":"${record.balanceAfterMinor}"`;
  if (record.decidedAtMs !== null) line += `,"decidedAtMs":${record.decidedAtMs}`;
  if (record.finishedAtMs !== null) line += `,"finishedAtMs":${record.finishedAtMs}`;
  if (record.legs.length > 0) line += `,"legs":${JSON.stringify(encodeLegs(record.legs))}`;
  line += "}";
  assert(
    fitsOneLine(line),
    "a progress line must fit the reader's bound (maxLineBytesDefault): its reasonMessage is too long",
  );
  return `${line}\n`;
}

// The schemas of the records above, one per record type (durable/jsonl.ts decodes them).

const paymentState: Decoder<PaymentState> = oneOf(["preparing", "prepared", "committed", "aborted"]);
const reason = refine(string(), isReason, "must be a known reason");
const timeMs = safeInteger();

/**
 * A record's legs (domain/payment.ts PaymentLeg), at most legsMax. A record written before legs were kept has
 * none (the field is absent), and a progress line leaves them out when there are none.
 */
const legList = refine(
  array(
    object({
      role: oneOf(legRoles),
      vote: nullable(oneOf(legVotes)),
      votedAtMs: nullable(timeMs),
      ackedAtMs: nullable(timeMs),
    }),
    { lengthMax: legsMax },
  ),
  (legs) => legsProblem(legs) === null,
  "must be the legs of one payment: one per role, payer first, a vote with its time, times not negative",
);
const paymentLegs: Decoder<readonly PaymentLeg[]> = (value) => (value === undefined ? noLegs : legList(value));

/** A whole record (encode): a snapshot's `payments` entry, a payment's first journal line, an archive line. */
const paymentRecord: Decoder<PaymentRecord> = object({
  paymentId: nonEmptyString(),
  // A tombstone's (domain/payment.ts) are empty.
  fromUser: string(),
  fromBank: string(),
  toUser: string(),
  toBank: string(),
  amountMinor: minorUnits(),
  state: paymentState,
  reason: nullable(reason),
  reasonMessage: nullable(string()),
  finished: boolean(),
  balanceAfterMinor: nullable(minorUnits()),
  createdAtMs: timeMs,
  decidedAtMs: nullable(timeMs),
  finishedAtMs: nullable(timeMs),
  legs: paymentLegs,
});

/** A progress line (progressLine): what changes in a record after its payment begins, null fields left out. */
const paymentProgress = object({
  progress: nonEmptyString(),
  state: paymentState,
  finished: boolean(),
  reason: nullWhenAbsent(reason),
  reasonMessage: nullWhenAbsent(string()),
  balanceAfterMinor: nullWhenAbsent(minorUnits()),
  decidedAtMs: nullWhenAbsent(timeMs),
  finishedAtMs: nullWhenAbsent(timeMs),
  legs: paymentLegs,
});
/** A progress line: the payment's id under `progress`, and its state and outcome (absolute values: the line is the whole truth of them). */
type ProgressLine = DecodedBy<typeof paymentProgress>;

/** A journal line: a whole record (a payment's first line), or the progress of one already recorded. */
const journalLine: Decoder<PaymentRecord | ProgressLine> = (value) =>
  typeof value === "object" && value !== null && Object.hasOwn(value, "progress")
    ? paymentProgress(value)
    : paymentRecord(value);

/** The snapshot, transaction_logs.json: one JSON document. */
const gatewaySnapshot = object({ format: literal(formatTag), payments: array(paymentRecord) });

export interface GatewayLogPaths {
  transactionLogsJson: string;
  transactionLogsJournal: string;
  transactionsTxt: string;
  /** The archive of older finished payments (sqlite-archive.ts). */
  transactionArchiveSqlite: string;
  /** An earlier build's archive, imported into the database at start and then removed. */
  transactionArchiveJsonl: string;
  /** The directory of that earlier archive's index files, removed with it. */
  transactionArchiveIndex: string;
}

/**
 * The journal is folded into the snapshot once it holds this many lines, or as many as the snapshot holds
 * records if that is more (so a compaction's cost, which grows with the snapshot, stays constant per
 * payment), and at every orderly close.
 */
export const journalLinesCompactAfter = 20_000;

/**
 * Finished payments kept in memory and in the snapshot; older ones are archived (see GatewayLog) and still
 * answered from there. A compaction rewrites every retained record and stalls the event loop while it
 * serializes them: with 100,000 retained, batched runs had twice the p99 latency (1.0–1.3 s against
 * 0.5–0.7 s in five interleaved pairs; docs/benchmarks-history.md, "finished payments retained at the
 * gateway") for the same throughput. A repeated id is nearly always repeated within seconds, far fewer
 * payments than this.
 */
export const finishedRetainedDefault = 10_000;

interface LoadedRecords {
  records: Map<string, PaymentRecord>;
  journalLines: number;
  /** Bytes of complete lines in the journal; anything after them is a torn final append. */
  journalCompleteBytes: number;
  tornBytes: number;
  /** Payments with a progress line in the journal but no record before it: they must be archived. */
  archivedProgress: Set<string>;
}

async function readOptional(disk: Disk, path: string): Promise<string> {
  return (await readOptionalFile(disk, path))?.toString("utf8") ?? "";
}

/**
 * Reads the snapshot (transaction_logs.json), then replays the journal over it: a payment's first journal
 * line is its whole record, each later one its progress (state and outcome, absolute values), so the last
 * line of a payment is its state. A final line without its newline is an append
 * that a crash cut short (its fsync never finished, so nothing was answered on it) and is ignored; any
 * other damage refuses to load, naming the file and the line.
 */
async function loadRecords(disk: Disk, paths: GatewayLogPaths): Promise<LoadedRecords> {
  const records = new Map<string, PaymentRecord>();
  const snapshotPath = paths.transactionLogsJson;
  const text = await readOptional(disk, snapshotPath);
  if (text.trim() !== "") {
    let document: unknown;
    try {
      document = JSON.parse(text);
    } catch (error) {
      throw new GatewayLogError(
        `${snapshotPath}: not valid JSON (truncated or corrupt?): ${(error as Error).message}; refusing to start, fix or restore the file`,
      );
    }
    const snapshot = decodeRecord(gatewaySnapshot, document);
    if (!snapshot.ok)
      throw new GatewayLogError(
        `${snapshotPath}: not a ${formatTag} document (${snapshot.error.message}); refusing to start, fix or restore the file`,
      );
    for (const record of snapshot.value.payments) records.set(record.paymentId, record);
  }
  const archivedProgress = new Set<string>();
  const journal = await readLines(disk, paths.transactionLogsJournal, journalLine, (entry) => {
    if (!("progress" in entry)) {
      records.set(entry.paymentId, entry);
      return;
    }
    const record = records.get(entry.progress);
    // A compaction archived the payment and wrote a snapshot without it, then stopped before it emptied
    // the journal: the archive holds its final record (checked once the archive is open).
    if (record === undefined) archivedProgress.add(entry.progress);
    else records.set(record.paymentId, withProgress(record, entry));
  });
  return {
    records,
    journalLines: journal.lines,
    journalCompleteBytes: journal.completeBytes,
    tornBytes: journal.tornBytes,
    archivedProgress,
  };
}

/**
 * Streams an append-only file of records (the journal, the archive; either may be larger than one string may
 * hold) from byte `fromBytes` on through the one JSON-lines reader, giving each decoded line with its byte
 * range. A final line without its newline is an append a crash cut short before its fsync returned, so
 * nothing depended on it: it is reported as torn, not read. Any other damage refuses to load, naming the
 * file and the line.
 */
async function readLines<T>(
  disk: Disk,
  path: string,
  decodeLine: Decoder<T>,
  onEntry: OnJsonLine<T>,
  fromBytes = 0,
): Promise<{ lines: number; completeBytes: number; tornBytes: number }> {
  try {
    return await readJsonLines(path, decodeLine, onEntry, { fromBytes, disk });
  } catch (error) {
    if (!(error instanceof JsonLinesError)) throw error;
    // JSON that the record's schema refused: its error names the field.
    if (error.cause instanceof RecordDecodeError)
      throw new GatewayLogError(
        `${error.where}: not a payment record (${error.cause.message}); refusing to start, fix or restore the file`,
        { cause: error },
      );
    throw new GatewayLogError(error.message, { cause: error });
  }
}

/** An archived line as its record, or an error naming the archive and the id. */
function decodeArchived(archivePath: string, paymentId: string, line: string): PaymentRecord {
  const decoded = parseRecord(paymentRecord, line);
  if (!decoded.ok)
    throw new GatewayLogError(
      `${archivePath}: the record of ${paymentId} is not a payment record (${decoded.error.message}); refusing to go on, restore the file`,
    );
  if (decoded.value.paymentId !== paymentId)
    throw new GatewayLogError(
      `${archivePath}: the record under ${paymentId} is that of ${decoded.value.paymentId}; refusing to go on, restore the file`,
    );
  return decoded.value;
}

/**
 * Every payment record as the files hold them now, archived ones included, for tools that read a data dir
 * while the gateway may run (no lock taken; the archive database is opened read-only). An earlier build's
 * archive not yet imported (transaction_archive.jsonl) is read too.
 */
export async function readGatewayRecords(paths: GatewayLogPaths): Promise<Map<string, PaymentRecord>> {
  // The archive is read last: a compaction archives records before it rewrites the snapshot, so a record
  // leaving the snapshot is already in the archive by the time this reads it.
  const { records } = await loadRecords(nodeDisk, paths);
  // An earlier build's archive before the database: a gateway's start imports it (committed) before it removes
  // it, so a read that finds it gone finds its records in the database.
  await readLines(nodeDisk, paths.transactionArchiveJsonl, paymentRecord, (record) => {
    if (!records.has(record.paymentId)) records.set(record.paymentId, record);
  });
  for (const archived of readArchivedPayments(paths.transactionArchiveSqlite)) {
    if (!records.has(archived.paymentId))
      records.set(
        archived.paymentId,
        decodeArchived(paths.transactionArchiveSqlite, archived.paymentId, archived.line),
      );
  }
  return records;
}

export interface GatewayLogOptions {
  nowMs?: () => number;
  /** Told when a durable write fails: memory is then ahead of disk. */
  onWriteFailure?: (error: unknown) => void;
  /** Finished payments kept in memory and in the snapshot (default finishedRetainedDefault). */
  finishedRetainedMax?: number;
  /**
   * The archive to use instead of the database beside the files (transaction_archive.sqlite): the power-loss
   * schedule's in-memory one, which outlives its simulated power losses. The log closes it with itself.
   */
  archive?: PaymentArchive;
  /** The disk the files are on (default: the real file system; a simulated one in power-loss tests). */
  disk?: Disk;
  /** Journal lines after which a write compacts (default journalLinesCompactAfter; small in power-loss tests). */
  compactAfterJournalLines?: number;
}

export class GatewayLog implements CoordinatorStore {
  readonly #paths: GatewayLogPaths;
  readonly #disk: Disk;
  /** Unfinished payments and the newest finished ones; never an id that is also archived. */
  readonly #records = new Map<string, PaymentRecord>();
  /** The older finished payments; set by #load. */
  #archiveOpen: PaymentArchive | null = null;
  readonly #archiveGiven: PaymentArchive | undefined;
  readonly #finishedRetainedMax: number;
  readonly #compactAfterJournalLines: number;
  readonly #writer: GroupCommit;
  readonly #journal: AppendOnlyFile;
  readonly #transactionsTxt: AppendOnlyFile;
  readonly #nowMs: () => number;
  /** Records changed since the last write began, and ids begun since then (for transactions.txt). */
  #dirty = new Set<string>();
  /** Records begun whose whole record is not yet in the journal: their next line is whole, later ones progress. */
  #unjournaled = new Set<string>();
  /**
   * The write that makes each record held in memory durable, while it may be in flight (resolved ones stay
   * until the record is replaced or dropped: a weak map, so they cost nothing after).
   */
  readonly #pendingWrites = new WeakMap<PaymentRecord, Promise<void>>();
  #newIds: string[] = [];
  #journalLines = 0;
  #releaseLock: (() => Promise<void>) | null = null;
  #onWriteFailure: (error: unknown) => void = () => undefined;
  /** A torn final journal line found (and cut off) at open, in bytes; 0 if none. */
  tornBytesDropped = 0;
  /** What importing an earlier build's archive at open did; null when there was none. */
  legacyArchiveImport: LegacyArchiveImport | null = null;
  /** Finished records the snapshot or journal held that were archived already (a crash in between), dropped at open. */
  archivedDroppedAtOpen = 0;

  private constructor(paths: GatewayLogPaths, options: GatewayLogOptions) {
    this.#paths = paths;
    this.#disk = options.disk ?? nodeDisk;
    this.#nowMs = options.nowMs ?? Date.now;
    this.#onWriteFailure = options.onWriteFailure ?? (() => undefined);
    this.#finishedRetainedMax = options.finishedRetainedMax ?? finishedRetainedDefault;
    this.#compactAfterJournalLines = options.compactAfterJournalLines ?? journalLinesCompactAfter;
    this.#archiveGiven = options.archive;
    assert(
      Number.isSafeInteger(this.#finishedRetainedMax) && this.#finishedRetainedMax >= 0,
      "finishedRetainedMax must be a non-negative integer",
    );
    this.#journal = new AppendOnlyFile(paths.transactionLogsJournal, {
      tornCrashName: "gateway-journal-torn",
      disk: this.#disk,
    });
    this.#transactionsTxt = new AppendOnlyFile(paths.transactionsTxt, { disk: this.#disk });
    this.#writer = new GroupCommit(() => this.#writeBatch(), {
      onBatch: (callers) => groupCommitBatchSize.observe({ file: "transaction_logs.journal" }, callers),
      startOnNextTurn: true,
    });
  }

  /** Loads the log, holding its lock for the life of the process: one coordinator per data dir. */
  static async open(paths: GatewayLogPaths, options: GatewayLogOptions = {}): Promise<GatewayLog> {
    const log = new GatewayLog(paths, options);
    log.#releaseLock = await log.#disk.holdLock(paths.transactionLogsJson);
    try {
      await log.#load();
    } catch (error) {
      log.#archiveOpen?.close();
      await log.#releaseLock();
      throw error;
    }
    return log;
  }

  async #load(): Promise<void> {
    const paths = this.#paths;
    const loaded = await loadRecords(this.#disk, paths);
    for (const [id, record] of loaded.records) this.#records.set(id, record);
    this.#journalLines = loaded.journalLines;
    if (loaded.tornBytes > 0) {
      // Cut the torn append off before anything is appended after it.
      await this.#disk.truncate(paths.transactionLogsJournal, loaded.journalCompleteBytes);
      this.tornBytesDropped = loaded.tornBytes;
    }
    this.#archiveOpen = this.#archiveGiven ?? SqliteArchive.open(paths.transactionArchiveSqlite);
    this.legacyArchiveImport = await importLegacyArchive(this.#disk, paths, this.#archive, (onRecord) =>
      readLines(this.#disk, paths.transactionArchiveJsonl, paymentRecord, (record, _offsetBytes, _endBytes, where) => {
        if (!record.finished)
          throw new GatewayLogError(
            `${where}: an unfinished payment in the archive; refusing to start, fix or restore the file`,
          );
        onRecord(archivedPayment(record));
      }),
    );
    // Its ids are only ever appended: a power loss may leave the last one torn, which the next id would extend.
    await cutTornLastLine(paths.transactionsTxt, this.#disk);
    this.#dropArchived();
    for (const paymentId of loaded.archivedProgress) {
      if (this.#records.has(paymentId) || this.#archive.lineOf(paymentId) !== undefined) continue;
      throw new GatewayLogError(
        `${paths.transactionLogsJournal}: progress of payment ${paymentId}, whose record is in neither the snapshot, the journal nor the archive; refusing to start, fix or restore the files`,
      );
    }
  }

  /**
   * A crash between a compaction's archive commit and its snapshot rewrite leaves finished records in both: the
   * archive has the same final record, so memory lets it go (and counts it once). An unfinished record, or
   * another outcome, under an archived id is damage.
   */
  #dropArchived(): void {
    for (const [paymentId, record] of this.#records) {
      const line = this.#archive.lineOf(paymentId);
      if (line === undefined) continue;
      const archived = decodeArchived(this.#paths.transactionArchiveSqlite, paymentId, line);
      if (!record.finished || archived.state !== record.state) {
        throw new GatewayLogError(
          `${this.#paths.transactionLogsJson}: payment ${paymentId} is ${record.state}${record.finished ? ", finished" : ", unfinished"} there and archived ${archived.state} in ${this.#paths.transactionArchiveSqlite}; refusing to start, fix or restore the files`,
        );
      }
      this.#records.delete(paymentId);
      this.archivedDroppedAtOpen += 1;
    }
  }

  get #archive(): PaymentArchive {
    assert(this.#archiveOpen !== null, "the gateway log is not loaded");
    return this.#archiveOpen;
  }

  async close(): Promise<void> {
    await this.#writer.flush();
    await this.#compact();
    await this.#journal.close();
    await this.#transactionsTxt.close();
    this.#archive.close();
    await this.#releaseLock?.();
    this.#releaseLock = null;
  }

  /** The record of a payment held in memory (unfinished or recently finished); see find() for any payment. */
  get(paymentId: string): PaymentRecord | undefined {
    return this.#records.get(paymentId);
  }

  /** The record of any payment this gateway ever began, from the archive for an old one. */
  async find(paymentId: string): Promise<PaymentRecord | undefined> {
    const record = this.#known(paymentId);
    if (record !== undefined) await this.#durable(record);
    return record;
  }

  async idsWithPrefix(prefix: string, limit: number): Promise<string[]> {
    const inMemory = [...this.#records.keys()].filter((id) => id.startsWith(prefix));
    const ids = new Set([...inMemory, ...this.#archive.idsWithPrefix(prefix, limit)]);
    return [...ids].sort().slice(0, limit);
  }

  /**
   * The record under the id, in memory or archived (never both). Synchronous, so nothing can begin the id
   * between the two looks.
   */
  #known(paymentId: string): PaymentRecord | undefined {
    const record = this.#records.get(paymentId);
    if (record !== undefined) return record;
    const line = this.#archive.lineOf(paymentId);
    return line === undefined ? undefined : decodeArchived(this.#paths.transactionArchiveSqlite, paymentId, line);
  }

  /** Records held in memory: every unfinished payment and the newest finished ones. */
  all(): IterableIterator<PaymentRecord> {
    return this.#records.values();
  }

  /** How many finished payments have moved to the archive, by outcome. */
  archivedCounts(): { committed: number; aborted: number } {
    return this.#archive.counts();
  }

  async unfinished(): Promise<PaymentRecord[]> {
    return [...this.#records.values()].filter((record) => !record.finished);
  }

  async counts(): Promise<PaymentCounts> {
    const counts: PaymentCounts = { preparing: 0, committing: 0, aborting: 0, ...this.#archive.counts() };
    for (const record of this.#records.values()) counts[countsKey(record)] += 1;
    return counts;
  }

  get size(): number {
    return this.#records.size;
  }

  /**
   * The payment recorded under the id, or a new `preparing` one, visible at once (so that a concurrent
   * duplicate finds it); `durable` resolves when it is.
   */
  async beginOrGet(details: PaymentDetails): Promise<Begun> {
    const known = this.#known(details.paymentId);
    if (known === undefined) return this.#begin(details);
    await this.#durable(known);
    return { created: false, record: known };
  }

  async beginOrGetAll(details: readonly PaymentDetails[]): Promise<Begun[]> {
    const begun: Begun[] = [];
    for (const one of details) {
      const known = this.#known(one.paymentId);
      begun.push(known !== undefined ? { created: false, record: known } : this.#begin(one));
    }
    // New records are handed out before they are durable (their `durable` says when); known ones only once
    // they are: an answer, or a decision, may rest on them.
    for (const one of begun) if (!one.created) await this.#durable(one.record);
    return begun;
  }

  /** Resolves once `record` (a value this store handed out or holds) is durable: at once, nearly always. */
  #durable(record: PaymentRecord): Promise<void> {
    return this.#pendingWrites.get(record) ?? Promise.resolve();
  }

  /** Remembers the write that makes `record` durable (a record is a value: each change is a new one). */
  #written(record: PaymentRecord, durable: Promise<void>): Promise<void> {
    this.#pendingWrites.set(record, durable);
    return durable;
  }

  #begin(details: PaymentDetails): Begun {
    assert(!this.#records.has(details.paymentId), "payment begun twice");
    const record = beganRecord(details, this.#nowMs());
    this.#records.set(record.paymentId, record);
    this.#dirty.add(record.paymentId);
    this.#unjournaled.add(record.paymentId);
    this.#newIds.push(record.paymentId);
    return { created: true, record, durable: this.#written(record, this.#writer.flush()) };
  }

  /** The record of the id; if none, an id the coordinator never began recorded as aborted, so that it can never be committed later. */
  async tombstone(paymentId: string): Promise<PaymentRecord> {
    const known = this.#known(paymentId);
    if (known !== undefined) {
      await this.#durable(known);
      return known;
    }
    const record = tombstoneRecord(paymentId, this.#nowMs());
    this.#records.set(paymentId, record);
    this.#dirty.add(paymentId);
    this.#unjournaled.add(paymentId);
    await this.#written(record, this.#writer.flush());
    return record;
  }

  async advance(change: PaymentChange): Promise<PaymentRecord> {
    const record = this.#apply(change);
    await this.#written(record, this.#writer.flush());
    return record;
  }

  /** advance() for many payments, made durable together by one group commit. */
  async advanceAll(changes: readonly PaymentChange[]): Promise<PaymentRecord[]> {
    if (changes.length === 0) return [];
    const records = changes.map((change) => this.#apply(change));
    const durable = this.#writer.flush();
    for (const record of records) this.#pendingWrites.set(record, durable);
    await durable;
    return records;
  }

  #apply(change: PaymentChange): PaymentRecord {
    const record = this.#records.get(change.paymentId);
    assert(record !== undefined, `advance: unknown payment ${change.paymentId}`);
    const next = advancedRecord(record, change, this.#nowMs());
    this.#records.set(next.paymentId, next);
    this.#dirty.add(next.paymentId);
    return next;
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
    const whole: string[] = [];
    try {
      const journal = async () => {
        if (changed.length === 0) return;
        let lines = "";
        for (const paymentId of changed) {
          const record = this.#records.get(paymentId);
          assert(record !== undefined, `a changed payment ${paymentId} left memory before its write`);
          if (this.#unjournaled.delete(paymentId)) {
            whole.push(paymentId);
            lines += recordLine(record);
          } else {
            lines += progressLine(record);
          }
        }
        await this.#journal.append(lines);
        this.#journalLines += changed.length;
      };
      const ids = async () => {
        if (newIds.length > 0) await this.#transactionsTxt.append(newIds.map((id) => `${id}\n`).join(""));
      };
      await Promise.all([journal(), ids()]);
      if (this.#journalLines >= Math.max(this.#compactAfterJournalLines, this.#records.size)) await this.#compact();
    } catch (error) {
      // Not known to be durable: a later line of these payments must still be whole.
      for (const paymentId of whole) this.#unjournaled.add(paymentId);
      this.#onWriteFailure(error);
      throw error;
    }
  }

  /**
   * Folds the journal into a new snapshot: finished records beyond the newest `finishedRetainedMax` are
   * archived (one durable transaction), then the snapshot is written atomically without them, then the
   * journal is emptied.
   */
  async #compact(): Promise<void> {
    if (this.#journalLines === 0) return;
    this.#archiveOldest();
    const payments = [...this.#records.values()].map(encode);
    await writeFileAtomic(this.#paths.transactionLogsJson, JSON.stringify({ format: formatTag, payments }) + "\n", {
      crashName: "gateway-log-temp-written",
      disk: this.#disk,
    });
    // A crash here replays the journal over a snapshot that already holds it: harmless, each line is a whole
    // record or absolute progress, and a payment's last line is its state.
    await writeFileAtomic(this.#paths.transactionLogsJournal, "", { disk: this.#disk });
    await this.#journal.reopen();
    this.#journalLines = 0;
  }

  #archiveOldest(): void {
    // Only records whose last change is written: one finished while this compaction ran (the write that
    // carries it queued behind this one) must reach the journal first, or that write would find it gone.
    const finished = [...this.#records.values()].filter(
      (record) => record.finished && !this.#dirty.has(record.paymentId),
    );
    const count = finished.length - this.#finishedRetainedMax;
    if (count <= 0) return;
    finished.sort((a, b) => (a.finishedAtMs ?? 0) - (b.finishedAtMs ?? 0));
    const leaving = finished.slice(0, count);
    // Durable when it returns: only then may memory, and with it the next snapshot, let the records go.
    const inserted = this.#archive.insertMany(leaving.map(archivedPayment));
    // Open drops from memory whatever is archived, and nothing is archived but from here: every one is new.
    assert(
      inserted === leaving.length,
      `archived ${inserted} of ${leaving.length} leaving records: some were archived already while still held in memory`,
    );
    crashPoint("gateway-archive-appended");
    for (const record of leaving) this.#records.delete(record.paymentId);
  }
}
