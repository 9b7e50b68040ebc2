// `paynet bench`: starts (or targets) a network, runs a bounded load of payments, waits until every
// payment is finished, then checks that money was conserved and prints throughput, latency and counts.
import type { StoreChoice } from "../store-option.js";
import { randomBytes } from "node:crypto";
import { resolve } from "node:path";
import { banksOf, readAccountsCsv } from "../../core/bank/store/file/accounts-csv.js";
import { accountRefs, benchAccountsMax, benchBanksDefault, choosePayers, PaymentPlanner } from "./accounts.js";
import { checkConservation, resolveOutcomes, summarizeLatencies, throughputPerS, type LoggedPayment } from "./stats.js";
import { clientFiles, loadIdentity } from "../../core/transport/certificates.js";
import { balanceMinorMax, formatMinor, parseDecimalMinor } from "../../core/domain/money.js";
import { dataPaths, type DataPaths } from "../../core/durable/paths.js";
import { seedMax } from "../../core/testing/prng.js";
import { validateAddress } from "../../core/domain/validate.js";
import { exitCodes } from "../exit-codes.js";
import { existingNetwork, startOwnNetwork, type BenchNetwork } from "./network.js";
import { paymentOrdersPerCallMax } from "../../core/gateway/gateway-service.js";
import { runLoad, warmupIdInfix, type LoadProgress, type LoadResult } from "./load.js";
import { waitUntilSettled } from "./state.js";
import { reportJson, reportOk, reportTable, type BenchReport } from "./report.js";
import { CpuMeter, type CpuUse } from "./process-cpu.js";
import { instanceBounds } from "../../core/gateway/bank-instances.js";

export interface BenchFlags {
  dataDir: string;
  /** Where the network keeps its state: files, or a PostgreSQL server (the bench makes a database of its own there). */
  store: StoreChoice;
  /** Target this running gateway (accounts from --data-dir) instead of starting a network. */
  gateway: string | undefined;
  /** Gateways the bench starts side by side on its PostgreSQL database (1: one, on either store). */
  gateways: number;
  /** Processes per bank the bench starts (above 1: --multi-instance on PostgreSQL, the shared ledger). */
  bankInstances: number;
  payments: number;
  /** Payments made first, not timed; undefined: warmupDefault(payments). */
  warmup: number | undefined;
  concurrency: number;
  accounts: number;
  rate: number | undefined;
  batch: number;
  sameBankPercent: number;
  /** Initial balance of every created account (a decimal); undefined: enough for every payment (balanceOfCreated). */
  balance: string | undefined;
  seed: number;
  callTimeoutMs: number;
  timeoutMs: number;
  settleTimeoutMs: number;
  keep: boolean;
  /** Profile the gateway and the banks the bench starts (node --cpu-prof) into this dir. */
  cpuProf: string | undefined;
  json: boolean;
}

/** The flags once the warm-up's default is applied. */
type WarmupChosen = BenchFlags & { warmup: number };

export const benchLimits = Object.freeze({
  paymentsMax: 10_000_000,
  gatewaysMax: 5,
  /** A gateway keeps at most this many instances of one bank. */
  bankInstancesMax: instanceBounds.instancesMax,
  concurrencyMax: 1024,
  rateMax: 1_000_000,
  timeoutMsMax: 24 * 3_600_000,
  amountMinMinor: 1n,
  amountMaxMinor: 100n,
  /** The created accounts' balance when --balance is not given, unless the payments need more. */
  balanceMinorDefault: 100_000n,
  /** The default warm-up is as many payments as the timed ones, at most this many: enough to compile the hot code. */
  warmupDefaultMax: 10_000,
  progressTtyMs: 200,
  progressPlainMs: 5_000,
});

/** The password of every generated account; for --gateway, PAYNET_PASSWORD overrides it. */
export const benchPasswordDefault = "bench-password";

const isInteger = (value: number, min: number, max: number) =>
  Number.isSafeInteger(value) && value >= min && value <= max;

/**
 * Untimed payments made first when --warmup is not given: as many as the timed ones, at most warmupDefaultMax, so
 * that a short run is not dwarfed by its warm-up (2,000 payments after 10,000 took 29 s for 2.3 s measured).
 */
