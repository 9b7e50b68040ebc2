// `paynet verify`: a Jepsen-style bank test that any user can run. It starts a fresh network in a temp dir,
// runs concurrent clients making random payments while a seeded nemesis kills, pauses, crashes (at named
// protocol points) and partitions its processes, then heals everything, waits for recovery and checks the
// invariants of src/core/testing/checker.ts over the final state.
// Exit codes (src/roles/exit-codes.ts): 0 every invariant holds, 1 a violation, 2 usage error, 3 verify itself could not run.
import { mkdtemp, mkdir, rm, writeFile } from "node:fs/promises";
import { rmSync } from "node:fs";
import { randomInt } from "node:crypto";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import chalk from "chalk";
import { dataPaths, type DataPaths } from "../../core/durable/paths.js";
import { clientFiles, issueCertificates, loadIdentity } from "../../core/transport/certificates.js";
import { serializeAccountsCsv } from "../../core/bank/store/file/accounts-csv.js";
import { OfflineQueue, PaymentHistory } from "../../core/client/client-files.js";
import { Prng, seedMax } from "../../core/testing/prng.js";
import {
  checkInvariants,
  outcomeSeen,
  type BankFinalState,
  type CheckInput,
  type TakeoverView,
} from "../../core/testing/checker.js";
import { readDurableNetwork, readGatewayPayments } from "../network-state.js";
import type { StoreChoice } from "../store-option.js";
import { createScratchDatabase, type ScratchDatabase } from "../../core/durable/postgres/database.js";
import { Cluster } from "./cluster.js";
import { exitCodes, UsageError, verifyExitCodes } from "../exit-codes.js";
import {
  allCrashPoints,
  faultKinds,
  planFaults,
  runNemesis,
  takeoverBoundMs,
  type FaultKind,
  type FaultRecord,
} from "./nemesis.js";
import {
  Observations,
  Sessions,
  VerifyClient,
  drainOfflineQueue,
  finalReads,
  type Account,
  type PaymentKind,
  type WorkloadContext,
} from "./workload.js";
import { formatReport, reportJson, type VerifyReport } from "./report.js";

export interface VerifyFlags {
  durationS: number;
  clients: number;
  banks: number;
  accounts: number;
  killEveryMs: number;
  pauseMaxMs: number;
  seed: number | undefined;
  faults: string;
  crashPoints: string;
  recoveryTimeoutMs: number;
  unsafeLateDecisionLog: boolean;
  keep: boolean;
  json: boolean;
  /** files, or the PostgreSQL server on which verify creates a database of its own (dropped after unless kept). */
  store: StoreChoice;
  /** Gateways side by side (more than one only on PostgreSQL). */
  gateways: number;
}

export const verifyBounds = Object.freeze({
  durationSMax: 3_600,
  clientsMax: 64,
  gatewaysMax: 5,
  banksMin: 2,
  banksMax: 16,
  accountsMin: 2,
  accountsMax: 50,
  killEveryMinMs: 100,
  killEveryMaxMs: 3_600_000,
  pauseMaxMinMs: 100,
  pauseMaxMaxMs: 600_000,
  recoveryTimeoutMinMs: 1_000,
  recoveryTimeoutMaxMs: 600_000,
  /** After a recovery that timed out, the second wait (for the drain's and final reads' payments) is this short. */
  settleAfterTimeoutMs: 5_000,
  recoveryPollMs: 200,
  /** The recovered state must hold this long, so that a request still in flight cannot slip past the check. */
  recoveryStableMs: 1_000,
  /** Banks ask the gateway about a hold this soon, so the decision-query path is exercised too. */
  holdTimeoutMs: 3_000,
  initialBalanceMinMinor: 50_000,
  initialBalanceMaxMinor: 200_000,
});

interface VerifyOptions {
  durationS: number;
  clients: number;
  banks: string[];
  accountsPerBank: number;
  killEveryMs: number;
  pauseMaxMs: number;
  seed: number;
  faults: FaultKind[];
  crashPoints: string[];
  recoveryTimeoutMs: number;
  unsafeLateDecisionLog: boolean;
  keep: boolean;
  json: boolean;
  store: StoreChoice;
  gateways: number;
}

function integerIn(value: number, flag: string, min: number, max: number): number {
  if (!Number.isSafeInteger(value) || value < min || value > max)
    throw new UsageError(`--${flag} must be an integer in ${min}-${max}, got ${value}`);
  return value;
}

