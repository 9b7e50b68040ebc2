// One schedule of the power-loss simulator, drawn whole from its seed before the run starts: the banks and
// their accounts, the workload's operations in order (with how many turns of the event loop pass between them
// and how far the simulated clock moves), and the power losses (which process, at which of its events). The
// same seed gives the same schedule, whatever the run's timing then does with it.
import type { PaymentDetails } from "../domain/payment.js";
import { Prng } from "./prng.js";

export interface SimAccount {
  user: string;
  bank: string;
  initialMinor: bigint;
}

/** A power loss: `target` ("gateway" or a bank) loses power at its `atEvent`-th event of the run. */
export interface Fault {
  target: string;
  atEvent: number;
  /** The write in flight is left half written (the reader must drop it). */
  tear: boolean;
  /** Undurable writes the OS had written back anyway. */
  keep: number;
  /** Turns of the event loop before the process restarts. */
  downTicks: number;
}

interface OpTiming {
  /** Turns of the event loop after launching this operation, before the next one. */
  gapTicks: number;
  /** Simulated ms the clock moves before this operation. */
  clockMs: number;
}

export type Op = OpTiming &
  (
    | { kind: "pay"; order: PaymentDetails; retriesMax: number }
    | { kind: "batch"; orders: PaymentDetails[]; retriesMax: number }
    /** A bank asks the coordinator about its overdue holds. */
    | { kind: "sweep"; bank: string }
  );

export interface Schedule {
  seed: number;
  /** The coordinator's replyWaitMs (its other timers wait 0 ms: one turn of the event loop). */
  replyWaitMs: number;
  banks: string[];
  accounts: SimAccount[];
  ops: Op[];
  faults: Fault[];
}

export const scheduleBounds = Object.freeze({
  banksMin: 2,
  banksMax: 3,
  accountsPerBankMin: 2,
  accountsPerBankMax: 3,
  initialMinMinor: 2_000,
  initialMaxMinor: 10_000,
  opsMin: 6,
  opsMax: 14,
  batchOrdersMin: 2,
  batchOrdersMax: 8,
  retriesMax: 2,
  gapTicksMax: 3,
  clockStepMaxMs: 15,
  /** Events per operation a process sees at most, roughly: a power loss is drawn among them. */
  gatewayEventsPerOp: 8,
  bankEventsPerOp: 4,
  downTicksShortMax: 3,
  downTicksLongMax: 12,
  /** A reply that waits for phase 2 at most 1, 9 or 33 turns of the event loop (see turn-timers.ts). */
  replyWaitsMs: [0, 1, 4],
});

const opWeights = { "cross-bank": 30, "same-bank": 14, "over-balance": 6, replay: 12, batch: 14, sweep: 10 } as const;
const orderWeights = { "cross-bank": 40, "same-bank": 20, "over-balance": 10, repeat: 15, replay: 15 } as const;
const faultCountWeights = { "0": 1, "1": 3, "2": 4, "3": 2 } as const;

export function drawSchedule(seed: number): Schedule {
  const root = new Prng(seed);
  const workload = root.fork("workload");
  const bankCount = workload.int(scheduleBounds.banksMin, scheduleBounds.banksMax);
  const banks = Array.from({ length: bankCount }, (_, index) => `B${index + 1}`);
  const accounts = banks.flatMap((bank) =>
    Array.from(
      { length: workload.int(scheduleBounds.accountsPerBankMin, scheduleBounds.accountsPerBankMax) },
      (_, index) => ({
        user: `u${index + 1}`,
        bank,
        initialMinor: BigInt(workload.int(scheduleBounds.initialMinMinor, scheduleBounds.initialMaxMinor)),
      }),
    ),
  );
  const orders = new OrderSource(seed, workload, accounts);
  const ops: Op[] = [];
  const opCount = workload.int(scheduleBounds.opsMin, scheduleBounds.opsMax);
  for (let index = 0; index < opCount; index += 1) ops.push(drawOp(workload, orders, banks));
  const replyWaitMs = root.fork("timing").pick(scheduleBounds.replyWaitsMs);
  return { seed, replyWaitMs, banks, accounts, ops, faults: drawFaults(root.fork("faults"), banks, opCount) };
}

