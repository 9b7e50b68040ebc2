// The clients of `paynet verify`: concurrent loops making random payments through the gateway, online (the
// raw RPCs, retrying an unknown outcome with the same id) and through the offline queue (OfflineQueue +
// PaymentSender, the real client path). Every answer is recorded per payment id for the checker.
import { PaymentGateway, PaymentStatus } from "../../gen/paynet/v1/paynet_pb.js";
import { createClient, type ServiceClient } from "../../core/transport/rpc.js";
import { clientCredentials, expectServerName } from "../../core/transport/tls.js";
import { gatewayServerName } from "../../core/transport/identity.js";
import { PaymentError, isAmbiguous } from "../../core/domain/errors.js";
import { GatewayClient } from "../../core/client/gateway-client.js";
import { OfflineQueue, PaymentHistory } from "../../core/client/client-files.js";
import { PaymentSender, type RetryPolicy, type SendOutcome } from "../../core/client/payment-sender.js";
import { amountMinorMax } from "../../core/domain/money.js";
import { outcomeSeen, type Attempt, type Observation } from "../../core/testing/checker.js";
import type { PaymentDetails } from "../../core/domain/payment.js";
import type { LoadedIdentity } from "../../core/transport/certificates.js";
import type { Prng } from "../../core/testing/prng.js";
import { bankTimeouts } from "../bank.js";

export interface Account {
  user: string;
  bank: string;
  password: string;
  initialMinor: bigint;
}

export type PaymentKind = "cross-bank" | "same-bank" | "over-balance" | "offline" | "batch";

export const workloadBounds = Object.freeze({
  /**
   * Payments per run: each is at most one finished record per bank, and a bank keeps only its latest
   * finishedRetainedMax, which are the checker's evidence of what the bank applied.
   */
  paymentsMax: Math.floor(bankTimeouts.finishedRetainedMax / 2),
  callTimeoutMs: 4_000,
  /** Online attempts of one payment (its first send, retries of an unknown outcome, new logins). */
  onlineAttemptsMax: 4,
  /** Chance that a client retries an unknown outcome with the same id. */
  retryChance: 0.75,
  readyWaitMs: 2_000,
  thinkMaxMs: 30,
  opsPerClientMax: 100_000,
  amountMinMinor: 100,
  amountMaxMinor: 20_000,
  overBalanceExtraMaxMinor: 50_000,
  drainPassesMax: 3,
  finalReadAttemptsMax: 3,
  finalReadConcurrency: 4,
  /** Orders in one MakePayments call of a batch op. */
  batchOrdersMin: 2,
  batchOrdersMax: 8,
});

const flushPolicy: RetryPolicy = Object.freeze({ attemptsMax: 2, delayMinMs: 100, delayMaxMs: 500 });

/** Fast reconnects after a gateway restart (grpc-js backs off up to 120 s by default). */
const channelOptions = {
  ...expectServerName(gatewayServerName),
  "grpc.initial_reconnect_backoff_ms": 200,
  "grpc.max_reconnect_backoff_ms": 1_000,
};

const opWeights = {
  "cross-bank": 40,
  "same-bank": 20,
  "over-balance": 8,
  replay: 14,
  offline: 10,
  sync: 8,
  batch: 10,
} as const;
type OpKind = keyof typeof opWeights;

export interface PaymentLog {
  details: PaymentDetails;
  kind: PaymentKind;
  attempts: Attempt[];
}

/** Every payment id the clients made, with every answer they got. */
export class Observations {
  readonly payments = new Map<string, PaymentLog>();
  retries = 0;
  replays = 0;
  syncs = 0;
  finalReads = 0;

  get full(): boolean {
    return this.payments.size >= workloadBounds.paymentsMax;
  }

  begin(details: PaymentDetails, kind: PaymentKind): PaymentLog {
    const log: PaymentLog = { details, kind, attempts: [] };
    this.payments.set(details.paymentId, log);
    return log;
  }

  record(paymentId: string, attempt: Attempt): void {
    this.payments.get(paymentId)?.attempts.push(attempt);
  }

  list(): Observation[] {
    return [...this.payments.values()].map((log) => ({ details: log.details, attempts: log.attempts }));
  }
}

export interface WorkloadContext {
  accounts: readonly Account[];
  /** The addresses clients dial: the proxy in front of each gateway. */
  gatewayAddresses: readonly string[];
  identity: LoadedIdentity;
  queue: OfflineQueue;
  history: PaymentHistory;
  observations: Observations;
  sessions: Sessions;
  seed: number;
}

