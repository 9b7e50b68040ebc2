// gRPC credentials for mutual TLS: servers demand and verify a client certificate; clients check the server's name.
import * as grpc from "@grpc/grpc-js";
import type { LoadedIdentity } from "./certificates.js";

export function serverCredentials(identity: LoadedIdentity): grpc.ServerCredentials {
  return grpc.ServerCredentials.createSsl(
    identity.caPem,
    [{ private_key: identity.keyPem, cert_chain: identity.certPem }],
    true,
  );
}

export function clientCredentials(identity: LoadedIdentity): grpc.ChannelCredentials {
  return grpc.credentials.createSsl(identity.caPem, identity.keyPem, identity.certPem);
}

/** Channel options that make the TLS handshake check the server certificate for `serverName`. */
export function expectServerName(serverName: string): grpc.ChannelOptions {
  return { "grpc.ssl_target_name_override": serverName, "grpc.default_authority": serverName };
}
