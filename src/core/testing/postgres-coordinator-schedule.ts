// Lost connections under the gateway's PostgreSQL adapter, in the spirit of coordinator-store-schedule.ts
// (power loss under the file adapter). One seeded schedule: the gateway lives several lives, each on a new
// pool (a new process) over the same schema; in each it reopens the store (checking what the last life left),
// begins payments (alone and in batches, new ids and repeated ones), records decisions and `finished`
// (alone and together), tombstones ids and looks payments up, while its sessions are terminated at a seeded
// step of a seeded transaction: after BEGIN (nothing answered: retried), after the statements and before
// COMMIT (the store stops, nothing of it kept), after COMMIT, or racing the COMMIT itself (its outcome
// unknown: either is right). What every reopening must find is the port's promise: each payment at one of
// the states it was given, no earlier than the last one acknowledged (nothing acknowledged lost, no state
// moved backwards), no payment never begun, the unfinished listed as unfinished, and counts() equal to the
// records. A last life closes cleanly, and its reopening must find every payment as last given.
//
// The server's timing is not the schedule's: a seed replays the same calls and the same kill points, and
// nearly always the same batching.
import { decisionLegs, finishedLegs } from "./schedule-legs.js";
import { isDeepStrictEqual } from "node:util";
import {
  advancedRecord,
  beganRecord,
  isDecided,
  tombstoneRecord,
  type PaymentChange,
  type PaymentDetails,
  type PaymentRecord,
} from "../domain/payment.js";
import type { Database } from "../durable/postgres/database.js";
import { countsKey, type PaymentCounts } from "../gateway/store/coordinator-store.js";
import { PostgresCoordinatorStore, type TransactionStep } from "../gateway/store/postgres/index.js";
import { turns, type StoreScheduleResult } from "./power-loss-disk.js";
import { Prng } from "./prng.js";

export const postgresScheduleBounds = Object.freeze({
  livesMin: 2,
  livesMax: 5,
  opsPerLifeMax: 30,
  /** Sessions are killed at one of the first this many transaction steps of a life (or not at all, if later). */
  killWithinSteps: 24,
});

/** What the schedule needs of the server: pools, and the fault. */
export interface PostgresScheduleEnvironment {
  /** A new pool on the schedule's database, as a new gateway process opens one; the schedule ends it. */
  openDatabase(applicationName: string): Database;
  /** Terminates every session of that application name. */
  terminateSessions(applicationName: string): Promise<unknown>;
}

const users = ["alice", "bob", "carol"];
const banks = ["SBI", "HDFC"];

/** A record without the times a store stamps (the model's clock and the transaction's may differ). */
function essence(record: PaymentRecord): unknown {
  const { createdAtMs: _created, decidedAtMs: _decided, finishedAtMs: _finished, ...rest } = record;
  return rest;
}

function describeRecord(record: PaymentRecord | undefined): string {
  return record === undefined ? "missing" : `${record.state}${record.finished ? " finished" : ""}`;
}

/** One payment as the store was told of it: every record it handed out (or would have), and how many are durable. */
interface Versions {
  records: PaymentRecord[];
  /** records[0, acknowledged) are durable by the store's word. */
  acknowledged: number;
  /** A call on it is in flight (the coordinator never changes a payment twice at once). */
  busy: boolean;
  /** Created by beginOrGet (not a tombstone). */
  begun: boolean;
}

class Model {
  readonly payments = new Map<string, Versions>();
  nowMs = 1_700_000_000_000;
  #nextId = 0;
  readonly #prng: Prng;

  constructor(prng: Prng) {
    this.#prng = prng;
  }

