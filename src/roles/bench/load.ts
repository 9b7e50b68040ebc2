// The load of `paynet bench`: C workers, each logged in as its own account, sharing a few gRPC channels,
// take numbered payments until N are started. Closed loop by default (a worker sends its next payment when
// the previous one returns); with a rate, payment k is due at start + k/rate and its latency is measured
// from that due time, so a queue that builds up shows in the latency. A warm-up of W payments may come
// first, closed loop and not timed: a freshly started process runs its hot paths unoptimized until V8 has
// compiled them, which on a 2-core machine takes thousands of payments, and a long-running network is
// measured after that.
import { setTimeout as sleep } from "node:timers/promises";
import { PaymentGateway, PaymentStatus } from "../../gen/paynet/v1/paynet_pb.js";
import { createClient, type ServiceClient } from "../../core/transport/rpc.js";
import { clientCredentials, expectServerName } from "../../core/transport/tls.js";
import { gatewayServerName } from "../../core/transport/identity.js";
import { PaymentError, isAmbiguous, isReason, type Reason } from "../../core/domain/errors.js";
import { Prng } from "../../core/testing/prng.js";
import type { LoadedIdentity } from "../../core/transport/certificates.js";
import type { AccountRef, PaymentPlanner } from "./accounts.js";
import type { SentPayment, SeenOutcome } from "./stats.js";

type GatewayStub = ServiceClient<(typeof PaymentGateway)["method"]>;

export const loadLimits = Object.freeze({
  loginTimeoutMs: 30_000,
  /** Logins cost a bank an scrypt each: a few at a time, so none outlives the gateway's call to the bank. */
  loginsInFlightMax: 4,
  loginAttemptsMax: 3,
  workersPerChannel: 8,
});

export interface LoadOptions {
  /** The clients' connections are spread over these gateways, round robin. */
  gatewayAddresses: readonly string[];
  identity: LoadedIdentity;
  /** One distinct payer per worker. */
  payers: readonly AccountRef[];
  password: string;
  planner: PaymentPlanner;
  seed: number;
  payments: number;
  /** Payments made first, closed loop, outside the timing, with ids `${idPrefix}w${N}`; 0 for none. */
  warmupPayments: number;
  /** Payments started per second across all workers (open loop), or null for a closed loop. */
  ratePerS: number | null;
  /** Payments per call: 1 sends MakePayment, more sends MakePayments with that many orders. */
  batch: number;
  callTimeoutMs: number;
  /** No payment is started after this long; those left are reported as not started. */
  overallTimeoutMs: number;
  /** Every payment id is this prefix and its number. */
  idPrefix: string;
  /** Why no further payment should start (e.g. a process of the network exited), or null to go on. */
  stopReason: () => string | null;
  /** Called once every worker is logged in and the warm-up is over, just before the first timed payment starts. */
  onLoadStart?: () => void;
}

/** Counters the caller may read at any time (for the progress line). */
export interface LoadProgress {
  started: number;
  done: number;
  committed: number;
  aborted: number;
  ambiguous: number;
}

export interface LoadResult {
  /** The started payments, in no particular order. */
  sent: SentPayment[];
  latenciesMs: Float64Array;
  /** Reasons of the payments seen aborted or ambiguous, with their counts. */
  reasons: Partial<Record<Reason, number>>;
  durationMs: number;
  notStarted: number;
  timedOut: boolean;
  /** Set when the load stopped early because `stopReason` named a reason. */
  stoppedBecause: string | null;
  channels: number;
  /** The warm-up's payments and how long it took, or null when there was none. */
  warmup: { sent: SentPayment[]; durationMs: number } | null;
}

/** What follows the run's id prefix in a warm-up payment's id, before its number (timed ids are digits only). */
export const warmupIdInfix = "w";

interface Worker {
  payer: AccountRef;
  stub: GatewayStub;
  prng: Prng;
  token: string;
}

