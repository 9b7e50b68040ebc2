// Killed sessions under the bank's PostgreSQL adapter (PostgresLedgerStore), the database's power loss: one
// seeded schedule in which a bank lives several lives. In each it opens its store (migrating, importing,
// reading: a kill may land there too), retries what may have been applied already, appends seeded entries in
// waves (the appends of a wave share one transaction), and then, at a seeded statement, its sessions are killed:
// before the statement (the server rolls the transaction back), or just after a COMMIT returned (the commit
// stands, its reply is lost). What every life's open must find is the port's promise (ledger-store.ts): the
// state some prefix of the entries appended adds up to, a prefix holding every acknowledged entry; and entries
// appended again (after a lost reply, or the last few already applied) must change nothing. A last life closes
// cleanly, and its reopening must find every entry. Faults are counted in statements, so a seed replays the
// same schedule. Test-only.
import type { LedgerEntry } from "../domain/ledger.js";
import type { Database } from "../durable/postgres/database.js";
import { PostgresLedgerStore } from "../bank/store/postgres/postgres-ledger-store.js";
import { connectionLost, faultyDatabase } from "./faulty-database.js";
import {
  EntryModel,
  describeState,
  initialAccounts,
  ledgerScheduleBounds,
  matchingPrefix,
} from "./ledger-store-schedule.js";
import { Prng } from "./prng.js";

export const postgresScheduleBounds = Object.freeze({
  livesMin: 2,
  livesMax: 5,
  wavesPerLifeMax: 10,
  appendsPerWaveMax: 3,
  /** A kill before a statement lands among the first this many of a life (opening included). */
  killWithinStatements: 90,
  /** A lost reply follows one of the first this many COMMITs of a life. */
  lostReplyWithinCommits: 8,
  /** Entries at the end of the recovered prefix appended again (already applied: a no-op). */
  retriedEntriesMax: 3,
});

export interface PostgresScheduleEnvironment {
  /** A new pool whose sessions carry `applicationName` (the caller ends it). */
  openDatabase(applicationName: string): Database;
  /** Kills every session whose application_name starts with the prefix, returning once they have exited. */
  kill(applicationPrefix: string): Promise<number>;
}

export interface PostgresScheduleResult {
  seed: number;
  failures: string[];
  stats: { lives: number; kills: number; records: number };
}

interface Life {
  database: Database;
  /** Whether the life's fault has struck. */
  struck: () => boolean;
  /** Whether it was a lost reply (the COMMIT before it stood). */
  lostReply: () => boolean;
}

/** A pool for one life, with its seeded fault (none for the last life). */
function faultedLife(
  environment: PostgresScheduleEnvironment,
  name: string,
  draw: Prng,
  last: boolean,
  onKill: () => void,
): Life {
  const database = environment.openDatabase(name);
  if (last) return { database, struck: () => false, lostReply: () => false };
  const fault = draw.weighted({ before: 2, lostReply: 1 });
  const at =
    fault === "before"
      ? draw.int(1, postgresScheduleBounds.killWithinStatements)
      : draw.int(1, postgresScheduleBounds.lostReplyWithinCommits);
  let count = 0;
  let struck = false;
  const kill = async () => {
    struck = true;
    onKill();
    await environment.kill(name);
  };
  return {
    database: faultyDatabase(database, {
      before: async () => {
        if (fault !== "before" || struck) return;
        count += 1;
        if (count === at) await kill();
      },
      after: async (sql) => {
        if (fault !== "lostReply" || struck || sql !== "COMMIT") return;
        count += 1;
        if (count !== at) return;
        await kill();
        throw connectionLost();
      },
    }),
    struck: () => struck,
    lostReply: () => struck && fault === "lostReply",
  };
}

export async function runPostgresLedgerSchedule(
  seed: number,
  environment: PostgresScheduleEnvironment,
): Promise<PostgresScheduleResult> {
  const prng = new Prng(seed);
  const draw = prng.fork("schedule");
  const model = new EntryModel(prng.fork("entries"));
  const bank = `S${seed}`;
  const finishedRetainedMax = ledgerScheduleBounds.finishedRetainedMax;
  const failures: string[] = [];
  let kills = 0;
  /** Every entry appended, in order; a kill keeps some prefix of them. */
  let entries: LedgerEntry[] = [];
  /** Entries [0, ackedCount) were acknowledged. */
  let ackedCount = 0;
  /** The entries of a transaction whose COMMIT stood but whose reply was lost: appended again once recovered. */
  let unanswered: { entries: LedgerEntry[]; end: number } | null = null;
  const lives = draw.int(postgresScheduleBounds.livesMin, postgresScheduleBounds.livesMax);
  for (let life = 0; life <= lives && failures.length === 0; life += 1) {
    const last = life === lives;
    const { database, struck, lostReply } = faultedLife(
      environment,
      `paynet-sched-${seed}-${life}-`,
      draw,
      last,
      () => (kills += 1),
    );
    const opened = await PostgresLedgerStore.open({
      database,
      bank,
      finishedRetainedMax,
      initialAccounts: () => Promise.resolve(initialAccounts()),
    }).catch((error: unknown) => (error instanceof Error ? error : new Error(String(error))));
    if (opened instanceof Error) {
      if (!struck()) failures.push(`life ${life}: the store refused to open: ${opened.message}`);
      continue; // killed while opening: the next life opens again
    }
    const store = opened;
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
    model.reset(state);
    // Appended again: entries already applied (the end of the prefix, or a transaction whose reply was lost).
    const retried =
      unanswered !== null && unanswered.end <= prefix
        ? unanswered.entries
        : entries.slice(prefix - draw.int(0, Math.min(prefix, postgresScheduleBounds.retriedEntriesMax)));
    unanswered = null;
    let broken =
      retried.length > 0 &&
      (await store.append(retried).then(
        () => false,
        () => true,
      ));
    const waves = draw.int(1, postgresScheduleBounds.wavesPerLifeMax);
    for (let wave = 0; wave < waves && !broken; wave += 1) {
      const calls: Array<Promise<void>> = [];
      const waveStart = entries.length;
      for (let append = draw.int(1, postgresScheduleBounds.appendsPerWaveMax); append > 0; append -= 1) {
        const batch = Array.from({ length: draw.int(1, 3) }, () => model.draw());
        entries.push(...batch);
        const end = entries.length;
        calls.push(store.append(batch).then(() => void (ackedCount = Math.max(ackedCount, end))));
      }
      const outcomes = await Promise.allSettled(calls);
      broken = outcomes.some((outcome) => outcome.status === "rejected");
      if (broken && lostReply()) unanswered = { entries: entries.slice(waveStart), end: entries.length };
    }
    if (broken && !struck()) {
      failures.push(`life ${life}: an append failed with no fault injected`);
      break;
    }
    if (!broken) await store.close(); // the fault did not strike in this life's statements
  }
  if (failures.length === 0) {
    // The last life closed cleanly: a reopening finds every entry.
    const database = environment.openDatabase(`paynet-sched-${seed}-final-`);
    try {
      const store = await PostgresLedgerStore.open({
        database,
        bank,
        finishedRetainedMax,
        initialAccounts: () => Promise.resolve(initialAccounts()),
      });
      const state = await store.load();
      if (matchingPrefix(state, entries, entries.length) === null)
        failures.push(`after a clean close: ${describeState(state)}, not all ${entries.length} entries`);
      await store.close();
    } catch (error) {
      failures.push(`after a clean close: the store refused to open: ${(error as Error).message}`);
    }
  }
  return { seed, failures, stats: { lives: lives + 1, kills, records: entries.length } };
}