function drawOp(prng: Prng, orders: OrderSource, banks: readonly string[]): Op {
  const timing = {
    gapTicks: prng.int(0, scheduleBounds.gapTicksMax),
    clockMs: prng.int(0, scheduleBounds.clockStepMaxMs),
  };
  const retriesMax = prng.int(0, scheduleBounds.retriesMax);
  const kind = prng.weighted(opWeights);
  if (kind === "sweep") return { kind, bank: prng.pick(banks), ...timing };
  if (kind === "batch") {
    const payer = prng.pick(orders.accounts);
    const batch: PaymentDetails[] = [];
    const size = prng.int(scheduleBounds.batchOrdersMin, scheduleBounds.batchOrdersMax);
    for (let index = 0; index < size; index += 1) {
      const orderKind = prng.weighted(orderWeights);
      const repeated = orderKind === "repeat" && batch.length > 0 ? prng.pick(batch) : undefined;
      const replayed = orderKind === "replay" ? orders.usedBy(payer) : undefined;
      batch.push(
        repeated ??
          replayed ??
          orders.fresh(payer, orderKind === "same-bank" || orderKind === "over-balance" ? orderKind : "cross-bank"),
      );
    }
    return { kind: "batch", orders: batch, retriesMax, ...timing };
  }
  const order = kind === "replay" ? orders.used() : undefined;
  return {
    kind: "pay",
    order: order ?? orders.fresh(prng.pick(orders.accounts), kind === "replay" ? "cross-bank" : kind),
    retriesMax,
    ...timing,
  };
}

function drawFaults(prng: Prng, banks: readonly string[], opCount: number): Fault[] {
  const count = Number(prng.weighted(faultCountWeights));
  return Array.from({ length: count }, () => {
    const target = prng.chance(0.45) ? "gateway" : prng.pick(banks);
    const eventsMax =
      opCount * (target === "gateway" ? scheduleBounds.gatewayEventsPerOp : scheduleBounds.bankEventsPerOp);
    return {
      target,
      atEvent: prng.int(1, eventsMax),
      tear: prng.chance(0.3),
      keep: prng.chance(0.25) ? prng.int(1, 3) : 0,
      downTicks: prng.chance(0.8)
        ? prng.int(0, scheduleBounds.downTicksShortMax)
        : prng.int(scheduleBounds.downTicksShortMax + 1, scheduleBounds.downTicksLongMax),
    };
  });
}

/** New payments and the ones already drawn (for replays of a used id, with the same details). */
class OrderSource {
  readonly accounts: readonly SimAccount[];
  readonly #prng: Prng;
  readonly #seed: number;
  readonly #drawn: PaymentDetails[] = [];

  constructor(seed: number, prng: Prng, accounts: readonly SimAccount[]) {
    this.#seed = seed;
    this.#prng = prng;
    this.accounts = accounts;
  }

  fresh(payer: SimAccount, kind: "cross-bank" | "same-bank" | "over-balance"): PaymentDetails {
    const others = this.accounts.filter(
      (account) =>
        account !== payer && (kind === "over-balance" || (kind === "same-bank") === (account.bank === payer.bank)),
    );
    const payee = this.#prng.pick(others.length > 0 ? others : this.accounts.filter((account) => account !== payer));
    const amountMinor =
      kind === "over-balance"
        ? payer.initialMinor + BigInt(this.#prng.int(1, 5_000))
        : BigInt(this.#prng.int(1, Number(payer.initialMinor / 4n)));
    const details = {
      paymentId: `s${this.#seed}-p${this.#drawn.length + 1}`,
      fromUser: payer.user,
      fromBank: payer.bank,
      toUser: payee.user,
      toBank: payee.bank,
      amountMinor,
    };
    this.#drawn.push(details);
    return details;
  }

  used(): PaymentDetails | undefined {
    return this.#drawn.length === 0 ? undefined : this.#prng.pick(this.#drawn);
  }

  usedBy(payer: SimAccount): PaymentDetails | undefined {
    const mine = this.#drawn.filter((details) => details.fromUser === payer.user && details.fromBank === payer.bank);
    return mine.length === 0 ? undefined : this.#prng.pick(mine);
  }
}