function openChannels(options: LoadOptions): GatewayStub[] {
  const count = Math.ceil(options.payers.length / loadLimits.workersPerChannel);
  const credentials = clientCredentials(options.identity);
  // A local subchannel pool gives every channel its own connection instead of one shared by all.
  const channelOptions = { ...expectServerName(gatewayServerName), "grpc.use_local_subchannel_pool": 1 };
  return Array.from({ length: count }, (_, index) =>
    createClient(
      PaymentGateway,
      options.gatewayAddresses[index % options.gatewayAddresses.length]!,
      credentials,
      channelOptions,
      "GATEWAY_UNAVAILABLE",
    ),
  );
}

/** Logs in, retrying a login that timed out or found a bank unavailable (a refusal is final). */
async function login(worker: Worker, password: string): Promise<void> {
  for (let attempt = 1; ; attempt += 1) {
    try {
      const reply = await worker.stub.registerClient(
        { username: worker.payer.username, bank: worker.payer.bank, password },
        { timeoutMs: loadLimits.loginTimeoutMs },
      );
      worker.token = reply.token;
      return;
    } catch (thrown) {
      const error = PaymentError.fromGrpc(thrown, "INTERNAL", "GATEWAY_UNAVAILABLE");
      if (!isAmbiguous(error) || attempt >= loadLimits.loginAttemptsMax)
        throw new Error(`cannot log in as ${worker.payer.key}: ${error.message}`, { cause: thrown });
    }
  }
}

async function loginAll(workers: readonly Worker[], password: string): Promise<void> {
  let next = 0;
  const lane = async () => {
    for (let index = next++; index < workers.length; index = next++) await login(workers[index]!, password);
  };
  await Promise.all(Array.from({ length: Math.min(loadLimits.loginsInFlightMax, workers.length) }, lane));
}

function classify(error: PaymentError): SeenOutcome {
  if (isAmbiguous(error)) return "ambiguous";
  // An internal failure that is not a decided abort may have happened after the payment was begun.
  return error.code === "INTERNAL" && !error.final ? "ambiguous" : "aborted";
}

class LoadRun {
  readonly #options: LoadOptions;
  readonly progress: LoadProgress;
  readonly #sent: SentPayment[] = [];
  readonly #latenciesMs: number[] = [];
  readonly #reasons: Partial<Record<Reason, number>> = {};
  #nextTicket = 0;
  #timedOut = false;
  #stoppedBecause: string | null = null;
  #lastEndNs = 0n;
  readonly #startNs: bigint;
  readonly #deadlineNs: bigint;

  constructor(options: LoadOptions, progress: LoadProgress) {
    this.#options = options;
    this.progress = progress;
    this.#startNs = process.hrtime.bigint();
    this.#deadlineNs = this.#startNs + BigInt(options.overallTimeoutMs) * 1_000_000n;
  }