export function warmupDefault(payments: number): number {
  return Math.min(payments, benchLimits.warmupDefaultMax);
}

/** The first usage error in the flags, or null. */
export function benchUsageError(flags: BenchFlags): string | null {
  if (!isInteger(flags.batch, 1, paymentOrdersPerCallMax))
    return `--batch must be an integer in 1-${paymentOrdersPerCallMax} (payments per MakePayments call), got ${flags.batch}`;
  if (!isInteger(flags.payments, 1, benchLimits.paymentsMax))
    return `--payments must be an integer in 1-${benchLimits.paymentsMax}, got ${flags.payments}`;
  if (flags.warmup !== undefined && !isInteger(flags.warmup, 0, benchLimits.paymentsMax))
    return `--warmup must be an integer in 0-${benchLimits.paymentsMax}, got ${flags.warmup}`;
  if (!isInteger(flags.concurrency, 1, benchLimits.concurrencyMax))
    return `--concurrency must be an integer in 1-${benchLimits.concurrencyMax}, got ${flags.concurrency}`;
  if (!isInteger(flags.accounts, 2, benchAccountsMax))
    return `--accounts must be an integer in 2-${benchAccountsMax}, got ${flags.accounts}`;
  if (flags.gateway === undefined && flags.concurrency > flags.accounts)
    return `--concurrency ${flags.concurrency} needs at least as many accounts (each client is a different account), got --accounts ${flags.accounts}`;
  if (flags.rate !== undefined && !(Number.isFinite(flags.rate) && flags.rate > 0 && flags.rate <= benchLimits.rateMax))
    return `--rate must be a number of payments per second in (0, ${benchLimits.rateMax}], got ${flags.rate}`;
  if (!(Number.isFinite(flags.sameBankPercent) && flags.sameBankPercent >= 0 && flags.sameBankPercent <= 100))
    return `--same-bank-percent must be in 0-100, got ${flags.sameBankPercent}`;
  if (flags.balance !== undefined) {
    const balanceMinor = parseDecimalMinor(flags.balance);
    if (balanceMinor === null || balanceMinor > balanceMinorMax)
      return `--balance must be a non-negative decimal with at most 2 places (e.g. 1000.00), got ${JSON.stringify(flags.balance)}`;
  }
  if (!isInteger(flags.seed, 0, seedMax)) return `--seed must be an integer in 0-${seedMax}, got ${flags.seed}`;
  for (const [name, value] of [
    ["--call-timeout-ms", flags.callTimeoutMs],
    ["--timeout-ms", flags.timeoutMs],
    ["--settle-timeout-ms", flags.settleTimeoutMs],
  ] as const) {
    if (!isInteger(value, 1, benchLimits.timeoutMsMax))
      return `${name} must be an integer in 1-${benchLimits.timeoutMsMax}, got ${value}`;
  }
  if (flags.cpuProf !== undefined && flags.gateway !== undefined)
    return "--cpu-prof profiles the processes the bench starts; with --gateway it starts none (start that network under node --cpu-prof instead)";
  if (flags.cpuProf !== undefined && flags.cpuProf.trim() === "") return "--cpu-prof needs a directory";
  if (!isInteger(flags.gateways, 1, benchLimits.gatewaysMax))
    return `--gateways must be an integer in 1-${benchLimits.gatewaysMax}, got ${flags.gateways}`;
  if (flags.gateways > 1 && flags.gateway !== undefined)
    return "--gateways starts gateways; with --gateway the bench starts none (give one address)";
  if (flags.gateways > 1 && flags.store.kind !== "postgres")
    return "--gateways above 1 needs --store postgres://…: gateways side by side share their payments in one database, and the file store is one process's";
  if (!isInteger(flags.bankInstances, 1, benchLimits.bankInstancesMax))
    return `--bank-instances must be an integer in 1-${benchLimits.bankInstancesMax}, got ${flags.bankInstances}`;
  if (flags.bankInstances > 1 && flags.gateway !== undefined)
    return "--bank-instances starts banks; with --gateway the bench starts none";
  if (flags.bankInstances > 1 && flags.store.kind !== "postgres")
    return "--bank-instances above 1 needs --store postgres://…: instances of a bank share its schema in one database, and a bank's files are one process's";
  if (flags.gateway !== undefined) {
    try {
      validateAddress(flags.gateway, "--gateway");
    } catch (error) {
      return (error as Error).message;
    }
  }
  return null;
}

