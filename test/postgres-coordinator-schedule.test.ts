// Lost connections under the gateway's PostgreSQL store on a real server (src/core/testing/
// postgres-coordinator-schedule.ts): seeded schedules of calls, the store's sessions terminated at a seeded
// step of a seeded transaction, the store reopened by a new pool each life. Each reopening must find every
// acknowledged change, no state moved backwards, nothing never begun, and counts() equal to the records.
//
//   PAYNET_PG_SCHEDULES=N   run seeds 1…N (default 50, to keep npm test short)
//   PAYNET_PG_SCHEDULE_SEED=S   replay seed S alone
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { openDatabase } from "../src/core/durable/postgres/database.js";
import { runPostgresCoordinatorSchedule } from "../src/core/testing/postgres-coordinator-schedule.js";
import type { StoreScheduleResult } from "../src/core/testing/power-loss-disk.js";
import { createThrowawayDatabase, terminateSessions, type ThrowawayDatabase } from "./helpers/postgres.js";

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

const schedulesCount = positiveInteger("PAYNET_PG_SCHEDULES") ?? 50;
const replaySeed = positiveInteger("PAYNET_PG_SCHEDULE_SEED");
/** Schedules run at once (each opens at most two sessions per life). */
const schedulesAtOnce = 8;
const seeds = replaySeed === undefined ? Array.from({ length: schedulesCount }, (_, index) => index + 1) : [replaySeed];

describe("the gateway's PostgreSQL store under lost connections", () => {
  let throwaway: ThrowawayDatabase;
  before(async () => {
    throwaway = await createThrowawayDatabase("pg_schedule");
  });
  after(async () => {
    await throwaway.drop();
  });

  it("keeps every acknowledged change and moves only forward, in every seeded schedule", async (t) => {
    const started = performance.now();
    const failing: StoreScheduleResult[] = [];
    let kills = 0;
    let records = 0;
    // Seeds run side by side, each on its own schema and sessions (a seed's choices do not depend on the others).
    const queue = [...seeds];
    const worker = async () => {
      for (let seed = queue.shift(); seed !== undefined; seed = queue.shift()) {
        const result = await runPostgresCoordinatorSchedule(seed, {
          openDatabase: (applicationName) => openDatabase({ url: throwaway.url, applicationName, poolSize: 2 }),
          terminateSessions: (applicationName) => terminateSessions(throwaway.name, applicationName),
        });
        kills += result.stats.powerLosses;
        records += result.stats.records;
        if (result.failures.length > 0) failing.push(result);
      }
    };
    await Promise.all(Array.from({ length: schedulesAtOnce }, worker));
    failing.sort((a, b) => a.seed - b.seed);
    t.diagnostic(
      `${seeds.length} schedules, ${records} payments kept, ${kills} kills in ${Math.round(performance.now() - started)} ms`,
    );
    const replay = (seed: number) => `PAYNET_PG_SCHEDULE_SEED=${seed} node test/run.js postgres-coordinator-schedule`;
    assert.equal(
      failing.length,
      0,
      failing
        .slice(0, 3)
        .map((result) => `schedule ${result.seed}: ${result.failures.join("; ")}\n  replay: ${replay(result.seed)}`)
        .join("\n"),
    );
  });
});