  newDetails(): PaymentDetails {
    this.#nextId += 1;
    const [fromUser, toUser] = this.#prng.shuffle(users) as [string, string];
    return {
      paymentId: `g${this.#nextId}`,
      fromUser,
      fromBank: this.#prng.pick(banks),
      toUser,
      toBank: this.#prng.pick(banks),
      amountMinor: BigInt(this.#prng.int(1, 10_000)),
    };
  }

  newId(): string {
    this.#nextId += 1;
    return `t${this.#nextId}`;
  }

  advanceable(): string[] {
    return [...this.payments]
      .filter(([, versions]) => versions.acknowledged > 0 && !versions.busy && !versions.records.at(-1)!.finished)
      .map(([id]) => id);
  }

  nextChange(paymentId: string): PaymentChange {
    const record = this.payments.get(paymentId)!.records.at(-1)!;
    if (record.state === "preparing" && this.#prng.chance(0.3)) return { paymentId, state: "prepared" };
    if (!isDecided(record.state)) {
      if (this.#prng.chance(0.6))
        return { paymentId, state: "committed", outcome: { legs: decisionLegs(record, true, this.nowMs) } };
      return {
        paymentId,
        state: "aborted",
        outcome: {
          reason: "INSUFFICIENT_FUNDS",
          reasonMessage: "not enough",
          legs: decisionLegs(record, false, this.nowMs),
        },
      };
    }
    return {
      paymentId,
      state: record.state,
      outcome: {
        finished: true,
        ...(record.state === "committed" ? { balanceAfterMinor: BigInt(this.#prng.int(0, 99_999)) } : {}),
        legs: finishedLegs(record, this.nowMs),
      },
    };
  }

  created(record: PaymentRecord, begun: boolean): Versions {
    const versions: Versions = { records: [record], acknowledged: 0, busy: true, begun };
    this.payments.set(record.paymentId, versions);
    return versions;
  }
}

/** One life's store, its pool, and whether the kill has come. */
interface Life {
  store: PostgresCoordinatorStore;
  database: Database;
  label: string;
}

export async function runPostgresCoordinatorSchedule(
  seed: number,
  environment: PostgresScheduleEnvironment,
): Promise<StoreScheduleResult> {
  const prng = new Prng(seed);
  const draw = prng.fork("schedule");
  const model = new Model(prng.fork("payments"));
  const failures: string[] = [];
  const schema = `paynet_schedule_${seed}`;
  const lives = draw.int(postgresScheduleBounds.livesMin, postgresScheduleBounds.livesMax);
  let kills = 0;

  const open = async (life: number, killAtStep: number | null): Promise<Life> => {
    const applicationName = `paynet-schedule-${seed}-${life}`;
    const database = environment.openDatabase(applicationName);
    const killer = draw.fork(`kill ${life}`);
    let steps = 0;
    const onTransactionStep = async (_step: TransactionStep) => {
      steps += 1;
      if (steps !== killAtStep) return;
      kills += 1;
      // Awaited, the kill lands at this very step; not awaited, it races whatever the store sends next.
      if (killer.chance(0.7)) await environment.terminateSessions(applicationName);
      else void environment.terminateSessions(applicationName).catch(() => undefined);
    };
    try {
      const store = await PostgresCoordinatorStore.open({
        database,
        schema,
        nowMs: () => model.nowMs,
        countStripe: draw.int(0, 15),
        onTransactionStep,
      });
      return { store, database, label: `life ${life}` };
    } catch (error) {
      await database.end();
      throw error;
    }
  };
  const end = async (life: Life) => {
    await life.store.close();
    await life.database.end();
  };

  try {
    for (let life = 0; life < lives && failures.length === 0; life += 1) {
      const current = await open(life, draw.int(1, postgresScheduleBounds.killWithinSteps));
      try {
        await checkRecovered(current, model, failures, false);
        if (failures.length > 0) break;
        await runLife(current, model, draw, failures);
        if (current.store.failure === null && draw.chance(0.3)) {
          await current.store.settled();
          for (const versions of model.payments.values()) versions.acknowledged = versions.records.length;
        }
      } finally {
        await end(current);
      }
    }
    if (failures.length === 0) {
      const last = await open(-1, null);
      try {
        await checkRecovered(last, model, failures, false);
        await runLife(last, model, draw, failures);
        if (last.store.failure !== null) failures.push(`last life: the store stopped: ${last.store.failure.message}`);
      } finally {
        await end(last);
      }
      const reopened = await open(-2, null);
      try {
        await checkRecovered(reopened, model, failures, true);
      } finally {
        await end(reopened);
      }
    }
  } catch (error) {
    failures.push(`the schedule broke: ${(error as Error).stack ?? String(error)}`);
  }
  return { seed, failures, stats: { lives: lives + 2, powerLosses: kills, records: model.payments.size } };
}

/** The schedule's calls of one life, some overlapping; returns once every call is answered. */
async function runLife(life: Life, model: Model, draw: Prng, failures: string[]): Promise<void> {
  const calls: Array<Promise<unknown>> = [];
  const call = (work: Promise<unknown>) =>
    calls.push(
      work.catch((error: unknown) => {
        // A stopped store refuses everything: that is its promise, not a failure.
        if (life.store.failure === null)
          failures.push(`${life.label}: a call failed: ${(error as Error).stack ?? String(error)}`);
      }),
    );
  const ops = draw.int(1, postgresScheduleBounds.opsPerLifeMax);
  for (let op = 0; op < ops && life.store.failure === null; op += 1) {
    model.nowMs += draw.int(0, 3);
    const kind = draw.weighted({ begin: 4, advance: 5, tombstone: 1, find: 1 });
    if (kind === "begin") call(begin(life.store, model, draw));
    else if (kind === "advance") call(advance(life.store, model, draw));
    else if (kind === "tombstone") call(tombstone(life.store, model, draw));
    else if (model.payments.size > 0) call(find(life.store, model, draw));
    await turns(draw.int(0, 2));
  }
  await Promise.all(calls);
}

async function begin(store: PostgresCoordinatorStore, model: Model, draw: Prng): Promise<void> {
  const details = Array.from({ length: draw.chance(0.5) ? 1 : draw.int(2, 4) }, () => model.newDetails());
  const known = [...model.payments.values()]
    .filter((versions) => versions.begun)
    .map((versions) => versions.records[0]!);
  if (known.length > 0 && draw.chance(0.2)) details.push(draw.pick(known));
  if (draw.chance(0.1)) details.push(details[0]!);
  const created = new Map<string, Versions>();
  for (const one of details) {
    if (model.payments.has(one.paymentId)) continue;
    created.set(one.paymentId, model.created(beganRecord(one, model.nowMs), true));
  }
  const begun = details.length === 1 ? [await store.beginOrGet(details[0]!)] : await store.beginOrGetAll(details);
  await Promise.all(
    begun.map(async (one) => {
      const versions = created.get(one.record.paymentId);
      if (!one.created) {
        if (versions !== undefined && created.has(one.record.paymentId))
          throw new Error(`beginOrGet(${one.record.paymentId}): a new id answered as known`);
        return;
      }
      if (versions === undefined) throw new Error(`beginOrGet(${one.record.paymentId}): a known id created again`);
      created.delete(one.record.paymentId);
      versions.records[0] = one.record;
      await one.durable;
      versions.acknowledged = Math.max(versions.acknowledged, 1);
      versions.busy = false;
    }),
  );
}

async function advance(store: PostgresCoordinatorStore, model: Model, draw: Prng): Promise<void> {
  const candidates = draw.shuffle(model.advanceable());
  if (candidates.length === 0) return;
  const ids = candidates.slice(0, draw.chance(0.5) ? 1 : draw.int(2, 4));
  const changes = ids.map((paymentId) => model.nextChange(paymentId));
  const started = changes.map((change) => {
    const versions = model.payments.get(change.paymentId)!;
    versions.busy = true;
    versions.records.push(advancedRecord(versions.records.at(-1)!, change, model.nowMs));
    return { versions, index: versions.records.length - 1 };
  });
  const records = changes.length === 1 ? [await store.advance(changes[0]!)] : await store.advanceAll(changes);
  records.forEach((record, index) => {
    const { versions, index: at } = started[index]!;
    if (!isDeepStrictEqual(essence(record), essence(versions.records[at]!)))
      throw new Error(`advance(${record.paymentId}) answered ${describeRecord(record)}, not the change's record`);
    versions.records[at] = record;
    versions.acknowledged = Math.max(versions.acknowledged, at + 1);
    versions.busy = false;
  });
}

async function tombstone(store: PostgresCoordinatorStore, model: Model, draw: Prng): Promise<void> {
  const quiet = [...model.payments]
    .filter(([, versions]) => !versions.busy && versions.acknowledged > 0)
    .map(([id]) => id);
  if (quiet.length > 0 && draw.chance(0.3)) {
    const paymentId = draw.pick(quiet);
    const versions = model.payments.get(paymentId)!;
    const latestAtCall = versions.records.length - 1;
    const answer = await store.tombstone(paymentId);
    if (!versions.records.slice(latestAtCall).some((record) => isDeepStrictEqual(essence(record), essence(answer))))
      throw new Error(`tombstone(${paymentId}) answered ${describeRecord(answer)}, not its record`);
    return;
  }
  const versions = model.created(tombstoneRecord(model.newId(), model.nowMs), false);
  const record = await store.tombstone(versions.records[0]!.paymentId);
  versions.records[0] = record;
  versions.acknowledged = 1;
  versions.busy = false;
}

/** A known payment looked up: one of its records from the last acknowledged on. */
async function find(store: PostgresCoordinatorStore, model: Model, draw: Prng): Promise<void> {
  const [paymentId, versions] = draw.pick([...model.payments]);
  const from = Math.max(versions.acknowledged - 1, 0);
  const found = await store.find(paymentId);
  if (found === undefined) {
    if (versions.acknowledged > 0) throw new Error(`find(${paymentId}): an acknowledged payment is missing`);
    return;
  }
  if (!versions.records.slice(from).some((record) => isDeepStrictEqual(essence(record), essence(found))))
    throw new Error(
      `find(${paymentId}) answered ${describeRecord(found)}, not a record it was given since acknowledged`,
    );
}

/**
 * What a reopened store must hold: each payment at one of its states no earlier than the last acknowledged
 * (the model then forgets the later ones, which were lost), nothing else, the unfinished listed, and the
 * counts those records make. With `exact`, every state given.
 */
async function checkRecovered(life: Life, model: Model, failures: string[], exact: boolean): Promise<void> {
  const { store, label } = life;
  for (const [paymentId, versions] of model.payments) {
    const found = await store.find(paymentId);
    const first = exact ? versions.records.length : Math.max(versions.acknowledged, 1);
    if (found === undefined && versions.acknowledged === 0 && !exact) {
      model.payments.delete(paymentId); // never durable, and lost: as if never begun
      continue;
    }
    const at =
      found === undefined
        ? -1
        : versions.records.findIndex(
            (record, index) => index + 1 >= first && isDeepStrictEqual(essence(record), essence(found)),
          );
    if (at === -1) {
      const given = versions.records
        .map((record, index) => `${index < versions.acknowledged ? "acked " : ""}${describeRecord(record)}`)
        .join(" → ");
      failures.push(`${label}: payment ${paymentId} recovered as ${describeRecord(found)}; it was given ${given}`);
      continue;
    }
    versions.records.length = at + 1;
    versions.acknowledged = at + 1;
    versions.busy = false;
  }
  const unfinished = new Set((await store.unfinished()).map((record) => record.paymentId));
  const expected = new Set(
    [...model.payments].filter(([, versions]) => !versions.records.at(-1)!.finished).map(([id]) => id),
  );
  if (!isDeepStrictEqual(unfinished, expected))
    failures.push(
      `${label}: unfinished() lists ${[...unfinished].sort().join(",") || "none"}, the records say ${[...expected].sort().join(",") || "none"}`,
    );
  const counts: PaymentCounts = { preparing: 0, committing: 0, aborting: 0, committed: 0, aborted: 0 };
  for (const versions of model.payments.values()) counts[countsKey(versions.records.at(-1)!)] += 1;
  const stored = await store.counts();
  if (!isDeepStrictEqual(stored, counts))
    failures.push(`${label}: counts() says ${JSON.stringify(stored)}, the records ${JSON.stringify(counts)}`);
}