function note(message: string): void {
  process.stderr.write(`bench: ${message}\n`);
}

/** A progress line on stderr: redrawn in place on a terminal, a plain line every few seconds otherwise. */
function startProgress(progress: LoadProgress, total: number, label: string): () => void {
  const tty = process.stderr.isTTY === true;
  const startedMs = Date.now();
  const render = () => {
    const elapsedS = Math.max((Date.now() - startedMs) / 1000, 0.001);
    const fraction = progress.done / total;
    const counts = `${label}${progress.done}/${total} ${(fraction * 100).toFixed(0)}% ${(progress.done / elapsedS).toFixed(0)}/s committed ${progress.committed} aborted ${progress.aborted} ambiguous ${progress.ambiguous}`;
    if (!tty) return note(counts);
    const barWidth = 30;
    const filled = Math.round(fraction * barWidth);
    process.stderr.write(`\r[${"#".repeat(filled)}${"-".repeat(barWidth - filled)}] ${counts}`);
  };
  const timer = setInterval(render, tty ? benchLimits.progressTtyMs : benchLimits.progressPlainMs);
  return () => {
    clearInterval(timer);
    render();
    if (tty) process.stderr.write("\n");
  };
}

/**
 * The initial balance of every created account: --balance, or else enough that no payer runs out, so that
 * a run measures payments rather than refusals. Each client pays from its own account: at most its share of
 * the payments and the warm-up, each at most amountMaxMinor; at least balanceMinorDefault.
 */
export function balanceOfCreated(
  flags: Pick<BenchFlags, "balance" | "payments" | "concurrency"> & { warmup: number },
): bigint {
  if (flags.balance !== undefined) return parseDecimalMinor(flags.balance)!;
  const paymentsPerPayer = BigInt(Math.ceil((flags.payments + flags.warmup) / flags.concurrency));
  const neededMinor = paymentsPerPayer * benchLimits.amountMaxMinor;
  return neededMinor > benchLimits.balanceMinorDefault ? neededMinor : benchLimits.balanceMinorDefault;
}

async function openNetwork(flags: WarmupChosen): Promise<BenchNetwork> {
  if (flags.gateway !== undefined) return existingNetwork(flags.dataDir, flags.gateway, flags.store);
  const banks = [...benchBanksDefault];
  const balanceMinor = balanceOfCreated(flags);
  const instancesText = flags.bankInstances === 1 ? "" : ` of ${flags.bankInstances} processes each`;
  note(
    `starting ${flags.gateways === 1 ? "a gateway" : `${flags.gateways} gateways`} and ${banks.length} banks${instancesText} with ${flags.accounts} accounts of ${formatMinor(balanceMinor)} each`,
  );
  const network = await startOwnNetwork({
    accounts: flags.accounts,
    banks,
    balanceMinor,
    password: benchPasswordDefault,
    keep: flags.keep,
    env: process.env,
    cpuProfileDir: flags.cpuProf === undefined ? undefined : resolve(flags.cpuProf),
    store: flags.store,
    gateways: flags.gateways,
    bankInstances: flags.bankInstances,
  });
  note(
    `network ready: ${network.gatewayAddresses.length === 1 ? "gateway" : "gateways"} ${network.gatewayAddresses.join(", ")}, data dir ${network.dataDir}`,
  );
  return network;
}

/** Why waiting for the network is pointless: one of its processes is gone. */
function processGone(network: BenchNetwork): string | null {
  const exits = network.unexpectedExits();
  return exits.length === 0 ? null : `${exits.map((exit) => exit.name).join(", ")} exited during the run`;
}

interface Measured {
  load: LoadResult;
  /** CPU each process used during the load (the bench itself, and the network's processes if it started them). */
  cpu: CpuUse[];
  /** The balances before the warm-up, if any, and the load. */
  before: Map<string, bigint>;
  banks: string[];
  accounts: number;
  idPrefix: string;
}

