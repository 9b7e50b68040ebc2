// The gateway's registry of banks: name → its instances' addresses, each with a mutually authenticated client.
import type * as grpc from "@grpc/grpc-js";
import { Bank } from "../../gen/paynet/v1/paynet_pb.js";
import { LegKind } from "../../gen/paynet/v1/paynet_pb.js";
import { LegBatcher } from "./leg-batcher.js";
import { batchLegsMax, type LegResultColumns } from "../bank/bank-service.js";
import { isReason } from "../domain/errors.js";
import { createClient, type ServiceClient } from "../transport/rpc.js";
import { expectServerName } from "../transport/tls.js";
import { bankServerName } from "../transport/identity.js";
import type { BankDirectory, PrepareLeg } from "./bank-link.js";
import { BankInstances, instanceBounds, type InstanceCalls } from "./bank-instances.js";
import { readFile } from "node:fs/promises";
import { PaymentError } from "../domain/errors.js";
import { writeFileAtomic } from "../durable/files.js";
import { GroupCommit } from "../durable/group-commit.js";
import { validateAddress, validateBankName } from "../domain/validate.js";

type BankClient = ServiceClient<(typeof Bank)["method"]>;

export type BankCalls = InstanceCalls;

/**
 * Legs bound for one bank share batch calls; see LegBatcher. One call in flight per kind of leg (prepare,
 * commit, abort) and bank: the legs that arrive meanwhile go together in the next, so under load each call,
 * and each of the bank's fsyncs, carries more of them. Measured against 4 in flight (docs/benchmarks-history.md, c36eb9f):
 * 64 clients one payment per call 17–21 % more committed/s, and batched calls as fast or faster.
 * While the line is busy, a call that is not full waits 2 ms for more legs: each call costs both ends far
 * more CPU than a leg in it. Ten interleaved pairs, 64 clients one per call: faster in eight and cheaper
 * per payment in eight, about 15 % each way at the median (docs/benchmarks-history.md, "bank calls linger").
 */
const batchLingerMs = 2;
const batching = { legsMax: batchLegsMax, inFlightMax: 1, lingerMs: batchLingerMs };

/**
 * Each leg's outcome from a batch's result columns: its refusal, or its balance after (0 when the batch
 * carries none). A reply that does not match the legs sent is an error.
 */
export function legResults(
  paymentIds: readonly string[],
  results: LegResultColumns,
  options: { balances: boolean },
): Array<bigint | PaymentError> {
  const { refusedLegs, refusedReasons, refusedMessages, balancesAfterMinor } = results;
  const count = paymentIds.length;
  const balancesExpected = options.balances ? count : 0;
  if (
    refusedReasons.length !== refusedLegs.length ||
    refusedMessages.length !== refusedLegs.length ||
    balancesAfterMinor.length !== balancesExpected
  ) {
    throw new PaymentError(
      "INTERNAL",
      `a batch of ${count} legs got ${refusedLegs.length}/${refusedReasons.length}/${refusedMessages.length} refusal entries and ${balancesAfterMinor.length} balances`,
    );
  }
  const outcomes: Array<bigint | PaymentError> = options.balances
    ? [...balancesAfterMinor]
    : new Array<bigint>(count).fill(0n);
  let previous = -1;
  refusedLegs.forEach((leg, index) => {
    if (leg <= previous || leg >= count)
      throw new PaymentError("INTERNAL", `a batch of ${count} legs named refused leg ${leg} after ${previous}`);
    previous = leg;
    const reason = refusedReasons[index]!;
    outcomes[leg] = new PaymentError(isReason(reason) ? reason : "INTERNAL", refusedMessages[index]!, {
      paymentId: paymentIds[leg]!,
    });
  });
  return outcomes;
}

