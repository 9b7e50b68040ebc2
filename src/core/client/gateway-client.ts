// A client's connection to the gateways: mTLS with the client certificate, gateway name checked, deadlines on
// every call, and failover: a call the gateway in use did not answer (unreachable, or no answer by the deadline)
// goes to the next gateway of the list, with the same payment id and the same session token (tokens are signed
// with the key every gateway of the network shares, so any of them accepts it).
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

/**
 * With several gateways, how long a call waits for a connection to one that is still being made before it tries the
 * next. A hung gateway (stopped, or swamped) still accepts TCP connections in its kernel but never completes the
 * TLS handshake: without this, each call would wait its whole deadline (10 s for a login) before moving on. Nothing
 * was sent to the one skipped, so moving on is safe for a payment too.
 */
export const connectWaitMs = 3_000;

export interface GatewayClientOptions {
  /** Told when a call skips a gateway that did not connect within connectWaitMs, and which one it tries next. */
  onSkipped?: (address: string, next: string) => void;
}

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

type GatewayRpc = ServiceClient<(typeof PaymentGateway)["method"]>;

/** A failure that says nothing of the gateway's answer, only that there was none: another gateway may answer. */
function isFailoverError(error: unknown): error is PaymentError {
  return (
    error instanceof PaymentError && !error.final && (error.code === "GATEWAY_UNAVAILABLE" || error.code === "TIMEOUT")
  );
}

export class GatewayClient {
  /** One channel per gateway, in the list's order; at most gatewayAddressesMax (validated by the caller's parser). */
  readonly #clients: GatewayRpc[];
  readonly #addresses: readonly string[];
  /** The gateway calls go to first: the last one that answered. */
  #current = 0;
  #token: string | null = null;
  /**
   * Kept in memory after a successful login, for as long as this client lives: a restarted gateway (or an
   * expired session) forgets the token, and one silent login again lets the call go through.
   */
  #credentials: { username: string; bank: string; password: string } | null = null;

  readonly #identity: LoadedIdentity;
  readonly #onSkipped: GatewayClientOptions["onSkipped"];

  /** `addresses`: the gateways in the order to try them (at least one). */
  constructor(addresses: string | readonly string[], identity: LoadedIdentity, options: GatewayClientOptions = {}) {
    this.#addresses = typeof addresses === "string" ? [addresses] : [...addresses];
    if (this.#addresses.length === 0) throw new Error("GatewayClient: no gateway address");
    this.#identity = identity;
    this.#onSkipped = options.onSkipped;
    this.#clients = this.#addresses.map((address) =>
      createClient(
        PaymentGateway,
        address,
        clientCredentials(identity),
        { ...expectServerName(gatewayServerName), "grpc.max_reconnect_backoff_ms": reconnectBackoffMaxMs },
        "GATEWAY_UNAVAILABLE",
      ),
    );
  }

  /** The gateway calls go to now (the last that answered). */
  get address(): string {
    return this.#addresses[this.#current]!;
  }

  get addresses(): readonly string[] {
    return this.#addresses;
  }

