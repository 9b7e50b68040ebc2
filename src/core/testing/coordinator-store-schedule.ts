// Power loss under the gateway's file adapter (GatewayLog) on a simulated disk that keeps only what was
// fsynced (power-loss-disk.ts). Its archive is SQLite in production, which cannot run on that disk: here it is
// an in-memory one (memory-archive.ts), made once and shared by every life, durable once an insert returns as
// SQLite's commit is under synchronous = FULL. One seeded schedule: the gateway lives
// several lives; in each it opens its log (recovering from whatever the last power loss left), begins payments
// (alone and in batches, new ids and repeated ones), records decisions and `finished` (alone and together),
// tombstones ids, looks payments up, and compacts (archive inserts, snapshot rewrite, at small bounds) while
// the power goes at a seeded disk operation, recovery included. What every
// reopening must find is the port's promise (coordinator-store.ts): each payment at one of the states it was
// given, no earlier than the last one acknowledged (nothing acknowledged is lost, no state moves backwards),
// no payment that was never begun, the unfinished ones listed as unfinished, and every durably begun id in
// transactions.txt. A last life closes cleanly, and its reopening must find every payment as last given.
import { decisionLegs, finishedLegs } from "./schedule-legs.js";
import { isDeepStrictEqual } from "node:util";
import { GatewayLog } from "../gateway/store/file/gateway-log.js";
import {
  advancedRecord,
  beganRecord,
  isDecided,
  tombstoneRecord,
  type PaymentChange,
  type PaymentDetails,
  type PaymentRecord,
} from "../domain/payment.js";
import { dataPaths } from "../durable/paths.js";
import { MemoryArchive } from "./memory-archive.js";
import { PowerLossDisk, turns, type StoreScheduleOptions, type StoreScheduleResult } from "./power-loss-disk.js";
import { Prng } from "./prng.js";

export const coordinatorScheduleBounds = Object.freeze({
  livesMin: 3,
  livesMax: 6,
  /** Calls one life makes at most. */
  opsPerLifeMax: 30,
  /** The power goes at one of the first this many disk operations of a life (or after its work, if later). */
  crashWithinOperations: 400,
  /** With an earlier archive to import, the first life's power goes within this many operations: mostly during the import. */
  crashWithinOperationsImporting: 24,
  /** Small, so that schedules compact and archive often. */
  finishedRetainedMax: 3,
  compactAfterJournalLines: 12,
});

const paths = dataPaths("/sim/data");
const users = ["alice", "bob", "carol"];
const banks = ["SBI", "HDFC"];

/** What a record is, leaving out the times a store stamps (the model's clock and the store's may differ by a call). */
function essence(record: PaymentRecord): unknown {
  const { createdAtMs: _created, decidedAtMs: _decided, finishedAtMs: _finished, ...rest } = record;
  return rest;
}

/** One payment as the store was told of it: every record it handed out (or would have), and how many are durable. */
interface Versions {
  records: PaymentRecord[];
  /** records[0, acknowledged) are durable by the store's word; 0: not even its creation. */
  acknowledged: number;
  /** Whether a call on it is in flight (the coordinator never changes a payment twice at once). */
  busy: boolean;
  /** Created by beginOrGet (not a tombstone). */
  begun: boolean;
  /** Its begin was acknowledged: its id must be in transactions.txt (a record that survived unacknowledged may lack it). */
  idAcknowledged: boolean;
}

class Model {
  readonly payments = new Map<string, Versions>();
  readonly #prng: Prng;
  nowMs = 1_700_000_000_000;
  #nextId = 0;

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

  /** Payments whose creation is durable and that no call is changing, not finished. */
  advanceable(): string[] {
    return [...this.payments]
      .filter(([, versions]) => versions.acknowledged > 0 && !versions.busy && !versions.records.at(-1)!.finished)
      .map(([id]) => id);
  }

