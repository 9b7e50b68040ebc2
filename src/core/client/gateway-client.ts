// A client's connection to the gateway: mTLS with the client certificate, gateway name checked, deadlines on every call.
import { connectivityState } from "@grpc/grpc-js";
import { PaymentGateway } from "../../gen/paynet/v1/paynet_pb.js";
import { createClient, type ServiceClient } from "../transport/rpc.js";
import { clientCredentials, expectServerName } from "../transport/tls.js";
import { gatewayServerName } from "../transport/identity.js";
import { PaymentError } from "../domain/errors.js";
import type { LoadedIdentity } from "../transport/certificates.js";
import { CertificateError } from "../transport/certificate-error.js";
import { probeTls } from "../transport/tls-probe.js";

export const clientTimeouts = Object.freeze({
  loginTimeoutMs: 10_000,
  balanceTimeoutMs: 10_000,
  paymentTimeoutMs: 20_000,
});

/**
 * grpc-js backs off up to 120 s between connection attempts by default; a client waiting for the gateway
 * (the interactive client, `sync --watch`) should notice it back within seconds.
 */
const reconnectBackoffMaxMs = 5_000;

/** How long the TLS probe that explains a failed connection may take (see #explainUnavailable). */
const tlsProbeTimeoutMs = 3_000;

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
  /**
   * Kept in memory after a successful login, for as long as this client lives: a restarted gateway (or an
   * expired session) forgets the token, and one silent login again lets the call go through.
   */
  #credentials: { username: string; bank: string; password: string } | null = null;

  readonly #identity: LoadedIdentity;

  readonly address: string;

  constructor(address: string, identity: LoadedIdentity) {
    this.address = address;
    this.#identity = identity;
    this.#client = createClient(
      PaymentGateway,
      address,
      clientCredentials(identity),
      { ...expectServerName(gatewayServerName), "grpc.max_reconnect_backoff_ms": reconnectBackoffMaxMs },
      "GATEWAY_UNAVAILABLE",
    );
  }

  /**
   * Transport failures read as "cannot reach the gateway", not as grpc-js internals; a failed TLS handshake
   * is a CertificateError instead, since no wait or retry would fix it.
   */
  async #call<T>(call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (error) {
      if (error instanceof PaymentError && error.code === "GATEWAY_UNAVAILABLE")
        throw await this.#explainUnavailable(error);
      throw error;
    }
  }

  /** grpc-js says UNAVAILABLE for a refused handshake too: one plain TLS connection tells which it was. */
  async #explainUnavailable(error: PaymentError): Promise<Error> {
    const probe = await probeTls(this.address, this.#identity, gatewayServerName, tlsProbeTimeoutMs);
    switch (probe.outcome) {
      case "refused-by-peer":
        return new CertificateError(
          `the gateway at ${this.address} refused the TLS handshake (${probe.detail}): our client certificate is not signed by its CA`,
          { cause: error },
        );
      case "peer-not-trusted":
        return new CertificateError(
          `the gateway at ${this.address} presented a certificate our CA did not sign (${probe.detail})`,
          { cause: error },
        );
      case "accepted":
      case "unreachable":
        return new PaymentError("GATEWAY_UNAVAILABLE", `cannot reach the gateway at ${this.address}`, { cause: error });
    }
  }

  async login(username: string, bank: string, password: string): Promise<void> {
    const reply = await this.#call(() =>
      this.#client.registerClient({ username, bank, password }, { timeoutMs: clientTimeouts.loginTimeoutMs }),
    );
    this.#token = reply.token;
    this.#credentials = { username, bank, password };
  }

  logout(): void {
    this.#token = null;
    this.#credentials = null;
  }

  /**
   * A call that needs a session. When the gateway no longer knows the token (it restarted, or the session
   * expired), logs in again once with the kept credentials and retries once: a refused login or a second
   * UNAUTHENTICATED is the answer. Retrying a payment is safe: it carries the same id, and the gateway
   * refused the first attempt before doing anything.
   */
  async #withSession<T>(call: (token: string) => Promise<T>): Promise<T> {
    const token = this.#requireToken();
    try {
      return await this.#call(() => call(token));
    } catch (error) {
      const credentials = this.#credentials;
      if (!(error instanceof PaymentError) || error.code !== "UNAUTHENTICATED" || credentials === null) throw error;
      await this.login(credentials.username, credentials.bank, credentials.password);
      return await this.#call(() => call(this.#requireToken()));
    }
  }

  async balance(): Promise<BalanceResult> {
    const reply = await this.#withSession((token) =>
      this.#client.viewBalance({ token }, { timeoutMs: clientTimeouts.balanceTimeoutMs }),
    );
    return {
      username: reply.username,
      bank: reply.bank,
      balanceMinor: reply.balanceMinor,
      availableMinor: reply.availableMinor,
    };
  }

  async pay(paymentId: string, toUser: string, toBank: string, amountMinor: bigint): Promise<PaymentResult> {
    const reply = await this.#withSession((token) =>
      this.#client.makePayment(
        { token, paymentId, toUser, toBank, amountMinor },
        { timeoutMs: clientTimeouts.paymentTimeoutMs },
      ),
    );
    return { paymentId: reply.paymentId, balanceAfterMinor: reply.balanceAfterMinor ?? null };
  }

  /** Resolves true once the channel to the gateway is READY (grpc-js connectivity), false at the deadline. */
  waitForReady(timeoutMs: number): Promise<boolean> {
    return new Promise((resolve) =>
      this.#client.channel.waitForReady(new Date(Date.now() + timeoutMs), (error) =>
        resolve(error === undefined || error === null),
      ),
    );
  }

  /** Whether the channel is READY now; asking starts a connection attempt when it is idle. Null once closed. */
  connectionReady(): boolean | null {
    try {
      return this.#client.channel.getChannel().getConnectivityState(true) === connectivityState.READY;
    } catch {
      return null; // grpc-js throws once the channel is closed
    }
  }

  /** Resolves when the channel's state changes, or after timeoutMs; at once when the channel is closed. */
  connectionChange(timeoutMs: number): Promise<void> {
    const channel = this.#client.channel.getChannel();
    return new Promise((resolve) => {
      try {
        channel.watchConnectivityState(channel.getConnectivityState(false), Date.now() + timeoutMs, () => resolve());
      } catch {
        resolve();
      }
    });
  }

  get loggedIn(): boolean {
    return this.#token !== null;
  }

  close(): void {
    this.#client.close();
  }

  #requireToken(): string {
    if (this.#token === null) throw new PaymentError("UNAUTHENTICATED", "not logged in");
    return this.#token;
  }
}
