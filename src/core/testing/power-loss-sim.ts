// The power-loss simulator: one seeded schedule (sim-schedule.ts) run over a network in one process
// (sim-network.ts). Clients make the schedule's payments (single and batched, replays, over the balance, an
// unknown outcome retried with the same id), banks ask about their overdue holds, and processes lose power at
// the schedule's events and restart from their durable images. Then everything heals, every payment is driven
// to its end, every unknown outcome is asked again, and the invariants of `paynet verify` are checked over the
// durable images and what the clients saw (src/core/testing/checker.ts). Test-only: nothing here is payment logic.
import { PaymentError, isAmbiguous } from "../domain/errors.js";
import type { PaymentDetails } from "../domain/payment.js";
import type { Account } from "../domain/ledger.js";
import { foldLedger } from "../bank/store/memory/memory-ledger-store.js";
import {
  checkInvariants,
  outcomeSeen,
  type Attempt,
  type BankFinalState,
  type InvariantResult,
  type Observation,
} from "./checker.js";
import { Prng } from "./prng.js";
import { drawSchedule, type Op, type Schedule } from "./sim-schedule.js";
import { SimBank, SimGateway, simTiming, ticks, type SimContext, type Unsafe } from "./sim-network.js";
import { wallClockTimeout } from "./turn-timers.js";

export type { Unsafe };

export interface PowerLossResult {
  seed: number;
  /** The invariants that do not hold (empty: the run is correct). */
  violations: InvariantResult[];
  stats: { payments: number; answers: number; crashes: Record<string, number>; ops: number };
}

export const runBounds = Object.freeze({
  /** Rounds of the final drive (each asks every bank about every hold, then lets the coordinator retry). */
  driveRoundsMax: 20,
  /** Attempts of a final read of an unknown outcome. */
  finalReadAttemptsMax: 3,
  /** A client call unanswered this long (wall time) means the run hangs: reported, not waited for. */
  watchdogMs: 2_000,
});

/** An account's password is never checked in the simulator; the store holds a hash-shaped placeholder. */
const passwordPlaceholder = "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

class Network {
  readonly schedule: Schedule;
  readonly context: SimContext;
  readonly banks = new Map<string, SimBank>();
  readonly gateway: SimGateway;
  readonly observations = new Map<string, { details: PaymentDetails; attempts: Attempt[] }>();
  readonly #retries: Prng;

  constructor(schedule: Schedule, unsafe: Unsafe, trace: ((line: string) => void) | null) {
    this.schedule = schedule;
    const root = new Prng(schedule.seed);
    this.#retries = root.fork("retries");
    this.context = {
      clock: { nowMs: simTiming.clockStartMs },
      network: root.fork("network"),
      unsafe,
      failures: [],
      halted: false,
      crashes: new Map(),
      trace,
    };
    for (const [index, bank] of schedule.banks.entries()) {
      const accounts = new Map<string, Account>(
        schedule.accounts
          .filter((account) => account.bank === bank)
          .map((account) => [account.user, { balanceMinor: account.initialMinor, password: passwordPlaceholder }]),
      );
      const faults = schedule.faults.filter((fault) => fault.target === bank);
      this.banks.set(
        bank,
        new SimBank(bank, this.context, accounts, faults, index === 0 && unsafe.ledgerAckBeforeDurable === true),
      );
    }
    this.gateway = new SimGateway(
      this.context,
      this.banks,
      schedule.faults.filter((fault) => fault.target === "gateway"),
      schedule.replyWaitMs,
    );
    for (const bank of this.banks.values()) bank.gateway = this.gateway;
  }

