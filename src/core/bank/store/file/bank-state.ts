// A bank's durable state rebuilt from its files: the accounts CSV rows and the pending section as of its last
// checkpoint, its finished log, then every journal generation not folded in yet, replayed in order. Journal
// balances are absolute, so replaying a change the CSV already holds sets the same value again: nothing is
// applied twice, whichever step of a checkpoint a crash interrupted.
import { dirname } from "node:path";
import {
  finishedOf,
  holdOf,
  type Account,
  type Finished,
  type Hold,
  type LedgerEntry,
} from "../../../domain/ledger.js";
import { banksOf, readAccountsCsv } from "./accounts-csv.js";
import { listJournalGenerations, journalPath, readJournal } from "./bank-journal.js";
import { readFinishedLog } from "./finished-log.js";
import { readBankPending } from "./pending-file.js";
import { finishedLogPath, type DataPaths } from "../../../durable/paths.js";
import { nodeDisk, type Disk } from "../../../durable/disk.js";

export interface BankFiles {
  accountsCsvPath: string;
  pendingJsonPath: string;
  finishedLogPath: string;
  /** Where the bank's journal generations live (server/). */
  journalDirectory: string;
  /** The disk they are on (default: the real file system; a simulated one in power-loss tests). */
  disk?: Disk;
}

export function bankStateFiles(paths: DataPaths, bank: string): BankFiles {
  return {
    accountsCsvPath: paths.accountsCsv,
    pendingJsonPath: paths.pendingJson,
    finishedLogPath: finishedLogPath(paths, bank),
    journalDirectory: dirname(paths.pendingJson),
  };
}

export interface BankState {
  /** Every account of the bank, balances as durable. */
  accounts: Map<string, Account>;
  holds: Map<string, Hold>;
  /** Finished payments, oldest first (the caller bounds how many it keeps). */
  finished: Map<string, Finished>;
  /** What the shared files do not hold yet: a checkpoint must fold these in before the journals go. */
  unfolded: { balancesMinor: Map<string, bigint>; finished: Finished[]; changes: number };
  /** The journal generations replayed, oldest first (empty when the last checkpoint covers everything). */
  generations: number[];
  /** The first generation the pending section does not cover. */
  firstGeneration: number;
}

/** Applies one journal entry (or an earlier build's applying entry) to the state. */
export function replayEntry(
  state: Pick<BankState, "accounts" | "holds" | "finished" | "unfolded">,
  entry: LedgerEntry,
): void {
  state.unfolded.changes += 1;
  if (entry.op === "hold") {
    state.holds.set(entry.paymentId, holdOf(entry));
    return;
  }
  if (entry.op === "commit") {
    for (const [username, afterMinor] of Object.entries(entry.balancesMinor)) {
      const account = state.accounts.get(username);
      if (account === undefined)
        throw new Error(`journal: payment ${entry.paymentId} names unknown account ${username}`);
      account.balanceMinor = afterMinor;
      state.unfolded.balancesMinor.set(username, afterMinor);
    }
  }
  // A decided payment, committed or aborted: its hold ends, and it is finished (the newest record last).
  state.holds.delete(entry.paymentId);
  const finished = finishedOf(entry);
  state.finished.delete(entry.paymentId);
  state.finished.set(entry.paymentId, finished);
  state.unfolded.finished.push(finished);
}

/**
 * Reads the bank's state. `accounts` are its CSV rows, and `finishedLog` its finished log's records, when the
 * caller has read them already (the bank does, migrating passwords and opening the log); the balances in
 * `accounts` are updated in place by the replay.
 */
export async function readBankState(
  files: BankFiles,
  bank: string,
  accounts?: Map<string, Account>,
  finishedLog?: readonly Finished[],
): Promise<BankState> {
  const disk = files.disk ?? nodeDisk;
  const pending = await readBankPending(files.pendingJsonPath, bank, disk);
  const rows =
    accounts ??
    new Map(
      (await readAccountsCsv(files.accountsCsvPath, disk))
        .filter((row) => row.bank === bank)
        .map((row) => [row.username, { balanceMinor: row.balanceMinor, password: row.password }]),
    );
  const finished = new Map<string, Finished>(pending.finished);
  for (const record of finishedLog ?? (await readFinishedLog(files.finishedLogPath, disk))) {
    finished.delete(record.paymentId);
    finished.set(record.paymentId, record);
  }
  const state: BankState = {
    accounts: rows,
    holds: pending.holds,
    finished,
    unfolded: { balancesMinor: new Map(), finished: [], changes: 0 },
    generations: [],
    firstGeneration: pending.journalGeneration,
  };
  // An earlier build's half-applied changes come first: they are older than any journal.
  for (const applying of pending.applying.values()) {
    replayEntry(state, {
      op: "commit",
      paymentId: applying.paymentId,
      balancesMinor: applying.balancesMinor,
      replyBalanceMinor: applying.replyBalanceMinor,
      atMs: 0,
    });
  }
  for (const [paymentId, record] of finished) if (record.outcome === "aborted") state.holds.delete(paymentId);
  for (const generation of await listJournalGenerations(files.journalDirectory, bank, disk)) {
    if (generation < pending.journalGeneration) continue; // folded in; its deletion was cut short
    const { entries } = await readJournal(journalPath(files.journalDirectory, bank, generation), disk);
    for (const entry of entries) replayEntry(state, entry);
    state.generations.push(generation);
  }
  return state;
}

/**
 * The bank's state for a reader outside the bank process (tests, bench, verify), which may race a checkpoint:
 * read again until the pending section is the same before and after the read.
 */
export async function readBankStateSettled(files: BankFiles, bank: string, attemptsMax = 50): Promise<BankState> {
  for (let attempt = 1; ; attempt += 1) {
    const before = await readBankPending(files.pendingJsonPath, bank, files.disk);
    const state = await readBankState(files, bank);
    const after = await readBankPending(files.pendingJsonPath, bank, files.disk);
    if (before.journalGeneration === after.journalGeneration && after.journalGeneration === state.firstGeneration)
      return state;
    if (attempt >= attemptsMax)
      throw new Error(`bank ${bank}: its state kept changing while being read (${attemptsMax} attempts)`);
  }
}

export interface NetworkState {
  /** Durable balances by `user@BANK`. */
  balancesMinor: Map<string, bigint>;
  banks: Map<string, BankState>;
}

/** Every bank's durable state (the banks named in the accounts file), as a restart would find it. */
export async function readNetworkState(paths: DataPaths, banks?: readonly string[]): Promise<NetworkState> {
  const names = banks ?? banksOf(await readAccountsCsv(paths.accountsCsv));
  const balancesMinor = new Map<string, bigint>();
  const states = new Map<string, BankState>();
  for (const bank of names) {
    const state = await readBankStateSettled(bankStateFiles(paths, bank), bank);
    states.set(bank, state);
    for (const [username, account] of state.accounts) balancesMinor.set(`${username}@${bank}`, account.balanceMinor);
  }
  return { balancesMinor, banks: states };
}
