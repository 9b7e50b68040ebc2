// Power loss under the bank's file adapter (FileLedgerStore) itself, on a simulated disk that keeps only what
// was fsynced (power-loss-disk.ts). One seeded schedule: a bank lives several lives; in each it opens its store
// (recovering from whatever the last power loss left), appends seeded ledger entries, some concurrently so that
// they share group commits, folds checkpoints (journal rotation, CSV and pending rewrites, finished-log
// compaction at a small bound) and then loses power at a seeded disk operation: in the middle of an append, a
// checkpoint, a rewrite, or the recovery itself. What every life's open must find is the port's promise
// (ledger-store.ts): the state that some prefix of the entries appended adds up to, a prefix that holds every
// entry whose append had resolved; and the other bank's rows and pending section as they were. A last life
// closes cleanly and its reopening must find every entry. Test-only.
import { isDeepStrictEqual } from "node:util";
import type { Account, LedgerEntry } from "../domain/ledger.js";
import type { LedgerState } from "../bank/store/ledger-store.js";
import { FileLedgerStore } from "../bank/store/file/file-ledger-store.js";
import { parseAccountsCsv, serializeAccountsCsv, type AccountRow } from "../bank/store/file/accounts-csv.js";
import type { BankFiles } from "../bank/store/file/bank-state.js";
import { foldLedger } from "../bank/store/memory/memory-ledger-store.js";
import { PowerLossDisk, turns, type StoreScheduleOptions, type StoreScheduleResult } from "./power-loss-disk.js";
import { Prng } from "./prng.js";

export const ledgerScheduleBounds = Object.freeze({
  livesMin: 3,
  livesMax: 6,
  /** Appends (and checkpoints) one life makes at most. */
  opsPerLifeMax: 30,
  /** The power goes at one of the first this many disk operations of a life (or after its work, if later). */
  crashWithinOperations: 500,
  /** Small, so that schedules compact the finished log and rotate the journal often. */
  finishedRetainedMax: 6,
  checkpointEntriesMax: 4,
});

const bank = "SBI";
const otherBank = "HDFC";
/** Hash-shaped: the store never checks a password, and a plaintext one would be hashed (slowly) at open. */
const password = "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
const users = ["alice", "bob", "carol", "dave"];
const initialMinor = 10_000n;
const root = "/sim/data/server";
const files: Omit<BankFiles, "disk"> = Object.freeze({
  accountsCsvPath: `${root}/dummydata.csv`,
  pendingJsonPath: `${root}/pending_transactions.json`,
  finishedLogPath: `${root}/finished_transactions_${bank}.jsonl`,
  journalDirectory: root,
});
const otherRows: AccountRow[] = [
  { username: "erin", balanceMinor: 123_45n, password, bank: otherBank },
  { username: "frank", balanceMinor: 0n, password, bank: otherBank },
];
const otherSection = {
  holds: [
    { paymentId: "other-1", username: "erin", kind: "debit", amountMinor: "500", preparedAtMs: 1, expiresAtMs: 2 },
  ],
  applying: [],
  finished: [],
  journalGeneration: 7,
};

/** The entries a bank could append, drawn against the state they follow (balances never go negative). */
export class EntryModel {
  readonly #prng: Prng;
  readonly balancesMinor = new Map<string, bigint>();
  readonly holds = new Map<string, Extract<LedgerEntry, { op: "hold" }>>();
  #nextId = 0;
  #clockMs = 1_700_000_000_000;

  constructor(prng: Prng) {
    this.#prng = prng;
  }

  /** Continues from a recovered state (payment ids stay unique across lives). */
  reset(state: LedgerState): void {
    this.balancesMinor.clear();
    for (const [username, account] of state.accounts) this.balancesMinor.set(username, account.balanceMinor);
    this.holds.clear();
    for (const hold of state.holds.values()) this.holds.set(hold.paymentId, { op: "hold", ...hold });
  }

