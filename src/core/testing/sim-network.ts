// The power-loss simulator's network, in one process: a gateway (a Coordinator over a MemoryCoordinatorStore)
// and banks (each a Participant over a MemoryLedgerStore), joined by BankLinks that call the participants
// directly after a hop (a microtask or a macrotask). Each process counts its events (its store's writes and
// flushes; the gateway also the replies it receives, a bank the requests it receives) and loses power at the
// counts the schedule names: its store crashes (undurable writes lost), the instance is dropped (everything it
// was doing hangs forever, as in a dead process), and after a few turns it restarts from the durable image.
import { asError, PaymentError } from "../domain/errors.js";
import type { PaymentRecord } from "../domain/payment.js";
import type { Account } from "../domain/ledger.js";
import { Coordinator, type CoordinatorOptions } from "../gateway/coordinator.js";
import type { BankDirectory, BankLink, PrepareLeg } from "../gateway/bank-link.js";
import { MemoryCoordinatorStore, type CoordinatorImage } from "../gateway/store/memory/memory-coordinator-store.js";
import { Participant } from "../bank/participant.js";
import { MemoryLedgerStore, type LedgerImage } from "../bank/store/memory/memory-ledger-store.js";
import { hangForever } from "./simulated-disk.js";
import { silentLogger, type Logger } from "../observability/log.js";
import type { Prng } from "./prng.js";
import type { Fault } from "./sim-schedule.js";

export const simTiming = Object.freeze({
  /** A hold's life in simulated ms; the schedule's clock steps are of the same order, so some holds expire. */
  holdTimeoutMs: 40,
  /** How long a bank waits before asking again about a hold the coordinator called pending. */
  holdRecheckMs: 10,
  /** Far above the payments of one run: a bank never forgets one (the checker's evidence of what it applied). */
  finishedRetainedMax: 100_000,
  /** A start time above 0: a bank's watermark of forgotten transfers starts at 0 (see Participant.settleTransfer). */
  clockStartMs: 1_700_000_000_000,
  /** Chance that a message between processes takes a macrotask rather than a microtask. */
  macrotaskHopChance: 0.3,
});

export interface SimClock {
  nowMs: number;
}

export interface Unsafe {
  /** The first bank's ledger store acknowledges appends before they are durable. */
  ledgerAckBeforeDurable?: boolean;
  /** The coordinator's store acknowledges writes before they are durable. */
  coordinatorAckBeforeDurable?: boolean;
  /** The coordinator's unsafeLogDecisionLate. */
  logDecisionLate?: boolean;
}

/** One life of a process, from a start to its power loss. */
class Incarnation {
  dead = false;
  readonly #error: () => PaymentError;
  /** What the calls in progress get when the process dies: the caller's deadline, simulated. */
  readonly #onDeath = new Set<() => void>();

  constructor(error: () => PaymentError) {
    this.#error = error;
  }

