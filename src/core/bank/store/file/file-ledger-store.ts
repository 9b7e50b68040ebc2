// The bank's ledger store on files (see ledger-store.ts): its journal generations, the shared accounts CSV and
// pending file, and its finished log. Every entry is appended to the current journal generation, and an
// append answers only once it is fsynced (group commit: entries appended while a write is in flight share the
// next one, and one fsync). The journal is the bank's own file, so the path of a payment takes no
// cross-process lock. A balance change is written in this order:
//   1. journal: a `commit` entry with the absolute after-balances         (the commit point; then the reply)
//   2. checkpoint, soon after and once for many changes, in its own order:
//      finished log ← the generation's finished payments; accounts CSV ← its balances;
//      pending section ← the holds, and "generation g+1 is the first not folded in"; then journal g is deleted
// A crash anywhere replays the journals the pending section does not cover, in order, setting the same
// absolute balances again: nothing is applied twice, and the CSV never holds a balance that is not durable.
import { assert } from "../../../domain/assert.js";
import {
  holdOf,
  finishedOf,
  retainNewest,
  type Account,
  type Finished,
  type Hold,
  type LedgerEntry,
} from "../../../domain/ledger.js";
import { GroupCommit } from "../../../durable/group-commit.js";
import { crashPoint } from "../../../faults/crash.js";
import { silentLogger, type Logger } from "../../../observability/log.js";
import { groupCommitBatchSize } from "../../../observability/metrics.js";
import { hashPassword, isPasswordHash } from "../../passwords.js";
import type { LedgerState, LedgerStore } from "../ledger-store.js";
import { asError } from "../../../domain/errors.js";
import { loadBankAccounts, rewriteBankRows } from "./accounts-csv.js";
import { BankJournal, deleteJournalsBefore } from "./bank-journal.js";
import { readBankState, type BankFiles } from "./bank-state.js";
import { FinishedLog } from "./finished-log.js";
import { nodeDisk, type Disk } from "../../../durable/disk.js";
import { writeBankPending } from "./pending-file.js";

export interface FileLedgerStoreOptions {
  bank: string;
  files: BankFiles;
  /** Finished payments the finished log (and load()) keeps: the participant's finishedRetainedMax. */
  finishedRetainedMax: number;
  /** Hashes a plaintext password found in the accounts CSV at open (default: scrypt, bank/passwords.ts). */
  hashPassword?: (password: string) => Promise<string>;
  logger?: Logger;
  /** Called when a durable write fails: memory is then ahead of disk, and the process must stop. */
  onWriteFailure?: (error: unknown) => void;
  /**
   * How soon after a payment is decided durably a checkpoint folds the journal into the shared files. The
   * default grows with the accounts (a checkpoint rewrites every CSV row): the CSV's cost per second stays
   * flat as the bank grows; and it is at least checkpointDelayMsBusy after a long generation.
   */
  checkpointDelayMs?: number;
  /**
   * A generation this long is folded in at once. The default grows with the accounts (a checkpoint rewrites
   * every CSV row), so that the checkpoint cost per payment stays flat as the bank grows.
   */
  checkpointEntriesMax?: number;
}

const checkpointDelayMsMin = 200;
/** About 2 s at 100,000 accounts, where one checkpoint reads and writes a 10 MB CSV. */
const checkpointDelayMsPerAccount = 0.02;
/**
 * Under load a checkpoint waits at least this long: each one rewrites the shared pending file, which then
 * holds thousands of holds of both banks, and at 200 ms apart that was an eighth of a bank's CPU.
 */
const checkpointDelayMsBusy = 1_000;
/** A generation at least this long means the bank is busy. */
const busyGenerationEntries = 1_024;
const checkpointEntriesMin = 16_384;

/** What one checkpoint folds into the shared files: the state at the end of one journal generation. */
interface Fold {
  generation: number;
  balancesMinor: Map<string, bigint>;
  holds: Map<string, Hold>;
  finished: Finished[];
}

export class FileLedgerStore implements LedgerStore {
  readonly bank: string;
  readonly #files: BankFiles;
  readonly #disk: Disk;
  readonly #onWriteFailure: (error: unknown) => void;
  readonly #journal: BankJournal;
  readonly #finishedLog: FinishedLog;
  readonly #writer: GroupCommit<LedgerEntry>;
  /** Each account's password hash, for the CSV rows a checkpoint rewrites (passwords never change). */
  readonly #passwords: Map<string, string>;
  readonly #checkpointEntriesMax: number;
  readonly #checkpointDelayMs: number;
  readonly #checkpointDelayBusyMs: number;
  /** The recovered state, until load() hands it over. */
  #loaded: LedgerState | null;
  /** Entries of the last generation folded in: a long one spaces the next checkpoint further. */
  #lastGenerationEntries = 0;
  /** Whether an append came since the last write began (a write with none only rotates, and is no batch). */
  #entriesQueued = false;
  #broken: Error | null = null;
  /** The durable image of the current generation, which its checkpoint folds in. */
  readonly #durableHolds: Map<string, Hold>;
  #foldBalances = new Map<string, bigint>();
  #foldFinished: Finished[] = [];
  #checkpointTimer: NodeJS.Timeout | null = null;
  /** The next write ends the current generation before it appends anything. */
  #rotateRequested = false;
  /** Checkpoints run one after another: an older one must never write its balances over a newer one's. */
  #checkpointing: Promise<void> = Promise.resolve();

