// Tells apart, after a failed gRPC connection, a peer that cannot be reached from a TLS handshake that
// failed. grpc-js reports both as UNAVAILABLE ("Failed to connect"), and a server that refuses our client
// certificate is indistinguishable there from a dropped connection; one plain TLS connection made with the
// same identity shows which it is.
import { connect, type TLSSocket } from "node:tls";
import type { LoadedIdentity } from "./certificates.js";

export type TlsProbeResult =
  | { outcome: "accepted" }
  | { outcome: "unreachable"; detail: string }
  /** The peer's certificate is not signed by our CA (or names someone else). */
  | { outcome: "peer-not-trusted"; detail: string }
  /** The peer ended the handshake: it does not accept our certificate. */
  | { outcome: "refused-by-peer"; detail: string };

/** Socket errors that mean nothing answered, as opposed to a handshake that went wrong. */
const unreachableCodes: ReadonlySet<string> = new Set([
  "ECONNREFUSED",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
  "ETIMEDOUT",
]);

function splitAddress(address: string): { host: string; port: number } {
  const colon = address.lastIndexOf(":");
  return { host: address.slice(0, colon).replace(/^\[|\]$/g, ""), port: Number(address.slice(colon + 1)) };
}

/**
 * One TLS connection to `address` as gRPC makes it (our CA, certificate and key, the expected server name,
 * HTTP/2 by ALPN). A gRPC server writes its HTTP/2 settings as soon as it accepts the connection, so the
 * first byte read means the handshake was accepted on both sides; an alert before it means it was refused.
 */
export function probeTls(
  address: string,
  identity: LoadedIdentity,
  serverName: string,
  timeoutMs: number,
): Promise<TlsProbeResult> {
  const { host, port } = splitAddress(address);
  return new Promise((resolve) => {
    let socket: TLSSocket | null = null;
    let handshakeDone = false;
    const finish = (result: TlsProbeResult) => {
      clearTimeout(timer);
      socket?.destroy();
      resolve(result);
    };
    const timer = setTimeout(
      () =>
        finish(
          handshakeDone
            ? { outcome: "refused-by-peer", detail: `no answer within ${timeoutMs} ms after the handshake` }
            : { outcome: "unreachable", detail: `no TLS handshake within ${timeoutMs} ms` },
        ),
      timeoutMs,
    );
    socket = connect({
      host,
      port,
      ca: identity.caPem,
      cert: identity.certPem,
      key: identity.keyPem,
      servername: serverName,
      ALPNProtocols: ["h2"],
      rejectUnauthorized: true,
    });
    socket.once("secureConnect", () => (handshakeDone = true));
    socket.once("data", () => finish({ outcome: "accepted" }));
    socket.once("close", () =>
      finish({ outcome: "refused-by-peer", detail: "it closed the connection in the handshake" }),
    );
    socket.once("error", (error: NodeJS.ErrnoException) => finish(classify(error, handshakeDone)));
  });
}

function classify(error: NodeJS.ErrnoException, handshakeDone: boolean): TlsProbeResult {
  const code = error.code ?? "";
  if (unreachableCodes.has(code)) return { outcome: "unreachable", detail: error.message };
  // OpenSSL's alerts from the peer arrive as ERR_SSL_…ALERT… (bad certificate, unknown CA, certificate required).
  if (code.startsWith("ERR_SSL_") && code.includes("ALERT"))
    return { outcome: "refused-by-peer", detail: error.message };
  if (code === "ECONNRESET" || code === "EPIPE")
    return handshakeDone
      ? { outcome: "refused-by-peer", detail: error.message }
      : { outcome: "unreachable", detail: error.message };
  // Anything else failed our own check of the peer's certificate (SELF_SIGNED_CERT_IN_CHAIN, ERR_TLS_CERT_ALTNAME_INVALID, …).
  return { outcome: "peer-not-trusted", detail: `${code}: ${error.message}` };
}
