// Who is calling: read from the verified mTLS peer certificate's common name.
import type { ServerUnaryCall } from "@grpc/grpc-js";
import { PaymentError } from "../domain/errors.js";

type AuthContext = ReturnType<ServerUnaryCall<unknown, unknown>["getAuthContext"]>;

export type PeerIdentity =
  | { role: "gateway" }
  | { role: "bank"; bank: string }
  | { role: "client" }
  | { role: "operator" }
  | { role: "unknown"; commonName: string };

export const gatewayCommonName = "gateway";
export const clientCommonName = "client";
export const operatorCommonName = "operator";
export function bankCommonName(bank: string): string {
  return `bank:${bank}`;
}
/** The DNS name a bank's certificate carries, which the gateway checks when it dials that bank. */
export function bankServerName(bank: string): string {
  return `${bank.toLowerCase()}.bank.paynet`;
}
export const gatewayServerName = "gateway.paynet";

export function identityFromCommonName(commonName: string): PeerIdentity {
  if (commonName === gatewayCommonName) return { role: "gateway" };
  if (commonName === clientCommonName) return { role: "client" };
  if (commonName === operatorCommonName) return { role: "operator" };
  if (commonName.startsWith("bank:") && commonName.length > 5) return { role: "bank", bank: commonName.slice(5) };
  return { role: "unknown", commonName };
}

export function peerIdentity(authContext: AuthContext): PeerIdentity {
  const commonName = authContext?.sslPeerCertificate?.subject?.CN;
  if (typeof commonName !== "string") return { role: "unknown", commonName: "" };
  return identityFromCommonName(commonName);
}

export function describePeer(peer: PeerIdentity): string {
  switch (peer.role) {
    case "bank":
      return `bank ${peer.bank}`;
    case "unknown":
      return `unknown peer ${JSON.stringify(peer.commonName)}`;
    default:
      return peer.role;
  }
}

export function requireRole(peer: PeerIdentity, allowed: ReadonlyArray<PeerIdentity["role"]>, method: string): void {
  if (!allowed.includes(peer.role)) {
    throw new PaymentError("PERMISSION_DENIED", `${describePeer(peer)} may not call ${method}`);
  }
}
