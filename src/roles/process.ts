// Process plumbing shared by the roles: the logger, the metrics endpoint, and orderly exit on SIGINT/SIGTERM.
import { readGatewayList } from "../core/durable/gateway-list-file.js";
import { parseAddressList } from "../core/domain/validate.js";
import { createLogger, type Logger } from "../core/observability/log.js";
import { serveMetrics } from "../core/observability/metrics.js";
import { exitCodes } from "./exit-codes.js";

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

/** On SIGINT or SIGTERM: `cleanup`, then (with a logger) a `stopped (SIGTERM)` line, so a log says how it ended. */
export function onTerminate(cleanup: () => Promise<void>, logger?: Logger): void {
  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    cleanup().then(
      () => {
        logger?.info({ signal }, `stopped (${signal})`);
        process.exit(exitCodes.ok);
      },
      (error: unknown) => {
        process.stderr.write(`paynet: shutdown after ${signal} failed: ${(error as Error).message}\n`);
        process.exit(exitCodes.refused);
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

/** How often a wait for the gateway is said again while it lasts: often enough to show life, rarely enough to read. */
export const waitingNoticeEveryMs = 30_000;

/**
 * "waiting for the gateway at H:P": said when a wait begins, then again every `everyMs` while it lasts (with how
 * long so far), so that a process that is waiting says so, once, instead of looking hung or flooding its log.
 * `stillWaiting` is called at each failed attempt, `done` when the gateway answers.
 */
export class WaitingNotice {
  readonly #say: (message: string, waitedMs: number) => void;
  readonly #what: string;
  readonly #everyMs: number;
  readonly #nowMs: () => number;
  #sinceMs: number | null = null;
  #saidAtMs = 0;

  constructor(
    what: string,
    say: (message: string, waitedMs: number) => void,
    options: { everyMs?: number; nowMs?: () => number } = {},
  ) {
    this.#what = what;
    this.#say = say;
    this.#everyMs = options.everyMs ?? waitingNoticeEveryMs;
    this.#nowMs = options.nowMs ?? Date.now;
  }

  stillWaiting(): void {
    const nowMs = this.#nowMs();
    if (this.#sinceMs === null) {
      this.#sinceMs = nowMs;
      this.#saidAtMs = nowMs;
      this.#say(`waiting for ${this.#what}`, 0);
    } else if (nowMs - this.#saidAtMs >= this.#everyMs) {
      this.#saidAtMs = nowMs;
      const waitedMs = nowMs - this.#sinceMs;
      this.#say(`waiting for ${this.#what} (for ${Math.round(waitedMs / 1000)} s)`, waitedMs);
    }
  }

  done(): void {
    this.#sinceMs = null;
  }
}
