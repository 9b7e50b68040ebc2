// The nemesis of `paynet verify`: a fault schedule drawn from the seed (what, where, when, for how long),
// then played against the cluster. Each fault is an episode that ends by itself (the process is back, the
// partition healed); episodes on one process or proxy run one at a time, others overlap.
import { crashPointsByRole } from "../../core/faults/crash.js";
import { Prng } from "../../core/testing/prng.js";
import { Mutex } from "./mutex.js";
import { leaseDefaults } from "../gateway.js";
import { nemesisTakeover, type Cluster, type ManagedProcess, type TakeoverSeen } from "./cluster.js";

export const faultKinds = [
  "kill-gateway",
  "kill-bank",
  "pause-gateway",
  "pause-bank",
  "crash-point",
  "partition-bank",
  "partition-clients",
  // PostgreSQL store only: every database session of one process terminated (pg_terminate_backend).
  "cut-store-sessions",
  // Several gateways only: one gateway cut off from the database server, or from every bank.
  "partition-gateway-store",
  "partition-gateway-banks",
] as const;
export type FaultKind = (typeof faultKinds)[number];

/** The crash points of the network's processes (the clients' are exercised by their own tests). */
export const allCrashPoints: readonly string[] = [...crashPointsByRole.gateway, ...crashPointsByRole.bank];

export const nemesisBounds = Object.freeze({
  faultsMax: 1_000,
  killDowntimeMaxMs: 1_000,
  // Pauses last from these up to PlanOptions.pauseMaxMs (--pause-max-ms, default pauseMaxMsDefault): a paused
  // process keeps its kernel locks on the shared files, so however long it sleeps the others wait, never write
  // over it (durable/file-lock.ts).
  pauseGatewayMinMs: 1_000,
  pauseBankMinMs: 500,
  pauseMaxMsDefault: 10_000,
  partitionMinMs: 1_000,
  partitionMaxMs: 4_000,
  /** An armed process crashes the n-th time it passes its point, n in 1..crashPassesMax. */
  crashPassesMax: 5,
  crashWaitMinMs: 3_000,
  crashWaitMaxMs: 10_000,
  /** How long a process whose sessions were cut may take to stop by itself before it is stopped. */
  cutSessionsExitWaitMs: 5_000,
  /**
   * Beyond the lease and one renewal interval, how long another gateway may take to claim every unfinished
   * payment of a dead one: its claim query and the watch's poll. Measured on this 2-core machine under the
   * nemesis (docs/benchmarks.md, "Takeover"); the invariant takeover-bounded holds every takeover to it.
   */
  takeoverSlackMs: 3_000,
  /** A takeover not done by then is recorded as such (and fails takeover-bounded), and the run goes on. */
  takeoverWatchMaxMs: nemesisTakeover.watchMaxMs,
});

/** The bound takeover-bounded checks: lease, one renewal interval, and the measured slack. */
export const takeoverBoundMs = leaseDefaults.leaseMs + leaseDefaults.renewEveryMs + nemesisBounds.takeoverSlackMs;

export interface PlannedFault {
  /** Offset from the start of the run. */
  atMs: number;
  kind: FaultKind;
  /** "gateway", a bank name, or "clients". */
  target: string;
  /** Downtime, pause, partition or crash-wait length. */
  holdMs: number;
  /** PAYNET_CRASH_AT for a crash-point fault. */
  crashSpec: string | null;
}

export interface PlanOptions {
  durationMs: number;
  /** Mean time between fault starts; 0 plans no fault. */
  killEveryMs: number;
  /** The longest pause of a process. */
  pauseMaxMs: number;
  kinds: readonly FaultKind[];
  crashPoints: readonly string[];
  banks: readonly string[];
  /** The processes keep their state in PostgreSQL: cut-store-sessions can be played. */
  databaseStore: boolean;
  /** The gateways' names (cluster.ts gatewayName): faults on gateways pick one of them. */
  gateways: readonly string[];
}

