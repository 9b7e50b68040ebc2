// What `paynet bench` prints: one report, as a table for people or as one JSON object for scripts.
import { formatMinor } from "../../core/domain/money.js";
import type { ConservationReport, LatencySummary, OutcomeReport } from "./stats.js";
import type { Reason } from "../../core/domain/errors.js";
import type { ChildExit } from "./network.js";
import type { CpuUse } from "./process-cpu.js";

export interface BenchReport {
  payments: number;
  concurrency: number;
  channels: number;
  accounts: number;
  banks: string[];
  mode: "closed" | "open";
  ratePerS: number | null;
  sameBankPercent: number;
  seed: number;
  batch: number;
  durationMs: number;
  throughputPerS: number;
  latency: LatencySummary;
  /** CPU each process used during the load. */
  cpu: CpuUse[];
  outcomes: OutcomeReport;
  /** The untimed payments made first, resolved against the gateway log like the rest; null if none. */
  warmup: { payments: number; durationMs: number; outcomes: OutcomeReport } | null;
  notStarted: number;
  timedOut: boolean;
  stoppedBecause: string | null;
  reasons: Partial<Record<Reason, number>>;
  settled: boolean;
  settleMs: number;
  /** Null when the balances could not be read after the run (then `readError` says why). */
  conservation: ConservationReport | null;
  readError: string | null;
  network: {
    owned: boolean;
    /** The gateway's address, or with several a comma list of theirs. */
    gateway: string;
    gateways: number;
    /** Processes per bank (several: the shared ledger on PostgreSQL). */
    bankInstances: number;
    dataDir: string;
    kept: boolean;
    exits: ChildExit[];
  };
}

/**
 * The verdict: no process died, the run settled, every outcome (warm-up included) agrees with the gateway
 * log, balances conserved.
 */
export function reportOk(report: BenchReport): boolean {
  const warmupOk = report.warmup === null || report.warmup.outcomes.ok;
  return (
    report.network.exits.length === 0 &&
    report.settled &&
    report.outcomes.ok &&
    warmupOk &&
    report.conservation !== null &&
    report.conservation.ok
  );
}

const round = (value: number, places: number) => Number(value.toFixed(places));

interface CpuSummary {
  processes: Array<{ name: string; cpuMs: number | null; perPaymentMs: number | null }>;
  /** Every process's CPU per answered payment, or null when a process's time is unknown. */
  perPaymentMs: number | null;
  /** CPU used by all of them over the load's duration: how many cores they kept busy on average. */
  coresBusy: number | null;
}

/** Where a payment's CPU went: per process and in all, per payment answered during the load. */
function cpuSummary(report: BenchReport): CpuSummary {
  const { committed, aborted, ambiguous } = report.outcomes;
  const answered = committed + aborted + ambiguous;
  const perPayment = (cpuMs: number | null) => (cpuMs === null || answered === 0 ? null : cpuMs / answered);
  const processes = report.cpu.map((use) => ({
    name: use.name,
    cpuMs: use.cpuMs,
    perPaymentMs: perPayment(use.cpuMs),
  }));
  const known = report.cpu.every((use) => use.cpuMs !== null);
  const totalMs = report.cpu.reduce((sum, use) => sum + (use.cpuMs ?? 0), 0);
  return {
    processes,
    perPaymentMs: known ? perPayment(totalMs) : null,
    coresBusy: known && report.durationMs > 0 ? totalMs / report.durationMs : null,
  };
}

