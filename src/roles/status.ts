// The operator's view: `paynet status` and `paynet payment <id>`, with the operator certificate.
import chalk from "chalk";
import type { ChannelOptions } from "@grpc/grpc-js";
import { PaymentGateway, type PaymentSummary } from "../gen/paynet/v1/paynet_pb.js";
import { dataPaths } from "../core/durable/paths.js";
import { loadIdentity, operatorFiles } from "../core/transport/certificates.js";
import { createClient } from "../core/transport/rpc.js";
import { clientCredentials, expectServerName } from "../core/transport/tls.js";
import { gatewayServerName } from "../core/transport/identity.js";
import { PaymentError, isAmbiguous } from "../core/domain/errors.js";
import { formatMinor } from "../core/domain/money.js";
import { validatePaymentId } from "../core/domain/validate.js";
import { OfflineQueue } from "../core/client/client-files.js";
import { gatewayAddresses } from "./process.js";
import { reportRepair } from "./client-context.js";
import { exitCodes } from "./exit-codes.js";
import { paymentTimeline, timelineLines, timelineNote } from "./payment-timeline.js";
import { watchIntervalMs, watchStatus } from "./status-watch.js";

const statusTimeoutMs = 10_000;

export interface StatusFlags {
  dataDir: string;
  gateway: string | undefined;
  json: boolean;
}

export interface StatusWatchFlags {
  /** Redraw the status every intervalMs until Ctrl-C (status-watch.ts). */
  watch: boolean;
  intervalMs: number | undefined;
}

async function operatorClient(flags: StatusFlags, target: string, channelOptions: ChannelOptions = {}) {
  const paths = dataPaths(flags.dataDir);
  const identity = await loadIdentity(paths.certificateDir, operatorFiles(paths.certificateDir));
  const client = createClient(
    PaymentGateway,
    target,
    clientCredentials(identity),
    { ...expectServerName(gatewayServerName), ...channelOptions },
    "GATEWAY_UNAVAILABLE",
  );
  return { client, address: target };
}

const time = (ms: bigint) => (ms === 0n ? null : new Date(Number(ms)).toISOString());

function summaryJson(payment: PaymentSummary) {
  return {
    id: payment.paymentId,
    state: payment.state,
    finished: payment.finished,
    from: `${payment.fromUser}@${payment.fromBank}`,
    to: `${payment.toUser}@${payment.toBank}`,
    amount: formatMinor(payment.amountMinor),
    createdAt: time(payment.createdAtMs),
    decidedAt: time(payment.decidedAtMs),
    finishedAt: time(payment.finishedAtMs),
    reason: payment.reason || null,
    reasonMessage: payment.reasonMessage || null,
    legs: payment.legs.map((leg) => ({
      bank: leg.bank,
      role: leg.role,
      vote: leg.vote || null,
      votedAt: time(leg.votedAtMs),
      ackedAt: time(leg.ackedAtMs),
    })),
  };
}

type OperatorClient = Awaited<ReturnType<typeof operatorClient>>["client"];

/**
 * Asks the listed gateways in turn until one answers: one that is unreachable or past its deadline is skipped
 * (any gateway answers from the shared log). Resolves with the answer and who gave it, or rejects with the last
 * failure and the address that gave it.
 */
async function askAnyGateway<T>(
  flags: StatusFlags,
  ask: (client: OperatorClient) => Promise<T>,
): Promise<{ answer: T; address: string }> {
  const addresses = await gatewayAddresses(flags.gateway, dataPaths(flags.dataDir).clientGatewayTxt);
  let failure: { error: unknown; address: string } | null = null;
  for (const address of addresses) {
    const { client } = await operatorClient(flags, address);
    try {
      return { answer: await ask(client), address };
    } catch (error) {
      failure = { error, address };
      if (!isAmbiguous(PaymentError.fromGrpc(error))) break;
    } finally {
      client.close();
    }
  }
  throw new GatewaysFailed(failure!.error, addresses.length === 1 ? failure!.address : addresses.join(", "));
}

