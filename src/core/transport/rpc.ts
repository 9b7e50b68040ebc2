// The one adapter between protobuf-es generated service descriptors and grpc-js.
import * as grpc from "@grpc/grpc-js";
import {
  create,
  fromBinary,
  toBinary,
  type DescMessage,
  type DescService,
  type MessageInitShape,
  type MessageShape,
} from "@bufbuild/protobuf";
import type { GenService, GenServiceMethods } from "@bufbuild/protobuf/codegenv2";
import { PaymentError, reasonMetadataKey, type Reason } from "../domain/errors.js";
import { peerIdentity, type PeerIdentity } from "./identity.js";
import { rpcErrorsTotal } from "../observability/metrics.js";

/**
 * Anything larger is refused before it is parsed. Sized for the largest message, a MakePayments call of
 * 1,000 orders with the longest ids and names (about 200 bytes each).
 */
export const messageBytesMax = 256 * 1024;

export const channelOptions: grpc.ChannelOptions = {
  "grpc.max_receive_message_length": messageBytesMax,
  "grpc.max_send_message_length": messageBytesMax,
  "grpc.keepalive_time_ms": 30_000,
  "grpc.keepalive_timeout_ms": 10_000,
};

/**
 * Reconnection of a client channel whose peer went away (a bank or gateway killed, crashed or partitioned):
 * grpc-js's default backoff starts at 1 s and grows by 1.6 up to 120 s, so after an outage of 10 s the next
 * connection attempt could come 6 s after the peer was back, and after 30 s up to 17 s (measured: a decision
 * reached a bank restarted after 12 s of downtime 9.6 s after it listened, against 2.4 s with these bounds;
 * docs/benchmarks.md, "Recovery time"). Every call of a channel in backoff fails at once, so recovery waited
 * on this alone. Between these peers, a connection attempt is one refused or accepted TCP connect on a
 * known address: trying once a second costs nothing.
 */
export const reconnectBackoff = Object.freeze({ initialMs: 100, maxMs: 1_000 });

const clientChannelOptions: grpc.ChannelOptions = {
  ...channelOptions,
  "grpc.initial_reconnect_backoff_ms": reconnectBackoff.initialMs,
  "grpc.max_reconnect_backoff_ms": reconnectBackoff.maxMs,
};

function serviceDefinition(service: DescService): grpc.ServiceDefinition {
  const definition: Record<string, grpc.MethodDefinition<MessageShape<DescMessage>, MessageShape<DescMessage>>> = {};
  for (const method of service.methods) {
    if (method.methodKind !== "unary")
      throw new Error(`${service.typeName}.${method.name}: only unary methods are supported`);
    definition[method.localName] = {
      path: `/${service.typeName}/${method.name}`,
      requestStream: false,
      responseStream: false,
      requestSerialize: (message: MessageShape<DescMessage>) => Buffer.from(toBinary(method.input, message)),
      requestDeserialize: (bytes: Buffer) => fromBinary(method.input, bytes),
      responseSerialize: (message: MessageShape<DescMessage>) => Buffer.from(toBinary(method.output, message)),
      responseDeserialize: (bytes: Buffer) => fromBinary(method.output, bytes),
    };
  }
  return definition;
}

export interface CallContext {
  readonly peer: PeerIdentity;
  readonly peerAddress: string;
  readonly method: string;
}

export type ServiceImplementation<M extends GenServiceMethods> = {
  [K in keyof M]: (
    request: MessageShape<M[K]["input"]>,
    context: CallContext,
  ) => Promise<MessageInitShape<M[K]["output"]>>;
};

/** The identity of each connection (HTTP/2 session): its certificate is fixed for the connection's life. */
const identityBySession = new WeakMap<object, PeerIdentity>();

/**
 * The caller's identity from its certificate. grpc-js rebuilds the peer certificate object on every call,
 * which showed as the largest single cost of a payment at the gateway; it is read once per connection.
 * The session is reached through grpc-js internals (pinned version); without it, every call reads it.
 */
function callerIdentity(call: grpc.ServerUnaryCall<unknown, unknown>): PeerIdentity {
  const session = sessionOf(call);
  if (session === undefined) return peerIdentity(call.getAuthContext());
  let identity = identityBySession.get(session);
  if (identity === undefined) {
    identity = peerIdentity(call.getAuthContext());
    identityBySession.set(session, identity);
  }
  return identity;
}

function sessionOf(call: object): object | undefined {
  let inner = (call as { call?: unknown }).call as { stream?: { session?: object }; nextCall?: unknown } | undefined;
  for (let depth = 0; inner !== undefined && inner !== null && depth < 8; depth += 1) {
    const session = inner.stream?.session;
    if (session !== undefined && session !== null) return session;
    inner = inner.nextCall as typeof inner;
  }
  return undefined;
}

export interface AddServiceOptions {
  /** Called with every failure sent to a caller, e.g. to log refusals. */
  onError?: (error: PaymentError, context: CallContext) => void;
}