  /**
   * Tries the call at each gateway once, from the current one on, moving on when one did not answer
   * (unreachable or past the deadline); the one that answers becomes current. Transport failures read as
   * "cannot reach the gateway", not as grpc-js internals; a failed TLS handshake is a CertificateError instead,
   * since no wait, retry or other gateway of the same network would fix it.
   */
  async #call<T>(call: (client: GatewayRpc) => Promise<T>): Promise<T> {
    let lastError: PaymentError | null = null;
    for (let tried = 0; tried < this.#clients.length; tried += 1) {
      const index = (this.#current + tried) % this.#clients.length;
      if (this.#clients.length > 1 && (await this.#stillConnecting(index))) {
        const address = this.#addresses[index]!;
        lastError = new PaymentError(
          "GATEWAY_UNAVAILABLE",
          `cannot reach any of the gateways ${this.#addresses.join(", ")} (${address} did not connect within ${connectWaitMs} ms)`,
        );
        if (tried + 1 < this.#clients.length)
          this.#onSkipped?.(address, this.#addresses[(index + 1) % this.#clients.length]!);
        continue;
      }
      try {
        const result = await call(this.#clients[index]!);
        this.#current = index;
        return result;
      } catch (error) {
        if (!isFailoverError(error)) throw error;
        lastError = error.code === "GATEWAY_UNAVAILABLE" ? await this.#explainUnavailable(index, error) : error;
      }
    }
    // Next time, start from the gateway after the one tried first: the first in the list is not always the best bet.
    this.#current = (this.#current + 1) % this.#clients.length;
    throw lastError!;
  }

  /**
   * Whether gateway `index`'s channel is still connecting (idle, or mid-handshake) after connectWaitMs. A READY
   * channel goes at once; one in TRANSIENT_FAILURE too: the call then fails at once, as a refused connection does.
   */
  async #stillConnecting(index: number): Promise<boolean> {
    const channel = this.#clients[index]!.channel.getChannel();
    const deadlineMs = Date.now() + connectWaitMs;
    for (;;) {
      let state: connectivityState;
      try {
        state = channel.getConnectivityState(true);
      } catch {
        return false; // closed: the call itself reports it
      }
      if (state !== connectivityState.IDLE && state !== connectivityState.CONNECTING) return false;
      if (Date.now() >= deadlineMs) return true;
      await new Promise<void>((resolve) => channel.watchConnectivityState(state, deadlineMs, () => resolve()));
    }
  }

  /** grpc-js says UNAVAILABLE for a refused handshake too: one plain TLS connection tells which it was. */
  async #explainUnavailable(index: number, error: PaymentError): Promise<PaymentError> {
    const address = this.#addresses[index]!;
    const probe = await probeTls(address, this.#identity, gatewayServerName, tlsProbeTimeoutMs);
    switch (probe.outcome) {
      case "refused-by-peer":
        throw new CertificateError(
          `the gateway at ${address} refused the TLS handshake (${probe.detail}): our client certificate is not signed by its CA`,
          { cause: error },
        );
      case "peer-not-trusted":
        throw new CertificateError(
          `the gateway at ${address} presented a certificate our CA did not sign (${probe.detail})`,
          { cause: error },
        );
      case "accepted":
      case "unreachable":
        return new PaymentError(
          "GATEWAY_UNAVAILABLE",
          this.#addresses.length === 1
            ? `cannot reach the gateway at ${address}`
            : `cannot reach any of the gateways ${this.#addresses.join(", ")}`,
          { cause: error },
        );
    }
  }

  async login(username: string, bank: string, password: string): Promise<void> {
    const reply = await this.#call((client) =>
      client.registerClient({ username, bank, password }, { timeoutMs: clientTimeouts.loginTimeoutMs }),
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
  async #withSession<T>(call: (client: GatewayRpc, token: string) => Promise<T>): Promise<T> {
    const token = this.#requireToken();
    try {
      return await this.#call((client) => call(client, token));
    } catch (error) {
      const credentials = this.#credentials;
      if (!(error instanceof PaymentError) || error.code !== "UNAUTHENTICATED" || credentials === null) throw error;
      await this.login(credentials.username, credentials.bank, credentials.password);
      return await this.#call((client) => call(client, this.#requireToken()));
    }
  }

  async balance(): Promise<BalanceResult> {
    const reply = await this.#withSession((client, token) =>
      client.viewBalance({ token }, { timeoutMs: clientTimeouts.balanceTimeoutMs }),
    );
    return {
      username: reply.username,
      bank: reply.bank,
      balanceMinor: reply.balanceMinor,
      availableMinor: reply.availableMinor,
    };
  }

  async pay(paymentId: string, toUser: string, toBank: string, amountMinor: bigint): Promise<PaymentResult> {
    const reply = await this.#withSession((client, token) =>
      client.makePayment(
        { token, paymentId, toUser, toBank, amountMinor },
        { timeoutMs: clientTimeouts.paymentTimeoutMs },
      ),
    );
    return { paymentId: reply.paymentId, balanceAfterMinor: reply.balanceAfterMinor ?? null };
  }

  /**
   * Resolves true once a channel to one of the gateways is READY (grpc-js connectivity), which becomes the
   * current one; false at the deadline.
   */
  waitForReady(timeoutMs: number): Promise<boolean> {
    const deadline = new Date(Date.now() + timeoutMs);
    return new Promise((resolve) => {
      let pending = this.#clients.length;
      let settled = false;
      this.#clients.forEach((client, index) =>
        client.channel.waitForReady(deadline, (error) => {
          pending -= 1;
          if (settled) return;
          if (error === undefined || error === null) {
            settled = true;
            this.#current = index;
            resolve(true);
          } else if (pending === 0) {
            settled = true;
            resolve(false);
          }
        }),
      );
    });
  }

  /**
   * Whether a channel to one of the gateways is READY now (the current one preferred; another READY one becomes
   * current); asking starts a connection attempt on idle channels. Null once closed.
   */
  connectionReady(): boolean | null {
    try {
      const states = this.#clients.map((client) => client.channel.getChannel().getConnectivityState(true));
      if (states[this.#current] === connectivityState.READY) return true;
      const ready = states.indexOf(connectivityState.READY);
      if (ready < 0) return false;
      this.#current = ready;
      return true;
    } catch {
      return null; // grpc-js throws once the channel is closed
    }
  }

  /** Resolves when any channel's state changes, or after timeoutMs; at once when the channels are closed. */
  connectionChange(timeoutMs: number): Promise<void> {
    return new Promise((resolve) => {
      try {
        for (const client of this.#clients) {
          const channel = client.channel.getChannel();
          channel.watchConnectivityState(channel.getConnectivityState(false), Date.now() + timeoutMs, () => resolve());
        }
      } catch {
        resolve();
      }
    });
  }

  get loggedIn(): boolean {
    return this.#token !== null;
  }

  close(): void {
    for (const client of this.#clients) client.close();
  }

  #requireToken(): string {
    if (this.#token === null) throw new PaymentError("UNAUTHENTICATED", "not logged in");
    return this.#token;
  }
}