function linkOf(client: BankClient): BankCalls {
  const prepares = new LegBatcher<PrepareLeg, bigint>(async (legs, timeoutMs) => {
    const paymentIds = legs.map((leg) => leg.paymentId);
    const request = {
      paymentIds,
      usernames: legs.map((leg) => leg.username),
      kinds: legs.map((leg) => (leg.kind === "debit" ? LegKind.DEBIT : LegKind.CREDIT)),
      amountsMinor: legs.map((leg) => leg.amountMinor),
    };
    return legResults(paymentIds, await client.prepareBatch(request, { timeoutMs }), { balances: false });
  }, batching);
  const commits = new LegBatcher<string, bigint>(
    async (paymentIds, timeoutMs) =>
      legResults(paymentIds, await client.commitBatch({ paymentIds }, { timeoutMs }), { balances: true }),
    batching,
  );
  const aborts = new LegBatcher<string, bigint>(
    async (paymentIds, timeoutMs) =>
      legResults(paymentIds, await client.abortBatch({ paymentIds }, { timeoutMs }), { balances: false }),
    batching,
  );
  const errorsOnly = (results: Array<bigint | PaymentError>) =>
    results.map((result) => (result instanceof PaymentError ? result : null));
  return {
    prepareAll: async (legs, timeoutMs) => errorsOnly(await prepares.submitAll(legs, timeoutMs)),
    commitAll: (paymentIds, timeoutMs) => commits.submitAll(paymentIds, timeoutMs),
    abortAll: async (paymentIds, timeoutMs) => errorsOnly(await aborts.submitAll(paymentIds, timeoutMs)),
    transfer: async (paymentId, fromUser, toUser, amountMinor, begunAtMs, timeoutMs) =>
      (
        await client.transaction(
          { paymentId, fromUser, toUser, amountMinor, begunAtMs: BigInt(begunAtMs) },
          { timeoutMs },
        )
      ).fromBalanceAfterMinor,
    // Not batched: rare, and the bank must know it settles a transfer (see Participant.settleTransfer).
    settleTransfer: async (paymentId, begunAtMs, timeoutMs) => {
      await client.abort({ paymentId, settlesTransfer: true, begunAtMs: BigInt(begunAtMs) }, { timeoutMs });
    },
    holds: async (timeoutMs) =>
      (await client.getHolds({}, { timeoutMs })).holds.map((hold) => ({
        paymentId: hold.paymentId,
        preparedAtMs: Number(hold.preparedAtMs),
      })),
    authenticate: async (username, password, timeoutMs) => {
      await client.authenticateUser({ username, password }, { timeoutMs });
    },
    balance: async (username, timeoutMs) => {
      const reply = await client.sendBalanceReq({ username }, { timeoutMs });
      return { balanceMinor: reply.balanceMinor, availableMinor: reply.availableMinor };
    },
  };
}

const formatTag = "paynet-banks/1";

/** A bank in banks.json: its instances' last addresses (`address` alone in files of earlier builds). */
interface SavedBank {
  address?: unknown;
  addresses?: unknown;
}

/**
 * The gateway's registry of banks, each with its live instances (bank-instances.ts). Names and last addresses
 * persist in payment_gateway/banks.json, so a restarted gateway knows every bank at once (and can drive
 * unfinished payments) before they re-register.
 */
export class BankRegistry implements BankDirectory {
  readonly #banks = new Map<string, BankInstances>();
  /** Banks that registered with this process (not only restored from the file). */
  readonly #confirmed = new Set<string>();
  readonly #credentials: grpc.ChannelCredentials;
  readonly #path: string;
  readonly #banksMax: number;
  readonly #nowMs: () => number;
  readonly #writer = new GroupCommit(() => this.#writeSnapshot());

  private constructor(
    path: string,
    credentials: grpc.ChannelCredentials,
    options: { banksMax: number; nowMs?: () => number },
  ) {
    this.#path = path;
    this.#credentials = credentials;
    this.#banksMax = options.banksMax;
    this.#nowMs = options.nowMs ?? Date.now;
  }

