// The client role: scripted commands (balance, pay) and the interactive menu. Only I/O and wording here.
import chalk from "chalk";
import { text } from "node:stream/consumers";
import { dataPaths } from "../core/paths.js";
import { clientFiles, loadIdentity } from "../core/certificates.js";
import { GatewayClient } from "../core/gateway-client.js";
import { PaymentError, isAmbiguous } from "../core/errors.js";
import { formatMinor, parseAmount } from "../core/money.js";
import { newPaymentId } from "../core/ids.js";
import { validateBankName, validatePaymentId, validateUsername } from "../core/validate.js";
import { gatewayAddress } from "./bank.js";

/** Exit codes of the scripted client, documented in `paynet client --help`. */
export const exitCodes = Object.freeze({ ok: 0, refused: 1, usage: 2, queued: 3, unknownOutcome: 4 });

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
}

class UsageError extends Error {}

async function readPassword(flags: ClientFlags): Promise<string> {
  if (flags.passwordStdin) {
    const password = (await text(process.stdin)).replace(/\r?\n$/, "");
    if (password === "") throw new UsageError("--password-stdin: standard input was empty");
    return password;
  }
  const password = process.env.PAYNET_PASSWORD;
  if (password === undefined || password === "") throw new UsageError("set PAYNET_PASSWORD or pass --password-stdin");
  return password;
}

async function connect(flags: ClientFlags): Promise<GatewayClient> {
  const paths = dataPaths(flags.dataDir);
  const identity = await loadIdentity(paths.certificateDir, clientFiles(paths.certificateDir));
  return new GatewayClient(await gatewayAddress(flags.gateway, paths.clientGatewayTxt), identity);
}

function emit(flags: ClientFlags, json: Record<string, unknown>, human: string): void {
  process.stdout.write(flags.json ? `${JSON.stringify(json)}\n` : `${human}\n`);
}

function fail(flags: ClientFlags, error: unknown, extra: Record<string, unknown> = {}): number {
  if (error instanceof UsageError) {
    emit(flags, { status: "rejected", reason: "USAGE", message: error.message, ...extra }, chalk.red(`usage error: ${error.message}`));
    return exitCodes.usage;
  }
  const paymentError = error instanceof PaymentError ? error : PaymentError.fromGrpc(error);
  emit(flags, { status: "error", reason: paymentError.code, message: paymentError.message, ...extra }, chalk.red(`${paymentError.code}: ${paymentError.message}`));
  return isAmbiguous(paymentError) ? exitCodes.unknownOutcome : exitCodes.refused;
}