function listOf<T extends string>(text: string, flag: string, allowed: readonly T[]): T[] {
  const items = text
    .split(",")
    .map((item) => item.trim())
    .filter((item) => item !== "");
  if (items.length === 1 && items[0] === "none") return [];
  if (items.length === 1 && items[0] === "all") return [...allowed];
  for (const item of items)
    if (!(allowed as readonly string[]).includes(item))
      throw new UsageError(
        `--${flag}: unknown ${JSON.stringify(item)}; choose from ${allowed.join(", ")} (or all, or none)`,
      );
  return [...new Set(items)] as T[];
}

function validateFlags(flags: VerifyFlags): VerifyOptions {
  const bounds = verifyBounds;
  const banks = integerIn(flags.banks, "banks", bounds.banksMin, bounds.banksMax);
  const gateways = integerIn(flags.gateways, "gateways", 1, bounds.gatewaysMax);
  if (gateways > 1 && flags.store.kind !== "postgres")
    throw new UsageError("--gateways above 1 needs --store postgres://…: gateways share their payment log there");
  if (flags.killEveryMs !== 0)
    integerIn(flags.killEveryMs, "kill-every-ms", bounds.killEveryMinMs, bounds.killEveryMaxMs);
  return Object.freeze({
    durationS: integerIn(flags.durationS, "duration-s", 1, bounds.durationSMax),
    clients: integerIn(flags.clients, "clients", 1, bounds.clientsMax),
    banks: Array.from({ length: banks }, (_, index) => `B${index + 1}`),
    accountsPerBank: integerIn(flags.accounts, "accounts", bounds.accountsMin, bounds.accountsMax),
    killEveryMs: flags.killEveryMs,
    pauseMaxMs: integerIn(flags.pauseMaxMs, "pause-max-ms", bounds.pauseMaxMinMs, bounds.pauseMaxMaxMs),
    seed: flags.seed === undefined ? randomInt(0, seedMax + 1) : integerIn(flags.seed, "seed", 0, seedMax),
    faults: listOf(flags.faults, "faults", faultKinds),
    crashPoints: listOf(flags.crashPoints, "crash-points", allCrashPoints),
    recoveryTimeoutMs: integerIn(
      flags.recoveryTimeoutMs,
      "recovery-timeout-ms",
      bounds.recoveryTimeoutMinMs,
      bounds.recoveryTimeoutMaxMs,
    ),
    unsafeLateDecisionLog: flags.unsafeLateDecisionLog || process.env.PAYNET_UNSAFE_LATE_DECISION_LOG === "1",
    keep: flags.keep,
    json: flags.json,
    store: flags.store,
    gateways,
  });
}

type Say = (line: string) => void;

function progress(line: string): void {
  process.stderr.write(`${chalk.dim(new Date().toISOString().slice(11, 23))} ${chalk.cyan("[verify]")} ${line}\n`);
}

export async function runVerify(flags: VerifyFlags): Promise<number> {
  let options: VerifyOptions;
  try {
    options = validateFlags(flags);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    process.stderr.write(chalk.red(`paynet verify: ${error.message}\n`) + "run with --help for usage\n");
    return verifyExitCodes.usage;
  }
  const dataDir = await mkdtemp(join(tmpdir(), "paynet-verify-"));
  let scratch: ScratchDatabase | null = null;
  if (options.store.kind === "postgres") {
    try {
      scratch = await createScratchDatabase(options.store.url, "paynet_verify");
    } catch (error) {
      progress(chalk.red(`verify could not run: ${(error as Error).message}`));
      await rm(dataDir, { recursive: true, force: true });
      return verifyExitCodes.failed;
    }
    options = Object.freeze({ ...options, store: { ...options.store, url: scratch.url } });
  }
  const cluster = new Cluster({
    store: options.store,
    dataDir,
    banks: options.banks,
    gatewayEnv: options.unsafeLateDecisionLog ? { PAYNET_UNSAFE_LATE_DECISION_LOG: "1" } : {},
    holdTimeoutMs: verifyBounds.holdTimeoutMs,
    gateways: options.gateways,
  });
  // No process of ours outlives verify, whatever ends it.
  const onExit = () => cluster.killNow();
  const onSignal = () => {
    cluster.killNow();
    if (!options.keep) rmSync(dataDir, { recursive: true, force: true });
    process.exit(exitCodes.interrupted);
  };
  process.on("exit", onExit);
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  let report: VerifyReport;
  try {
    report = await verifyRun(options, dataDir, cluster, progress);
  } catch (error) {
    progress(chalk.red(`verify could not run: ${(error as Error).message}`));
    return verifyExitCodes.failed;
  } finally {
    await cluster.stop();
    process.off("exit", onExit);
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    if (!options.keep) await rm(dataDir, { recursive: true, force: true });
    if (!options.keep) await scratch?.drop();
    else if (scratch !== null) progress(`database kept: ${scratch.name}`);
  }
  process.stdout.write(options.json ? `${JSON.stringify(reportJson(report))}\n` : formatReport(report));
  return report.ok ? verifyExitCodes.ok : verifyExitCodes.violated;
}