  async start(): Promise<void> {
    for (const member of this.#processes()) member.start();
    await this.allUp();
  }

  async allUp(): Promise<void> {
    for (const member of this.#processes()) await member.whenUp();
  }

  disarm(): void {
    for (const member of this.#processes()) member.disarm();
  }

  record(details: PaymentDetails, attempt: Attempt): void {
    let observation = this.observations.get(details.paymentId);
    if (observation === undefined) this.observations.set(details.paymentId, (observation = { details, attempts: [] }));
    observation.attempts.push(attempt);
  }

  /** Whether to retry an unknown outcome: drawn from the retries' stream (its draws follow the run's course). */
  retryChance(): boolean {
    return this.#retries.chance(0.75);
  }

  /** Every payment finished at the gateway, every bank up and holding nothing. */
  quiescent(): boolean {
    if (this.gateway.store.records().some((record) => !record.finished)) return false;
    for (const bank of this.banks.values())
      if (bank.participant === null || bank.participant.holds().length > 0) return false;
    return true;
  }

  #processes(): Array<SimGateway | SimBank> {
    return [this.gateway, ...this.banks.values()];
  }
}

/** Runs the schedule of `seed`; the result lists the invariants it breaks. */
export async function runPowerLossSchedule(
  seed: number,
  unsafe: Unsafe = {},
  options: { trace?: (line: string) => void } = {},
): Promise<PowerLossResult> {
  const schedule = drawSchedule(seed);
  const network = new Network(schedule, unsafe, options.trace ?? null);
  const recoveryFailures: string[] = [];
  await network.start();
  const calls: Array<Promise<void>> = [];
  for (const op of schedule.ops) {
    network.context.clock.nowMs += op.clockMs;
    calls.push(runOp(network, op));
    await ticks(op.gapTicks);
  }
  if (!(await withinWatchdog(Promise.all(calls)))) recoveryFailures.push("a client call was never answered");
  network.disarm();
  await network.allUp();
  await driveToEnd(network);
  await finalReads(network);
  // What is still unfinished or held is the checker's to report (recovered, no-hold-left).
  if (!(await driveToEnd(network)))
    recoveryFailures.push(
      `not everything finished within ${runBounds.driveRoundsMax} rounds of recovery after healing`,
    );
  if (network.context.halted) recoveryFailures.push("a process could not restart");
  const violations = await check(network, recoveryFailures);
  network.gateway.coordinator?.stop();
  const answers = [...network.observations.values()].reduce(
    (total, observation) => total + observation.attempts.length,
    0,
  );
  return {
    seed,
    violations,
    stats: {
      payments: network.observations.size,
      answers,
      crashes: Object.fromEntries(network.context.crashes),
      ops: schedule.ops.length,
    },
  };
}

async function runOp(network: Network, op: Op): Promise<void> {
  if (op.kind === "sweep") return network.banks.get(op.bank)?.sweep({ all: false });
  if (op.kind === "pay") return pay(network, [op.order], op.retriesMax, false);
  return pay(network, op.orders, op.retriesMax, false);
}

/**
 * One client call (makePayment for one order, makePayments for more), repeated with the same ids while an
 * order's outcome is unknown, at most `retriesMax` more times. Every answer is recorded per payment id.
 */
async function pay(
  network: Network,
  orders: readonly PaymentDetails[],
  retriesMax: number,
  afterRun: boolean,
): Promise<void> {
  const first = orders[0]!;
  const payer = { username: first.fromUser, bank: first.fromBank };
  const requests = orders.map((order) => ({
    paymentId: order.paymentId,
    toUser: order.toUser,
    toBank: order.toBank,
    amountMinor: order.amountMinor,
  }));
  for (let attempt = 0; attempt <= retriesMax; attempt += 1) {
    if (attempt > 0) await network.gateway.whenUp();
    if (network.context.halted) return;
    const answers = await call(network, async (coordinator) =>
      orders.length === 1
        ? [await coordinator.makePayment(payer, requests[0]!).catch((error: unknown) => error)]
        : coordinator.makePayments(payer, requests),
    );
    let inDoubt = false;
    orders.forEach((order, index) => {
      const seen = attemptOf(network, answers instanceof PaymentError ? answers : answers[index], afterRun);
      network.record(order, seen);
      if (seen.result === "ambiguous") inDoubt = true;
    });
    if (!inDoubt || (!afterRun && !network.retryChance())) return;
  }
}

/** A call to the gateway's coordinator after a hop, its answer after another; the gateway's death answers it first. */
async function call<T>(
  network: Network,
  work: (coordinator: NonNullable<SimGateway["coordinator"]>) => Promise<T>,
): Promise<T | PaymentError> {
  const { gateway } = network;
  await ticks(network.context.network.chance(simTiming.macrotaskHopChance) ? 1 : 0);
  const coordinator = gateway.coordinator;
  if (!gateway.up || coordinator === null) return gateway.unavailable();
  try {
    const answer = await gateway.inc.race(work(coordinator));
    await ticks(network.context.network.chance(simTiming.macrotaskHopChance) ? 1 : 0);
    return answer;
  } catch (error) {
    if (error instanceof PaymentError) return error;
    network.context.failures.push(`gateway: ${String(error)}`);
    return new PaymentError("INTERNAL", String(error));
  }
}

function attemptOf(network: Network, answer: unknown, afterRun: boolean): Attempt {
  const flag = afterRun ? { afterRun: true } : {};
  if (!(answer instanceof Error)) return { result: "committed", ...flag };
  if (!(answer instanceof PaymentError)) {
    network.context.failures.push(`gateway answered with ${String(answer)}`);
    return { result: "ambiguous", reason: "INTERNAL", ...flag };
  }
  if (isAmbiguous(answer)) return { result: "ambiguous", reason: answer.code, ...flag };
  return { result: "aborted", reason: answer.code, final: answer.final, ...flag };
}

/** After healing: every bank asks about every hold, until nothing is left unfinished or held (false: it is not). */
async function driveToEnd(network: Network): Promise<boolean> {
  for (let round = 0; round < runBounds.driveRoundsMax && !network.context.halted; round += 1) {
    network.context.clock.nowMs += simTiming.holdTimeoutMs + 1;
    await Promise.all([...network.banks.values()].map((bank) => bank.sweep({ all: true })));
    await ticks(4);
    if (network.quiescent()) return true;
    // Lets the coordinator's retries run: they wait on a timer (a few turns under turn-timers.ts, else 1 ms).
    if (round > 0) await new Promise((resolve) => setTimeout(resolve, 1));
  }
  return false;
}

/** Asks again about every payment whose outcome no client learnt. */
async function finalReads(network: Network): Promise<void> {
  const unknown = [...network.observations.values()].filter(
    (observation) => outcomeSeen(observation.attempts).kind === "ambiguous",
  );
  await Promise.all(
    unknown.map((observation) => pay(network, [observation.details], runBounds.finalReadAttemptsMax - 1, true)),
  );
}

async function withinWatchdog(work: Promise<unknown>): Promise<boolean> {
  let cancel: () => void = () => undefined;
  const expired = new Promise<boolean>(
    (resolve) => (cancel = wallClockTimeout(() => resolve(false), runBounds.watchdogMs)),
  );
  try {
    return await Promise.race([work.then(() => true), expired]);
  } finally {
    cancel();
  }
}

/** The invariants over the durable images (every store settled first) and the clients' observations. */
async function check(network: Network, recoveryFailures: string[]): Promise<InvariantResult[]> {
  await network.gateway.store.settled();
  for (const bank of network.banks.values()) await bank.store.settled();
  const initialBalancesMinor = new Map(
    network.schedule.accounts.map((account) => [`${account.user}@${account.bank}`, account.initialMinor]),
  );
  const finalBalancesMinor = new Map<string, bigint>();
  const banks = new Map<string, BankFinalState>();
  const processFailures = [...network.context.failures];
  for (const bank of network.banks.values()) {
    const image = bank.store.image();
    const state = foldLedger(image, simTiming.finishedRetainedMax);
    for (const [user, account] of state.accounts) {
      finalBalancesMinor.set(`${user}@${bank.name}`, account.balanceMinor);
      const live = bank.participant?.balance(user).balanceMinor;
      if (live !== account.balanceMinor)
        processFailures.push(`${bank.name}: ${user} has ${String(live)} in memory, ${account.balanceMinor} on disk`);
    }
    const outcomes = new Map<string, "committed" | "aborted">();
    for (const entry of image.items) {
      if (entry.op === "hold") continue;
      const outcome = entry.op === "commit" ? "committed" : "aborted";
      const earlier = outcomes.get(entry.paymentId);
      if (earlier !== undefined && earlier !== outcome)
        processFailures.push(`${bank.name}: ${entry.paymentId} ${outcome} after it was ${earlier}`);
      if (earlier !== "committed") outcomes.set(entry.paymentId, outcome);
    }
    banks.set(bank.name, { holds: [...state.holds.values()], applying: [], outcomes });
  }
  const gatewayRecords = network.gateway.durableRecords();
  const durableStates = new Map(
    gatewayRecords.map((record) => [record.paymentId, `${record.state}${record.finished ? " finished" : ""}`]),
  );
  for (const record of network.gateway.store.records()) {
    const live = `${record.state}${record.finished ? " finished" : ""}`;
    if (durableStates.get(record.paymentId) !== live)
      processFailures.push(
        `gateway: ${record.paymentId} is ${live} in memory, ${durableStates.get(record.paymentId) ?? "absent"} on disk`,
      );
  }
  const observations: Observation[] = [...network.observations.values()];
  const results = checkInvariants({
    initialBalancesMinor,
    finalBalancesMinor,
    banks,
    gatewayRecords,
    observations,
    processFailures,
    recoveryFailures,
  });
  return results.filter((result) => !result.ok);
}

/** A failing run, in a few lines: the broken invariants with their first counterexamples, and how to replay it. */
export function describeFailure(result: PowerLossResult, replayCommand: string): string {
  const lines = [
    `power-loss schedule ${result.seed} breaks ${result.violations.map((violation) => violation.id).join(", ")} (crashes ${JSON.stringify(result.stats.crashes)})`,
  ];
  for (const violation of result.violations) {
    lines.push(`  ✗ ${violation.id}: ${violation.title}`);
    for (const example of violation.counterexamples.slice(0, 5)) lines.push(`      ${example}`);
  }
  lines.push(`  replay: ${replayCommand}`);
  return lines.join("\n");
}
