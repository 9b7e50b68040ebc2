// Binding a gRPC server and stopping it within a bound.
import * as grpc from "@grpc/grpc-js";
import { channelOptions } from "./rpc.js";

export function newServer(): grpc.Server {
  return new grpc.Server(channelOptions);
}

/**
 * A port another process listens on. Said as cause and fix; `as(role)` names who the other process
 * probably is ("another gateway?"), which only the role knows.
 */
export class PortInUseError extends Error {
  override readonly name = "PortInUseError";
  readonly port: string;

  constructor(port: string, options: { role?: string; cause?: unknown } = {}) {
    super(
      `port ${port} is in use (another ${options.role ?? "paynet process"}?); pick one with --port, or --port 0 for a free one`,
      { cause: options.cause },
    );
    this.port = port;
  }

  as(role: string): PortInUseError {
    return new PortInUseError(this.port, { role, cause: this.cause });
  }
}

/** grpc-js's own logger (its default's format), less the bind failure that bind() says better itself. */
const withoutBindFailure: Partial<Console> = {
  error: (message: unknown, ...rest: unknown[]) => {
    if (typeof message === "string" && message.startsWith("No address added")) return;
    console.error(`E ${String(message)}`, ...rest);
  },
  info: (message: unknown, ...rest: unknown[]) => console.error(`I ${String(message)}`, ...rest),
  debug: (message: unknown, ...rest: unknown[]) => console.error(`D ${String(message)}`, ...rest),
};

/** Binds `address`; a failure is said as cause and fix rather than grpc-js's "No address added …". */
export function bind(server: grpc.Server, address: string, credentials: grpc.ServerCredentials): Promise<number> {
  // grpc-js logs the raw failure to stderr before rejecting; the process's servers all bind through here.
  grpc.setLogger(withoutBindFailure);
  return new Promise((resolve, reject) =>
    server.bindAsync(address, credentials, (error, port) =>
      error ? reject(bindError(address, error)) : resolve(port),
    ),
  );
}

/** grpc-js gives one Error whose message holds the socket's error code: the code is all there is to go by. */
function bindError(address: string, error: Error): Error {
  const colon = address.lastIndexOf(":");
  const host = address.slice(0, colon);
  const port = address.slice(colon + 1);
  if (error.message.includes("EADDRINUSE")) return new PortInUseError(port, { cause: error });
  if (error.message.includes("EACCES"))
    return new Error(
      `port ${port} needs privileges to open; pick one above 1023 with --port, or --port 0 for a free one`,
      {
        cause: error,
      },
    );
  if (error.message.includes("EADDRNOTAVAIL") || error.message.includes("ENOTFOUND"))
    return new Error(`cannot listen on ${host}: not an address of this machine; check --host`, { cause: error });
  return new Error(`cannot listen on ${address}: ${error.message}`, { cause: error });
}

/** Graceful shutdown, forced after `graceMs`. */
export function shutdown(server: grpc.Server, graceMs: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, graceMs);
    server.tryShutdown(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}