/**
 * Waits until the network is quiet and reads the balances before the load, then runs it. Returns a usage
 * error text instead when the flags do not fit the accounts.
 */
async function measure(flags: WarmupChosen, network: BenchNetwork, paths: DataPaths): Promise<Measured | string> {
  const banks = banksOf(await readAccountsCsv(paths.accountsCsv));
  // No payment id starts with NUL: this waits only for the banks to hold nothing (an existing network must be idle).
  const initial = await waitUntilSettled(network.store, paths, banks, "\u0000", flags.settleTimeoutMs, () =>
    processGone(network),
  );
  if (initial.durable === null)
    throw new Error(
      `the network is not idle (holds open) or its state is unreadable${initial.readError === null ? "" : `: ${initial.readError}`}`,
    );
  const rows = initial.durable.rows;
  if (flags.concurrency > rows.length)
    return `--concurrency ${flags.concurrency} needs at least as many accounts; ${paths.accountsCsv} has ${rows.length}`;
  const accounts = accountRefs(rows);
  const planner = new PaymentPlanner(accounts, {
    sameBankPercent: flags.sameBankPercent,
    amountMinMinor: benchLimits.amountMinMinor,
    amountMaxMinor: benchLimits.amountMaxMinor,
  });
  const identity = await loadIdentity(paths.certificateDir, clientFiles(paths.certificateDir));
  const idPrefix = `bench-${randomBytes(6).toString("hex")}-`;
  const progress: LoadProgress = { started: 0, done: 0, committed: 0, aborted: 0, ambiguous: 0 };
  const warmupProgress: LoadProgress = { ...progress };
  if (flags.warmup > 0)
    note(`warm-up: ${flags.warmup} payments first, closed loop, not timed, ids ${idPrefix}${warmupIdInfix}N`);
  note(
    `${flags.payments} payments, ${flags.concurrency} clients, ${flags.rate === undefined ? "closed loop" : `${flags.rate}/s`}, ids ${idPrefix}N`,
  );
  let stopProgress =
    flags.warmup > 0
      ? startProgress(warmupProgress, flags.warmup, "warm-up ")
      : startProgress(progress, flags.payments, "");
  const cpuMeter = new CpuMeter([{ name: "bench", pid: process.pid }, ...network.processes()]);
  try {
    const load = await runLoad(
      {
        gatewayAddresses: network.gatewayAddresses,
        identity,
        payers: choosePayers(accounts, flags.concurrency),
        password: network.owned ? benchPasswordDefault : (process.env.PAYNET_PASSWORD ?? benchPasswordDefault),
        planner,
        seed: flags.seed,
        payments: flags.payments,
        warmupPayments: flags.warmup,
        ratePerS: flags.rate ?? null,
        batch: flags.batch,
        callTimeoutMs: flags.callTimeoutMs,
        overallTimeoutMs: flags.timeoutMs,
        idPrefix,
        stopReason: () => processGone(network),
        onLoadStart: () => {
          if (flags.warmup > 0) {
            stopProgress();
            stopProgress = startProgress(progress, flags.payments, "");
          }
          cpuMeter.start();
        },
      },
      progress,
      warmupProgress,
    );
    const cpu = cpuMeter.stop();
    return { load, cpu, before: initial.durable.balances, banks, accounts: rows.length, idPrefix };
  } finally {
    stopProgress();
  }
}