export function reportJson(report: BenchReport): Record<string, unknown> {
  const { outcomes, conservation, latency } = report;
  return {
    payments: report.payments,
    concurrency: report.concurrency,
    channels: report.channels,
    accounts: report.accounts,
    banks: report.banks,
    mode: report.mode,
    rate: report.ratePerS,
    sameBankPercent: report.sameBankPercent,
    seed: report.seed,
    batch: report.batch,
    durationMs: round(report.durationMs, 1),
    throughputPerS: round(report.throughputPerS, 1),
    latencyMs: {
      p50: round(latency.p50Ms, 2),
      p95: round(latency.p95Ms, 2),
      p99: round(latency.p99Ms, 2),
      max: round(latency.maxMs, 2),
      mean: round(latency.meanMs, 2),
    },
    cpu: cpuJson(cpuSummary(report)),
    committed: outcomes.committed,
    aborted: outcomes.aborted,
    ambiguous: outcomes.ambiguous,
    ambiguousResolved: {
      committed: outcomes.ambiguousCommitted,
      aborted: outcomes.ambiguousAborted,
      unresolved: outcomes.ambiguousUnresolved,
    },
    warmup: report.warmup === null ? null : warmupJson(report.warmup),
    notStarted: report.notStarted,
    timedOut: report.timedOut,
    stoppedBecause: report.stoppedBecause,
    reasons: report.reasons,
    settled: report.settled,
    settleMs: round(report.settleMs, 1),
    conservation: {
      ok: reportOk(report),
      sumBefore: conservation === null ? null : formatMinor(conservation.sumBeforeMinor),
      sumAfter: conservation === null ? null : formatMinor(conservation.sumAfterMinor),
      sumsEqual: conservation?.sumsEqual ?? false,
      noNegative: conservation?.noNegative ?? false,
      negativeAccounts: conservation?.negativeAccounts ?? [],
      appliedOnce: conservation?.appliedOnce ?? false,
      accountsChecked: conservation?.accountsChecked ?? 0,
      mismatchCount: conservation?.mismatchCount ?? 0,
      mismatches: (conservation?.mismatches ?? []).map((entry) => ({
        account: entry.account,
        expected: formatMinor(entry.expectedMinor),
        actual: entry.actualMinor === null ? null : formatMinor(entry.actualMinor),
      })),
      gatewayCommitted: outcomes.gatewayCommitted,
      outcomesAgree: outcomes.ok,
      disagreementCount: outcomes.disagreementCount,
      disagreements: outcomes.disagreements,
      readError: report.readError,
    },
    network: report.network,
  };
}

function warmupJson(warmup: NonNullable<BenchReport["warmup"]>): Record<string, unknown> {
  const { outcomes } = warmup;
  return {
    payments: warmup.payments,
    durationMs: round(warmup.durationMs, 1),
    committed: outcomes.committed,
    aborted: outcomes.aborted,
    ambiguous: outcomes.ambiguous,
    ambiguousResolved: {
      committed: outcomes.ambiguousCommitted,
      aborted: outcomes.ambiguousAborted,
      unresolved: outcomes.ambiguousUnresolved,
    },
    gatewayCommitted: outcomes.gatewayCommitted,
    outcomesAgree: outcomes.ok,
  };
}

function cpuJson(summary: CpuSummary): Record<string, unknown> {
  const maybe = (value: number | null, places: number) => (value === null ? null : round(value, places));
  return {
    processes: summary.processes.map((entry) => ({
      name: entry.name,
      cpuMs: maybe(entry.cpuMs, 1),
      perPaymentMs: maybe(entry.perPaymentMs, 3),
    })),
    perPaymentMs: maybe(summary.perPaymentMs, 3),
    coresBusy: maybe(summary.coresBusy, 2),
  };
}

function cpuLine(summary: CpuSummary): string {
  const each = summary.processes
    .map((entry) => `${entry.name} ${entry.perPaymentMs === null ? "unknown" : `${entry.perPaymentMs.toFixed(2)} ms`}`)
    .join(", ");
  if (summary.perPaymentMs === null || summary.coresBusy === null) return each;
  return `${each}; all ${summary.perPaymentMs.toFixed(2)} ms (${summary.coresBusy.toFixed(2)} cores busy)`;
}

const mark = (ok: boolean) => (ok ? "✓" : "✗");
const ms = (value: number) => value.toFixed(1);

function conservationLines(report: BenchReport): string[] {
  const { outcomes, conservation } = report;
  const lines: string[] = [];
  for (const exit of report.network.exits)
    lines.push(
      `  ✗ ${exit.name} exited during the run (code ${exit.code}, signal ${exit.signal}): ${exit.lastLines.at(-1) ?? "no output"}`,
    );
  if (!report.settled)
    lines.push(`  ✗ the network did not settle (payments unfinished or holds left) within the settle timeout`);
  if (conservation === null) {
    lines.push(`  ✗ balances not checked: ${report.readError ?? "unknown error"}`);
  } else {
    lines.push(
      `  ${mark(conservation.sumsEqual)} sum of balances before = after (${formatMinor(conservation.sumBeforeMinor)} → ${formatMinor(conservation.sumAfterMinor)})`,
    );
    lines.push(
      `  ${mark(conservation.noNegative)} no negative balance${conservation.noNegative ? "" : ` (${conservation.negativeCount}: ${conservation.negativeAccounts.join(", ")})`}`,
    );
    lines.push(
      `  ${mark(conservation.appliedOnce)} every committed payment applied once (${conservation.accountsChecked} accounts: initial + credits − debits = final${
        conservation.appliedOnce
          ? ""
          : `; ${conservation.mismatchCount} differ, e.g. ${conservation.mismatches
              .slice(0, 3)
              .map(
                (entry) =>
                  `${entry.account} expected ${formatMinor(entry.expectedMinor)} found ${entry.actualMinor === null ? "nothing" : formatMinor(entry.actualMinor)}`,
              )
              .join("; ")}`
      })`,
    );
  }
  lines.push(outcomeLine("gateway log", outcomes));
  if (report.warmup !== null) lines.push(outcomeLine("warm-up, gateway log", report.warmup.outcomes));
  return lines;
}