export function addService<M extends GenServiceMethods>(
  server: grpc.Server,
  service: GenService<M>,
  implementation: ServiceImplementation<M>,
  options: AddServiceOptions = {},
): void {
  const handlers: grpc.UntypedServiceImplementation = {};
  for (const method of (service as unknown as DescService).methods) {
    const handle = implementation[method.localName as keyof M];
    handlers[method.localName] = (
      call: grpc.ServerUnaryCall<MessageShape<DescMessage>, unknown>,
      callback: grpc.sendUnaryData<unknown>,
    ) => {
      const context: CallContext = { peer: callerIdentity(call), peerAddress: call.getPeer(), method: method.name };
      handle(call.request as never, context).then(
        (reply) => callback(null, create(method.output, reply as MessageInitShape<DescMessage>)),
        (thrown: unknown) => {
          const error =
            thrown instanceof PaymentError ? thrown : new PaymentError("INTERNAL", "internal error", { cause: thrown });
          if (!(thrown instanceof PaymentError))
            process.stderr.write(`paynet: ${method.name} failed: ${(thrown as Error)?.stack ?? String(thrown)}\n`);
          rpcErrorsTotal.inc({ method: method.name, reason: error.code });
          options.onError?.(error, context);
          callback(error.toServiceError());
        },
      );
    };
  }
  server.addService(serviceDefinition(service), handlers);
}

/** A failure grpc-js made up locally (no reason sent by the peer): unreachable, or no answer by the deadline. */
function isTransportFailure(error: grpc.ServiceError): boolean {
  const local = error.metadata === undefined || error.metadata.get(reasonMetadataKey).length === 0;
  return local && (error.code === grpc.status.UNAVAILABLE || error.code === grpc.status.DEADLINE_EXCEEDED);
}

function transportFailure(error: grpc.ServiceError, peer: string, unavailableReason: Reason, timeoutMs: number) {
  return error.code === grpc.status.DEADLINE_EXCEEDED
    ? new PaymentError("TIMEOUT", `${peer} did not answer within ${timeoutMs} ms`, { cause: error })
    : new PaymentError(unavailableReason, `${peer} did not answer`, { cause: error });
}

export interface CallOptions {
  timeoutMs: number;
}

export type ServiceClient<M extends GenServiceMethods> = {
  [K in keyof M]: (
    request: MessageInitShape<M[K]["input"]>,
    options: CallOptions,
  ) => Promise<MessageShape<M[K]["output"]>>;
} & { close(): void; channel: grpc.Client };

/** A typed client whose every call has a deadline and rejects with a PaymentError. */
export function createClient<M extends GenServiceMethods>(
  service: GenService<M>,
  address: string,
  credentials: grpc.ChannelCredentials,
  options: grpc.ChannelOptions = {},
  /** The reason a transport failure (peer unreachable) is reported with. */
  unavailableReason: Reason = "BANK_UNAVAILABLE",
  /** Who the peer is ("bank HDFC"): a transport failure then says who did not answer, not grpc-js's text. */
  peerName?: string,
): ServiceClient<M> {
  const descriptor = service as unknown as DescService;
  const Constructor = grpc.makeGenericClientConstructor(serviceDefinition(descriptor), descriptor.typeName);
  const channel = new Constructor(address, credentials, { ...clientChannelOptions, ...options });
  const facade: Record<string, unknown> = {
    close: () => channel.close(),
    channel,
  };
  for (const method of descriptor.methods) {
    const rawCall = (channel as unknown as Record<string, (...args: unknown[]) => void>)[method.localName]!.bind(
      channel,
    );
    facade[method.localName] = (request: MessageInitShape<DescMessage>, callOptions: CallOptions) =>
      new Promise((resolve, reject) => {
        const deadline = new Date(Date.now() + callOptions.timeoutMs);
        const message = create(method.input, request);
        const onReply = (error: grpc.ServiceError | null, reply: unknown) => {
          if (error === null) resolve(reply);
          else if (peerName !== undefined && isTransportFailure(error))
            reject(transportFailure(error, `${peerName} at ${address}`, unavailableReason, callOptions.timeoutMs));
          else reject(PaymentError.fromGrpc(error, "INTERNAL", unavailableReason));
        };
        // grpc-js captures the caller's stack (`new Error()`) on every call, only to decorate a failed call's
        // error, which PaymentError.fromGrpc replaces anyway. Capturing it was about 5 % of the gateway's CPU
        // per payment; with no frames to capture it costs almost nothing.
        const stackTraceLimit = Error.stackTraceLimit;
        Error.stackTraceLimit = 0;
        try {
          rawCall(message, new grpc.Metadata(), { deadline }, onReply);
        } finally {
          Error.stackTraceLimit = stackTraceLimit;
        }
      });
  }
  return facade as ServiceClient<M>;
}
