// Prometheus metrics (prom-client), one registry per process, served only when --metrics-port is given.
import { createServer, type Server } from "node:http";
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";

export const registry = new Registry();
collectDefaultMetrics({ register: registry, prefix: "paynet_process_" });

const latencyBucketsSeconds = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export const paymentsTotal = new Counter({
  name: "paynet_payments_total",
  help: "Payments decided by this gateway, by outcome and kind (cross-bank or same-bank)",
  labelNames: ["outcome", "kind"] as const,
  registers: [registry],
});

export const phaseSeconds = new Histogram({
  name: "paynet_2pc_phase_seconds",
  help: "Duration of each phase of a payment at the gateway",
  labelNames: ["phase"] as const,
  buckets: latencyBucketsSeconds,
  registers: [registry],
});

export const inDoubtPayments = new Gauge({
  name: "paynet_payments_in_doubt",
  help: "Payments begun but not yet finished at every bank",
  registers: [registry],
});

export const fsyncSeconds = new Histogram({
  name: "paynet_fsync_seconds",
  help: "Duration of durable writes (write, fsync, rename, fsync of the directory), by file",
  labelNames: ["file"] as const,
  buckets: latencyBucketsSeconds,
  registers: [registry],
});

export const groupCommitBatchSize = new Histogram({
  name: "paynet_group_commit_batch_size",
  help: "Changes made durable by one write of a group-committed file",
  labelNames: ["file"] as const,
  buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024],
  registers: [registry],
});

export const rpcErrorsTotal = new Counter({
  name: "paynet_rpc_errors_total",
  help: "RPCs answered with an error, by method and reason",
  labelNames: ["method", "reason"] as const,
  registers: [registry],
});

export const holdsGauge = new Gauge({
  name: "paynet_bank_holds",
  help: "Prepared holds at this bank",
  registers: [registry],
});

/** Serves GET /metrics on 127.0.0.1:port (0: any free port); resolves with the bound port. */
export function serveMetrics(port: number, host = "127.0.0.1"): Promise<{ server: Server; port: number }> {
  const server = createServer((request, response) => {
    if (request.method !== "GET" || request.url !== "/metrics") {
      response.writeHead(404).end("not found\n");
      return;
    }
    registry.metrics().then(
      (text) => response.writeHead(200, { "content-type": registry.contentType }).end(text),
      (error: Error) => response.writeHead(500).end(`${error.message}\n`),
    );
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      const address = server.address();
      resolve({ server, port: typeof address === "object" && address !== null ? address.port : port });
    });
  });
}
