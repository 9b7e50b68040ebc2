// `paynet status --watch`: the operator's view, sampled every interval until Ctrl-C. On a terminal the view is
// redrawn in place; otherwise each sample is a block of plain lines (or, with --json, one JSON line). The
// rates are computed here, from two samples of counters that only grow (decided commits, decided aborts),
// over the time between the samples by this process's monotonic clock. A gateway that does not answer is
// said in the view, and watched for until it answers again.
import { performance } from "node:perf_hooks";
import chalk from "chalk";
import type { GetStatusResponse } from "../gen/paynet/v1/paynet_pb.js";
import { PaymentError, isAmbiguous } from "../core/domain/errors.js";
import { formatMinor } from "../core/domain/money.js";
import { formatDurationMs } from "./payment-timeline.js";

/** --interval-ms: bounded so that a watch neither floods the gateway nor looks frozen. */
export const watchIntervalMs = Object.freeze({ min: 200, max: 60_000, default: 1_000 });
/** A status call's deadline while watching: at least this, so that a bank's 1 s holds call fits. */
const watchCallTimeoutMinMs = 2_000;
const watchCallTimeoutMaxMs = 10_000;

/** The counters a rate is computed from, as sampled at `atMs` (a monotonic clock). */
export interface CountsSample {
  atMs: number;
  /** Payments decided commit so far (committing + committed). */
  committed: number;
  /** Payments decided abort so far (aborting + aborted). */
  aborted: number;
}

export interface Rates {
  intervalMs: number;
  committedPerSecond: number;
  abortedPerSecond: number;
}

/**
 * Payments decided per second between two samples; null without an earlier sample, or when a counter went
 * back (the gateway's data dir was reset, or another database): no rate is better than a negative one.
 */
export function ratesBetween(previous: CountsSample | null, current: CountsSample): Rates | null {
  if (previous === null) return null;
  const intervalMs = current.atMs - previous.atMs;
  const committed = current.committed - previous.committed;
  const aborted = current.aborted - previous.aborted;
  if (!(intervalMs > 0) || committed < 0 || aborted < 0) return null;
  return {
    intervalMs,
    committedPerSecond: (committed * 1_000) / intervalMs,
    abortedPerSecond: (aborted * 1_000) / intervalMs,
  };
}

export function countsSample(status: GetStatusResponse, atMs: number): CountsSample {
  return { atMs, committed: status.committing + status.committed, aborted: status.aborting + status.aborted };
}

/** One sample as the view shows it. */
export type WatchFrame =
  | {
      kind: "status";
      address: string;
      intervalMs: number;
      /** When it was sampled (ms since the epoch). */
      atMs: number;
      status: GetStatusResponse;
      rates: Rates | null;
    }
  | { kind: "unreachable"; address: string; intervalMs: number; atMs: number; sinceMs: number };

const ageMs = (nowMs: bigint, thenMs: bigint) => Number(nowMs - thenMs);

function header(frame: WatchFrame, terminal: boolean): string {
  const every = formatDurationMs(frame.intervalMs);
  return chalk.bold(
    `paynet status: gateway ${frame.address}, every ${every}, ${new Date(frame.atMs).toISOString()}${terminal ? " (Ctrl-C to stop)" : ""}`,
  );
}

function bankLines(status: GetStatusResponse): string[] {
  if (status.banks.length === 0) return ["  (no bank has registered)"];
  return status.banks.map((bank) => {
    const holds = bank.up
      ? `holds ${String(bank.holds).padStart(4)}${bank.holds > 0 && bank.oldestHoldPreparedAtMs !== 0n ? `, the oldest for ${formatDurationMs(ageMs(status.nowMs, bank.oldestHoldPreparedAtMs))}` : ""}`
      : "holds    ?";
    const upCount = bank.instances.filter((instance) => instance.up).length;
    const instances = bank.instances.length > 1 ? `  instances ${upCount}/${bank.instances.length} up` : "";
    return `  ${bank.name.padEnd(10)} ${bank.up ? chalk.green("up  ") : chalk.red("down")} ${holds}${instances}`;
  });
}