  kill(): void {
    this.dead = true;
    for (const onDeath of this.#onDeath) onDeath();
    this.#onDeath.clear();
  }

  /** `work`'s outcome, or the process's death (a PaymentError) if that comes first. */
  race<T>(work: Promise<T>): Promise<T> {
    if (this.dead) {
      work.catch(() => undefined); // a dead process's work is never answered
      return Promise.reject(this.#error());
    }
    return new Promise<T>((resolve, reject) => {
      const onDeath = () => reject(this.#error());
      this.#onDeath.add(onDeath);
      work.then(
        (value) => {
          this.#onDeath.delete(onDeath);
          resolve(value);
        },
        (error: unknown) => {
          this.#onDeath.delete(onDeath);
          reject(asError(error));
        },
      );
    });
  }
}

export function ticks(count: number): Promise<void> {
  if (count <= 0) return Promise.resolve();
  return new Promise((resolve) => setImmediate(() => resolve(ticks(count - 1))));
}

/** What every process of the network shares. */
export interface SimContext {
  clock: SimClock;
  /** The network's stream: hops. Its draws depend on the order things happen in. */
  network: Prng;
  unsafe: Unsafe;
  /** Programmer errors seen (a non-PaymentError from a participant or the coordinator, a failed restart). */
  failures: string[];
  /** Set when a process could not start: the run stops driving and reports. */
  halted: boolean;
  /** Counts of power losses, per process. */
  crashes: Map<string, number>;
  /** Where the run's story goes when it is replayed for a person (null: nowhere, the default). */
  trace: ((line: string) => void) | null;
}

/** A process's logger: its lines go to the trace, if any. */
function traceLogger(context: SimContext, name: string): Logger {
  const trace = context.trace;
  if (trace === null) return silentLogger;
  const line = (level: string) => (fields: Record<string, unknown>, message: string) =>
    trace(
      `${name} ${level} ${message} ${JSON.stringify(fields, (_, value: unknown) => (typeof value === "bigint" ? value.toString() : value))}`,
    );
  return { info: line("info"), warn: line("warn"), error: line("error"), debug: line("debug") };
}

function describeError(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

/** A PaymentError as it would cross the wire; anything else is a programmer error, recorded and answered INTERNAL. */
function asPaymentError(context: SimContext, where: string, error: unknown): PaymentError {
  if (error instanceof PaymentError) return error;
  context.failures.push(`${where}: ${describeError(error)}`);
  return new PaymentError("INTERNAL", `${where}: ${describeError(error)}`);
}

function hop(context: SimContext): Promise<void> {
  if (context.network.chance(simTiming.macrotaskHopChance)) return ticks(1);
  return Promise.resolve();
}

/** What gateway and bank share: the event count, the schedule's power losses, restarts. */
abstract class SimProcess {
  readonly name: string;
  protected readonly context: SimContext;
  inc: Incarnation;
  up = false;
  events = 0;
  #faults: Fault[];
  #upWaiters: Array<() => void> = [];

  constructor(name: string, context: SimContext, faults: readonly Fault[]) {
    this.name = name;
    this.context = context;
    this.#faults = [...faults].sort((a, b) => a.atEvent - b.atEvent);
    this.inc = new Incarnation(() => this.unavailable());
  }

  abstract unavailable(): PaymentError;
  /** Power loss of the store: returns nothing, keeps the image for the restart. */
  protected abstract loseStore(fault: Fault): void;
  protected abstract boot(inc: Incarnation): Promise<void>;
  /** Called once an incarnation serves. */
  protected onUp(): void {}

  /** One event of this process: the schedule's power loss may strike here, synchronously. */
  event(): void {
    this.events += 1;
    const next = this.#faults[0];
    if (next === undefined || next.atEvent > this.events) return;
    this.#faults.shift();
    this.context.trace?.(`${this.name} loses power at its event ${this.events} (${JSON.stringify(next)})`);
    this.crash(next);
  }

  /** No more power losses (the run heals). */
  disarm(): void {
    this.#faults = [];
  }

  whenUp(): Promise<void> {
    if (this.up || this.context.halted) return Promise.resolve();
    return new Promise((resolve) => this.#upWaiters.push(resolve));
  }

  crash(fault: Fault): void {
    if (this.inc.dead) return;
    this.context.crashes.set(this.name, (this.context.crashes.get(this.name) ?? 0) + 1);
    this.loseStore(fault);
    this.inc.kill();
    this.up = false;
    void ticks(fault.downTicks).then(() => this.start());
  }

  /** Starts a new incarnation over the current store; it serves once booted, unless it died meanwhile. */
  start(): void {
    const inc = new Incarnation(() => this.unavailable());
    this.inc = inc;
    this.boot(inc).then(
      () => {
        if (inc.dead) return;
        this.context.trace?.(`${this.name} serves again`);
        this.up = true;
        this.#wake();
        this.onUp();
      },
      (error: unknown) => {
        if (inc.dead) return;
        this.context.failures.push(`${this.name} could not start: ${describeError(error)}`);
        this.context.halted = true;
        this.#wake();
      },
    );
  }

  #wake(): void {
    for (const wake of this.#upWaiters.splice(0)) wake();
  }
}

export class SimGateway extends SimProcess {
  store: MemoryCoordinatorStore;
  coordinator: Coordinator | null = null;
  readonly #banks: ReadonlyMap<string, SimBank>;
  readonly #options: CoordinatorOptions;
  #image: CoordinatorImage | null = null;

  constructor(context: SimContext, banks: ReadonlyMap<string, SimBank>, faults: readonly Fault[], replyWaitMs: number) {
    super("gateway", context, faults);
    this.#banks = banks;
    // Deadlines are the links' (a dead process's calls fail at once); a retry waits 0 ms, one turn of the
    // event loop (the coordinator's jitter multiplies the delay: 0 keeps it free of Math.random).
    this.#options = {
      prepareTimeoutMs: 1_000,
      decisionCallTimeoutMs: 1_000,
      replyWaitMs,
      retryDelayMinMs: 0,
      retryDelayMaxMs: 0,
      unsafeLogDecisionLate: context.unsafe.logDecisionLate === true,
      nowMs: () => context.clock.nowMs,
    };
    this.store = this.#newStore(null);
  }

  unavailable(): PaymentError {
    return new PaymentError("GATEWAY_UNAVAILABLE", "the gateway lost power");
  }

  protected loseStore(fault: Fault): void {
    this.#image = this.store.crash({ tear: fault.tear, keep: fault.keep });
    this.coordinator = null;
  }

  protected async boot(inc: Incarnation): Promise<void> {
    if (this.#image !== null) this.store = this.#newStore(this.#image);
    this.#image = null;
    const links = new Map(
      [...this.#banks].map(([name, bank]) => [name, new SimBankLink(this.context, this, inc, bank)]),
    );
    const directory: BankDirectory = { link: (bank) => links.get(bank) ?? null };
    const coordinator = new Coordinator(this.store, directory, this.#options, traceLogger(this.context, this.name));
    await inc.race(coordinator.recover());
    this.coordinator = coordinator;
  }

  /** The coordinator's answer to a bank's question, or null when the gateway cannot answer now. */
  async decisionFor(paymentId: string): Promise<"commit" | "abort" | "pending" | null> {
    await hop(this.context);
    const coordinator = this.coordinator;
    if (!this.up || coordinator === null) return null;
    try {
      const decision = await this.inc.race(coordinator.decisionFor(paymentId));
      await hop(this.context);
      return decision;
    } catch (error) {
      asPaymentError(this.context, `gateway decisionFor(${paymentId})`, error);
      return null;
    }
  }

  /** Every record, as the durable image has them. */
  durableRecords(): PaymentRecord[] {
    return MemoryCoordinatorStore.fromImage(this.store.image()).records();
  }

  #newStore(image: CoordinatorImage | null): MemoryCoordinatorStore {
    const options = {
      nowMs: () => this.context.clock.nowMs,
      unsafeAckBeforeDurable: this.context.unsafe.coordinatorAckBeforeDurable === true,
      onEvent: () => this.event(),
    };
    return image === null ? new MemoryCoordinatorStore(options) : MemoryCoordinatorStore.fromImage(image, options);
  }
}

export class SimBank extends SimProcess {
  store: MemoryLedgerStore;
  participant: Participant | null = null;
  readonly #unsafeAck: boolean;
  #image: LedgerImage | null = null;
  /** The gateway this bank asks about its overdue holds (set once the network is built). */
  gateway: SimGateway | null = null;

  constructor(
    name: string,
    context: SimContext,
    accounts: ReadonlyMap<string, Account>,
    faults: readonly Fault[],
    unsafeAck: boolean,
  ) {
    super(name, context, faults);
    this.#unsafeAck = unsafeAck;
    this.store = new MemoryLedgerStore(accounts, this.#storeOptions());
  }

  unavailable(): PaymentError {
    return new PaymentError("BANK_UNAVAILABLE", `bank ${this.name} lost power`);
  }

  protected loseStore(fault: Fault): void {
    this.#image = this.store.crash({ tear: fault.tear, keep: fault.keep });
    this.participant = null;
  }

  protected async boot(inc: Incarnation): Promise<void> {
    if (this.#image !== null) this.store = MemoryLedgerStore.fromImage(this.#image, this.#storeOptions());
    this.#image = null;
    const { clock } = this.context;
    const participant = await inc.race(
      Participant.open(this.store, {
        bank: this.name,
        holdTimeoutMs: simTiming.holdTimeoutMs,
        finishedRetainedMax: simTiming.finishedRetainedMax,
        nowMs: () => clock.nowMs,
        logger: traceLogger(this.context, this.name),
      }),
    );
    // Holds that survived a restart are settled with the coordinator now rather than at their expiry.
    participant.expireAllHolds();
    this.participant = participant;
  }

  /** A restarted bank asks about its restored holds at once (they were all made due at its start). */
  protected override onUp(): void {
    void this.sweep({ all: false });
  }

  /**
   * A bank's question about its overdue holds, as src/roles/bank.ts asks it: each is deferred, the gateway
   * asked, and its decision applied here. `all`: every hold is due now.
   */
  async sweep(options: { all: boolean }): Promise<void> {
    const participant = this.participant;
    const inc = this.inc;
    const gateway = this.gateway;
    if (!this.up || participant === null || gateway === null) return;
    if (options.all) participant.expireAllHolds();
    for (const hold of participant.expiredHolds()) {
      participant.deferHold(hold.paymentId, simTiming.holdRecheckMs);
      const decision = await gateway.decisionFor(hold.paymentId);
      this.context.trace?.(
        `${this.name} asked the gateway about its overdue hold ${hold.paymentId}: ${decision ?? "no answer"}`,
      );
      if (inc.dead) return;
      if (decision === "commit" || decision === "abort") {
        try {
          await inc.race<unknown>(
            decision === "commit" ? participant.commit(hold.paymentId) : participant.abort(hold.paymentId),
          );
        } catch (error) {
          // A refusal is an answer (the decision reached the bank by another way first); a death ends the sweep.
          asPaymentError(this.context, `${this.name} ${decision} of overdue hold ${hold.paymentId}`, error);
          if (inc.dead) return;
        }
      }
    }
  }

  #storeOptions() {
    return {
      finishedRetainedMax: simTiming.finishedRetainedMax,
      unsafeAckBeforeDurable: this.#unsafeAck,
      onEvent: () => this.event(),
    };
  }
}

/** A gateway incarnation's link to one bank: each call after a hop, answered after another, unless someone died. */
class SimBankLink implements BankLink {
  readonly #context: SimContext;
  readonly #gateway: SimGateway;
  readonly #gatewayInc: Incarnation;
  readonly #bank: SimBank;

  constructor(context: SimContext, gateway: SimGateway, gatewayInc: Incarnation, bank: SimBank) {
    this.#context = context;
    this.#gateway = gateway;
    this.#gatewayInc = gatewayInc;
    this.#bank = bank;
  }

  prepareAll(legs: readonly PrepareLeg[]): Promise<Array<PaymentError | null>> {
    return this.#batch("prepare", legs, (participant, leg) =>
      participant.prepare(leg.paymentId, leg.username, leg.kind, leg.amountMinor).then(() => null),
    );
  }

  commitAll(paymentIds: readonly string[]): Promise<Array<bigint | PaymentError>> {
    return this.#batch("commit", paymentIds, (participant, paymentId) => participant.commit(paymentId));
  }

  abortAll(paymentIds: readonly string[]): Promise<Array<PaymentError | null>> {
    return this.#batch("abort", paymentIds, (participant, paymentId) => participant.abort(paymentId).then(() => null));
  }

  async transfer(
    paymentId: string,
    fromUser: string,
    toUser: string,
    amountMinor: bigint,
    begunAtMs: number,
  ): Promise<bigint> {
    const [result] = await this.#batch("transfer", [paymentId], (participant) =>
      participant.transfer(paymentId, fromUser, toUser, amountMinor, begunAtMs),
    );
    if (result instanceof PaymentError) throw result;
    return result as bigint;
  }

  async settleTransfer(paymentId: string, begunAtMs: number): Promise<void> {
    const [result] = await this.#batch("settleTransfer", [paymentId], (participant) =>
      participant.settleTransfer(paymentId, begunAtMs).then(() => null),
    );
    if (result instanceof PaymentError) throw result;
  }

  /** One message carrying `items`, each handled by the participant on its own; one reply with every result. */
  async #batch<I, R>(
    method: string,
    items: readonly I[],
    handle: (participant: Participant, item: I) => Promise<R>,
  ): Promise<Array<R | PaymentError>> {
    await hop(this.#context);
    if (this.#gatewayInc.dead) return hangForever();
    const bank = this.#bank;
    if (bank.up) bank.event();
    const participant = bank.participant;
    let results: Array<R | PaymentError>;
    if (!bank.up || participant === null) {
      results = items.map(() => bank.unavailable());
    } else {
      const inc = bank.inc;
      results = await Promise.all(
        items.map((item) => {
          // Called synchronously, as a server handles a request it has read; its death answers what is left.
          let work: Promise<R>;
          try {
            work = handle(participant, item);
          } catch (error) {
            work = Promise.reject(asError(error));
          }
          return inc
            .race(work)
            .catch((error: unknown) => asPaymentError(this.#context, `${bank.name} ${method}`, error));
        }),
      );
    }
    await hop(this.#context);
    if (this.#gatewayInc.dead) return hangForever();
    this.#gateway.event();
    if (this.#gatewayInc.dead) return hangForever();
    return results;
  }
}