async function verifyRun(options: VerifyOptions, dataDir: string, cluster: Cluster, say: Say): Promise<VerifyReport> {
  const startedAtMs = Date.now();
  const prng = new Prng(options.seed);
  const paths = dataPaths(dataDir);
  say(`seed ${options.seed}; data dir ${dataDir}; issuing certificates`);
  const accounts = await prepareDataDir(paths, options, prng.fork("accounts"));
  const { gatewayAddresses, clientAddresses } = await cluster.start();
  say(
    `network up: ${gatewayAddresses.length === 1 ? "gateway" : "gateways"} ${gatewayAddresses.join(", ")}, banks ${options.banks.join(", ")}${options.unsafeLateDecisionLog ? chalk.yellow(" (gateway deliberately broken)") : ""}`,
  );
  const identity = await loadIdentity(paths.certificateDir, clientFiles(paths.certificateDir));
  const onRepair = () => say(chalk.yellow("a client file was damaged and repaired"));
  const context: WorkloadContext = {
    accounts,
    gatewayAddresses: clientAddresses,
    identity,
    queue: new OfflineQueue(paths.offlinePaymentsJson, onRepair),
    history: new PaymentHistory(paths.paymentHistoryJson, onRepair),
    observations: new Observations(),
    sessions: new Sessions(),
    seed: options.seed,
  };
  const faultLog = await runTraffic(context, cluster, options, prng, say);
  const { recovery, settled, stillQueued } = await healAndSettle(context, cluster, paths, options, say);
  await cluster.stop();

  say("checking the invariants");
  const finalState = await readFinalState({ store: options.store, paths, banks: options.banks });
  const processFailures = cluster.events
    .filter((event) => event.kind !== "crash-point-reached")
    .map((event) => `${event.detail} (at ${((event.atMs - startedAtMs) / 1000).toFixed(1)} s)`);
  const initialBalancesMinor = new Map(
    accounts.map((account) => [`${account.user}@${account.bank}`, account.initialMinor]),
  );
  const recoveryFailures = [
    ...(recovery.recovered
      ? []
      : [`not recovered within ${options.recoveryTimeoutMs} ms after healing: ${summarize(recovery.blockers)}`]),
    ...(settled.recovered
      ? []
      : [`the payments of the drain and final reads did not settle: ${summarize(settled.blockers)}`]),
  ];
  const invariants = checkInvariants({
    initialBalancesMinor,
    ...finalState,
    observations: context.observations.list(),
    processFailures,
    recoveryFailures,
    takeovers: cluster.takeovers,
    // With one gateway, its payments wait for its own restart, which the nemesis may delay: reported, not bounded.
    ...(options.gateways > 1 ? { takeoverBoundMs } : {}),
  });
  return buildReport({
    options,
    dataDir,
    startedAtMs,
    accounts,
    observations: context.observations,
    stillQueued,
    faultLog,
    crashPointsReached: cluster.events.filter((event) => event.kind === "crash-point-reached").length,
    takeovers: cluster.takeovers.map(({ gateway, payments, takenOverMs }) => ({ gateway, payments, takenOverMs })),
    processFailures,
    recovery: {
      recovered: recovery.recovered && settled.recovered,
      recoveryMs: recovery.recoveryMs,
      timeoutMs: options.recoveryTimeoutMs,
    },
    invariants,
  });
}

/**
 * Ends every fault and waits for recovery (timed from the start of healing); then, as careful clients
 * would, sends what is left in the offline queue and asks again about every unknown outcome, and waits
 * for the payments that makes to settle too.
 */
async function healAndSettle(
  context: WorkloadContext,
  cluster: Cluster,
  paths: DataPaths,
  options: VerifyOptions,
  say: Say,
): Promise<{ recovery: Recovery; settled: Recovery; stillQueued: number }> {
  say("healing every fault");
  const healStartMs = Date.now();
  await cluster.healAll();
  const source: StateSource = { store: options.store, paths, banks: options.banks };
  const recovery = await waitForRecovery(source, options.recoveryTimeoutMs, healStartMs);
  say(
    recovery.recovered
      ? `recovered in ${recovery.recoveryMs} ms`
      : chalk.red(`not recovered within ${options.recoveryTimeoutMs} ms: ${summarize(recovery.blockers)}`),
  );
  const stillQueued = await drainOfflineQueue(context);
  const unknown = [...context.observations.payments.values()].filter(
    (log) => outcomeSeen(log.attempts).kind === "ambiguous",
  ).length;
  say(`offline queue drained (${stillQueued} left); asking again about ${unknown} unknown outcomes`);
  await finalReads(context);
  const settled = await waitForRecovery(
    source,
    recovery.recovered ? options.recoveryTimeoutMs : verifyBounds.settleAfterTimeoutMs,
  );
  return { recovery, settled, stillQueued };
}

