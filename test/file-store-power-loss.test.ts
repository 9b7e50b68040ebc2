// Power loss under the file adapters themselves: the bank's FileLedgerStore and the gateway's GatewayLog on a
// simulated disk that keeps only what was fsynced (and only the names of directories fsynced), losing power at
// seeded disk operations, recovery included (src/core/testing/*-schedule.ts). Each recovery must find the
// store's promise kept: everything acknowledged, nothing that was never written, nothing applied twice. And the
// proof that these tests can fail: a disk that drops the fsync of a journal, of a rewritten file before its
// rename, or of a directory after a file was created in it, is caught within a few seeds.
//
//   PAYNET_FILE_POWER_LOSS_SCHEDULES=N   run seeds 1…N of each store (default 1,000)
//   PAYNET_FILE_POWER_LOSS_SEED=S        replay seed S alone
import { describe, it, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { runLedgerSchedule } from "../src/core/testing/ledger-store-schedule.js";
import { runCoordinatorSchedule } from "../src/core/testing/coordinator-store-schedule.js";
import type { StoreScheduleOptions, StoreScheduleResult } from "../src/core/testing/power-loss-disk.js";

/** A deliberately dropped fsync must be caught within this many seeds. */
const unsafeSeedsMax = 50;

function positiveInteger(name: string): number | undefined {
  const text = process.env[name];
  if (text === undefined || text === "") return undefined;
  const value = Number(text);
  assert.ok(
    Number.isSafeInteger(value) && value >= 1,
    `${name} must be a positive integer, got ${JSON.stringify(text)}`,
  );
  return value;
}

const schedulesCount = positiveInteger("PAYNET_FILE_POWER_LOSS_SCHEDULES") ?? 1_000;
const replaySeed = positiveInteger("PAYNET_FILE_POWER_LOSS_SEED");
const seeds = replaySeed === undefined ? Array.from({ length: schedulesCount }, (_, index) => index + 1) : [replaySeed];

type Schedule = (seed: number, options?: StoreScheduleOptions) => Promise<StoreScheduleResult>;

async function holdsEverywhere(t: TestContext, store: string, run: Schedule): Promise<void> {
  const started = performance.now();
  const failing: StoreScheduleResult[] = [];
  let powerLosses = 0;
  let records = 0;
  for (const seed of seeds) {
    const result = await run(seed);
    powerLosses += result.stats.powerLosses;
    records += result.stats.records;
    if (result.failures.length > 0) failing.push(result);
  }
  t.diagnostic(
    `${seeds.length} schedules, ${records} records kept, ${powerLosses} power losses in ${Math.round(performance.now() - started)} ms`,
  );
  const replay = (seed: number) => `PAYNET_FILE_POWER_LOSS_SEED=${seed} node test/run.js file-store-power-loss`;
  assert.equal(
    failing.length,
    0,
    failing
      .slice(0, 3)
      .map(
        (result) => `${store} schedule ${result.seed}: ${result.failures.join("; ")}\n  replay: ${replay(result.seed)}`,
      )
      .join("\n"),
  );
}

async function caught(t: TestContext, run: Schedule, unsafeSkipSyncOf: RegExp): Promise<void> {
  for (let seed = 1; seed <= unsafeSeedsMax; seed += 1) {
    const result = await run(seed, { unsafeSkipSyncOf });
    if (result.failures.length === 0) continue;
    t.diagnostic(`seed ${seed}: ${result.failures[0]}`);
    return;
  }
  assert.fail(`no seed of 1-${unsafeSeedsMax} notices that fsyncs of ${unsafeSkipSyncOf} were dropped`);
}

const hunting = { skip: replaySeed !== undefined };

describe("power loss under the bank's file store", () => {
  it(`keeps its promise over ${seeds.length === 1 ? `seed ${seeds[0]}` : `${seeds.length} seeded schedules`}`, (t) =>
    holdsEverywhere(t, "ledger", runLedgerSchedule));

  it("catches a journal append acknowledged before its fsync", hunting, (t) =>
    caught(t, runLedgerSchedule, /journal_SBI\./),
  );

  it("catches a finished log appended without its fsync", hunting, (t) =>
    caught(t, runLedgerSchedule, /finished_transactions_SBI/),
  );

  it("catches a rewrite renamed over the old file before its fsync", hunting, (t) =>
    caught(t, runLedgerSchedule, /\.tmp$/),
  );

  it("catches a new journal generation whose directory entry was never fsynced", hunting, (t) =>
    caught(t, runLedgerSchedule, /\/server$/),
  );
});

describe("power loss under the gateway's file store", () => {
  it(`keeps its promise over ${seeds.length === 1 ? `seed ${seeds[0]}` : `${seeds.length} seeded schedules`}`, (t) =>
    holdsEverywhere(t, "coordinator", runCoordinatorSchedule));

  it("catches a journal append acknowledged before its fsync", hunting, (t) =>
    caught(t, runCoordinatorSchedule, /transaction_logs\.journal$/),
  );

  // The archive is in memory here (SQLite cannot run on the simulated disk): "not fsynced" is an archive whose
  // inserts a power loss forgets, as SQLite's would with synchronous = OFF.
  it("catches archive inserts not durable before the snapshot drops their records", hunting, (t) =>
    caught(t, runCoordinatorSchedule, /transaction_archive\.sqlite$/),
  );

  it("catches a snapshot renamed into place before its fsync", hunting, (t) =>
    caught(t, runCoordinatorSchedule, /\.tmp$/),
  );

  it("catches new files whose directory entries were never fsynced", hunting, (t) =>
    caught(t, runCoordinatorSchedule, /\/payment_gateway$/),
  );

  it("catches ids acknowledged before transactions.txt was fsynced", hunting, (t) =>
    caught(t, runCoordinatorSchedule, /transactions\.txt$/),
  );
});