type RawClient = ServiceClient<(typeof PaymentGateway)["method"]>;

export function newRawClient(context: WorkloadContext, address: string): RawClient {
  return createClient(
    PaymentGateway,
    address,
    clientCredentials(context.identity),
    channelOptions,
    "GATEWAY_UNAVAILABLE",
  );
}

/**
 * A client's connections to every gateway, one of them current: an attempt whose outcome is unknown (the
 * gateway unreachable, a deadline) is retried, with the same id, at the next one, as a failing-over client
 * does. Tokens are signed, so a session opened at one gateway is good at all.
 */
export class GatewayChoice {
  readonly #clients: RawClient[];
  #at: number;

  constructor(context: WorkloadContext, first: number) {
    this.#clients = context.gatewayAddresses.map((address) => newRawClient(context, address));
    this.#at = first % this.#clients.length;
  }

  get current(): RawClient {
    return this.#clients[this.#at]!;
  }

  failover(): void {
    this.#at = (this.#at + 1) % this.#clients.length;
  }

  close(): void {
    for (const client of this.#clients) client.close();
  }
}

const keyOf = (account: { user: string; bank: string }) => `${account.user}@${account.bank}`;

/** Login sessions shared by every client: one token per account, renewed when the gateway forgets it. */
export class Sessions {
  readonly #tokens = new Map<string, Promise<string>>();

