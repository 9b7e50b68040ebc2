// The interactive client: a menu over the same payment life as the scripted commands.
import chalk from "chalk";
import { PaymentError, isAmbiguous } from "../core/domain/errors.js";
import { formatMinor, parseAmount } from "../core/domain/money.js";
import { newPaymentId } from "../core/domain/ids.js";
import { validateBankName, validateUsername } from "../core/domain/validate.js";
import type { QueuedPayment } from "../core/client/client-files.js";
import type { SendOutcome } from "../core/client/payment-sender.js";
import { ConnectionMonitor } from "../core/client/connection-monitor.js";
import { CertificateError } from "../core/transport/certificate-error.js";
import {
  certificateProblem,
  describePayment,
  shortId,
  exitCodes,
  flushPolicy,
  openClient,
  outcomeLine,
  type ClientContext,
} from "./client-context.js";

interface Session {
  user: string;
  bank: string;
  password: string;
  online: boolean;
}

const historyShown = 10;

function say(line: string): void {
  process.stdout.write(`${line}\n`);
}

function explain(error: unknown): string {
  const paymentError = error instanceof PaymentError ? error : PaymentError.fromGrpc(error);
  return chalk.red(`${paymentError.code}: ${paymentError.message}`);
}

function checked(validate: (value: string) => unknown) {
  return (value: string) => {
    try {
      validate(value);
      return true;
    } catch (error) {
      return (error as Error).message;
    }
  };
}

/** A one-line spinner while a payment is in flight (only on a terminal). */
async function withSpinner<T>(label: string, work: Promise<T>): Promise<T> {
  if (!process.stdout.isTTY) return work;
  const frames = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏";
  let frame = 0;
  const timer = setInterval(
    () => process.stdout.write(`\r${chalk.cyan(frames[frame++ % frames.length])} ${label}`),
    80,
  );
  try {
    return await work;
  } finally {
    clearInterval(timer);
    process.stdout.write("\r\x1b[2K");
  }
}

export async function runInteractive(flags: { dataDir: string; gateway: string | undefined }): Promise<number> {
  const prompts = await import("@inquirer/prompts");
  let context: ClientContext;
  try {
    context = await openClient(flags.dataDir, flags.gateway);
  } catch (error) {
    if (!(error instanceof CertificateError)) throw error;
    say(chalk.red(certificateProblem(error, flags.dataDir)));
    return exitCodes.usage;
  }
  // The open menu is closed and drawn again when the connection comes or goes (see menuChoice).
  let menuRedraw = new AbortController();
  const monitor = new ConnectionMonitor(context.client, () => menuRedraw.abort());
  monitor.start();
  try {
    let session: Session | null = null;
    for (;;) {
      menuRedraw = new AbortController();
      session ??= await logIn(prompts, context);
      if (session === null) return exitCodes.ok;
      await catchUp(context, session, context.client.connectionReady() === true);
      const action = await menuChoice(prompts, context, session, menuRedraw.signal);
      if (action === "redraw") continue;
      if (action === "exit") return exitCodes.ok;
      if (action === "logout") {
        context.client.logout();
        session = null;
      } else if (action === "balance") {
        await showBalance(context, session);
      } else if (action === "pay") {
        await pay(prompts, context, session);
      } else if (action === "queue") {
        await showQueue(context, session);
      } else {
        await showHistory(context, session);
      }
    }
  } catch (error) {
    if (error instanceof CertificateError) {
      say(chalk.red(certificateProblem(error, flags.dataDir)));
      return exitCodes.usage;
    }
    // Ctrl-C at any prompt ends the session cleanly.
    if ((error as Error)?.name === "ExitPromptError") {
      say(chalk.dim("bye"));
      return exitCodes.ok;
    }
    throw error;
  } finally {
    monitor.stop();
    context.close();
  }
}

const menuChoices = [
  { name: "View balance", value: "balance" },
  { name: "Make a payment", value: "pay" },
  { name: "Offline queue", value: "queue" },
  { name: "Recent payments", value: "history" },
  { name: "Log out", value: "logout" },
  { name: "Exit", value: "exit" },
] as const;

type MenuAction = (typeof menuChoices)[number]["value"] | "redraw";

/**
 * The main menu, headed by the session's state. It is the prompt a person leaves open while idle, so a
 * change of connection aborts it (the signal) and the loop catches up and draws it again: nothing else
 * writes to the terminal while inquirer owns it, and no key press is needed. Inquirer cannot redraw a
 * prompt's message from outside, hence the abort; the aborted menu is erased (clearPromptOnDone), and a
 * chosen answer is echoed here as inquirer would have left it.
 */
async function menuChoice(
  prompts: Prompts,
  context: ClientContext,
  session: Session,
  redraw: AbortSignal,
): Promise<MenuAction> {
  const queued = (await context.queue.list()).filter(
    (payment) => payment.user === session.user && payment.bank === session.bank,
  ).length;
  const status = session.online ? chalk.green("online") : chalk.yellow("offline");
  const header = `${session.user}@${session.bank} (${status}${queued > 0 ? `, ${queued} queued` : ""})`;
  try {
    const action = await prompts.select(
      { message: header, choices: [...menuChoices] },
      { signal: redraw, clearPromptOnDone: true },
    );
    say(`${chalk.green("✔")} ${chalk.bold(header)} ${chalk.cyan(menuChoices.find((c) => c.value === action)!.name)}`);
    return action;
  } catch (error) {
    if ((error as Error)?.name === "AbortPromptError") return "redraw";
    throw error;
  }
}

