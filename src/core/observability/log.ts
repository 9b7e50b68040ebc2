// Structured logs: one JSON object per line (pino), written synchronously so that a crash loses no line;
// on a terminal the same records are shown as readable lines. Secrets are never passed to a logger, and
// known secret-bearing keys are redacted as a second line of defence.
import pino from "pino";
import chalk from "chalk";

export interface Logger {
  info(fields: Record<string, unknown>, message: string): void;
  warn(fields: Record<string, unknown>, message: string): void;
  error(fields: Record<string, unknown>, message: string): void;
  debug(fields: Record<string, unknown>, message: string): void;
}

const levelNames: Record<number, string> = {
  10: "TRACE",
  20: "DEBUG",
  30: "INFO",
  40: "WARN",
  50: "ERROR",
  60: "FATAL",
};
const hiddenKeys = new Set(["level", "time", "role", "msg", "pid"]);

/** Renders one JSON log record as a readable line; returns the input unchanged if it is not one. */
export function prettyLogLine(line: string): string {
  let record: Record<string, unknown>;
  try {
    record = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line;
  }
  if (typeof record.msg !== "string" || typeof record.level !== "number") return line;
  const level = levelNames[record.level] ?? String(record.level);
  const colour = record.level >= 50 ? chalk.red : record.level >= 40 ? chalk.yellow : chalk.green;
  const time = typeof record.time === "number" ? new Date(record.time).toISOString() : "";
  const fields = Object.entries(record)
    .filter(([key]) => !hiddenKeys.has(key))
    .map(([key, value]) => `${chalk.dim(`${key}=`)}${typeof value === "string" ? value : JSON.stringify(value)}`)
    .join(" ");
  return `${chalk.dim(time)} ${colour(level.padEnd(5))} ${chalk.cyan(`[${typeof record.role === "string" ? record.role : ""}]`)} ${record.msg}${fields ? ` ${fields}` : ""}`;
}

export function createLogger(role: string, options: { pretty: boolean; level?: string } = { pretty: false }): Logger {
  const destination = options.pretty
    ? {
        write: (chunk: string) =>
          void process.stdout.write(`${chunk.split("\n").filter(Boolean).map(prettyLogLine).join("\n")}\n`),
      }
    : pino.destination({ dest: 1, sync: true });
  const logger = pino(
    {
      level: options.level ?? "info",
      base: { role, pid: process.pid },
      redact: { paths: ["password", "token", "*.password", "*.token"], censor: "[redacted]" },
    },
    destination,
  );
  return {
    info: (fields, message) => logger.info(fields, message),
    warn: (fields, message) => logger.warn(fields, message),
    error: (fields, message) => logger.error(fields, message),
    debug: (fields, message) => logger.debug(fields, message),
  };
}

/** A logger that drops everything, for core units used without a process around them. */
export const silentLogger: Logger = {
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
  debug: () => undefined,
};
