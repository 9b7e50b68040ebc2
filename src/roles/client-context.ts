// What every client command shares: its files, its connection, its password source and its output.
import chalk from "chalk";
import { text } from "node:stream/consumers";
import { resolve } from "node:path";
import type { CertificateError } from "../core/transport/certificate-error.js";
import { dataPaths } from "../core/durable/paths.js";
import { clientFiles, loadIdentity } from "../core/transport/certificates.js";
import { connectWaitMs, GatewayClient } from "../core/client/gateway-client.js";
import {
  OfflineQueue,
  PaymentHistory,
  type Repair,
  type QueuedPayment,
  type HistoryEntry,
} from "../core/client/client-files.js";
import { PaymentSender, type RetryPolicy, type SendOutcome } from "../core/client/payment-sender.js";
import { formatMinor } from "../core/domain/money.js";
import { gatewayAddresses } from "./process.js";

import { UsageError } from "./exit-codes.js";

export { exitCodes, UsageError } from "./exit-codes.js";

export const flushPolicy: RetryPolicy = Object.freeze({ attemptsMax: 5, delayMinMs: 200, delayMaxMs: 3_000 });

/** A certificate problem, said with the folder the certificates were read from and what to do. */
export function certificateProblem(error: CertificateError, dataDir: string): string {
  return `certificate problem: ${error.message}; the certificates were read from ${dataPaths(dataDir).certificateDir} (--data-dir ${resolve(dataDir)}): use the data dir the network was set up in, or copy its certificate/ folder here`;
}

export function reportRepair(repair: Repair): void {
  process.stderr.write(
    chalk.yellow(
      `paynet: ${repair.path} was damaged (unreadable line${repair.badLines.length > 1 ? "s" : ""} ${repair.badLines.join(", ")}); kept its ${repair.kept} intact entries; the damaged file is saved as ${repair.backupPath}\n`,
    ),
  );
}

export interface ClientContext {
  client: GatewayClient;
  queue: OfflineQueue;
  history: PaymentHistory;
  sender: PaymentSender;
  close(): void;
}

export async function openClientFiles(dataDir: string): Promise<{ queue: OfflineQueue; history: PaymentHistory }> {
  const paths = dataPaths(dataDir);
  return {
    queue: new OfflineQueue(paths.offlinePaymentsJson, reportRepair),
    history: new PaymentHistory(paths.paymentHistoryJson, reportRepair),
  };
}

export async function openClient(dataDir: string, gatewayFlag: string | undefined): Promise<ClientContext> {
  const paths = dataPaths(dataDir);
  const identity = await loadIdentity(paths.certificateDir, clientFiles(paths.certificateDir));
  // Every gateway listed: a call one of them does not answer goes to the next (GatewayClient).
  const client = new GatewayClient(await gatewayAddresses(gatewayFlag, paths.clientGatewayTxt), identity, {
    // On standard error: standard output holds only the answer.
    onSkipped: (address, next) =>
      process.stderr.write(
        `the gateway at ${address} did not connect within ${connectWaitMs / 1000} s; trying the one at ${next}\n`,
      ),
  });
  const { queue, history } = await openClientFiles(dataDir);
  return { client, queue, history, sender: new PaymentSender(client, queue, history), close: () => client.close() };
}

/**
 * The password of `account` (user@BANK): from standard input with --password-stdin, else PAYNET_PASSWORD, else, on
 * a terminal, asked for with the input hidden. With none of them (a script), a usage error that says how.
 */
export async function readPassword(passwordStdin: boolean, account: string): Promise<string> {
  if (passwordStdin) {
    const password = (await text(process.stdin)).replace(/\r?\n$/, "");
    if (password === "") throw new UsageError("--password-stdin: standard input was empty");
    return password;
  }
  const password = process.env.PAYNET_PASSWORD;
  if (password !== undefined && password !== "") return password;
  if (process.stdin.isTTY === true && process.stderr.isTTY === true) return askPassword(account);
  throw new UsageError("set PAYNET_PASSWORD or pass --password-stdin (on a terminal, the password is asked for)");
}

/** Asked on standard error, so that standard output holds only the answer (one JSON object with --json). */
async function askPassword(account: string): Promise<string> {
  const { password } = await import("@inquirer/prompts");
  let answer: string;
  try {
    answer = await password({ message: `Password for ${account}` }, { output: process.stderr });
  } catch (error) {
    if ((error as Error)?.name === "ExitPromptError") throw new UsageError("no password given");
    throw error;
  }
  if (answer === "") throw new UsageError("no password given");
  return answer;
}

/**
 * A payment id as people read it in a list: its first 12 characters, which `paynet payment` accepts (any
 * unique prefix of at least 8), as git shows commits.
 */
export function shortId(id: string): string {
  return id.slice(0, shortIdLength);
}

const shortIdLength = 12;

export function describePayment(payment: QueuedPayment): string {
  return `${formatMinor(payment.amountMinor)} from ${payment.user}@${payment.bank} to ${payment.to}@${payment.toBank}`;
}

export function outcomeJson(outcome: SendOutcome): Record<string, unknown> {
  const base = {
    id: outcome.payment.id,
    status: outcome.status,
    amount: formatMinor(outcome.payment.amountMinor),
    amountMinor: Number(outcome.payment.amountMinor),
  };
  if (outcome.status === "committed") {
    return {
      ...base,
      reason: null,
      ...(outcome.balanceAfterMinor === null ? {} : { balanceAfter: formatMinor(outcome.balanceAfterMinor) }),
    };
  }
  return { ...base, reason: outcome.reason, message: outcome.message };
}

export function outcomeLine(outcome: SendOutcome): string {
  const what = describePayment(outcome.payment);
  switch (outcome.status) {
    case "committed":
      return `${chalk.green("committed")} ${what}${outcome.balanceAfterMinor === null ? "" : `; balance now ${formatMinor(outcome.balanceAfterMinor)}`} (payment ${outcome.payment.id})`;
    case "aborted":
      return `${chalk.red("aborted")} ${what}: ${outcome.reason}: ${outcome.message}`;
    case "queued":
      return `${chalk.yellow("queued")} ${what} (${outcome.reason}); it will be sent with the same id by \`paynet client sync\` (payment ${outcome.payment.id})`;
  }
}

export function historyJson(entry: HistoryEntry): Record<string, unknown> {
  return {
    id: entry.id,
    status: entry.status,
    reason: entry.reason,
    from: `${entry.user}@${entry.bank}`,
    to: `${entry.to}@${entry.toBank}`,
    amount: formatMinor(entry.amountMinor),
    queuedAt: new Date(entry.queuedAtMs).toISOString(),
    finishedAt: new Date(entry.finishedAtMs).toISOString(),
  };
}

export function queuedJson(payment: QueuedPayment): Record<string, unknown> {
  return {
    id: payment.id,
    from: `${payment.user}@${payment.bank}`,
    to: `${payment.to}@${payment.toBank}`,
    amount: formatMinor(payment.amountMinor),
    queuedAt: new Date(payment.queuedAtMs).toISOString(),
  };
}