async function check(
  flags: WarmupChosen,
  network: BenchNetwork,
  paths: DataPaths,
  measured: Measured,
): Promise<BenchReport> {
  const { load } = measured;
  note(`load done in ${(load.durationMs / 1000).toFixed(1)} s; waiting for every payment to finish`);
  for (const exit of network.unexpectedExits())
    note(
      `${exit.name} exited during the run (code ${exit.code}, signal ${exit.signal}); its last lines:\n${exit.lastLines.join("\n")}`,
    );
  const settled = await waitUntilSettled(
    network.store,
    paths,
    measured.banks,
    measured.idPrefix,
    flags.settleTimeoutMs,
    () => processGone(network),
  );
  const warmupPrefix = `${measured.idPrefix}${warmupIdInfix}`;
  const logged = { timed: new Map<string, LoggedPayment>(), warmup: new Map<string, LoggedPayment>() };
  for (const [paymentId, record] of settled.logged)
    logged[paymentId.startsWith(warmupPrefix) ? "warmup" : "timed"].set(paymentId, record);
  const outcomes = resolveOutcomes(load.sent, logged.timed);
  const warmup =
    load.warmup === null
      ? null
      : {
          payments: load.warmup.sent.length,
          durationMs: load.warmup.durationMs,
          outcomes: resolveOutcomes(load.warmup.sent, logged.warmup),
        };
  const committedTransfers = [...(warmup?.outcomes.committedTransfers ?? []), ...outcomes.committedTransfers];
  const conservation =
    settled.durable === null ? null : checkConservation(measured.before, settled.durable.balances, committedTransfers);
  const readError = settled.durable === null ? (settled.readError ?? "the network did not settle") : null;
  return {
    payments: flags.payments,
    concurrency: flags.concurrency,
    channels: load.channels,
    accounts: measured.accounts,
    banks: measured.banks,
    mode: flags.rate === undefined ? "closed" : "open",
    ratePerS: flags.rate ?? null,
    sameBankPercent: flags.sameBankPercent,
    seed: flags.seed,
    batch: flags.batch,
    durationMs: load.durationMs,
    throughputPerS: throughputPerS(outcomes.committed + outcomes.ambiguousCommitted, load.durationMs),
    latency: summarizeLatencies(load.latenciesMs),
    cpu: measured.cpu,
    outcomes,
    warmup,
    notStarted: load.notStarted,
    timedOut: load.timedOut,
    stoppedBecause: load.stoppedBecause,
    reasons: load.reasons,
    settled: settled.settled,
    settleMs: settled.settleMs,
    conservation,
    readError,
    network: {
      owned: network.owned,
      gateway: network.gatewayAddresses.join(","),
      gateways: network.gatewayAddresses.length,
      bankInstances: flags.bankInstances,
      dataDir: network.dataDir,
      kept: network.owned && flags.keep,
      exits: network.unexpectedExits(),
    },
  };
}

export async function runBench(given: BenchFlags): Promise<number> {
  const usage = benchUsageError(given);
  if (usage !== null) {
    process.stderr.write(`paynet bench: ${usage}\n`);
    return exitCodes.usage;
  }
  const flags: WarmupChosen = { ...given, warmup: given.warmup ?? warmupDefault(given.payments) };
  // The first line says what the run will cost: the warm-up can take longer than the timed payments.
  note(
    `${flags.warmup} warm-up payments${given.warmup === undefined ? ` (as many as the timed ones, at most ${benchLimits.warmupDefaultMax}; --warmup to choose)` : ""}, then ${flags.payments} timed`,
  );
  let network: BenchNetwork;
  try {
    network = await openNetwork(flags);
  } catch (error) {
    process.stderr.write(`paynet bench: cannot start the network: ${(error as Error).message}\n`);
    return exitCodes.refused;
  }
  const onSignal = () => void network.close().then(() => process.exit(exitCodes.interrupted));
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    const paths = dataPaths(network.dataDir);
    const measured = await measure(flags, network, paths);
    if (typeof measured === "string") {
      process.stderr.write(`paynet bench: ${measured}\n`);
      return exitCodes.usage;
    }
    const report = await check(flags, network, paths, measured);
    process.stdout.write(flags.json ? `${JSON.stringify(reportJson(report))}\n` : reportTable(report));
    return reportOk(report) ? exitCodes.ok : exitCodes.refused;
  } catch (error) {
    process.stderr.write(`paynet bench: ${(error as Error).message}\n`);
    return exitCodes.refused;
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    await network.close();
    if (network.owned && flags.keep) note(`data dir kept: ${network.dataDir}`);
    if (flags.cpuProf !== undefined)
      note(
        `CPU profiles (the whole life of each process, warm-up included): ${resolve(flags.cpuProf)}/{gateway,bank-NAME${flags.bankInstances > 1 ? "-INSTANCE" : ""}}.cpuprofile`,
      );
  }
}