function planOne(prng: Prng, kind: FaultKind, atMs: number, options: PlanOptions): PlannedFault {
  const bounds = nemesisBounds;
  const bank = prng.pick(options.banks);
  // One gateway: no draw, so that a seed plans what it planned before there could be several.
  const gateway = options.gateways.length === 1 ? options.gateways[0]! : prng.pick(options.gateways);
  switch (kind) {
    case "kill-gateway":
      return { atMs, kind, target: gateway, holdMs: prng.int(0, bounds.killDowntimeMaxMs), crashSpec: null };
    case "kill-bank":
      return { atMs, kind, target: bank, holdMs: prng.int(0, bounds.killDowntimeMaxMs), crashSpec: null };
    case "pause-gateway":
      return {
        atMs,
        kind,
        target: gateway,
        holdMs: prng.int(Math.min(bounds.pauseGatewayMinMs, options.pauseMaxMs), options.pauseMaxMs),
        crashSpec: null,
      };
    case "pause-bank":
      return {
        atMs,
        kind,
        target: bank,
        holdMs: prng.int(Math.min(bounds.pauseBankMinMs, options.pauseMaxMs), options.pauseMaxMs),
        crashSpec: null,
      };
    case "partition-bank":
      return {
        atMs,
        kind,
        target: bank,
        holdMs: prng.int(bounds.partitionMinMs, bounds.partitionMaxMs),
        crashSpec: null,
      };
    case "partition-clients":
      return {
        atMs,
        kind,
        target: "clients",
        holdMs: prng.int(bounds.partitionMinMs, bounds.partitionMaxMs),
        crashSpec: null,
      };
    case "partition-gateway-store":
      // Longer than a lease, so the gateway surely loses it, stops, and has its payments taken over.
      return {
        atMs,
        kind,
        target: gateway,
        holdMs:
          leaseDefaults.leaseMs +
          2 * leaseDefaults.renewEveryMs +
          prng.int(bounds.partitionMinMs, bounds.partitionMaxMs),
        crashSpec: null,
      };
    case "partition-gateway-banks":
      return {
        atMs,
        kind,
        target: gateway,
        holdMs: prng.int(bounds.partitionMinMs, bounds.partitionMaxMs),
        crashSpec: null,
      };
    case "cut-store-sessions":
      return {
        atMs,
        kind,
        target: prng.chance(0.5) ? gateway : bank,
        holdMs: bounds.cutSessionsExitWaitMs,
        crashSpec: null,
      };
    case "crash-point": {
      const point = prng.pick(options.crashPoints);
      const target = (crashPointsByRole.gateway as readonly string[]).includes(point) ? gateway : bank;
      const holdMs = Math.min(bounds.crashWaitMaxMs, Math.max(bounds.crashWaitMinMs, 3 * options.killEveryMs));
      return { atMs, kind, target, holdMs, crashSpec: `${point}:${prng.int(1, bounds.crashPassesMax)}` };
    }
  }
}

/**
 * The whole schedule, from the seed alone: fault starts spaced killEveryMs × [0.5, 1.5), kinds in rounds
 * (each round every enabled kind once, in a random order), targets and lengths drawn per fault.
 */
export function planFaults(prng: Prng, options: PlanOptions): PlannedFault[] {
  const kinds = options.kinds.filter(
    (kind) =>
      (kind !== "crash-point" || options.crashPoints.length > 0) &&
      (kind !== "cut-store-sessions" || options.databaseStore) &&
      ((kind !== "partition-gateway-store" && kind !== "partition-gateway-banks") ||
        (options.databaseStore && options.gateways.length > 1)),
  );
  if (options.killEveryMs <= 0 || kinds.length === 0) return [];
  const plan: PlannedFault[] = [];
  let round: FaultKind[] = [];
  let atMs = 0;
  while (plan.length < nemesisBounds.faultsMax) {
    atMs += Math.round(options.killEveryMs * (0.5 + prng.next()));
    if (atMs >= options.durationMs) break;
    if (round.length === 0) round = prng.shuffle(kinds);
    plan.push(planOne(prng, round.shift()!, atMs, options));
  }
  return plan;
}

export interface FaultRecord {
  kind: FaultKind;
  target: string;
  /** Offset from the start of the run at which the fault began. */
  atMs: number;
  holdMs: number;
  crashSpec: string | null;
  /** What came of it: "done", "crash point reached", "crash point not reached", or why it failed. */
  outcome: string;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
}

/** Waits `holdMs`, but never past the end of the run. */
function hold(holdMs: number, stopAtMs: number): Promise<void> {
  return sleep(Math.min(holdMs, stopAtMs - Date.now()));
}

async function ensureRunning(managed: ManagedProcess): Promise<void> {
  if (!managed.running) await managed.start();
}

