// A bank's links to the gateways: one per gateway of --gateway A,B,… (or of client/current_port_server.txt), each
// registering and heartbeating on its own timer with its own backoff, so that a gateway down or cut off delays
// none of the others. Registration stays per gateway, in each gateway's memory (see README, "Several gateways on
// one database"): whether a gateway can reach a bank is a fact about that pair, which a shared table could not
// tell, and a bank that heartbeats every gateway keeps each one's view true on its own.
import type { ChannelCredentials } from "@grpc/grpc-js";
import { Decision, PaymentGateway } from "../gen/paynet/v1/paynet_pb.js";
import { createClient, type ServiceClient } from "../core/transport/rpc.js";
import { expectServerName } from "../core/transport/tls.js";
import { gatewayServerName } from "../core/transport/identity.js";
import { PaymentError } from "../core/domain/errors.js";
import type { Logger } from "../core/observability/log.js";
import { WaitingNotice } from "./process.js";

export interface GatewayLinkTimeouts {
  heartbeatMs: number;
  reregisterMinMs: number;
  registerTimeoutMs: number;
  decisionQueryTimeoutMs: number;
}

interface Link {
  address: string;
  client: ServiceClient<(typeof PaymentGateway)["method"]>;
  registered: boolean;
  retryMs: number;
  timer: NodeJS.Timeout | null;
  /** `waiting for the gateway at H:P`, once, then at a slow interval while it does not answer. */
  waiting: WaitingNotice;
}

export type GatewayDecision = "commit" | "abort" | "pending";

export class GatewayLinks {
  readonly #links: Link[];
  readonly #bank: string;
  readonly #address: string;
  readonly #timeouts: GatewayLinkTimeouts;
  readonly #logger: Logger;
  #stopped = false;

  /** `gateways`: validated host:port addresses, at most gatewayAddressesMax; `address`: where this bank listens. */
  constructor(
    gateways: readonly string[],
    options: {
      bank: string;
      address: string;
      credentials: ChannelCredentials;
      timeouts: GatewayLinkTimeouts;
      logger: Logger;
    },
  ) {
    this.#bank = options.bank;
    this.#address = options.address;
    this.#timeouts = options.timeouts;
    this.#logger = options.logger;
    this.#links = gateways.map((address) => ({
      address,
      client: createClient(PaymentGateway, address, options.credentials, expectServerName(gatewayServerName)),
      registered: false,
      retryMs: options.timeouts.reregisterMinMs,
      timer: null,
      waiting: new WaitingNotice(`the gateway at ${address}`, (message, waitedMs) =>
        options.logger.info({ gateway: address, waitedMs }, message),
      ),
    }));
  }

  /** Starts every link's heartbeat; resolves once each has made its first attempt (registered or not). */
  async start(): Promise<void> {
    await Promise.all(this.#links.map((link) => this.#beat(link)));
  }

  /** Registration is the heartbeat: every heartbeatMs while the gateway answers, sooner (doubling) while it does not. */
  async #beat(link: Link): Promise<void> {
    await this.#register(link);
    const { heartbeatMs, reregisterMinMs } = this.#timeouts;
    link.retryMs = link.registered ? reregisterMinMs : Math.min(link.retryMs * 2, heartbeatMs);
    if (!this.#stopped)
      link.timer = setTimeout(() => void this.#beat(link), link.registered ? heartbeatMs : link.retryMs);
  }

  async #register(link: Link): Promise<void> {
    try {
      await link.client.registerServer(
        { bank: this.#bank, address: this.#address },
        { timeoutMs: this.#timeouts.registerTimeoutMs },
      );
      if (!link.registered)
        this.#logger.info({ gateway: link.address }, `registered with the gateway at ${link.address}`);
      link.registered = true;
      link.waiting.done();
    } catch (error) {
      if (link.registered)
        this.#logger.warn(
          { gateway: link.address, reason: PaymentError.fromGrpc(error).code },
          `lost the gateway at ${link.address}`,
        );
      link.registered = false;
      link.waiting.stillWaiting();
    }
  }

  /**
   * The decision on a payment, from the first gateway that answers: those this bank is registered with first
   * (they answered last), then the others, each once. Any gateway answers from the shared log; with the files
   * store there is one. Throws the last failure when none answered.
   */
  async decision(paymentId: string): Promise<GatewayDecision> {
    const ordered = [
      ...this.#links.filter((link) => link.registered),
      ...this.#links.filter((link) => !link.registered),
    ];
    let lastError: unknown = null;
    for (const link of ordered) {
      try {
        const { decision } = await link.client.getDecision(
          { paymentId },
          { timeoutMs: this.#timeouts.decisionQueryTimeoutMs },
        );
        return decision === Decision.COMMIT ? "commit" : decision === Decision.ABORT ? "abort" : "pending";
      } catch (error) {
        lastError = error;
      }
    }
    throw lastError;
  }

  stop(): void {
    this.#stopped = true;
    for (const link of this.#links) {
      if (link.timer !== null) clearTimeout(link.timer);
      link.client.close();
    }
  }
}
