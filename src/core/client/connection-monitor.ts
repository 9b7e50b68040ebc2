// Watches the client's connection to the gateway (grpc-js connectivity) and says when it comes and goes, so
// that a client sitting at a prompt can send its queue and redraw its status without waiting for a key press.
import type { GatewayClient } from "./gateway-client.js";

/** A bound on how long one watch waits: a state change wakes it sooner. */
const watchIntervalMs = 1_000;

export class ConnectionMonitor {
  readonly #client: GatewayClient;
  readonly #onChange: (reachable: boolean) => void;
  #reachable = false;
  #running = false;

  constructor(client: GatewayClient, onChange: (reachable: boolean) => void) {
    this.#client = client;
    this.#onChange = onChange;
  }

  /** Whether the channel was READY at the last look. */
  get reachable(): boolean {
    return this.#reachable;
  }

  start(): void {
    if (this.#running) return;
    this.#running = true;
    void this.#watch();
  }

  stop(): void {
    this.#running = false;
  }

  async #watch(): Promise<void> {
    while (this.#running) {
      const ready = this.#client.connectionReady();
      if (ready === null) return; // the client was closed
      if (ready !== this.#reachable) {
        this.#reachable = ready;
        this.#onChange(ready);
      }
      await this.#client.connectionChange(watchIntervalMs);
    }
  }
}