/** Accounts u01..uNN at every bank with random balances and plaintext passwords (banks hash them at first load), and the certificates. */
async function prepareDataDir(paths: DataPaths, options: VerifyOptions, prng: Prng): Promise<Account[]> {
  const accounts: Account[] = [];
  for (const bank of options.banks) {
    for (let index = 1; index <= options.accountsPerBank; index += 1) {
      const user = `u${String(index).padStart(2, "0")}`;
      accounts.push({
        user,
        bank,
        password: `pw-${user}-${bank}`,
        initialMinor: BigInt(prng.int(verifyBounds.initialBalanceMinMinor, verifyBounds.initialBalanceMaxMinor)),
      });
    }
  }
  await mkdir(dirname(paths.accountsCsv), { recursive: true });
  await writeFile(
    paths.accountsCsv,
    serializeAccountsCsv(
      accounts.map((account) => ({
        username: account.user,
        balanceMinor: account.initialMinor,
        password: account.password,
        bank: account.bank,
      })),
    ),
  );
  await issueCertificates({ certificateDir: paths.certificateDir, banks: options.banks });
  return accounts;
}

async function runTraffic(
  context: WorkloadContext,
  cluster: Cluster,
  options: VerifyOptions,
  prng: Prng,
  say: Say,
): Promise<FaultRecord[]> {
  const startMs = Date.now();
  const stopAtMs = startMs + options.durationS * 1_000;
  const plan = planFaults(prng.fork("nemesis"), {
    durationMs: options.durationS * 1_000,
    killEveryMs: options.killEveryMs,
    pauseMaxMs: options.pauseMaxMs,
    kinds: options.faults,
    crashPoints: options.crashPoints,
    banks: options.banks,
    databaseStore: options.store.kind === "postgres",
    gateways: cluster.gateways.map((gateway) => gateway.name),
  });
  say(`traffic for ${options.durationS} s from ${options.clients} clients; ${plan.length} faults planned`);
  const records: FaultRecord[] = [];
  const clients = Array.from({ length: options.clients }, (_, index) => new VerifyClient(index, context, prng));
  try {
    await Promise.all([
      ...clients.map((client) => client.run(stopAtMs)),
      runNemesis(cluster, plan, { startMs, stopAtMs }, records, say),
    ]);
  } finally {
    for (const client of clients) client.close();
  }
  return records;
}

/** What keeps the network from being recovered: unfinished payments at the gateway, holds at banks. */
async function recoveryBlockers(source: StateSource): Promise<string[]> {
  const blockers: string[] = [];
  try {
    for (const record of await readGatewayPayments(source.store, source.paths))
      if (!record.finished) blockers.push(`gateway: ${record.paymentId} ${record.state}, not finished`);
  } catch (error) {
    blockers.push(`gateway: log unreadable (${(error as Error).message})`);
  }
  try {
    for (const [bank, state] of (await readDurableNetwork(source.store, source.paths, source.banks)).banks)
      for (const paymentId of state.holds.keys()) blockers.push(`${bank}: hold ${paymentId}`);
  } catch (error) {
    blockers.push(`banks: state unreadable (${(error as Error).message})`);
  }
  return blockers;
}

/** The first few items of a list, and how many more. */
function summarize(items: readonly string[], shownMax = 5): string {
  const shown = items.slice(0, shownMax).join("; ");
  return items.length > shownMax ? `${shown}; and ${items.length - shownMax} more` : shown;
}

interface Recovery {
  recovered: boolean;
  recoveryMs: number | null;
  /** At the timeout, what was still unrecovered. */
  blockers: string[];
}

/**
 * Polls the state files until the network is recovered (and stays so for recoveryStableMs), at most
 * `timeoutMs`. The recovery time counts from `sinceMs` (when healing began).
 */
/** Where the network's durable state is read from. */
interface StateSource {
  store: StoreChoice;
  paths: DataPaths;
  banks: readonly string[];
}