  /** The next payment number and the time it is due (now, in a closed loop), or null when done. */
  #take(): { ticket: number; dueNs: bigint | null } | null {
    if (this.#nextTicket >= this.#options.payments || this.#stoppedBecause !== null) return null;
    this.#stoppedBecause = this.#options.stopReason();
    if (this.#stoppedBecause !== null) return null;
    const rate = this.#options.ratePerS;
    const dueNs = rate === null ? null : this.#startNs + BigInt(Math.round((this.#nextTicket * 1e9) / rate));
    if (process.hrtime.bigint() >= this.#deadlineNs || (dueNs !== null && dueNs >= this.#deadlineNs)) {
      this.#timedOut = true;
      return null;
    }
    const ticket = this.#nextTicket;
    this.#nextTicket += 1;
    return { ticket, dueNs };
  }

  async work(worker: Worker): Promise<void> {
    if (this.#options.batch > 1) return this.#workBatched(worker);
    for (let taken = this.#take(); taken !== null; taken = this.#take()) {
      const waitNs = taken.dueNs === null ? 0n : taken.dueNs - process.hrtime.bigint();
      if (waitNs > 0n) await sleep(Number(waitNs / 1_000_000n));
      const startNs = taken.dueNs ?? process.hrtime.bigint();
      const planned = this.#options.planner.next(worker.payer, worker.prng);
      const paymentId = `${this.#options.idPrefix}${taken.ticket}`;
      const transfer = { source: worker.payer.key, target: planned.target.key, amountMinor: planned.amountMinor };
      this.progress.started += 1;
      const seen = await this.#pay(worker, paymentId, planned.target, planned.amountMinor);
      const endNs = process.hrtime.bigint();
      if (endNs > this.#lastEndNs) this.#lastEndNs = endNs;
      this.#latenciesMs.push(Number(endNs - startNs) / 1e6);
      this.#sent.push({ paymentId, transfer, seen });
      this.progress.done += 1;
      this.progress[seen] += 1;
    }
  }

  /** Takes up to `batch` payments at a time and sends them in one MakePayments call; each counts the call's latency. */
  async #workBatched(worker: Worker): Promise<void> {
    for (;;) {
      const tickets: number[] = [];
      let firstDueNs: bigint | null = null;
      while (tickets.length < this.#options.batch) {
        const taken = this.#take();
        if (taken === null) break;
        if (tickets.length === 0) firstDueNs = taken.dueNs;
        tickets.push(taken.ticket);
      }
      if (tickets.length === 0) return;
      const waitNs = firstDueNs === null ? 0n : firstDueNs - process.hrtime.bigint();
      if (waitNs > 0n) await sleep(Number(waitNs / 1_000_000n));
      const startNs = firstDueNs ?? process.hrtime.bigint();
      const orders = tickets.map((ticket) => {
        const planned = this.#options.planner.next(worker.payer, worker.prng);
        return {
          paymentId: `${this.#options.idPrefix}${ticket}`,
          target: planned.target,
          amountMinor: planned.amountMinor,
        };
      });
      this.progress.started += orders.length;
      const seen = await this.#payMany(worker, orders);
      const endNs = process.hrtime.bigint();
      if (endNs > this.#lastEndNs) this.#lastEndNs = endNs;
      orders.forEach((order, index) => {
        const outcome = seen[index]!;
        this.#latenciesMs.push(Number(endNs - startNs) / 1e6);
        this.#sent.push({
          paymentId: order.paymentId,
          transfer: { source: worker.payer.key, target: order.target.key, amountMinor: order.amountMinor },
          seen: outcome,
        });
        this.progress.done += 1;
        this.progress[outcome] += 1;
      });
    }
  }

  async #payMany(
    worker: Worker,
    orders: ReadonlyArray<{ paymentId: string; target: AccountRef; amountMinor: bigint }>,
  ): Promise<SeenOutcome[]> {
    const count = (code: Reason) => (this.#reasons[code] = (this.#reasons[code] ?? 0) + 1);
    try {
      const reply = await worker.stub.makePayments(
        {
          token: worker.token,
          payments: orders.map((order) => ({
            paymentId: order.paymentId,
            toUser: order.target.username,
            toBank: order.target.bank,
            amountMinor: order.amountMinor,
          })),
        },
        { timeoutMs: this.#options.callTimeoutMs },
      );
      if (reply.results.length !== orders.length)
        throw new PaymentError(
          "INTERNAL",
          `MakePayments answered ${reply.results.length} results for ${orders.length} orders`,
        );
      return reply.results.map((result, index) => {
        if (result.paymentId !== orders[index]!.paymentId)
          throw new PaymentError(
            "INTERNAL",
            `MakePayments result ${index} names ${result.paymentId}, not ${orders[index]!.paymentId}`,
          );
        if (result.status === PaymentStatus.COMMITTED) return "committed";
        count(isReason(result.reason) ? result.reason : "INTERNAL");
        return result.status === PaymentStatus.ABORTED ? "aborted" : "ambiguous";
      });
    } catch (thrown) {
      // The whole call failed: none of its payments has a known outcome.
      const error = PaymentError.fromGrpc(thrown, "INTERNAL", "GATEWAY_UNAVAILABLE");
      for (let index = 0; index < orders.length; index += 1) count(error.code);
      if (error.code === "UNAUTHENTICATED") await login(worker, this.#options.password).catch(() => undefined);
      const seen = classify(error);
      return orders.map(() => seen);
    }
  }

  async #pay(worker: Worker, paymentId: string, target: AccountRef, amountMinor: bigint): Promise<SeenOutcome> {
    try {
      await worker.stub.makePayment(
        { token: worker.token, paymentId, toUser: target.username, toBank: target.bank, amountMinor },
        { timeoutMs: this.#options.callTimeoutMs },
      );
      return "committed";
    } catch (thrown) {
      const error = PaymentError.fromGrpc(thrown, "INTERNAL", "GATEWAY_UNAVAILABLE");
      this.#reasons[error.code] = (this.#reasons[error.code] ?? 0) + 1;
      // A session can expire on a long run: log in again for the next payment (this one was refused).
      if (error.code === "UNAUTHENTICATED") await login(worker, this.#options.password).catch(() => undefined);
      return classify(error);
    }
  }

  result(channels: number, warmup: LoadResult["warmup"]): LoadResult {
    const endNs = this.#lastEndNs === 0n ? process.hrtime.bigint() : this.#lastEndNs;
    return {
      warmup,
      sent: this.#sent,
      latenciesMs: Float64Array.from(this.#latenciesMs),
      reasons: this.#reasons,
      durationMs: Number(endNs - this.#startNs) / 1e6,
      notStarted: this.#options.payments - this.#nextTicket,
      timedOut: this.#timedOut,
      stoppedBecause: this.#stoppedBecause,
      channels,
    };
  }
}

/**
 * The warm-up: the same workers, channels and sessions, with their own random streams (so the timed
 * payments are the same whatever the warm-up) and their own ids; sessions renewed meanwhile carry over.
 */
async function warmUp(
  workers: Worker[],
  root: Prng,
  options: LoadOptions,
  progress: LoadProgress,
): Promise<LoadResult["warmup"]> {
  if (options.warmupPayments === 0) return null;
  const warmupWorkers = workers.map((worker, index) => ({ ...worker, prng: root.fork(`warmup-${index}`) }));
  const run = new LoadRun(
    { ...options, payments: options.warmupPayments, ratePerS: null, idPrefix: `${options.idPrefix}${warmupIdInfix}` },
    progress,
  );
  await Promise.all(warmupWorkers.map((worker) => run.work(worker)));
  warmupWorkers.forEach((worker, index) => (workers[index]!.token = worker.token));
  const result = run.result(0, null);
  return { sent: result.sent, durationMs: result.durationMs };
}

/** Logs every worker in and warms up (neither timed), then runs the load; the channels are closed at the end. */
export async function runLoad(
  options: LoadOptions,
  progress: LoadProgress,
  warmupProgress: LoadProgress,
): Promise<LoadResult> {
  const stubs = openChannels(options);
  try {
    const root = new Prng(options.seed);
    const workers: Worker[] = options.payers.map((payer, index) => ({
      payer,
      stub: stubs[Math.floor(index / loadLimits.workersPerChannel)]!,
      prng: root.fork(`worker-${index}`),
      token: "",
    }));
    await loginAll(workers, options.password);
    const warmup = await warmUp(workers, root, options, warmupProgress);
    options.onLoadStart?.();
    const run = new LoadRun(options, progress);
    await Promise.all(workers.map((worker) => run.work(worker)));
    return run.result(stubs.length, warmup);
  } finally {
    for (const stub of stubs) stub.close();
  }
}
