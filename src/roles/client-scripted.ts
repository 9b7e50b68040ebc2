// Scripted client commands: balance, pay, queue, sync, history. One line (or one JSON object) each.
import chalk from "chalk";
import { PaymentError, isAmbiguous } from "../core/domain/errors.js";
import { formatMinor, parseAmount } from "../core/domain/money.js";
import { newPaymentId } from "../core/domain/ids.js";
import { crashPoint } from "../core/faults/crash.js";
import { validateBankName, validatePaymentId, validateUsername } from "../core/domain/validate.js";
import type { QueuedPayment } from "../core/client/client-files.js";
import type { SendOutcome } from "../core/client/payment-sender.js";
import { CertificateError } from "../core/transport/certificate-error.js";
import { dataPaths } from "../core/durable/paths.js";
import { canonicalBankName } from "./bank-choice.js";
import { WaitingNotice } from "./process.js";
import {
  UsageError,
  certificateProblem,
  exitCodes,
  flushPolicy,
  historyJson,
  openClient,
  openClientFiles,
  outcomeJson,
  outcomeLine,
  queuedJson,
  readPassword,
  describePayment,
  shortId,
  type ClientContext,
} from "./client-context.js";

export interface ClientFlags {
  dataDir: string;
  gateway: string | undefined;
  user: string;
  bank: string;
  json: boolean;
  passwordStdin: boolean;
}

export interface PayFlags extends ClientFlags {
  to: string;
  toBank: string;
  amount: string;
  id: string | undefined;
  offline: boolean;
}

function emit(json: boolean, object: unknown, human: string): void {
  process.stdout.write(json ? `${JSON.stringify(object)}\n` : `${human}\n`);
}

/** Turns a failure into its output and exit code. */
function fail(flags: { json: boolean; dataDir: string }, error: unknown): number {
  if (error instanceof CertificateError) {
    const message = certificateProblem(error, flags.dataDir);
    emit(flags.json, { status: "rejected", reason: "CERTIFICATE", message }, chalk.red(message));
    return exitCodes.usage;
  }
  if (error instanceof UsageError) {
    emit(
      flags.json,
      { status: "rejected", reason: "USAGE", message: error.message },
      chalk.red(`usage error: ${error.message}`),
    );
    return exitCodes.usage;
  }
  const paymentError = error instanceof PaymentError ? error : PaymentError.fromGrpc(error);
  emit(
    flags.json,
    { status: "error", reason: paymentError.code, message: paymentError.message },
    chalk.red(`${paymentError.code}: ${paymentError.message}`),
  );
  return isAmbiguous(paymentError) ? exitCodes.unreachable : exitCodes.refused;
}