async function waitForRecovery(source: StateSource, timeoutMs: number, sinceMs = Date.now()): Promise<Recovery> {
  const startMs = Date.now();
  let healthySinceMs: number | null = null;
  let blockers: string[] = [];
  while (Date.now() - startMs < timeoutMs) {
    blockers = await recoveryBlockers(source);
    if (blockers.length === 0) {
      healthySinceMs ??= Date.now();
      if (Date.now() - healthySinceMs >= verifyBounds.recoveryStableMs)
        return { recovered: true, recoveryMs: healthySinceMs - sinceMs, blockers: [] };
    } else {
      healthySinceMs = null;
    }
    await new Promise((resolve) => setTimeout(resolve, verifyBounds.recoveryPollMs));
  }
  return { recovered: false, recoveryMs: null, blockers };
}

async function readFinalState(
  source: StateSource,
): Promise<Pick<CheckInput, "finalBalancesMinor" | "banks" | "gatewayRecords">> {
  const network = await readDurableNetwork(source.store, source.paths, source.banks);
  const bankStates = new Map<string, BankFinalState>();
  for (const [bank, state] of network.banks) {
    const outcomes = new Map([...state.finished.values()].map((finished) => [finished.paymentId, finished.outcome]));
    // The journal leaves no change half-applied: a commit entry sets every balance it names at once.
    bankStates.set(bank, { holds: [...state.holds.values()], applying: [], outcomes });
  }
  return {
    finalBalancesMinor: network.balancesMinor,
    banks: bankStates,
    gatewayRecords: await readGatewayPayments(source.store, source.paths),
  };
}

interface ReportInputs {
  options: VerifyOptions;
  dataDir: string;
  startedAtMs: number;
  accounts: Account[];
  observations: Observations;
  stillQueued: number;
  faultLog: FaultRecord[];
  crashPointsReached: number;
  takeovers: TakeoverView[];
  processFailures: string[];
  recovery: VerifyReport["recovery"];
  invariants: VerifyReport["invariants"];
}

function buildReport(inputs: ReportInputs): VerifyReport {
  const { options, observations } = inputs;
  const logs = [...observations.payments.values()];
  const byKind: Record<PaymentKind, number> = {
    "cross-bank": 0,
    "same-bank": 0,
    "over-balance": 0,
    offline: 0,
    batch: 0,
  };
  const abortedByReason: Record<string, number> = {};
  const outcomes = { committed: 0, aborted: 0, unknown: 0, unansweredDuringRun: 0 };
  for (const log of logs) {
    byKind[log.kind] += 1;
    const seen = outcomeSeen(log.attempts);
    if (seen.kind === "committed") outcomes.committed += 1;
    if (seen.kind === "aborted") abortedByReason[seen.reason] = (abortedByReason[seen.reason] ?? 0) + 1;
    if (seen.kind === "aborted") outcomes.aborted += 1;
    if (seen.kind === "ambiguous") outcomes.unknown += 1;
    if (outcomeSeen(log.attempts.filter((attempt) => attempt.afterRun !== true)).kind === "ambiguous")
      outcomes.unansweredDuringRun += 1;
  }
  const faultsByKind = Object.fromEntries(
    faultKinds.map((kind) => [kind, inputs.faultLog.filter((fault) => fault.kind === kind).length]),
  ) as Record<FaultKind, number>;
  return {
    seed: options.seed,
    durationS: options.durationS,
    clients: options.clients,
    banks: options.banks,
    accountsPerBank: options.accountsPerBank,
    killEveryMs: options.killEveryMs,
    unsafeLateDecisionLog: options.unsafeLateDecisionLog,
    dataDir: inputs.dataDir,
    keptDataDir: options.keep,
    elapsedMs: Date.now() - inputs.startedAtMs,
    totalMinor: inputs.accounts.reduce((sum, account) => sum + account.initialMinor, 0n),
    operations: {
      payments: logs.length,
      byKind,
      answers: logs.reduce((sum, log) => sum + log.attempts.length, 0),
      retries: observations.retries,
      replays: observations.replays,
      syncs: observations.syncs,
      finalReads: observations.finalReads,
      stillQueued: inputs.stillQueued,
    },
    outcomes: {
      committed: outcomes.committed,
      aborted: outcomes.aborted,
      abortedByReason,
      unansweredDuringRun: outcomes.unansweredDuringRun,
      unknown: outcomes.unknown,
    },
    faults: {
      total: inputs.faultLog.length,
      byKind: faultsByKind,
      crashPointsReached: inputs.crashPointsReached,
      processFailures: inputs.processFailures,
      log: inputs.faultLog,
    },
    recovery: inputs.recovery,
    gateways: options.gateways,
    takeovers: { boundMs: takeoverBoundMs, seen: inputs.takeovers },
    invariants: inputs.invariants,
    ok: inputs.invariants.every((result) => result.ok),
  };
}