  private constructor(
    options: FileLedgerStoreOptions,
    loaded: LedgerState,
    journal: BankJournal,
    finishedLog: FinishedLog,
  ) {
    this.bank = options.bank;
    this.#files = options.files;
    this.#disk = options.files.disk ?? nodeDisk;
    this.#onWriteFailure = options.onWriteFailure ?? (() => undefined);
    this.#journal = journal;
    this.#finishedLog = finishedLog;
    this.#loaded = loaded;
    const { accounts, holds } = loaded;
    this.#passwords = new Map([...accounts].map(([username, account]) => [username, account.password]));
    // A copy: the owner of the loaded holds moves their expiry, and the durable image keeps what was written.
    this.#durableHolds = new Map([...holds].map(([paymentId, hold]) => [paymentId, { ...hold }]));
    this.#checkpointEntriesMax =
      options.checkpointEntriesMax ?? Math.max(checkpointEntriesMin, Math.ceil(accounts.size / 2));
    this.#checkpointDelayMs =
      options.checkpointDelayMs ??
      Math.max(checkpointDelayMsMin, Math.round(accounts.size * checkpointDelayMsPerAccount));
    this.#checkpointDelayBusyMs = options.checkpointDelayMs ?? Math.max(this.#checkpointDelayMs, checkpointDelayMsBusy);
    const file = `journal_${this.bank}`;
    this.#writer = new GroupCommit<LedgerEntry>((entries) => this.#write(entries), {
      onBatch: (entries) => {
        if (this.#entriesQueued) groupCommitBatchSize.observe({ file }, entries);
        this.#entriesQueued = false;
      },
      startOnNextTurn: true,
    });
  }

  /**
   * Loads the bank's rows (migrating plaintext passwords), its last checkpoint and its journals; anything the
   * journals held beyond the checkpoint is folded into the shared files before the store is handed out.
   */
  static async open(options: FileLedgerStoreOptions): Promise<FileLedgerStore> {
    const { bank, files } = options;
    const disk = files.disk ?? nodeDisk;
    const accounts = await loadBankAccounts(
      files.accountsCsvPath,
      bank,
      options.hashPassword ?? hashPassword,
      isPasswordHash,
      disk,
    );
    // Opened first: it cuts off a torn last line, and its records are the state's (read once).
    const { log, records } = await FinishedLog.open(files.finishedLogPath, options.finishedRetainedMax, disk);
    const state = await readBankState(files, bank, accounts, records);
    for (const hold of state.holds.values()) {
      assert(accounts.has(hold.username), `hold ${hold.paymentId} names unknown account ${hold.username}`);
    }
    const lastGeneration = state.generations.at(-1);
    const journal = new BankJournal(
      files.journalDirectory,
      bank,
      lastGeneration === undefined ? state.firstGeneration : lastGeneration + 1,
      disk,
    );
    const finished = new Map<string, Finished>();
    let transfersForgottenThroughMs = log.transfersForgottenThroughMs;
    for (const record of state.finished.values()) {
      transfersForgottenThroughMs = retainNewest(
        finished,
        record,
        options.finishedRetainedMax,
        transfersForgottenThroughMs,
      );
    }
    const store = new FileLedgerStore(
      options,
      { accounts, holds: state.holds, finished, transfersForgottenThroughMs },
      journal,
      log,
    );
    const { unfolded } = state;
    if (state.generations.length > 0 || unfolded.changes > 0 || unfolded.finished.length > 0) {
      (options.logger ?? silentLogger).warn(
        { generations: state.generations, changes: unfolded.changes },
        "replayed the journal; folding it into the shared files",
      );
      await store.#checkpoint({
        generation: journal.generation - 1,
        balancesMinor: unfolded.balancesMinor,
        holds: new Map(state.holds),
        finished: unfolded.finished,
      });
      if (store.#broken !== null) throw store.#broken;
    } else {
      await deleteJournalsBefore(files.journalDirectory, bank, state.firstGeneration, disk);
    }
    return store;
  }

  /** The state recovered at open, handed over once: its accounts and holds are the caller's from then on. */
  async load(): Promise<LedgerState> {
    const loaded = this.#loaded;
    assert(loaded !== null, "load() is called once");
    this.#loaded = null;
    return loaded;
  }

  /** Not async: the engine's shared promise is returned as it is, with no promise of its own per entry. */
  append(entries: readonly LedgerEntry[]): Promise<void> {
    if (this.#broken !== null) return Promise.reject(this.#broken);
    this.#entriesQueued = true;
    return this.#writer.commit(entries);
  }

  settled(): Promise<void> {
    if (this.#broken !== null) return Promise.reject(this.#broken);
    return this.#writer.settled();
  }

  /** Folds everything durable so far into the shared files now (the next append starts a new generation). */
  async flushCheckpoint(): Promise<void> {
    // Every append so far written first (a write that fails is reported by #fail, and stops the store).
    while (this.#broken === null && this.#writer.busy) await this.#writer.settled().catch(() => undefined);
    if (this.#checkpointTimer !== null) clearTimeout(this.#checkpointTimer);
    this.#checkpointTimer = null;
    if (this.#broken === null) {
      this.#rotateRequested = true;
      await this.#writer.flush();
    }
    await this.#checkpointing;
  }

  /** An orderly stop: every append durable, and the journal folded into the shared files. */
  async close(): Promise<void> {
    await this.flushCheckpoint();
    await this.#journal.close();
    await this.#finishedLog.close();
  }

  /**
   * One write of the group commit: ends the generation first if that was asked (no append is then in
   * flight), then appends the entries; a full generation asks for the next write to end it.
   */
  async #write(entries: LedgerEntry[]): Promise<void> {
    if (this.#broken !== null) throw this.#broken;
    if (this.#rotateRequested) {
      this.#rotateRequested = false;
      await this.#rotate();
    }
    if (entries.length === 0) return;
    try {
      await this.#journal.append(entries);
    } catch (error) {
      this.#fail(error);
      throw error;
    }
    // A checkpoint that failed meanwhile stopped the store: nothing more is answered.
    const broken = this.#broken as Error | null;
    if (broken !== null) throw broken;
    this.#noteDurable(entries);
    if (this.#journal.lines >= this.#checkpointEntriesMax) this.#requestRotation();
  }

  /** Keeps the durable image of the generation; a decided payment schedules the next checkpoint. */
  #noteDurable(entries: readonly LedgerEntry[]): void {
    let decided = false;
    for (const entry of entries) {
      if (entry.op === "hold") {
        this.#durableHolds.set(entry.paymentId, holdOf(entry));
        continue;
      }
      decided = true;
      this.#durableHolds.delete(entry.paymentId);
      if (entry.op === "commit") {
        for (const [username, afterMinor] of Object.entries(entry.balancesMinor))
          this.#foldBalances.set(username, afterMinor);
      }
      this.#foldFinished.push(finishedOf(entry));
    }
    if (decided && this.#checkpointTimer === null) {
      this.#checkpointTimer = setTimeout(
        () => {
          this.#checkpointTimer = null;
          this.#requestRotation();
        },
        this.#lastGenerationEntries >= busyGenerationEntries ? this.#checkpointDelayBusyMs : this.#checkpointDelayMs,
      );
      // The journal already holds the change: a pending checkpoint is no reason to keep a process alive.
      this.#checkpointTimer.unref();
    }
  }

  /** Asks for a write that ends the generation (after the one in flight, if any). */
  #requestRotation(): void {
    if (this.#broken !== null || this.#rotateRequested) return;
    this.#rotateRequested = true;
    // A failure is reported by #fail; this write has no caller of its own to tell.
    this.#writer.flush().catch(() => undefined);
  }

  /** Ends the current generation (no append is in flight) and queues its checkpoint. */
  async #rotate(): Promise<void> {
    if (this.#journal.lines === 0) return;
    this.#lastGenerationEntries = this.#journal.lines;
    let generation: number;
    try {
      generation = await this.#journal.rotate();
    } catch (error) {
      this.#fail(error);
      throw error;
    }
    const fold: Fold = {
      generation,
      balancesMinor: this.#foldBalances,
      holds: new Map(this.#durableHolds),
      finished: this.#foldFinished,
    };
    this.#foldBalances = new Map();
    this.#foldFinished = [];
    this.#checkpointing = this.#checkpointing.then(() => this.#checkpoint(fold));
  }

  /** Folds one finished generation into the shared files, then deletes it. Never rejects: a failure stops the store. */
  async #checkpoint(fold: Fold): Promise<void> {
    if (this.#broken !== null) return;
    try {
      await this.#finishedLog.append(fold.finished);
      if (fold.balancesMinor.size > 0) {
        const rows = new Map<string, Account>(
          [...fold.balancesMinor].map(([username, balanceMinor]) => [
            username,
            { balanceMinor, password: this.#password(username) },
          ]),
        );
        await rewriteBankRows(this.#files.accountsCsvPath, this.bank, rows, this.#disk);
        crashPoint("bank-checkpoint-after-csv");
      }
      await writeBankPending(
        this.#files.pendingJsonPath,
        this.bank,
        { holds: fold.holds, applying: new Map(), finished: new Map(), journalGeneration: fold.generation + 1 },
        this.#disk,
      );
      crashPoint("bank-checkpoint-before-journal-delete");
      await deleteJournalsBefore(this.#files.journalDirectory, this.bank, fold.generation + 1, this.#disk);
    } catch (error) {
      this.#fail(error);
    }
  }

  #fail(error: unknown): void {
    if (this.#broken !== null) return;
    this.#broken = asError(error);
    this.#onWriteFailure(error);
  }

  #password(username: string): string {
    const password = this.#passwords.get(username);
    assert(password !== undefined, `checkpoint: no account ${username} at bank ${this.bank}`);
    return password;
  }
}
