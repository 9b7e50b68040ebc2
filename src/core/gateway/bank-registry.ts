// The gateway's registry of banks: name → address and a mutually authenticated client to it.
import type * as grpc from "@grpc/grpc-js";
import { Bank } from "../../gen/paynet/v1/paynet_pb.js";
import { LegKind } from "../../gen/paynet/v1/paynet_pb.js";
import { LegBatcher } from "./leg-batcher.js";
import { batchLegsMax, type LegResultColumns } from "../bank/bank-service.js";
import { isReason } from "../domain/errors.js";
import { createClient, type ServiceClient } from "../transport/rpc.js";
import { expectServerName } from "../transport/tls.js";
import { bankServerName } from "../transport/identity.js";
import type { BankDirectory, BankLink, PrepareLeg } from "./bank-link.js";
import { readFile } from "node:fs/promises";
import { PaymentError } from "../domain/errors.js";
import { writeFileAtomic } from "../durable/files.js";
import { GroupCommit } from "../durable/group-commit.js";
import { validateAddress, validateBankName } from "../domain/validate.js";

type BankClient = ServiceClient<(typeof Bank)["method"]>;

interface RegisteredBank {
  address: string;
  client: BankClient;
  link: BankLink;
  lastSeenMs: number;
}

export interface BankCalls extends BankLink {
  holds(timeoutMs: number): Promise<Array<{ paymentId: string; preparedAtMs: number }>>;
  authenticate(username: string, password: string, timeoutMs: number): Promise<void>;
  balance(username: string, timeoutMs: number): Promise<{ balanceMinor: bigint; availableMinor: bigint }>;
}

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

/**
 * The gateway's registry of banks. Names and last addresses persist in payment_gateway/banks.json, so a
 * restarted gateway knows every bank at once (and can drive unfinished payments) before they re-register.
 */
export class BankRegistry implements BankDirectory {
  readonly #banks = new Map<string, RegisteredBank>();
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
    for (const [bank, entry] of Object.entries(document.banks as Record<string, { address?: unknown }>)) {
      validateBankName(bank, `${path}: bank`);
      registry.#connect(bank, validateAddress(String(entry?.address), `${path}: address of ${bank}`));
    }
    return registry;
  }

  /** Registers or refreshes a bank; returns whether this is its first registration with this process. */
  async register(bank: string, address: string): Promise<boolean> {
    const existing = this.#banks.get(bank);
    const first = !this.#confirmed.has(bank);
    this.#confirmed.add(bank);
    if (existing !== undefined && existing.address === address) {
      existing.lastSeenMs = this.#nowMs();
      return first;
    }
    if (existing === undefined && this.#banks.size >= this.#banksMax)
      throw new PaymentError("PERMISSION_DENIED", `at most ${this.#banksMax} banks may register`);
    this.#connect(bank, address);
    await this.#persist();
    return true;
  }

  #connect(bank: string, address: string): void {
    this.#banks.get(bank)?.client.close();
    const client = createClient(
      Bank,
      address,
      this.#credentials,
      expectServerName(bankServerName(bank)),
      "BANK_UNAVAILABLE",
      `bank ${bank}`,
    );
    this.#banks.set(bank, { address, client, link: linkOf(client), lastSeenMs: this.#nowMs() });
  }

  /** Snapshots are taken when each write starts and writes never overlap, so the last write is the newest. */
  #persist(): Promise<void> {
    return this.#writer.flush();
  }

  #writeSnapshot(): Promise<void> {
    const banks = Object.fromEntries([...this.#banks].map(([bank, entry]) => [bank, { address: entry.address }]));
    return writeFileAtomic(this.#path, JSON.stringify({ format: formatTag, banks }, null, 1) + "\n");
  }

  link(bank: string): BankCalls | null {
    return (this.#banks.get(bank)?.link as BankCalls | undefined) ?? null;
  }

  names(): string[] {
    return [...this.#banks.keys()];
  }

  /** Each bank's address and when it last registered with this process (0: only restored from the file). */
  entries(): Array<{ bank: string; address: string; lastSeenMs: number }> {
    return [...this.#banks].map(([bank, entry]) => ({
      bank,
      address: entry.address,
      lastSeenMs: this.#confirmed.has(bank) ? entry.lastSeenMs : 0,
    }));
  }

  close(): void {
    for (const bank of this.#banks.values()) bank.client.close();
    this.#banks.clear();
  }
}