  static async open(
    path: string,
    credentials: grpc.ChannelCredentials,
    options: { banksMax: number; nowMs?: () => number },
  ): Promise<BankRegistry> {
    const registry = new BankRegistry(path, credentials, options);
    const text = await readFile(path, "utf8").catch((error: NodeJS.ErrnoException) => {
      if (error.code === "ENOENT") return "";
      throw error;
    });
    if (text.trim() === "") return registry;
    let document: { format?: unknown; banks?: unknown };
    try {
      document = JSON.parse(text) as typeof document;
    } catch (error) {
      throw new Error(
        `${path}: not valid JSON (truncated or corrupt?): ${(error as Error).message}; refusing to start`,
        { cause: error },
      );
    }
    if (document.format !== formatTag || typeof document.banks !== "object" || document.banks === null)
      throw new Error(`${path}: not a ${formatTag} document; refusing to start`);
    for (const [bank, entry] of Object.entries(document.banks as Record<string, SavedBank | null>)) {
      validateBankName(bank, `${path}: bank`);
      const addresses = Array.isArray(entry?.addresses) ? entry.addresses : [entry?.address];
      for (const address of addresses.slice(0, instanceBounds.instancesMax))
        registry.#connect(bank, validateAddress(String(address), `${path}: address of ${bank}`), 0);
    }
    return registry;
  }

  /**
   * Registers an instance of a bank, or refreshes it (the heartbeat); returns whether this is a new instance
   * for this process (the bank's first registration, or another address). Instances silent for
   * silenceMsMax are dropped meanwhile; at most instancesMax per bank.
   */
  async register(bank: string, address: string): Promise<boolean> {
    const instances = this.#banks.get(bank);
    const first = !this.#confirmed.has(bank);
    this.#confirmed.add(bank);
    const nowMs = this.#nowMs();
    const existing = instances?.find(address);
    if (existing !== undefined) {
      existing.lastSeenMs = nowMs;
      existing.avoidUntilMs = 0;
      const dropped = instances!.dropSilent();
      if (dropped > 0) await this.#persist();
      return first;
    }
    if (instances === undefined && this.#banks.size >= this.#banksMax)
      throw new PaymentError("PERMISSION_DENIED", `at most ${this.#banksMax} banks may register`);
    instances?.dropSilent();
    if (instances !== undefined && instances.list().length >= instanceBounds.instancesMax)
      throw new PaymentError(
        "PERMISSION_DENIED",
        `at most ${instanceBounds.instancesMax} instances of bank ${bank} may register (those heard from within ${instanceBounds.silenceMsMax} ms count)`,
      );
    this.#connect(bank, address, nowMs);
    await this.#persist();
    return true;
  }

  #connect(bank: string, address: string, lastSeenMs: number): void {
    let instances = this.#banks.get(bank);
    if (instances === undefined) {
      instances = new BankInstances(bank, this.#nowMs);
      this.#banks.set(bank, instances);
    }
    if (instances.find(address) !== undefined) return;
    const client = createClient(
      Bank,
      address,
      this.#credentials,
      expectServerName(bankServerName(bank)),
      "BANK_UNAVAILABLE",
      `bank ${bank}`,
    );
    instances.add({ address, calls: linkOf(client), lastSeenMs, avoidUntilMs: 0, close: () => client.close() });
  }

  /** Snapshots are taken when each write starts and writes never overlap, so the last write is the newest. */
  #persist(): Promise<void> {
    return this.#writer.flush();
  }

  #writeSnapshot(): Promise<void> {
    const banks = Object.fromEntries(
      [...this.#banks].map(([bank, instances]) => {
        const addresses = instances.list().map((instance) => instance.address);
        return [bank, { address: addresses[0], addresses }];
      }),
    );
    return writeFileAtomic(this.#path, JSON.stringify({ format: formatTag, banks }, null, 1) + "\n");
  }

  /** The bank's link over its instances (failing over between them), or null if it never registered. */
  link(bank: string): BankCalls | null {
    return this.#banks.get(bank) ?? null;
  }

  names(): string[] {
    return [...this.#banks.keys()];
  }

  /**
   * Each bank's instances: address, when each last registered with this process (0: only restored from the
   * file), and a link to that instance alone (for status).
   */
  entries(): Array<{ bank: string; instances: Array<{ address: string; lastSeenMs: number; calls: BankCalls }> }> {
    return [...this.#banks].map(([bank, instances]) => ({
      bank,
      instances: instances.list().map((instance) => ({
        address: instance.address,
        lastSeenMs: this.#confirmed.has(bank) ? instance.lastSeenMs : 0,
        calls: instance.calls,
      })),
    }));
  }

  close(): void {
    for (const instances of this.#banks.values()) instances.close();
    this.#banks.clear();
  }
}