  draw(): LedgerEntry {
    this.#clockMs += this.#prng.int(0, 5);
    const kind = this.holds.size === 0 ? "hold" : this.#prng.weighted({ hold: 4, commit: 3, abort: 1, transfer: 1 });
    if (kind === "hold") return this.#hold();
    if (kind === "transfer") return this.#transfer();
    const hold = this.#prng.pick([...this.holds.values()]);
    this.holds.delete(hold.paymentId);
    if (kind === "abort") return { op: "abort", paymentId: hold.paymentId, atMs: this.#clockMs };
    const afterMinor = this.#balance(hold.username) + (hold.kind === "credit" ? hold.amountMinor : -hold.amountMinor);
    this.balancesMinor.set(hold.username, afterMinor);
    return {
      op: "commit",
      paymentId: hold.paymentId,
      balancesMinor: { [hold.username]: afterMinor },
      replyBalanceMinor: afterMinor,
      atMs: this.#clockMs,
    };
  }

  #hold(): LedgerEntry {
    const username = this.#prng.pick(users);
    const amountMinor = BigInt(this.#prng.int(1, 900));
    const kind = this.#available(username) >= amountMinor && this.#prng.chance(0.5) ? "debit" : "credit";
    const hold = {
      op: "hold" as const,
      paymentId: this.#id(),
      username,
      kind,
      amountMinor,
      preparedAtMs: this.#clockMs,
      expiresAtMs: this.#clockMs + 1_000,
    } as const;
    this.holds.set(hold.paymentId, hold);
    return hold;
  }

  /** A same-bank transfer: one entry, no hold. */
  #transfer(): LedgerEntry {
    const [from, to] = this.#prng.shuffle(users) as [string, string];
    const amountMinor = BigInt(this.#prng.int(0, Number(this.#available(from) < 500n ? this.#available(from) : 500n)));
    const fromAfter = this.#balance(from) - amountMinor;
    const toAfter = this.#balance(to) + amountMinor;
    this.balancesMinor.set(from, fromAfter);
    this.balancesMinor.set(to, toAfter);
    return {
      op: "commit",
      paymentId: this.#id(),
      balancesMinor: { [from]: fromAfter, [to]: toAfter },
      replyBalanceMinor: fromAfter,
      atMs: this.#clockMs,
      begunAtMs: this.#clockMs - this.#prng.int(0, 20),
    };
  }

  #available(username: string): bigint {
    let availableMinor = this.#balance(username);
    for (const hold of this.holds.values())
      if (hold.username === username && hold.kind === "debit") availableMinor -= hold.amountMinor;
    return availableMinor;
  }

  #balance(username: string): bigint {
    return this.balancesMinor.get(username) ?? 0n;
  }

  #id(): string {
    this.#nextId += 1;
    return `p${this.#nextId}`;
  }
}

export function initialAccounts(): Map<string, Account> {
  return new Map(users.map((username) => [username, { balanceMinor: initialMinor, password }]));
}

export function describeState(state: LedgerState): string {
  const balances = [...state.accounts].map(([username, account]) => `${username}=${account.balanceMinor}`).join(" ");
  return `balances ${balances}; holds ${[...state.holds.keys()].join(",") || "none"}; finished ${[...state.finished.keys()].join(",") || "none"}; forgotten through ${state.transfersForgottenThroughMs}`;
}

/**
 * The length of the shortest prefix of `entries`, at least `ackedCount` long, whose fold is `state`; null when
 * none is (the store lost an acknowledged entry, or holds a state no prefix leads to). The mark of forgotten
 * transfers may be higher than the fold's, never lower (ledger-store.ts): a checkpoint that a power loss cut
 * short is folded in again at the next open, and records the finished log had already forgotten once then
 * raise the mark again. Higher only makes the bank more careful about a transfer it does not know.
 */
export function matchingPrefix(state: LedgerState, entries: readonly LedgerEntry[], ackedCount: number): number | null {
  let latestBegunAtMs = 0;
  for (const entry of entries.slice(0, ackedCount))
    if (entry.op === "commit" && entry.begunAtMs !== undefined)
      latestBegunAtMs = Math.max(latestBegunAtMs, entry.begunAtMs);
  for (let length = ackedCount; length <= entries.length; length += 1) {
    const entry = entries[length - 1];
    if (length > ackedCount && entry?.op === "commit" && entry.begunAtMs !== undefined)
      latestBegunAtMs = Math.max(latestBegunAtMs, entry.begunAtMs);
    const folded = foldLedger(
      { accounts: initialAccounts(), items: entries.slice(0, length), torn: null },
      ledgerScheduleBounds.finishedRetainedMax,
    );
    const markMs = state.transfersForgottenThroughMs;
    if (markMs < folded.transfersForgottenThroughMs || markMs > latestBegunAtMs) continue;
    if (isDeepStrictEqual({ ...folded, transfersForgottenThroughMs: markMs }, state)) return length;
  }
  return null;
}