function paymentLines(status: GetStatusResponse, rates: Rates | null, intervalMs: number): string[] {
  const perSecond =
    rates === null
      ? `payments/s: from the next sample (in ${formatDurationMs(intervalMs)})`
      : `payments/s over the last ${formatDurationMs(rates.intervalMs)}: ${rates.committedPerSecond.toFixed(1)} committed, ${rates.abortedPerSecond.toFixed(1)} aborted`;
  const inDoubt = status.preparing + status.committing + status.aborting;
  const oldest = status.inDoubt[0];
  return [
    perSecond,
    `  finished: ${status.committed} committed, ${status.aborted} aborted`,
    oldest === undefined
      ? `in doubt: ${inDoubt}`
      : `in doubt: ${chalk.yellow(String(inDoubt))}; the oldest for ${formatDurationMs(ageMs(status.nowMs, oldest.createdAtMs))}: ${oldest.paymentId} ${oldest.state} ${formatMinor(oldest.amountMinor)} ${oldest.fromUser}@${oldest.fromBank} → ${oldest.toUser}@${oldest.toBank}`,
  ];
}

/** A frame as lines (without newlines). */
export function frameLines(frame: WatchFrame, terminal: boolean): string[] {
  if (frame.kind === "unreachable") {
    return [
      header(frame, terminal),
      chalk.red(
        `gateway at ${frame.address} is not reachable (for ${formatDurationMs(frame.atMs - frame.sinceMs)}); still watching`,
      ),
    ];
  }
  return [
    header(frame, terminal),
    chalk.bold("banks"),
    ...bankLines(frame.status),
    ...paymentLines(frame.status, frame.rates, frame.intervalMs),
  ];
}

/** A frame as one JSON line's object (--json). */
export function frameJson(frame: WatchFrame): Record<string, unknown> {
  const at = new Date(frame.atMs).toISOString();
  if (frame.kind === "unreachable")
    return {
      at,
      error: "GATEWAY_UNAVAILABLE",
      message: `gateway at ${frame.address} is not reachable`,
      unreachableForMs: frame.atMs - frame.sinceMs,
    };
  const { status, rates } = frame;
  const oldest = status.inDoubt[0];
  return {
    at,
    banks: status.banks.map((bank) => ({ name: bank.name, up: bank.up, holds: bank.holds })),
    payments: {
      preparing: status.preparing,
      committing: status.committing,
      aborting: status.aborting,
      committed: status.committed,
      aborted: status.aborted,
    },
    perSecond:
      rates === null
        ? null
        : { intervalMs: rates.intervalMs, committed: rates.committedPerSecond, aborted: rates.abortedPerSecond },
    inDoubt: status.preparing + status.committing + status.aborting,
    oldestInDoubt:
      oldest === undefined
        ? null
        : { id: oldest.paymentId, state: oldest.state, ageMs: ageMs(status.nowMs, oldest.createdAtMs) },
  };
}

/** Where frames go: redrawn in place on a terminal, appended as blocks (or JSON lines) otherwise. */
interface Screen {
  draw(frame: WatchFrame): void;
  end(): void;
}

const escape = "\u001b[";

/** The cursor hidden while drawing, shown again at the end (once, however often end is called). */
function terminalScreen(out: NodeJS.WriteStream): Screen {
  let drawn = false;
  let ended = false;
  return {
    draw(frame) {
      // The first frame clears the screen and hides the cursor; each draws from home, every line cleared to
      // its end and the rest of the screen below: redrawn in place, without flicker or leftovers.
      const start = drawn ? "" : `${escape}?25l${escape}2J`;
      drawn = true;
      out.write(`${start}${escape}H${frameLines(frame, true).join(`${escape}K\n`)}${escape}K\n${escape}J`);
    },
    end() {
      if (ended || !drawn) return;
      ended = true;
      out.write(`${escape}?25h`);
    },
  };
}

function plainScreen(out: NodeJS.WritableStream, json: boolean): Screen {
  return {
    draw: (frame) =>
      void out.write(json ? `${JSON.stringify(frameJson(frame))}\n` : `${frameLines(frame, false).join("\n")}\n\n`),
    end: () => undefined,
  };
}