function validateIdentityFlags(flags: ClientFlags): void {
  try {
    validateUsername(flags.user, "--user");
    validateBankName(flags.bank, "--bank");
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

export async function runBalance(flags: ClientFlags): Promise<number> {
  let client: GatewayClient | null = null;
  try {
    validateIdentityFlags(flags);
    const password = await readPassword(flags);
    client = await connect(flags);
    await client.login(flags.user, flags.bank, password);
    const view = await client.balance();
    emit(
      flags,
      { user: view.username, bank: view.bank, balance: formatMinor(view.balanceMinor), balanceMinor: Number(view.balanceMinor), available: formatMinor(view.availableMinor), availableMinor: Number(view.availableMinor) },
      `${view.username}@${view.bank}: balance ${chalk.bold(formatMinor(view.balanceMinor))}` + (view.availableMinor === view.balanceMinor ? "" : ` (available ${formatMinor(view.availableMinor)})`),
    );
    return exitCodes.ok;
  } catch (error) {
    return fail(flags, error);
  } finally {
    client?.close();
  }
}

export async function runPay(flags: PayFlags): Promise<number> {
  let client: GatewayClient | null = null;
  let paymentId: string | undefined;
  try {
    validateIdentityFlags(flags);
    let amountMinor: bigint;
    try {
      validateUsername(flags.to, "--to");
      validateBankName(flags.toBank, "--to-bank");
      amountMinor = parseAmount(flags.amount, "--amount");
      if (flags.id !== undefined) validatePaymentId(flags.id, "--id");
    } catch (error) {
      throw new UsageError((error as Error).message);
    }
    paymentId = flags.id ?? newPaymentId({ fromUser: flags.user, fromBank: flags.bank, toUser: flags.to, toBank: flags.toBank, amountMinor });
    const password = await readPassword(flags);
    client = await connect(flags);
    await client.login(flags.user, flags.bank, password);
    const result = await client.pay(paymentId, flags.to, flags.toBank, amountMinor);
    const balance = result.balanceAfterMinor === null ? "" : `; balance now ${formatMinor(result.balanceAfterMinor)}`;
    emit(
      flags,
      { id: result.paymentId, status: "committed", reason: null, amount: formatMinor(amountMinor), amountMinor: Number(amountMinor), ...(result.balanceAfterMinor === null ? {} : { balanceAfter: formatMinor(result.balanceAfterMinor) }) },
      `${chalk.green("committed")} ${formatMinor(amountMinor)} to ${flags.to}@${flags.toBank} (payment ${result.paymentId})${balance}`,
    );
    return exitCodes.ok;
  } catch (error) {
    if (error instanceof UsageError || paymentId === undefined) return fail(flags, error, paymentId === undefined ? {} : { id: paymentId });
    const paymentError = error instanceof PaymentError ? error : PaymentError.fromGrpc(error);
    if (isAmbiguous(paymentError)) {
      emit(
        flags,
        { id: paymentId, status: "unknown", reason: paymentError.code, message: paymentError.message },
        chalk.yellow(`outcome unknown (${paymentError.code}): ${paymentError.message}\nretry with --id ${paymentId}: the same id is never applied twice`),
      );
      return exitCodes.unknownOutcome;
    }
    emit(flags, { id: paymentId, status: "aborted", reason: paymentError.code, message: paymentError.message }, `${chalk.red("aborted")} ${paymentError.code}: ${paymentError.message}`);
    return exitCodes.refused;
  } finally {
    client?.close();
  }
}

/** The interactive menu: log in, view balance, pay, log out, exit. */
export async function runInteractive(flags: { dataDir: string; gateway: string | undefined }): Promise<number> {
  const { input, password: passwordPrompt, select } = await import("@inquirer/prompts");
  const paths = dataPaths(flags.dataDir);
  const client = new GatewayClient(await gatewayAddress(flags.gateway, paths.clientGatewayTxt), await loadIdentity(paths.certificateDir, clientFiles(paths.certificateDir)));
  const show = (error: unknown) => {
    const paymentError = error instanceof PaymentError ? error : PaymentError.fromGrpc(error);
    process.stdout.write(chalk.red(`${paymentError.code}: ${paymentError.message}\n`));
  };
  const checked = (validate: (value: string) => unknown) => (value: string) => {
    try {
      validate(value);
      return true;
    } catch (error) {
      return (error as Error).message;
    }
  };
  let who: { user: string; bank: string } | null = null;
  try {
    for (;;) {
      if (who === null) {
        const user = await input({ message: "Username", validate: checked((value) => validateUsername(value)) });
        const bank = await input({ message: "Bank", validate: checked((value) => validateBankName(value)) });
        const secret = await passwordPrompt({ message: "Password", mask: "*" });
        try {
          await client.login(user, bank, secret);
          who = { user, bank };
          process.stdout.write(chalk.green(`logged in as ${user}@${bank}\n`));
        } catch (error) {
          show(error);
        }
        continue;
      }
      const action = await select({
        message: `${who.user}@${who.bank}`,
        choices: [
          { name: "View balance", value: "balance" },
          { name: "Make a payment", value: "pay" },
          { name: "Log out", value: "logout" },
          { name: "Exit", value: "exit" },
        ],
      });
      if (action === "exit") return exitCodes.ok;
      if (action === "logout") {
        client.logout();
        who = null;
        continue;
      }
      try {
        if (action === "balance") {
          const view = await client.balance();
          process.stdout.write(`balance ${chalk.bold(formatMinor(view.balanceMinor))} (available ${formatMinor(view.availableMinor)})\n`);
        } else {
          const to = await input({ message: "Receiver username", validate: checked((value) => validateUsername(value)) });
          const toBank = await input({ message: "Receiver bank", validate: checked((value) => validateBankName(value)) });
          const amountText = await input({ message: "Amount (e.g. 12.50)", validate: checked((value) => parseAmount(value)) });
          const amountMinor = parseAmount(amountText);
          const paymentId = newPaymentId({ fromUser: who.user, fromBank: who.bank, toUser: to, toBank, amountMinor });
          process.stdout.write(chalk.dim(`sending payment ${paymentId.slice(0, 12)}…\n`));
          const result = await client.pay(paymentId, to, toBank, amountMinor);
          const balance = result.balanceAfterMinor === null ? "" : `; balance now ${formatMinor(result.balanceAfterMinor)}`;
          process.stdout.write(`${chalk.green("committed")} ${formatMinor(amountMinor)} to ${to}@${toBank}${balance}\n`);
        }
      } catch (error) {
        show(error);
      }
    }
  } catch (error) {
    // Ctrl-C at a prompt ends the session cleanly.
    if ((error as Error)?.name === "ExitPromptError") return exitCodes.ok;
    throw error;
  } finally {
    client.close();
  }
}