function outcomeLine(label: string, outcomes: OutcomeReport): string {
  const benchCommitted = outcomes.committed + outcomes.ambiguousCommitted;
  return `  ${mark(outcomes.ok)} ${label}: ${outcomes.gatewayCommitted} committed, bench: ${benchCommitted} committed${outcomes.disagreementCount === 0 ? "" : `; ${outcomes.disagreementCount} answers disagree with the log`}${outcomes.ambiguousUnresolved === 0 ? "" : `; ${outcomes.ambiguousUnresolved} ambiguous still undecided`}`;
}

function warmupRow(warmup: BenchReport["warmup"]): string {
  if (warmup === null) return "none";
  const { committed, aborted, ambiguous } = warmup.outcomes;
  return `${warmup.payments} payments first in ${(warmup.durationMs / 1000).toFixed(2)} s, not timed (committed ${committed}, aborted ${aborted}, ambiguous ${ambiguous}; checked below)`;
}

export function reportTable(report: BenchReport): string {
  const { outcomes, latency } = report;
  const reasons = Object.entries(report.reasons)
    .map(([reason, count]) => `${reason} ${count}`)
    .join(", ");
  const rows: Array<[string, string]> = [
    [
      "load",
      report.mode === "closed"
        ? "closed loop"
        : `open loop at ${report.ratePerS}/s (latency from each payment's due time)`,
    ],
    [
      "payments",
      `${report.payments}${report.notStarted > 0 ? ` (${report.notStarted} not started: ${report.stoppedBecause ?? "overall timeout"})` : ""}, ${report.sameBankPercent}% same-bank`,
    ],
    ["warm-up", warmupRow(report.warmup)],
    ["concurrency", `${report.concurrency} clients on ${report.channels} gRPC channels`],
    ["accounts", `${report.accounts} at ${report.banks.length} banks (${report.banks.join(", ")})`],
    ["duration", `${(report.durationMs / 1000).toFixed(2)} s`],
    ["throughput", `${report.throughputPerS.toFixed(1)} committed payments/s`],
    [
      "latency ms",
      `p50 ${ms(latency.p50Ms)}  p95 ${ms(latency.p95Ms)}  p99 ${ms(latency.p99Ms)}  max ${ms(latency.maxMs)}  (mean ${ms(latency.meanMs)}, every answered call)`,
    ],
    ["cpu/payment", cpuLine(cpuSummary(report))],
    ["committed", String(outcomes.committed)],
    ["aborted", `${outcomes.aborted}${reasons === "" ? "" : ` (reasons: ${reasons})`}`],
    [
      "ambiguous",
      `${outcomes.ambiguous}${outcomes.ambiguous === 0 ? "" : ` (from the gateway log: ${outcomes.ambiguousCommitted} committed, ${outcomes.ambiguousAborted} aborted, ${outcomes.ambiguousUnresolved} undecided)`}`,
    ],
  ];
  const width = Math.max(...rows.map(([label]) => label.length));
  const lines = [
    `paynet bench (${report.network.gateways === 1 ? "gateway" : `${report.network.gateways} gateways`} ${report.network.gateway}${report.network.bankInstances === 1 ? "" : `, ${report.network.bankInstances} processes per bank`}${report.network.kept ? `, data dir kept: ${report.network.dataDir}` : ""})`,
  ];
  for (const [label, value] of rows) lines.push(`  ${label.padEnd(width)}  ${value}`);
  lines.push("conservation");
  lines.push(...conservationLines(report));
  lines.push(reportOk(report) ? "result: ok" : "result: FAILED");
  return lines.join("\n") + "\n";
}