/**
 * SIGINT or SIGTERM ends the watch: the wait in progress ends at once. Each wait registers its own wake-up,
 * replacing the one before, so that a watch of days keeps nothing per sample (a Promise.race against one
 * long-pending promise would add a reaction to it every time).
 */
function stopSignal() {
  let stopped = false;
  let wake: () => void = () => undefined;
  const onSignal = () => {
    stopped = true;
    wake();
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  /** What `promise` resolves to, or null as soon as a signal comes (at once if one came). */
  const until = <T>(promise: Promise<T>): Promise<T | null> =>
    new Promise<T | null>((resolve, reject) => {
      if (stopped) return resolve(null);
      wake = () => resolve(null);
      promise.then(resolve, reject);
    });
  return {
    get stopped() {
      return stopped;
    },
    until,
    /** Resolves after `ms`, or at once on a signal; leaves no timer behind. */
    sleep: async (ms: number): Promise<void> => {
      let timer: NodeJS.Timeout | undefined;
      await until(new Promise<void>((resolve) => (timer = setTimeout(resolve, Math.max(0, ms)))));
      clearTimeout(timer);
    },
    dispose: () => {
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
    },
  };
}

export interface WatchClient {
  getStatus(timeoutMs: number): Promise<GetStatusResponse>;
  close(): void;
}

export interface WatchOptions {
  intervalMs: number;
  json: boolean;
  /**
   * The gateway to watch after `current` (null: the first): the next of the --gateway list, or of the address
   * file the gateways write at each start, so that a watch moves on from a gateway that stopped answering.
   */
  address(current: string | null): Promise<string>;
  /** A client of the gateway at `address`, trying to reconnect at least every `reconnectMaxMs` while it is down. */
  connect(address: string, reconnectMaxMs: number): Promise<WatchClient>;
  /** Reports a refusal that watching longer will not cure (a certificate the gateway refuses); its exit code. */
  fail(address: string, error: PaymentError): number;
}

/** Samples, draws and waits until SIGINT/SIGTERM (exit 0), or a refusal (its exit code). */
export async function watchStatus(options: WatchOptions): Promise<number> {
  const { intervalMs } = options;
  const terminal = process.stdout.isTTY === true && !options.json;
  const screen = terminal ? terminalScreen(process.stdout) : plainScreen(process.stdout, options.json);
  const signal = stopSignal();
  const callTimeoutMs = Math.min(Math.max(intervalMs, watchCallTimeoutMinMs), watchCallTimeoutMaxMs);
  let address = await options.address(null);
  let client = await options.connect(address, intervalMs);
  let previous: CountsSample | null = null;
  let unreachableSinceMs: number | null = null;
  try {
    while (!signal.stopped) {
      const startedMs = performance.now();
      const answer = await signal.until(
        client.getStatus(callTimeoutMs).then(
          (status) => ({ status }),
          (error: unknown) => ({ error: PaymentError.fromGrpc(error) }),
        ),
      );
      if (answer === null) break;
      const atMs = Date.now();
      if ("status" in answer) {
        const sample = countsSample(answer.status, performance.now());
        const rates = ratesBetween(previous, sample);
        previous = sample;
        unreachableSinceMs = null;
        screen.draw({ kind: "status", address, intervalMs, atMs, status: answer.status, rates });
      } else if (isAmbiguous(answer.error)) {
        // The counts go on while it is away: a rate across the gap would be an average, not the last interval's.
        previous = null;
        unreachableSinceMs ??= atMs;
        screen.draw({ kind: "unreachable", address, intervalMs, atMs, sinceMs: unreachableSinceMs });
        // Another gateway of the list may answer, and one started again may listen elsewhere (it writes the
        // address file at each start): move on.
        const now = await options.address(address);
        if (now !== address) {
          client.close();
          address = now;
          client = await options.connect(address, intervalMs);
        }
      } else {
        screen.end();
        return options.fail(address, answer.error);
      }
      await signal.sleep(intervalMs - (performance.now() - startedMs));
    }
    return 0;
  } finally {
    screen.end();
    signal.dispose();
    client.close();
  }
}
