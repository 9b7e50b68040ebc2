// A small TCP proxy on loopback for `paynet verify`'s partitions: it forwards bytes both ways (TLS stays
// end to end), and `cut()` drops every open connection and refuses new ones until `heal()`, so the peers
// see a network partition: calls in flight lose their answers, new calls fail as unavailable.
import { createServer, connect, type Server, type Socket } from "node:net";

/** Open connections are bounded; past this, new ones are refused. */
export const proxyConnectionsMax = 1_024;

export class TcpProxy {
  readonly #server: Server;
  readonly #targetHost: string;
  readonly #targetPort: number;
  readonly #sockets = new Set<Socket>();
  #cut = false;
  #port = 0;

  private constructor(targetHost: string, targetPort: number) {
    this.#targetHost = targetHost;
    this.#targetPort = targetPort;
    this.#server = createServer((client) => this.#accept(client));
  }

  /** Listens on 127.0.0.1 (a free port) and forwards to `target` ("host:port"). */
  static async start(target: string): Promise<TcpProxy> {
    const separator = target.lastIndexOf(":");
    const proxy = new TcpProxy(target.slice(0, separator), Number(target.slice(separator + 1)));
    await new Promise<void>((resolve, reject) => {
      proxy.#server.once("error", reject);
      proxy.#server.listen({ host: "127.0.0.1", port: 0 }, () => resolve());
    });
    const address = proxy.#server.address();
    proxy.#port = typeof address === "object" && address !== null ? address.port : 0;
    return proxy;
  }

  get address(): string {
    return `127.0.0.1:${this.#port}`;
  }

  get isCut(): boolean {
    return this.#cut;
  }

  cut(): void {
    this.#cut = true;
    for (const socket of this.#sockets) socket.destroy();
    this.#sockets.clear();
  }

  heal(): void {
    this.#cut = false;
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #accept(client: Socket): void {
    if (this.#cut || this.#sockets.size + 2 > proxyConnectionsMax) {
      client.destroy();
      return;
    }
    const upstream = connect({ host: this.#targetHost, port: this.#targetPort });
    for (const socket of [client, upstream]) {
      socket.setNoDelay(true);
      this.#sockets.add(socket);
      // Either side closing or failing ends the pair, as a broken connection would.
      socket.on("error", () => undefined);
      socket.on("close", () => {
        this.#sockets.delete(socket);
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream);
    upstream.pipe(client);
  }
}
