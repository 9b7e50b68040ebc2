// The gateway's registry of banks: name → address and a mutually authenticated client to it.
import type * as grpc from "@grpc/grpc-js";
import { Bank } from "../gen/paynet/v1/paynet_pb.js";
import { LegKind } from "../gen/paynet/v1/paynet_pb.js";
import { createClient, type ServiceClient } from "./rpc.js";
import { expectServerName } from "./tls.js";
import { bankServerName } from "./identity.js";
import type { BankDirectory, BankLink } from "./coordinator.js";

type BankClient = ServiceClient<(typeof Bank)["method"]>;

interface RegisteredBank {
  address: string;
  client: BankClient;
  link: BankLink;
  lastSeenMs: number;
}

export interface BankCalls extends BankLink {
  authenticate(username: string, password: string, timeoutMs: number): Promise<void>;
  balance(username: string, timeoutMs: number): Promise<{ balanceMinor: bigint; availableMinor: bigint }>;
}

function linkOf(client: BankClient): BankCalls {
  return {
    prepare: async (paymentId, username, kind, amountMinor, timeoutMs) => {
      await client.prepare({ paymentId, username, kind: kind === "debit" ? LegKind.DEBIT : LegKind.CREDIT, amountMinor }, { timeoutMs });
    },
    commit: async (paymentId, timeoutMs) => (await client.commit({ paymentId }, { timeoutMs })).balanceAfterMinor,
    abort: async (paymentId, timeoutMs) => {
      await client.abort({ paymentId }, { timeoutMs });
    },
    transfer: async (paymentId, fromUser, toUser, amountMinor, timeoutMs) =>
      (await client.transaction({ paymentId, fromUser, toUser, amountMinor }, { timeoutMs })).fromBalanceAfterMinor,
    authenticate: async (username, password, timeoutMs) => {
      await client.authenticateUser({ username, password }, { timeoutMs });
    },
    balance: async (username, timeoutMs) => {
      const reply = await client.sendBalanceReq({ username }, { timeoutMs });
      return { balanceMinor: reply.balanceMinor, availableMinor: reply.availableMinor };
    },
  };
}

export class BankRegistry implements BankDirectory {
  readonly #banks = new Map<string, RegisteredBank>();
  readonly #credentials: grpc.ChannelCredentials;
  readonly #banksMax: number;
  readonly #nowMs: () => number;

  constructor(credentials: grpc.ChannelCredentials, options: { banksMax: number; nowMs?: () => number }) {
    this.#credentials = credentials;
    this.#banksMax = options.banksMax;
    this.#nowMs = options.nowMs ?? Date.now;
  }

  /** Registers or refreshes a bank; a new address replaces the old client. Returns whether it was new. */
  register(bank: string, address: string): boolean {
    const existing = this.#banks.get(bank);
    if (existing !== undefined && existing.address === address) {
      existing.lastSeenMs = this.#nowMs();
      return false;
    }
    if (existing === undefined && this.#banks.size >= this.#banksMax) throw new Error(`at most ${this.#banksMax} banks may register`);
    existing?.client.close();
    const client = createClient(Bank, address, this.#credentials, expectServerName(bankServerName(bank)));
    this.#banks.set(bank, { address, client, link: linkOf(client), lastSeenMs: this.#nowMs() });
    return true;
  }

  link(bank: string): BankCalls | null {
    return (this.#banks.get(bank)?.link as BankCalls | undefined) ?? null;
  }

  names(): string[] {
    return [...this.#banks.keys()];
  }

  close(): void {
    for (const bank of this.#banks.values()) bank.client.close();
    this.#banks.clear();
  }
}