  token(account: Account, client: RawClient): Promise<string> {
    const key = keyOf(account);
    let token = this.#tokens.get(key);
    if (token === undefined) {
      token = client
        .registerClient(
          { username: account.user, bank: account.bank, password: account.password },
          { timeoutMs: workloadBounds.callTimeoutMs },
        )
        .then((reply) => reply.token);
      this.#tokens.set(key, token);
      token.catch(() => this.#tokens.get(key) === token && this.#tokens.delete(key));
    }
    return token;
  }

  forget(account: Account, token: string): void {
    const key = keyOf(account);
    const cached = this.#tokens.get(key);
    cached?.then(
      (value) => value === token && this.#tokens.get(key) === cached && this.#tokens.delete(key),
      () => undefined,
    );
  }
}

function waitReady(client: RawClient): Promise<void> {
  return new Promise((resolve) =>
    client.channel.waitForReady(new Date(Date.now() + workloadBounds.readyWaitMs), () => resolve()),
  );
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

const payerOf = (context: WorkloadContext, details: PaymentDetails): Account =>
  context.accounts.find((account) => account.user === details.fromUser && account.bank === details.fromBank)!;

/**
 * The payer's session token, logging in when there is none: "retry" once the gateway is ready again after a
 * login it did not answer, "stop" after a refused login or past `stopAtMs`.
 */
async function sessionToken(
  context: WorkloadContext,
  gateways: GatewayChoice,
  payer: Account,
  stopAtMs: number,
): Promise<{ token: string } | "retry" | "stop"> {
  try {
    return { token: await context.sessions.token(payer, gateways.current) };
  } catch (thrown) {
    if (!isAmbiguous(PaymentError.fromGrpc(thrown)) || Date.now() >= stopAtMs) return "stop";
    gateways.failover();
    await waitReady(gateways.current);
    return "retry";
  }
}

/**
 * Whether a call was refused because the gateway restarted and forgot the session: nothing was sent, so the
 * session is dropped (the next attempt logs in again) and the call can simply be repeated.
 */
function forgetLostSession(context: WorkloadContext, payer: Account, token: string, error: PaymentError): boolean {
  if (error.code !== "UNAUTHENTICATED" || error.final) return false;
  context.sessions.forget(payer, token);
  return true;
}

/**
 * Sends a payment online until a final answer, at most onlineAttemptsMax times. Returns early past
 * `stopAtMs` or when `retry` declines to repeat an unknown outcome.
 */
export async function sendOnline(
  context: WorkloadContext,
  gateways: GatewayChoice,
  log: PaymentLog,
  options: { stopAtMs: number; afterRun: boolean; retry: () => boolean },
): Promise<void> {
  const { details } = log;
  const payer = payerOf(context, details);
  const afterRun = options.afterRun ? { afterRun: true } : {};
  for (let attempt = 1; attempt <= workloadBounds.onlineAttemptsMax; attempt += 1) {
    const client = gateways.current;
    const session = await sessionToken(context, gateways, payer, options.stopAtMs);
    if (session === "stop") return;
    if (session === "retry") continue;
    const { token } = session;
    try {
      const request = {
        token,
        paymentId: details.paymentId,
        toUser: details.toUser,
        toBank: details.toBank,
        amountMinor: details.amountMinor,
      };
      await client.makePayment(request, { timeoutMs: workloadBounds.callTimeoutMs });
      context.observations.record(details.paymentId, { result: "committed", ...afterRun });
      return;
    } catch (thrown) {
      const error = PaymentError.fromGrpc(thrown, "INTERNAL", "GATEWAY_UNAVAILABLE");
      if (forgetLostSession(context, payer, token, error)) continue;
      if (!isAmbiguous(error)) {
        context.observations.record(details.paymentId, {
          result: "aborted",
          reason: error.code,
          final: error.final,
          ...afterRun,
        });
        return;
      }
      context.observations.record(details.paymentId, { result: "ambiguous", reason: error.code, ...afterRun });
      if (Date.now() >= options.stopAtMs || !options.retry()) return;
      if (!options.afterRun) context.observations.retries += 1;
      gateways.failover();
      await waitReady(gateways.current);
    }
  }
}

/**
 * Sends one MakePayments call until no order is in doubt, at most onlineAttemptsMax times, recording each
 * order's answer (an id that appears twice in the call gets both of its answers recorded).
 */
export async function sendBatchOnline(
  context: WorkloadContext,
  gateways: GatewayChoice,
  orders: readonly PaymentLog[],
  options: { stopAtMs: number; retry: () => boolean },
): Promise<void> {
  const first = orders[0]!.details;
  const payer = payerOf(context, first);
  const payments = orders.map(({ details }) => ({
    paymentId: details.paymentId,
    toUser: details.toUser,
    toBank: details.toBank,
    amountMinor: details.amountMinor,
  }));
  for (let attempt = 1; attempt <= workloadBounds.onlineAttemptsMax; attempt += 1) {
    const client = gateways.current;
    const session = await sessionToken(context, gateways, payer, options.stopAtMs);
    if (session === "stop") return;
    if (session === "retry") continue;
    const { token } = session;
    let inDoubt: boolean;
    try {
      const reply = await client.makePayments({ token, payments }, { timeoutMs: workloadBounds.callTimeoutMs });
      if (reply.results.length !== orders.length)
        throw new PaymentError(
          "INTERNAL",
          `MakePayments answered ${reply.results.length} results for ${orders.length} orders`,
        );
      inDoubt = false;
      reply.results.forEach((result, index) => {
        const paymentId = orders[index]!.details.paymentId;
        if (result.paymentId !== paymentId)
          throw new PaymentError(
            "INTERNAL",
            `MakePayments result ${index} names ${result.paymentId}, not ${paymentId}`,
          );
        if (result.status === PaymentStatus.COMMITTED) context.observations.record(paymentId, { result: "committed" });
        else if (result.status === PaymentStatus.ABORTED)
          context.observations.record(paymentId, { result: "aborted", reason: result.reason, final: result.final });
        else {
          context.observations.record(paymentId, { result: "ambiguous", reason: result.reason });
          inDoubt = true;
        }
      });
    } catch (thrown) {
      const error = PaymentError.fromGrpc(thrown, "INTERNAL", "GATEWAY_UNAVAILABLE");
      if (forgetLostSession(context, payer, token, error)) continue;
      // The call as a whole failed: no order was answered, and any may have run.
      for (const order of orders)
        context.observations.record(order.details.paymentId, { result: "ambiguous", reason: error.code });
      inDoubt = isAmbiguous(error);
    }
    if (!inDoubt || Date.now() >= options.stopAtMs || !options.retry()) return;
    context.observations.retries += 1;
    gateways.failover();
    await waitReady(gateways.current);
  }
}

function recordSendOutcome(observations: Observations, outcome: SendOutcome): void {
  const paymentId = outcome.payment.id;
  if (outcome.status === "committed") observations.record(paymentId, { result: "committed" });
  // The sender does not say whether an abort was final; it removed the payment from the queue either way.
  else if (outcome.status === "aborted")
    observations.record(paymentId, { result: "aborted", reason: outcome.reason, final: false });
  else observations.record(paymentId, { result: "ambiguous", reason: outcome.reason });
}

/** `paynet client sync` for one account, in process: log in, then send its queued payments in order. */
export async function syncAccount(context: WorkloadContext, client: GatewayClient, account: Account): Promise<void> {
  try {
    await client.login(account.user, account.bank, account.password);
  } catch {
    return; // the gateway is unreachable or busy: the payments stay queued
  }
  const sender = new PaymentSender(client, context.queue, context.history);
  await sender
    .flush(account.user, account.bank, flushPolicy, (outcome) => recordSendOutcome(context.observations, outcome))
    .catch(() => undefined);
}

interface OpDraw {
  kind: OpKind;
  payer: Account;
  crossPayee: Account;
  samePayee: Account;
  amountMinor: bigint;
  overExtraMinor: bigint;
  sameBankRoll: boolean;
  pickRoll: number;
}

/** One verify client: its own plan stream (what to do) and retry stream (whether to retry), both from the seed. */
export class VerifyClient {
  readonly #index: number;
  readonly #context: WorkloadContext;
  readonly #plan: Prng;
  readonly #retries: Prng;
  readonly #raw: GatewayChoice;
  readonly #offline: GatewayClient;
  readonly #sent: PaymentLog[] = [];
  readonly #queued: PaymentLog[] = [];

  constructor(index: number, context: WorkloadContext, prng: Prng) {
    this.#index = index;
    this.#context = context;
    this.#plan = prng.fork(`client-${index}-plan`);
    this.#retries = prng.fork(`client-${index}-retries`);
    this.#raw = new GatewayChoice(context, index);
    // The offline path (the real client's PaymentSender) starts at gateway i mod N, and fails over to the next.
    this.#offline = new GatewayClient(rotated(context.gatewayAddresses, index), context.identity);
  }

  async run(stopAtMs: number): Promise<void> {
    for (
      let op = 0;
      op < workloadBounds.opsPerClientMax && Date.now() < stopAtMs && !this.#context.observations.full;
      op += 1
    ) {
      const draw = this.#draw();
      await this.#runOp(op, draw, stopAtMs);
      await sleep(this.#plan.int(0, workloadBounds.thinkMaxMs));
    }
  }

  close(): void {
    this.#raw.close();
    this.#offline.close();
  }

  /** Every op draws the same values, whatever its kind, so op n of a client is the same for a seed. */
  #draw(): OpDraw {
    const accounts = this.#context.accounts;
    const kind = this.#plan.weighted(opWeights);
    const payer = this.#plan.pick(accounts);
    const others = accounts.filter((account) => account.bank !== payer.bank);
    const colleagues = accounts.filter((account) => account.bank === payer.bank && account.user !== payer.user);
    return {
      kind,
      payer,
      crossPayee: this.#plan.pick(others),
      samePayee: this.#plan.pick(colleagues),
      amountMinor: BigInt(this.#plan.int(workloadBounds.amountMinMinor, workloadBounds.amountMaxMinor)),
      overExtraMinor: BigInt(this.#plan.int(1, workloadBounds.overBalanceExtraMaxMinor)),
      sameBankRoll: this.#plan.chance(0.3),
      pickRoll: this.#plan.next(),
    };
  }

  async #runOp(op: number, draw: OpDraw, stopAtMs: number): Promise<void> {
    const paymentId = `v${this.#context.seed}-c${this.#index}-${op}`;
    const payee = (sameBank: boolean) => (sameBank ? draw.samePayee : draw.crossPayee);
    const details = (to: Account, amountMinor: bigint): PaymentDetails => ({
      paymentId,
      fromUser: draw.payer.user,
      fromBank: draw.payer.bank,
      toUser: to.user,
      toBank: to.bank,
      amountMinor,
    });
    const retry = () => this.#retries.chance(workloadBounds.retryChance);
    switch (draw.kind) {
      case "cross-bank":
      case "same-bank": {
        const log = this.#context.observations.begin(
          details(payee(draw.kind === "same-bank"), draw.amountMinor),
          draw.kind,
        );
        this.#sent.push(log);
        return sendOnline(this.#context, this.#raw, log, { stopAtMs, afterRun: false, retry });
      }
      case "over-balance": {
        const amountMinor = draw.payer.initialMinor + draw.overExtraMinor;
        const log = this.#context.observations.begin(
          details(payee(draw.sameBankRoll), amountMinor < amountMinorMax ? amountMinor : amountMinorMax),
          "over-balance",
        );
        this.#sent.push(log);
        return sendOnline(this.#context, this.#raw, log, { stopAtMs, afterRun: false, retry });
      }
      case "replay": {
        if (this.#sent.length === 0) return;
        this.#context.observations.replays += 1;
        return sendOnline(this.#context, this.#raw, this.#sent[Math.floor(draw.pickRoll * this.#sent.length)]!, {
          stopAtMs,
          afterRun: false,
          retry,
        });
      }
      case "offline": {
        const log = this.#context.observations.begin(details(payee(draw.sameBankRoll), draw.amountMinor), "offline");
        const { fromUser: user, fromBank: bank, toUser: to, toBank, amountMinor } = log.details;
        await this.#context.queue.enqueue({
          id: paymentId,
          user,
          bank,
          to,
          toBank,
          amountMinor,
          queuedAtMs: Date.now(),
        });
        this.#queued.push(log);
        return;
      }
      case "batch": {
        // Its own stream, forked per op, so that every op still draws the same values from the plan.
        const plan = this.#plan.fork(`batch-${op}`);
        const orders: PaymentLog[] = [];
        const count = plan.int(workloadBounds.batchOrdersMin, workloadBounds.batchOrdersMax);
        for (let index = 0; index < count; index += 1) {
          const roll = plan.next();
          if (roll < 0.1 && orders.length > 0) {
            orders.push(plan.pick(orders)); // the same id twice in one call: one payment, two answers
            continue;
          }
          const sameBank = roll < 0.3;
          const others = this.#context.accounts.filter((account) =>
            sameBank
              ? account.bank === draw.payer.bank && account.user !== draw.payer.user
              : account.bank !== draw.payer.bank,
          );
          const amountMinor =
            roll > 0.9
              ? draw.payer.initialMinor + BigInt(plan.int(1, workloadBounds.overBalanceExtraMaxMinor))
              : BigInt(plan.int(workloadBounds.amountMinMinor, workloadBounds.amountMaxMinor));
          const to = plan.pick(others);
          const orderId = `${paymentId}-${index}`;
          const log = this.#context.observations.begin(
            {
              paymentId: orderId,
              fromUser: draw.payer.user,
              fromBank: draw.payer.bank,
              toUser: to.user,
              toBank: to.bank,
              amountMinor: amountMinor < amountMinorMax ? amountMinor : amountMinorMax,
            },
            "batch",
          );
          orders.push(log);
          this.#sent.push(log);
        }
        return sendBatchOnline(this.#context, this.#raw, orders, { stopAtMs, retry });
      }
      case "sync": {
        if (this.#queued.length === 0) return;
        const queued = this.#queued[Math.floor(draw.pickRoll * this.#queued.length)]!.details;
        this.#context.observations.syncs += 1;
        const account = this.#context.accounts.find(
          (candidate) => candidate.user === queued.fromUser && candidate.bank === queued.fromBank,
        )!;
        return syncAccount(this.#context, this.#offline, account);
      }
    }
  }
}

/** After healing: sends what is left in the offline queue, account by account, a bounded number of passes. */
export async function drainOfflineQueue(context: WorkloadContext): Promise<number> {
  const client = new GatewayClient(context.gatewayAddresses, context.identity);
  try {
    for (let pass = 1; pass <= workloadBounds.drainPassesMax; pass += 1) {
      const queued = await context.queue.list();
      if (queued.length === 0) return 0;
      const owners = new Set(queued.map((payment) => `${payment.user}@${payment.bank}`));
      for (const owner of owners) {
        const account = context.accounts.find((candidate) => keyOf(candidate) === owner);
        if (account !== undefined) await syncAccount(context, client, account);
      }
    }
    return (await context.queue.list()).length;
  } finally {
    client.close();
  }
}

/** After healing: asks once more (with the same id) about every payment whose outcome is still unknown. */
export async function finalReads(context: WorkloadContext): Promise<void> {
  const unknown = [...context.observations.payments.values()].filter(
    (log) => outcomeSeen(log.attempts).kind === "ambiguous",
  );
  const clients = Array.from(
    { length: workloadBounds.finalReadConcurrency },
    (_, index) => new GatewayChoice(context, index),
  );
  try {
    await Promise.all(
      clients.map(async (client, worker) => {
        for (let index = worker; index < unknown.length; index += clients.length) {
          context.observations.finalReads += 1;
          let attemptsLeft = workloadBounds.finalReadAttemptsMax;
          await sendOnline(context, client, unknown[index]!, {
            stopAtMs: Number.MAX_SAFE_INTEGER,
            afterRun: true,
            retry: () => (attemptsLeft -= 1) > 0,
          });
        }
      }),
    );
  } finally {
    for (const client of clients) client.close();
  }
}

/** The list starting at entry `start` (mod its length), wrapping around. */
function rotated<T>(list: readonly T[], start: number): T[] {
  const from = start % list.length;
  return [...list.slice(from), ...list.slice(0, from)];
}