class GatewaysFailed extends Error {
  readonly address: string;
  constructor(cause: unknown, address: string) {
    super(`no gateway answered (${address})`, { cause });
    this.address = address;
  }
}

function fail(flags: StatusFlags, address: string, error: unknown): number {
  const paymentError = error instanceof PaymentError ? error : PaymentError.fromGrpc(error);
  // grpc-js's text ("No connection established …") says less than where we looked.
  const message =
    paymentError.code === "GATEWAY_UNAVAILABLE" ? `gateway at ${address} is not reachable` : paymentError.message;
  process.stdout.write(
    flags.json
      ? `${JSON.stringify({ error: paymentError.code, message })}\n`
      : chalk.red(
          paymentError.code === "GATEWAY_UNAVAILABLE"
            ? `${message} (is it running? start it with \`paynet up\` or \`paynet gateway\`, or name it with --gateway)\n`
            : `${paymentError.code}: ${message}\n`,
        ),
  );
  return isAmbiguous(paymentError) ? exitCodes.unreachable : exitCodes.refused;
}

export async function runStatus(flags: StatusFlags & StatusWatchFlags): Promise<number> {
  if (flags.watch || flags.intervalMs !== undefined) return runStatusWatch(flags);
  try {
    const { answer: status, address } = await askAnyGateway(flags, (client) =>
      client.getStatus({}, { timeoutMs: statusTimeoutMs }),
    );
    const queued = (await new OfflineQueue(dataPaths(flags.dataDir).offlinePaymentsJson, reportRepair).list()).length;
    const report = {
      gateway: address,
      banks: status.banks.map((bank) => ({
        name: bank.name,
        address: bank.address,
        up: bank.up,
        lastSeen: time(bank.lastSeenMs),
        holds: bank.holds,
        oldestHold: time(bank.oldestHoldPreparedAtMs),
        instances: bank.instances.map((instance) => ({
          address: instance.address,
          up: instance.up,
          lastSeen: time(instance.lastSeenMs),
        })),
      })),
      payments: {
        preparing: status.preparing,
        committing: status.committing,
        aborting: status.aborting,
        committed: status.committed,
        aborted: status.aborted,
      },
      inDoubt: status.inDoubt.map(summaryJson),
      offlineQueue: queued,
      store: status.store,
    };
    if (flags.json) {
      process.stdout.write(`${JSON.stringify(report)}\n`);
      return exitCodes.ok;
    }
    // Which gateway answered: with several, the first listed may be down and another one speaks.
    const lines = [
      `${chalk.bold("gateway")} ${report.gateway}  ${chalk.bold("store")} ${report.store || "files"}`,
      chalk.bold("banks"),
    ];
    for (const bank of report.banks) {
      lines.push(
        `  ${bank.name.padEnd(10)} ${bank.up ? chalk.green("up  ") : chalk.red("down")} ${bank.address.padEnd(22)} holds ${String(bank.holds).padStart(4)}  last seen ${bank.lastSeen ?? "never (since the gateway started)"}`,
      );
      // A bank of several processes (--multi-instance): how many answer, and each one.
      if (bank.instances.length > 1) {
        const upCount = bank.instances.filter((instance) => instance.up).length;
        lines.push(`    instances: ${upCount} of ${bank.instances.length} up`);
        for (const instance of bank.instances)
          lines.push(
            `    ${instance.up ? chalk.green("up  ") : chalk.red("down")} ${instance.address.padEnd(22)} last seen ${instance.lastSeen ?? "never (since the gateway started)"}`,
          );
      }
    }
    const { payments } = report;
    lines.push(
      chalk.bold("payments"),
      `  preparing ${payments.preparing}  committing ${payments.committing}  aborting ${payments.aborting}  finished: committed ${payments.committed}, aborted ${payments.aborted}`,
    );
    if (report.inDoubt.length > 0) {
      lines.push(chalk.bold("oldest in doubt"));
      for (const payment of report.inDoubt)
        lines.push(
          `  ${payment.createdAt} ${chalk.yellow(payment.state.padEnd(9))} ${payment.amount} ${payment.from} → ${payment.to} (payment ${payment.id})`,
        );
    }
    lines.push(`${chalk.bold("offline queue")} (${dataPaths(flags.dataDir).offlinePaymentsJson}): ${queued}`);
    process.stdout.write(`${lines.join("\n")}\n`);
    return exitCodes.ok;
  } catch (error) {
    if (error instanceof GatewaysFailed) return fail(flags, error.address, error.cause);
    throw error;
  }
}