async function killEpisode(
  cluster: Cluster,
  managed: ManagedProcess,
  fault: PlannedFault,
  stopAtMs: number,
): Promise<string> {
  await ensureRunning(managed);
  const gatewayId = cluster.gatewayIdOfProcess(managed);
  await managed.kill("SIGKILL");
  // The dead gateway's payments are claimed by a live one (or by its next start) once its lease expires.
  const takeover = gatewayId === "" ? null : cluster.watchTakeover(managed.name, gatewayId, Date.now());
  await hold(fault.holdMs, stopAtMs);
  await managed.start();
  const seen = await takeover;
  return seen === null || seen === undefined ? "done" : `done; ${describeTakeover(seen)}`;
}

function describeTakeover(seen: TakeoverSeen): string {
  return seen.payments === 0
    ? "it owned no unfinished payment"
    : seen.takenOverMs === null
      ? `${seen.payments} payments it owned not taken over within ${nemesisBounds.takeoverWatchMaxMs} ms`
      : `${seen.payments} payments it owned taken over in ${seen.takenOverMs} ms`;
}

async function pauseEpisode(
  cluster: Cluster,
  managed: ManagedProcess,
  fault: PlannedFault,
  stopAtMs: number,
): Promise<string> {
  await ensureRunning(managed);
  // A gateway on PostgreSQL paused about as long as its lease may wake to find it expired, and must then stop
  // (exit 70) rather than drive payments another gateway may have taken: that exit is expected, not a fault.
  const mayLoseLease =
    cluster.gatewayNamed(fault.target) !== undefined &&
    cluster.usesDatabase &&
    fault.holdMs >= leaseDefaults.leaseMs - 2 * leaseDefaults.renewEveryMs;
  if (mayLoseLease) managed.expectExit();
  managed.pause();
  try {
    await hold(fault.holdMs, stopAtMs);
  } finally {
    managed.resume();
  }
  if (mayLoseLease && (await managed.exitsWithin(2 * leaseDefaults.renewEveryMs + leaseLossExitSlackMs))) {
    await managed.start();
    return "lost its lease while paused: it stopped, restarted";
  }
  return "done";
}

/** Beyond two renewal intervals, how long a gateway that woke with an expired lease may take to exit. */
const leaseLossExitSlackMs = 1_000;

/** Restarts the process armed (an orderly stop first, so no lock is left to go stale), waits for the crash, restarts it unarmed. */
async function crashPointEpisode(managed: ManagedProcess, fault: PlannedFault, stopAtMs: number): Promise<string> {
  await managed.kill("SIGTERM");
  await managed.start(fault.crashSpec);
  if (managed.armed === null) {
    // The armed start crashed while recovering (start retries unarmed): the point was reached.
    return "crash point reached at start";
  }
  const reached = await managed.exitsWithin(Math.min(fault.holdMs, stopAtMs - Date.now()));
  if (!reached) await managed.kill("SIGTERM");
  const reachedAtStop = !reached && managed.crashReached;
  await managed.start();
  return reached
    ? "crash point reached"
    : reachedAtStop
      ? "crash point reached at an orderly stop"
      : "crash point not reached";
}

/**
 * Terminates every database session of the process. It must stop rather than run ahead of the database (its
 * lock and its writes are gone; exit 70): the episode expects that exit, waits for it, then restarts it.
 */
async function cutSessionsEpisode(
  cluster: Cluster,
  managed: ManagedProcess,
  fault: PlannedFault,
  stopAtMs: number,
): Promise<string> {
  await ensureRunning(managed);
  managed.expectExit();
  const cut = await cluster.cutStoreSessions(fault.target);
  const stopped = await managed.exitsWithin(Math.min(fault.holdMs, Math.max(0, stopAtMs - Date.now())));
  if (!stopped) await managed.kill("SIGTERM");
  await managed.start();
  return stopped ? `${cut} sessions cut; it stopped, restarted` : `${cut} sessions cut; still running, restarted`;
}

/**
 * One gateway cut off from the database server (it stops: exit 70 at its first failed write or when its lease
 * runs out, and is restarted once the partition heals) or from every bank (it goes on; its payments abort or
 * wait in phase 2; banks ask the other gateways about their holds).
 */