  /** The next step of a payment, as the coordinator would take it. */
  nextChange(paymentId: string, record = this.payments.get(paymentId)!.records.at(-1)!): PaymentChange {
    if (!isDecided(record.state)) {
      if (this.#prng.chance(0.6))
        return { paymentId, state: "committed", outcome: { legs: decisionLegs(record, true, this.nowMs) } };
      return {
        paymentId,
        state: "aborted",
        outcome: {
          reason: "INSUFFICIENT_FUNDS",
          reasonMessage: "not enough money",
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
    const versions: Versions = { records: [record], acknowledged: 0, busy: true, begun, idAcknowledged: false };
    this.payments.set(record.paymentId, versions);
    return versions;
  }
}

export async function runCoordinatorSchedule(
  seed: number,
  options: StoreScheduleOptions = {},
): Promise<StoreScheduleResult> {
  const prng = new Prng(seed);
  const disk = new PowerLossDisk(prng.fork("disk"), options);
  const draw = prng.fork("schedule");
  const model = new Model(prng.fork("payments"));
  const failures: string[] = [];
  const lives = draw.int(coordinatorScheduleBounds.livesMin, coordinatorScheduleBounds.livesMax);
  // A dropped "fsync" of the archive database: its inserts are lost at a power loss unless an orderly close came first.
  const archive = new MemoryArchive({
    unsafeVolatileInserts: options.unsafeSkipSyncOf?.test(paths.transactionArchiveSqlite) === true,
  });
  const open = (lifeDisk: PowerLossDisk["current"], lifeFailures: string[], life: number) =>
    GatewayLog.open(paths, {
      disk: lifeDisk,
      archive: archive.forLife(lifeDisk),
      nowMs: () => model.nowMs,
      finishedRetainedMax: coordinatorScheduleBounds.finishedRetainedMax,
      compactAfterJournalLines: coordinatorScheduleBounds.compactAfterJournalLines,
      onWriteFailure: (error) => lifeFailures.push(`life ${life}: a write failed: ${String(error)}`),
    });
  // Now and then an earlier build's archive to import at the first start, which the power may cut short.
  const importing = draw.chance(0.25);
  if (importing) placeEarlierArchive(disk.current, model, draw);
  for (let life = 0; life < lives && failures.length === 0; life += 1) {
    const lifeDisk = disk.current;
    disk.arm(
      draw.int(
        1,
        importing && life === 0
          ? coordinatorScheduleBounds.crashWithinOperationsImporting
          : coordinatorScheduleBounds.crashWithinOperations,
      ),
    );
    const log = await Promise.race([
      open(lifeDisk, failures, life).catch((error: unknown) => error as Error),
      lifeDisk.died.then(() => null),
    ]);
    if (log === null) continue; // the power went during recovery: the next life recovers again
    if (log instanceof Error) {
      failures.push(`life ${life}: the log refused to open: ${log.message}`);
      break;
    }
    // Checked with the power kept on: a check's reads are no part of the schedule.
    const armedAt = disk.disarm();
    await checkRecovered(log, lifeDisk, model, `life ${life}`, failures, false);
    if (failures.length > 0) break;
    disk.rearm(armedAt);
    await runLife(log, lifeDisk, model, draw, failures);
    if (lifeDisk.dead) continue;
    if (draw.chance(0.3)) {
      await Promise.race([log.close(), lifeDisk.died]);
      if (!lifeDisk.dead)
        for (const versions of model.payments.values()) versions.acknowledged = versions.records.length;
    }
    if (!lifeDisk.dead) disk.powerLoss(); // after the life's work: perhaps in the middle of a compaction
  }
  if (failures.length === 0) await lastLife(disk, model, draw, open, failures);
  return { seed, failures, stats: { lives: lives + 1, powerLosses: disk.crashes, records: model.payments.size } };
}

/**
 * transaction_archive.jsonl and an index file as an earlier build left them: a few finished payments (the model
 * knows them as acknowledged), sometimes a torn last line.
 */
function placeEarlierArchive(disk: PowerLossDisk["current"], model: Model, draw: Prng): void {
  let lines = "";
  for (let count = draw.int(1, 5); count > 0; count -= 1) {
    let record = beganRecord(model.newDetails(), model.nowMs);
    while (!record.finished) record = advancedRecord(record, model.nextChange(record.paymentId, record), model.nowMs);
    model.payments.set(record.paymentId, {
      records: [record],
      acknowledged: 1,
      busy: false,
      begun: true,
      idAcknowledged: false,
    });
    lines += `${JSON.stringify(record, bigints)}\n`;
  }
  if (draw.chance(0.3)) lines += '{"paymentId":"torn","fromUs';
  disk.place(paths.transactionArchiveJsonl, lines);
  disk.place(
    `${paths.transactionArchiveIndex}/0000000000000000-0000000000000512.idx`,
    "an earlier build's index chunk",
  );
}

/** The schedule's calls of one life, some overlapping; returns once every call is answered or the power went. */
async function runLife(
  log: GatewayLog,
  lifeDisk: PowerLossDisk["current"],
  model: Model,
  draw: Prng,
  failures: string[],
): Promise<void> {
  const calls: Array<Promise<unknown>> = [];
  const call = (work: Promise<unknown>) =>
    calls.push(
      work.catch((error: unknown) => void failures.push(`a call failed: ${(error as Error).stack ?? String(error)}`)),
    );
  const ops = draw.int(1, coordinatorScheduleBounds.opsPerLifeMax);
  for (let op = 0; op < ops && !lifeDisk.dead; op += 1) {
    model.nowMs += draw.int(0, 3);
    const kind = draw.weighted({ begin: 4, advance: 5, tombstone: 1, find: 1 });
    if (kind === "begin") call(begin(log, model, draw));
    else if (kind === "advance") call(advance(log, model, draw));
    else if (kind === "tombstone") call(tombstone(log, model, draw));
    else if (model.payments.size > 0) call(log.find(draw.pick([...model.payments.keys()])));
    await turns(draw.int(0, 2));
  }
  await Promise.race([Promise.all(calls), lifeDisk.died]);
}

/** beginOrGetAll of new ids, now and then with a known id or a repeat among them. */
async function begin(log: GatewayLog, model: Model, draw: Prng): Promise<void> {
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
  const begun = details.length === 1 ? [await log.beginOrGet(details[0]!)] : await log.beginOrGetAll(details);
  await Promise.all(
    begun.map(async (one) => {
      const versions = created.get(one.record.paymentId);
      if (!one.created || versions === undefined) return;
      created.delete(one.record.paymentId);
      versions.records[0] = one.record;
      await one.durable;
      versions.acknowledged = Math.max(versions.acknowledged, 1);
      versions.idAcknowledged = true;
      versions.busy = false;
    }),
  );
}

/** advance (one payment) or advanceAll (several): each to its next step. */
async function advance(log: GatewayLog, model: Model, draw: Prng): Promise<void> {
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
  const records = changes.length === 1 ? [await log.advance(changes[0]!)] : await log.advanceAll(changes);
  records.forEach((record, index) => {
    const { versions, index: at } = started[index]!;
    versions.records[at] = record;
    versions.acknowledged = Math.max(versions.acknowledged, at + 1);
    versions.busy = false;
  });
}

/** A bank's question about an id: an unknown one is tombstoned, a known one answered as it is. */
async function tombstone(log: GatewayLog, model: Model, draw: Prng): Promise<void> {
  const quiet = [...model.payments]
    .filter(([, versions]) => !versions.busy && versions.acknowledged > 0)
    .map(([id]) => id);
  if (quiet.length > 0 && draw.chance(0.3)) {
    const paymentId = draw.pick(quiet);
    const versions = model.payments.get(paymentId)!;
    // Its record as of the call, or a later one (a change may be made while the answer waits to be durable).
    const latestAtCall = versions.records.length - 1;
    const answer = await log.tombstone(paymentId);
    if (!versions.records.slice(latestAtCall).some((record) => isDeepStrictEqual(essence(record), essence(answer))))
      throw new Error(`tombstone(${paymentId}) answered ${JSON.stringify(essence(answer), bigints)}, not its record`);
    return;
  }
  const versions = model.created(tombstoneRecord(model.newId(), model.nowMs), false);
  const record = await log.tombstone(versions.records[0]!.paymentId);
  versions.records[0] = record;
  versions.acknowledged = 1;
  versions.busy = false;
}

function bigints(_key: string, value: unknown): unknown {
  return typeof value === "bigint" ? value.toString() : value;
}

/**
 * What a reopened log must hold: each payment at one of its states no earlier than the last acknowledged (the
 * model then forgets the later ones, which were lost), and nothing else. With `exact`, every state given.
 */
async function checkRecovered(
  log: GatewayLog,
  lifeDisk: PowerLossDisk["current"],
  model: Model,
  when: string,
  failures: string[],
  exact: boolean,
): Promise<void> {
  const recoveredIds = new Set<string>();
  for (const [paymentId, versions] of model.payments) {
    const found = await log.find(paymentId);
    const first = exact ? versions.records.length : Math.max(versions.acknowledged, 1);
    const at =
      found === undefined
        ? -1
        : versions.records.findIndex(
            (record, index) => index + 1 >= first && isDeepStrictEqual(essence(record), essence(found)),
          );
    if (found === undefined && versions.acknowledged === 0 && !exact) {
      model.payments.delete(paymentId); // never durable, and lost: as if never begun
      continue;
    }
    if (at === -1) {
      const given = versions.records
        .map(
          (record, index) =>
            `${index < versions.acknowledged ? "acked " : ""}${record.state}${record.finished ? " finished" : ""}`,
        )
        .join(" → ");
      failures.push(
        `${when}: payment ${paymentId} recovered as ${found === undefined ? "missing" : `${found.state}${found.finished ? " finished" : ""}`}; it was given ${given}`,
      );
      continue;
    }
    recoveredIds.add(paymentId);
    versions.records.length = at + 1;
    versions.acknowledged = at + 1;
    versions.busy = false;
  }
  const unfinished = new Set((await log.unfinished()).map((record) => record.paymentId));
  const expected = new Set(
    [...model.payments].filter(([, versions]) => !versions.records.at(-1)!.finished).map(([id]) => id),
  );
  if (!isDeepStrictEqual(unfinished, expected))
    failures.push(
      `${when}: unfinished() lists ${[...unfinished].sort().join(",") || "none"}, the records say ${[...expected].sort().join(",") || "none"}`,
    );
  const ids = new Set((lifeDisk.peek(paths.transactionsTxt)?.toString("utf8") ?? "").split("\n"));
  for (const [paymentId, versions] of model.payments) {
    if (versions.idAcknowledged && !ids.has(paymentId))
      failures.push(`${when}: payment ${paymentId} is recorded, its id is not in transactions.txt`);
  }
}

/** A life with the power on that closes cleanly: its reopening finds every payment as last given. */
async function lastLife(
  disk: PowerLossDisk,
  model: Model,
  draw: Prng,
  open: (lifeDisk: PowerLossDisk["current"], failures: string[], life: number) => Promise<GatewayLog>,
  failures: string[],
): Promise<void> {
  try {
    const log = await open(disk.current, failures, -1);
    await checkRecovered(log, disk.current, model, "last life", failures, false);
    await runLife(log, disk.current, model, draw, failures);
    await log.close();
    const reopened = await open(disk.current, failures, -1);
    await checkRecovered(reopened, disk.current, model, "after a clean close", failures, true);
    await reopened.close();
  } catch (error) {
    failures.push(`last life: ${(error as Error).message}`);
  }
}