function usageError(message: string): number {
  process.stderr.write(chalk.red(`usage error: ${message}\n`));
  return exitCodes.usage;
}

async function runStatusWatch(flags: StatusFlags & StatusWatchFlags): Promise<number> {
  const intervalMs = flags.intervalMs ?? watchIntervalMs.default;
  if (!flags.watch) return usageError("--interval-ms is the interval of --watch; add --watch");
  if (!Number.isInteger(intervalMs) || intervalMs < watchIntervalMs.min || intervalMs > watchIntervalMs.max)
    return usageError(
      `--interval-ms must be an integer from ${watchIntervalMs.min} to ${watchIntervalMs.max} (milliseconds), got ${intervalMs}`,
    );
  const paths = dataPaths(flags.dataDir);
  return watchStatus({
    intervalMs,
    json: flags.json,
    address: async (current) => nextAddress(await gatewayAddresses(flags.gateway, paths.clientGatewayTxt), current),
    async connect(address, reconnectMaxMs) {
      // grpc-js waits up to 2 minutes between reconnections by default: a gateway back would go unseen.
      const { client } = await operatorClient(flags, address, {
        "grpc.initial_reconnect_backoff_ms": Math.min(1_000, reconnectMaxMs),
        "grpc.max_reconnect_backoff_ms": reconnectMaxMs,
      });
      return { getStatus: (timeoutMs) => client.getStatus({}, { timeoutMs }), close: () => client.close() };
    },
    fail: (address, error) => fail(flags, address, error),
  });
}

/** The address after `current` in the list (wrapping around), or the first when `current` is null or gone from it. */
export function nextAddress(addresses: readonly string[], current: string | null): string {
  const index = current === null ? -1 : addresses.indexOf(current);
  return addresses[(index + 1) % addresses.length]!;
}

export async function runPayment(flags: StatusFlags & { id: string }): Promise<number> {
  try {
    validatePaymentId(flags.id, "id");
  } catch (error) {
    process.stderr.write(chalk.red(`usage error: ${(error as Error).message}\n`));
    return exitCodes.usage;
  }
  try {
    const {
      answer: { payment },
    } = await askAnyGateway(flags, (client) =>
      client.getPayment({ paymentId: flags.id }, { timeoutMs: statusTimeoutMs }),
    );
    const summary = summaryJson(payment!);
    const timeline = paymentTimeline(payment!);
    if (flags.json) {
      const events = timeline.map((event) => ({
        at: time(BigInt(event.atMs)),
        afterMs: event.afterMs,
        event: event.event,
      }));
      process.stdout.write(`${JSON.stringify({ ...summary, timeline: events })}\n`);
      return exitCodes.ok;
    }
    const note = timelineNote(payment!);
    const lines = [
      `${summary.id}: ${summary.state}${summary.finished ? " (finished)" : " (in progress)"} ${summary.amount} ${summary.from} → ${summary.to}`,
      ...timelineLines(timeline).map((line) => `  ${line}`),
      ...(note === null ? [] : [chalk.dim(`  (${note})`)]),
      ...(summary.reason ? [`  reason ${summary.reason}: ${summary.reasonMessage}`] : []),
    ];
    process.stdout.write(`${lines.join("\n")}\n`);
    return exitCodes.ok;
  } catch (error) {
    if (error instanceof GatewaysFailed) return fail(flags, error.address, error.cause);
    throw error;
  }
}