async function gatewayPartitionEpisode(
  cluster: Cluster,
  managed: ManagedProcess,
  fault: PlannedFault,
  stopAtMs: number,
): Promise<string> {
  await ensureRunning(managed);
  const index = cluster.gateways.indexOf(managed);
  const proxies =
    fault.kind === "partition-gateway-store"
      ? [cluster.storeProxies[index]!]
      : [...cluster.bankProxies.values()].map((perGateway) => perGateway[index]!);
  let takeover: Promise<TakeoverSeen | null> | null = null;
  if (fault.kind === "partition-gateway-store") {
    managed.expectExit();
    takeover = cluster.watchTakeover(managed.name, cluster.gatewayIdOfProcess(managed), Date.now());
  }
  for (const proxy of proxies) proxy.cut();
  try {
    await hold(fault.holdMs, stopAtMs);
  } finally {
    for (const proxy of proxies) proxy.heal();
  }
  if (!managed.running) await managed.start();
  const seen = await takeover;
  return seen === null ? "done" : `done; ${describeTakeover(seen)}`;
}

async function partitionEpisode(cluster: Cluster, fault: PlannedFault, stopAtMs: number): Promise<string> {
  const proxies = fault.target === "clients" ? cluster.clientProxies : cluster.bankProxies.get(fault.target);
  if (proxies === undefined || proxies.length === 0) return "no such proxy";
  for (const proxy of proxies) proxy.cut();
  try {
    await hold(fault.holdMs, stopAtMs);
  } finally {
    for (const proxy of proxies) proxy.heal();
  }
  return "done";
}

function runEpisode(cluster: Cluster, fault: PlannedFault, stopAtMs: number): Promise<string> {
  if (fault.kind === "partition-bank" || fault.kind === "partition-clients") {
    const mutex =
      cluster.proxyMutexes.get(fault.kind === "partition-clients" ? "clients" : fault.target) ?? new Mutex();
    return mutex.run(() => partitionEpisode(cluster, fault, stopAtMs));
  }
  const gateway = cluster.gatewayNamed(fault.target);
  const managed = gateway ?? cluster.banks.get(fault.target)!;
  const episode = () =>
    managed.mutex.run(() => {
      if (Date.now() >= stopAtMs) return Promise.resolve("skipped: the run ended first");
      if (fault.kind === "partition-gateway-store" || fault.kind === "partition-gateway-banks")
        return gatewayPartitionEpisode(cluster, managed, fault, stopAtMs);
      if (fault.kind === "kill-gateway" || fault.kind === "kill-bank")
        return killEpisode(cluster, managed, fault, stopAtMs);
      if (fault.kind === "pause-gateway" || fault.kind === "pause-bank")
        return pauseEpisode(cluster, managed, fault, stopAtMs);
      if (fault.kind === "cut-store-sessions") return cutSessionsEpisode(cluster, managed, fault, stopAtMs);
      return crashPointEpisode(managed, fault, stopAtMs);
    });
  // Faults on gateways take turns: with several, the others stay alive and connected to take over.
  return gateway === undefined ? episode() : cluster.gatewayFaults.run(episode);
}

/**
 * Plays the schedule from `startMs` until `stopAtMs`, then waits for every episode to end. Records each
 * fault as it begins; `say` reports progress.
 */
export async function runNemesis(
  cluster: Cluster,
  plan: readonly PlannedFault[],
  clock: { startMs: number; stopAtMs: number },
  records: FaultRecord[],
  say: (line: string) => void,
): Promise<void> {
  const episodes: Array<Promise<void>> = [];
  for (const fault of plan) {
    const startAtMs = clock.startMs + fault.atMs;
    if (startAtMs >= clock.stopAtMs) break;
    await sleep(startAtMs - Date.now());
    const record: FaultRecord = {
      kind: fault.kind,
      target: fault.target,
      atMs: Date.now() - clock.startMs,
      holdMs: fault.holdMs,
      crashSpec: fault.crashSpec,
      outcome: "running",
    };
    records.push(record);
    say(
      `fault ${fault.kind} ${fault.target}${fault.crashSpec === null ? "" : ` ${fault.crashSpec}`} for ${fault.holdMs} ms`,
    );
    episodes.push(
      runEpisode(cluster, fault, clock.stopAtMs).then(
        (outcome) => void (record.outcome = outcome),
        (error: unknown) => void (record.outcome = `failed: ${(error as Error).message}`),
      ),
    );
  }
  await Promise.all(episodes);
}