/** Brings the session up to date with the connection: back online (logging in if never done), queue sent. */
async function catchUp(context: ClientContext, session: Session, reachable: boolean): Promise<void> {
  if (!reachable) {
    session.online = false;
    return;
  }
  if (!session.online) session.online = await reconnect(context, session);
  if (session.online) await flushQueued(context, session);
}

type Prompts = typeof import("@inquirer/prompts");

/**
 * A session that logged in keeps its token: the next call logs in again by itself if the gateway forgot it
 * (GatewayClient). A session that started offline logs in now.
 */
async function reconnect(context: ClientContext, session: Session): Promise<boolean> {
  try {
    if (!context.client.loggedIn) await context.client.login(session.user, session.bank, session.password);
  } catch {
    return false;
  }
  say(chalk.green("the gateway is reachable again"));
  return true;
}

/** Asks for credentials until a login succeeds, the user chooses offline mode, or exits (null). */
async function logIn(prompts: Prompts, context: ClientContext): Promise<Session | null> {
  for (;;) {
    const user = await prompts.input({ message: "Username", validate: checked((value) => validateUsername(value)) });
    const bank = await prompts.input({ message: "Bank", validate: checked((value) => validateBankName(value)) });
    const password = await prompts.password({ message: "Password", mask: "*" });
    try {
      await withSpinner("logging in…", context.client.login(user, bank, password));
      say(chalk.green(`logged in as ${user}@${bank}`));
      return { user, bank, password, online: true };
    } catch (error) {
      if (error instanceof CertificateError) throw error; // asking again would not help
      say(explain(error));
      const paymentError = error instanceof PaymentError ? error : PaymentError.fromGrpc(error);
      if (!isAmbiguous(paymentError)) continue; // a wrong password: ask again
      const next = await prompts.select({
        message: "The gateway is unreachable",
        choices: [
          { name: "Work offline (payments are queued and sent when it returns)", value: "offline" },
          { name: "Try again", value: "retry" },
          { name: "Exit", value: "exit" },
        ],
      });
      if (next === "exit") return null;
      if (next === "offline") return { user, bank, password, online: false };
    }
  }
}

async function flushQueued(context: ClientContext, session: Session): Promise<void> {
  const queued = (await context.queue.list()).filter(
    (payment) => payment.user === session.user && payment.bank === session.bank,
  );
  if (queued.length === 0) return;
  say(chalk.dim(`sending ${queued.length} queued payment${queued.length > 1 ? "s" : ""}…`));
  const { remaining } = await context.sender.flush(session.user, session.bank, flushPolicy, (outcome) =>
    say(outcomeLine(outcome)),
  );
  if (remaining > 0) session.online = false;
}

async function showBalance(context: ClientContext, session: Session): Promise<void> {
  try {
    const view = await withSpinner("asking the bank…", context.client.balance());
    say(
      `balance ${chalk.bold(formatMinor(view.balanceMinor))}` +
        (view.availableMinor === view.balanceMinor ? "" : ` (available ${formatMinor(view.availableMinor)})`),
    );
  } catch (error) {
    say(explain(error));
    if (isAmbiguous(error instanceof PaymentError ? error : PaymentError.fromGrpc(error))) session.online = false;
  }
}

async function pay(prompts: Prompts, context: ClientContext, session: Session): Promise<void> {
  const to = await prompts.input({
    message: "Receiver username",
    validate: checked((value) => validateUsername(value)),
  });
  const toBank = await prompts.input({
    message: "Receiver bank",
    validate: checked((value) => validateBankName(value)),
  });
  const amountText = await prompts.input({
    message: "Amount (e.g. 12.50)",
    validate: checked((value) => parseAmount(value)),
  });
  const amountMinor = parseAmount(amountText);
  const payment: QueuedPayment = {
    id: newPaymentId({ fromUser: session.user, fromBank: session.bank, toUser: to, toBank, amountMinor }),
    user: session.user,
    bank: session.bank,
    to,
    toBank,
    amountMinor,
    queuedAtMs: Date.now(),
  };
  // Written to the queue first: whatever happens next, the payment is either answered or still queued.
  await context.queue.enqueue(payment);
  if (!session.online) {
    say(`${chalk.yellow("queued")} ${describePayment(payment)}; it is sent when the gateway is reachable`);
    return;
  }
  const outcome: SendOutcome = await withSpinner(
    `paying ${formatMinor(amountMinor)} to ${to}@${toBank}…`,
    context.sender.send(payment),
  );
  say(outcomeLine(outcome));
  if (outcome.status === "queued") session.online = false;
}

async function showQueue(context: ClientContext, session: Session): Promise<void> {
  const queued = (await context.queue.list()).filter(
    (payment) => payment.user === session.user && payment.bank === session.bank,
  );
  if (queued.length === 0) say("the offline queue is empty");
  for (const payment of queued)
    say(`${chalk.yellow("queued")} ${describePayment(payment)} since ${new Date(payment.queuedAtMs).toLocaleString()}`);
}

async function showHistory(context: ClientContext, session: Session): Promise<void> {
  const entries = (await context.history.list())
    .filter((entry) => entry.user === session.user && entry.bank === session.bank)
    .slice(-historyShown);
  if (entries.length === 0) say("no payments yet");
  for (const entry of entries) {
    const status = entry.status === "committed" ? chalk.green("committed") : chalk.red("aborted");
    say(
      `${new Date(entry.finishedAtMs).toLocaleString()} ${status} ${describePayment(entry)}${entry.reason === null ? "" : ` (${entry.reason})`} ${chalk.dim(shortId(entry.id))}`,
    );
  }
}
