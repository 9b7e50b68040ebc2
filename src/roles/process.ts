// Process plumbing shared by the roles: the logger, the metrics endpoint, and orderly exit on SIGINT/SIGTERM.
import { readGatewayList } from "../core/durable/gateway-list-file.js";
import { parseAddressList } from "../core/domain/validate.js";
import { createLogger, type Logger } from "../core/observability/log.js";
import { serveMetrics } from "../core/observability/metrics.js";

const logLevels = ["debug", "info", "warn", "error"];

/**
 * JSON lines, or readable lines when stdout is a terminal (PAYNET_LOG_FORMAT=json|pretty overrides), at
 * PAYNET_LOG_LEVEL (default info; each step of a payment is at debug).
 */
export function roleLogger(role: string): Logger {
  const format = process.env.PAYNET_LOG_FORMAT;
  const pretty = format === "pretty" || (format !== "json" && process.stdout.isTTY === true);
  const level = process.env.PAYNET_LOG_LEVEL ?? "";
  if (level !== "" && !logLevels.includes(level))
    throw new Error(`PAYNET_LOG_LEVEL=${level}: want one of ${logLevels.join(", ")}`);
  return createLogger(role, { pretty, ...(level === "" ? {} : { level }) });
}

export async function startMetrics(port: number | undefined, logger: Logger): Promise<(() => Promise<void>) | null> {
  if (port === undefined) return null;
  const { server, port: bound } = await serveMetrics(port);
  logger.info({ metricsPort: bound }, `metrics on http://127.0.0.1:${bound}/metrics`);
  return () => new Promise((resolve) => server.close(() => resolve()));
}

export function onTerminate(cleanup: () => Promise<void>): void {
  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    cleanup().then(
      () => process.exit(0),
      (error: unknown) => {
        process.stderr.write(`paynet: shutdown after ${signal} failed: ${(error as Error).message}\n`);
        process.exit(1);
      },
    );
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
}

export const defaultGatewayAddress = "127.0.0.1:8080";

/**
 * Where the gateways are: the --gateway list (validated at parse time: a bad one is a usage error), else the
 * addresses the gateways wrote to client/current_port_server.txt, else 127.0.0.1:8080.
 */
export async function gatewayAddresses(flag: string | undefined, clientGatewayTxt: string): Promise<string[]> {
  if (flag !== undefined) return parseAddressList(flag, "--gateway");
  const written = await readGatewayList(clientGatewayTxt);
  return written.length > 0 ? written : [defaultGatewayAddress];
}
