// A client's connection to the gateway: mTLS with the client certificate, gateway name checked, deadlines on every call.
import { PaymentGateway } from "../gen/paynet/v1/paynet_pb.js";
import { createClient, type ServiceClient } from "./rpc.js";
import { clientCredentials, expectServerName } from "./tls.js";
import { gatewayServerName } from "./identity.js";
import { PaymentError } from "./errors.js";
import type { LoadedIdentity } from "./certificates.js";

export const clientTimeouts = Object.freeze({ loginTimeoutMs: 10_000, balanceTimeoutMs: 10_000, paymentTimeoutMs: 20_000 });

export interface BalanceResult {
  username: string;
  bank: string;
  balanceMinor: bigint;
  availableMinor: bigint;
}

export interface PaymentResult {
  paymentId: string;
  balanceAfterMinor: bigint | null;
}

export class GatewayClient {
  readonly #client: ServiceClient<(typeof PaymentGateway)["method"]>;
  #token: string | null = null;

  constructor(address: string, identity: LoadedIdentity) {
    this.#client = createClient(PaymentGateway, address, clientCredentials(identity), expectServerName(gatewayServerName), "GATEWAY_UNAVAILABLE");
  }

  async login(username: string, bank: string, password: string): Promise<void> {
    const reply = await this.#client.registerClient({ username, bank, password }, { timeoutMs: clientTimeouts.loginTimeoutMs });
    this.#token = reply.token;
  }

  logout(): void {
    this.#token = null;
  }

  async balance(): Promise<BalanceResult> {
    const reply = await this.#client.viewBalance({ token: this.#requireToken() }, { timeoutMs: clientTimeouts.balanceTimeoutMs });
    return { username: reply.username, bank: reply.bank, balanceMinor: reply.balanceMinor, availableMinor: reply.availableMinor };
  }

  async pay(paymentId: string, toUser: string, toBank: string, amountMinor: bigint): Promise<PaymentResult> {
    const token = this.#requireToken();
    const reply = await this.#client.makePayment({ token, paymentId, toUser, toBank, amountMinor }, { timeoutMs: clientTimeouts.paymentTimeoutMs });
    return { paymentId: reply.paymentId, balanceAfterMinor: reply.balanceAfterMinor ?? null };
  }

  close(): void {
    this.#client.close();
  }

  #requireToken(): string {
    if (this.#token === null) throw new PaymentError("UNAUTHENTICATED", "not logged in");
    return this.#token;
  }

}