function usage<T>(check: () => T): T {
  try {
    return check();
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

async function withClient<F extends ClientFlags & { toBank?: string }>(
  flags: F,
  body: (context: ClientContext, flags: F) => Promise<number>,
): Promise<number> {
  let context: ClientContext | null = null;
  try {
    usage(() => (validateUsername(flags.user, "--user"), validateBankName(flags.bank, "--bank")));
    // Bank names as the network spells them (sbi is SBI), when this data dir's accounts file says so.
    const accountsCsv = dataPaths(flags.dataDir).accountsCsv;
    const canonical = {
      ...flags,
      bank: await canonicalBankName(flags.bank, accountsCsv, "--bank"),
      ...(flags.toBank === undefined
        ? {}
        : { toBank: await canonicalBankName(flags.toBank, accountsCsv, "--to-bank") }),
    };
    context = await openClient(flags.dataDir, flags.gateway);
    return await body(context, canonical);
  } catch (error) {
    return fail(flags, error);
  } finally {
    context?.close();
  }
}

export function runBalance(flags: ClientFlags): Promise<number> {
  return withClient(flags, async ({ client }, flags) => {
    await client.login(flags.user, flags.bank, await readPassword(flags.passwordStdin, `${flags.user}@${flags.bank}`));
    const view = await client.balance();
    emit(
      flags.json,
      {
        user: view.username,
        bank: view.bank,
        balance: formatMinor(view.balanceMinor),
        balanceMinor: Number(view.balanceMinor),
        available: formatMinor(view.availableMinor),
        availableMinor: Number(view.availableMinor),
      },
      `${view.username}@${view.bank}: balance ${chalk.bold(formatMinor(view.balanceMinor))}` +
        (view.availableMinor === view.balanceMinor ? "" : ` (available ${formatMinor(view.availableMinor)})`),
    );
    return exitCodes.ok;
  });
}

function exitCodeOf(outcome: SendOutcome): number {
  return outcome.status === "committed"
    ? exitCodes.ok
    : outcome.status === "queued"
      ? exitCodes.queued
      : exitCodes.refused;
}

export function runPay(flags: PayFlags): Promise<number> {
  return withClient(flags, async ({ client, queue, sender }, flags) => {
    const amountMinor = usage(() => {
      validateUsername(flags.to, "--to");
      validateBankName(flags.toBank, "--to-bank");
      if (flags.id !== undefined) validatePaymentId(flags.id, "--id");
      return parseAmount(flags.amount, "--amount");
    });
    const details = { user: flags.user, bank: flags.bank, to: flags.to, toBank: flags.toBank, amountMinor };
    const id =
      flags.id ??
      newPaymentId({ fromUser: flags.user, fromBank: flags.bank, toUser: flags.to, toBank: flags.toBank, amountMinor });
    const payment: QueuedPayment = { id, ...details, queuedAtMs: Date.now() };
    const queuedOutcome = (reason: "GATEWAY_UNAVAILABLE", message: string): SendOutcome => ({
      status: "queued",
      payment,
      reason,
      message,
    });

    if (flags.offline) {
      await queue.enqueue(payment);
      const outcome = queuedOutcome("GATEWAY_UNAVAILABLE", "offline mode: queued without contacting the gateway");
      emit(flags.json, outcomeJson(outcome), outcomeLine(outcome));
      return exitCodes.queued;
    }
    const password = await readPassword(flags.passwordStdin, `${flags.user}@${flags.bank}`);
    try {
      await client.login(flags.user, flags.bank, password);
    } catch (error) {
      if (error instanceof CertificateError) throw error; // not an outage: the payment could never be sent
      const loginError = error instanceof PaymentError ? error : PaymentError.fromGrpc(error);
      if (!isAmbiguous(loginError)) throw loginError;
      // The gateway is unreachable: nothing was sent, so the payment waits in the queue for `sync`.
      await queue.enqueue(payment);
      const outcome = queuedOutcome("GATEWAY_UNAVAILABLE", loginError.message);
      emit(flags.json, outcomeJson(outcome), outcomeLine(outcome));
      return exitCodes.queued;
    }
    await queue.enqueue(payment);
    crashPoint("client-after-queue");
    const outcome = await sender.send(payment);
    emit(flags.json, outcomeJson(outcome), outcomeLine(outcome));
    return exitCodeOf(outcome);
  });
}

/** sync --watch waits on the connection in slices this long, so its waiting notice comes on time. */
const syncWatchSliceMs = 5_000;

export interface SyncFlags extends ClientFlags {
  watch: boolean;
  watchTimeoutMs: number;
}

/** Sends this user's queued payments; with --watch, waits for the gateway (grpc connectivity) until the queue is empty. */
export function runSync(flags: SyncFlags): Promise<number> {
  return withClient(flags, async ({ client, sender, queue }, flags) => {
    const password = await readPassword(flags.passwordStdin, `${flags.user}@${flags.bank}`);
    const outcomes: SendOutcome[] = [];
    const deadlineMs = Date.now() + flags.watchTimeoutMs;
    // On standard error: standard output holds the outcomes (one JSON object with --json).
    const waiting = new WaitingNotice(`the gateway at ${client.address}`, (message) =>
      process.stderr.write(`${chalk.yellow(message)}\n`),
    );
    const print = (outcome: SendOutcome) => {
      outcomes.push(outcome);
      if (!flags.json) process.stdout.write(`${outcomeLine(outcome)}\n`);
    };
    let remaining = 0;
    for (;;) {
      const mine = (await queue.list()).filter((payment) => payment.user === flags.user && payment.bank === flags.bank);
      if (mine.length === 0) break;
      if (flags.watch && client.connectionReady() !== true) waiting.stillWaiting();
      if (
        flags.watch &&
        !(await client.waitForReady(Math.max(0, Math.min(syncWatchSliceMs, deadlineMs - Date.now()))))
      ) {
        if (Date.now() < deadlineMs) continue;
        remaining = mine.length;
        break;
      }
      try {
        await client.login(flags.user, flags.bank, password);
        waiting.done();
      } catch (error) {
        if (error instanceof CertificateError) throw error;
        const loginError = error instanceof PaymentError ? error : PaymentError.fromGrpc(error);
        if (!isAmbiguous(loginError)) throw loginError;
        if (flags.watch) waiting.stillWaiting();
        remaining = mine.length;
        if (flags.watch && Date.now() < deadlineMs) continue;
        break;
      }
      ({ remaining } = await sender.flush(flags.user, flags.bank, flushPolicy, print));
      if (remaining === 0 || !flags.watch || Date.now() >= deadlineMs) break;
    }
    const aborted = outcomes.filter((outcome) => outcome.status === "aborted").length;
    const committed = outcomes.filter((outcome) => outcome.status === "committed").length;
    const summary = `${committed} committed, ${aborted} refused, ${remaining} still queued`;
    emit(
      flags.json,
      { results: outcomes.map(outcomeJson), committed, aborted, remaining },
      remaining > 0 ? chalk.yellow(summary) : summary,
    );
    return remaining > 0 ? exitCodes.queued : aborted > 0 ? exitCodes.refused : exitCodes.ok;
  });
}

export interface ListFlags {
  dataDir: string;
  user: string | undefined;
  bank: string | undefined;
  json: boolean;
}

/** Entries of --user and --bank, if given; the bank as the network spells it (sbi is SBI), as pay recorded it. */
async function mineFilter(flags: ListFlags) {
  const bank =
    flags.bank === undefined
      ? undefined
      : await canonicalBankName(flags.bank, dataPaths(flags.dataDir).accountsCsv, "--bank");
  return (entry: { user: string; bank: string }) =>
    (flags.user === undefined || entry.user === flags.user) && (bank === undefined || entry.bank === bank);
}

export async function runQueue(flags: ListFlags): Promise<number> {
  try {
    const { queue } = await openClientFiles(flags.dataDir);
    const payments = (await queue.list()).filter(await mineFilter(flags));
    const human =
      payments.length === 0
        ? "the offline queue is empty"
        : payments
            .map(
              (payment) =>
                `${chalk.yellow("queued")} ${describePayment(payment)} since ${new Date(payment.queuedAtMs).toISOString()} (payment ${payment.id})`,
            )
            .join("\n");
    emit(flags.json, { queued: payments.map(queuedJson) }, human);
    return exitCodes.ok;
  } catch (error) {
    return fail(flags, error);
  }
}

export async function runHistory(flags: ListFlags): Promise<number> {
  try {
    const { history } = await openClientFiles(flags.dataDir);
    const entries = (await history.list()).filter(await mineFilter(flags));
    const human =
      entries.length === 0
        ? "no payments yet"
        : entries
            .map(
              (entry) =>
                `${new Date(entry.finishedAtMs).toISOString()} ${entry.status === "committed" ? chalk.green("committed") : chalk.red("aborted")} ${describePayment(entry)}${entry.reason === null ? "" : ` (${entry.reason})`} ${chalk.dim(shortId(entry.id))}`,
            )
            .join("\n");
    emit(flags.json, { payments: entries.map(historyJson) }, human);
    return exitCodes.ok;
  } catch (error) {
    return fail(flags, error);
  }
}
