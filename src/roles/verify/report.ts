// The report of a `paynet verify` run: a readable table, or one JSON object.
import chalk from "chalk";
import { formatMinor } from "../../core/domain/money.js";
import type { InvariantResult, TakeoverView } from "../../core/testing/checker.js";
import type { FaultKind, FaultRecord } from "./nemesis.js";
import type { PaymentKind } from "./workload.js";

export interface VerifyReport {
  seed: number;
  durationS: number;
  clients: number;
  banks: string[];
  accountsPerBank: number;
  killEveryMs: number;
  unsafeLateDecisionLog: boolean;
  dataDir: string;
  keptDataDir: boolean;
  elapsedMs: number;
  totalMinor: bigint;
  operations: {
    payments: number;
    byKind: Record<PaymentKind, number>;
    answers: number;
    retries: number;
    replays: number;
    syncs: number;
    finalReads: number;
    stillQueued: number;
  };
  outcomes: {
    committed: number;
    aborted: number;
    abortedByReason: Record<string, number>;
    /** No answer during the run (before the final reads). */
    unansweredDuringRun: number;
    /** Still unknown after the final reads. */
    unknown: number;
  };
  faults: {
    total: number;
    byKind: Record<FaultKind, number>;
    crashPointsReached: number;
    processFailures: string[];
    log: FaultRecord[];
  };
  recovery: { recovered: boolean; recoveryMs: number | null; timeoutMs: number };
  gateways: number;
  /** Each gateway that stopped with unfinished payments, and how long until another had them (PostgreSQL). */
  takeovers: { boundMs: number; seen: TakeoverView[] };
  invariants: InvariantResult[];
  ok: boolean;
}

/** Counterexamples shown per invariant in the table (JSON carries every one the checker kept). */
export const counterexamplesShown = 5;

function joinCounts(counts: Record<string, number>): string {
  const parts = Object.entries(counts)
    .filter(([, count]) => count > 0)
    .map(([name, count]) => `${name} ${count}`);
  return parts.length === 0 ? "" : parts.join(" · ");
}

function row(label: string, value: string | number, detail = ""): string {
  return `  ${label.padEnd(22)}${String(value).padStart(7)}${detail === "" ? "" : `   ${chalk.dim(detail)}`}`;
}

function invariantLines(results: InvariantResult[]): string[] {
  const width = Math.max(...results.map((result) => result.id.length));
  const lines: string[] = [];
  for (const result of results) {
    const mark = result.ok ? chalk.green("✓") : chalk.red("✗");
    const status = result.ok
      ? chalk.dim(`(checked ${result.checked})`)
      : chalk.red(`${result.violations} violation${result.violations === 1 ? "" : "s"}`);
    lines.push(`  ${mark} ${result.id.padEnd(width)}  ${result.title} ${status}`);
    for (const example of result.counterexamples.slice(0, counterexamplesShown))
      lines.push(`      ${chalk.red("·")} ${example}`);
    if (result.counterexamples.length > counterexamplesShown)
      lines.push(
        chalk.dim(
          `      … and ${result.violations - counterexamplesShown} more (--json lists up to ${result.counterexamples.length})`,
        ),
      );
  }
  return lines;
}

export function formatReport(report: VerifyReport): string {
  const { operations, outcomes, faults, recovery } = report;
  const build = report.unsafeLateDecisionLog
    ? chalk.yellow(", deliberately broken gateway (PAYNET_UNSAFE_LATE_DECISION_LOG=1)")
    : "";
  const faultEvery = report.killEveryMs > 0 ? `a fault every ~${report.killEveryMs} ms` : "no faults";
  const failed = report.invariants.filter((result) => !result.ok).length;
  const recoveryText = recovery.recovered
    ? `${recovery.recoveryMs} ms`
    : chalk.red(`not recovered within ${recovery.timeoutMs} ms`) + chalk.dim(" (the state below may still be moving)");
  const lines = [
    chalk.bold(
      `paynet verify: seed ${report.seed}, ${report.durationS} s, ${report.clients} clients, ${report.banks.length} banks × ${report.accountsPerBank} accounts, ${faultEvery}${build}`,
    ),
    chalk.dim(
      `total money ${formatMinor(report.totalMinor)}; ran ${(report.elapsedMs / 1000).toFixed(1)} s; data dir ${report.dataDir}${report.keptDataDir ? " (kept)" : " (removed)"}`,
    ),
    "",
    chalk.bold("operations"),
    row("payments", operations.payments, joinCounts(operations.byKind)),
    row(
      "answers",
      operations.answers,
      joinCounts({
        "retries of an unknown outcome": operations.retries,
        "replays of a used key": operations.replays,
        syncs: operations.syncs,
        "final reads": operations.finalReads,
      }),
    ),
    ...(operations.stillQueued > 0
      ? [row("still queued", operations.stillQueued, "offline payments the drain could not send")]
      : []),
    chalk.bold("outcomes"),
    row("committed", outcomes.committed),
    row("aborted", outcomes.aborted, joinCounts(outcomes.abortedByReason)),
    row("unknown", outcomes.unknown, `unanswered during the run: ${outcomes.unansweredDuringRun}`),
    chalk.bold("faults injected"),
    row("faults", faults.total, joinCounts(faults.byKind)),
    row("crash points reached", faults.crashPointsReached),
    row("unplanned exits", faults.processFailures.length),
    chalk.bold("recovery"),
    `  ${"from healing".padEnd(22)}${recoveryText}`,
    ...(report.takeovers.seen.length === 0 ? [] : [`  ${"takeovers".padEnd(22)}${takeoverText(report.takeovers)}`]),
    chalk.bold("invariants"),
    ...invariantLines(report.invariants),
    "",
    report.ok
      ? chalk.green(`✓ all ${report.invariants.length} invariants hold`)
      : chalk.red(`✗ ${failed} of ${report.invariants.length} invariants violated`),
  ];
  return lines.join("\n") + "\n";
}

/** How many takeovers, of how many payments, and their times (p50 / p99 / max) against the bound. */
export function takeoverText(takeovers: VerifyReport["takeovers"]): string {
  const times = takeovers.seen
    .map((seen) => seen.takenOverMs)
    .filter((ms): ms is number => ms !== null)
    .sort((a, b) => a - b);
  const payments = takeovers.seen.reduce((sum, seen) => sum + seen.payments, 0);
  const at = (fraction: number) => times[Math.min(times.length - 1, Math.ceil(fraction * times.length) - 1)] ?? 0;
  const never = takeovers.seen.length - times.length;
  return (
    `${takeovers.seen.length} (${payments} payments): p50 ${at(0.5)} ms, p99 ${at(0.99)} ms, max ${times.at(-1) ?? 0} ms; bound ${takeovers.boundMs} ms` +
    (never > 0 ? chalk.red(`; ${never} never taken over`) : "")
  );
}

/** The report as JSON-safe values (bigints as decimal strings). */
export function reportJson(report: VerifyReport): Record<string, unknown> {
  return JSON.parse(
    JSON.stringify(report, (_key, value: unknown) => (typeof value === "bigint" ? value.toString() : value)),
  ) as Record<string, unknown>;
}