export async function runLedgerSchedule(
  seed: number,
  options: StoreScheduleOptions = {},
): Promise<StoreScheduleResult> {
  const prng = new Prng(seed);
  const disk = new PowerLossDisk(prng.fork("disk"), options);
  const draw = prng.fork("schedule");
  const model = new EntryModel(prng.fork("entries"));
  const csv = serializeAccountsCsv([
    ...users.map((username) => ({ username, balanceMinor: initialMinor, password, bank })),
    ...otherRows,
  ]);
  disk.current.place(files.accountsCsvPath, csv);
  disk.current.place(
    files.pendingJsonPath,
    JSON.stringify({ format: "paynet-pending/1", banks: { [otherBank]: otherSection } }) + "\n",
  );
  const failures: string[] = [];
  /** Every entry appended, in order; a power loss keeps some prefix of them. */
  let entries: LedgerEntry[] = [];
  /** Entries [0, ackedCount) were acknowledged: each append resolves only once it and all before it are durable. */
  let ackedCount = 0;
  const lives = draw.int(ledgerScheduleBounds.livesMin, ledgerScheduleBounds.livesMax);
  for (let life = 0; life <= lives && failures.length === 0; life += 1) {
    const last = life === lives;
    const lifeDisk = disk.current;
    disk.arm(last ? Number.POSITIVE_INFINITY : draw.int(1, ledgerScheduleBounds.crashWithinOperations));
    const opening = FileLedgerStore.open({
      bank,
      files: { ...files, disk: lifeDisk },
      finishedRetainedMax: ledgerScheduleBounds.finishedRetainedMax,
      checkpointEntriesMax: ledgerScheduleBounds.checkpointEntriesMax,
      // Checkpoints come from full generations and the schedule's own calls, never from the wall clock.
      checkpointDelayMs: 1_000_000_000,
      onWriteFailure: (error) => failures.push(`life ${life}: a write failed: ${String(error)}`),
    });
    const store = await Promise.race([
      opening.catch((error: unknown) => error as Error),
      lifeDisk.died.then(() => null),
    ]);
    if (store === null) continue; // the power went during recovery: the next life recovers again
    if (store instanceof Error) {
      failures.push(`life ${life}: the store refused to open: ${store.message}`);
      break;
    }
    const state = await store.load();
    const prefix = matchingPrefix(state, entries, ackedCount);
    if (prefix === null) {
      failures.push(
        `life ${life}: recovered ${describeState(state)}, which no prefix of the ${entries.length} entries appended (${ackedCount} acknowledged) adds up to`,
      );
      break;
    }
    entries = entries.slice(0, prefix);
    ackedCount = prefix;
    checkOtherBank(lifeDisk, life, failures);
    model.reset(state);
    const calls: Array<Promise<void>> = [];
    const ops = draw.int(1, ledgerScheduleBounds.opsPerLifeMax);
    for (let op = 0; op < ops && !lifeDisk.dead; op += 1) {
      if (draw.chance(0.1)) {
        calls.push(store.flushCheckpoint());
      } else {
        const batch = Array.from({ length: draw.int(1, 3) }, () => model.draw());
        entries.push(...batch);
        const end = entries.length;
        calls.push(store.append(batch).then(() => void (ackedCount = Math.max(ackedCount, end))));
      }
      await turns(draw.int(0, 2));
    }
    await Promise.race([Promise.all(calls), lifeDisk.died]);
    if (lifeDisk.dead) continue;
    if (last || draw.chance(0.3)) {
      await Promise.race([store.close(), lifeDisk.died]);
      if (!lifeDisk.dead) ackedCount = entries.length;
    }
    if (!last && !lifeDisk.dead) disk.powerLoss(); // after the life's work: perhaps in the middle of a checkpoint
  }
  if (failures.length === 0) {
    // The last life closed cleanly: a reopening finds every entry.
    try {
      const store = await FileLedgerStore.open({
        bank,
        files: { ...files, disk: disk.current },
        finishedRetainedMax: ledgerScheduleBounds.finishedRetainedMax,
      });
      const state = await store.load();
      if (matchingPrefix(state, entries, entries.length) === null)
        failures.push(`after a clean close: ${describeState(state)}, not all ${entries.length} entries`);
      await store.close();
    } catch (error) {
      failures.push(`after a clean close: the store refused to open: ${(error as Error).message}`);
    }
  }
  return { seed, failures, stats: { lives: lives + 1, powerLosses: disk.crashes, records: entries.length } };
}

/** The other bank's rows and pending section, which this bank's rewrites must carry over untouched (read without disk operations: the disk is armed). */
function checkOtherBank(lifeDisk: PowerLossDisk["current"], life: number, failures: string[]): void {
  const csv = lifeDisk.peek(files.accountsCsvPath);
  const rows =
    csv === null
      ? []
      : parseAccountsCsv(csv.toString("utf8"), files.accountsCsvPath).filter((row) => row.bank === otherBank);
  if (!isDeepStrictEqual(rows, otherRows))
    failures.push(
      `life ${life}: ${otherBank}'s rows changed: ${JSON.stringify(rows.map((row) => `${row.username}=${row.balanceMinor}`))}`,
    );
  const pending = lifeDisk.peek(files.pendingJsonPath);
  const section: unknown =
    pending === null
      ? null
      : (JSON.parse(pending.toString("utf8")) as { banks: Record<string, unknown> }).banks[otherBank];
  if (!isDeepStrictEqual(section, otherSection))
    failures.push(`life ${life}: ${otherBank}'s pending section changed: ${JSON.stringify(section)}`);
}
