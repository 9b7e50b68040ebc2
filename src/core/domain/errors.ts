// One error type at every boundary. Callers and tests branch on `code`, never on message text.
import { status as GrpcStatus, Metadata, type ServiceError } from "@grpc/grpc-js";

/** The closed catalog of reasons, each mapped to exactly one gRPC status. */
export const reasons = {
  INVALID_ARGUMENT: GrpcStatus.INVALID_ARGUMENT,
  INVALID_AMOUNT: GrpcStatus.INVALID_ARGUMENT,
  SELF_PAYMENT: GrpcStatus.INVALID_ARGUMENT,
  UNKNOWN_ACCOUNT: GrpcStatus.NOT_FOUND,
  UNKNOWN_BANK: GrpcStatus.NOT_FOUND,
  UNKNOWN_PAYMENT: GrpcStatus.NOT_FOUND,
  INSUFFICIENT_FUNDS: GrpcStatus.FAILED_PRECONDITION,
  BALANCE_LIMIT: GrpcStatus.FAILED_PRECONDITION,
  PAYMENT_ABORTED: GrpcStatus.ABORTED,
  IDEMPOTENCY_CONFLICT: GrpcStatus.ALREADY_EXISTS,
  UNAUTHENTICATED: GrpcStatus.UNAUTHENTICATED,
  PERMISSION_DENIED: GrpcStatus.PERMISSION_DENIED,
  BANK_UNAVAILABLE: GrpcStatus.UNAVAILABLE,
  GATEWAY_UNAVAILABLE: GrpcStatus.UNAVAILABLE,
  TIMEOUT: GrpcStatus.DEADLINE_EXCEEDED,
  THROTTLED: GrpcStatus.RESOURCE_EXHAUSTED,
  INTERNAL: GrpcStatus.INTERNAL,
} as const satisfies Record<string, GrpcStatus>;

export type Reason = keyof typeof reasons;

export const reasonMetadataKey = "paynet-reason";
export const paymentIdMetadataKey = "paynet-payment-id";
/** Set on the refusal of a payment that is decided aborted: final, whatever its reason says. */
export const finalMetadataKey = "paynet-final";

export function isReason(value: string): value is Reason {
  return Object.hasOwn(reasons, value);
}

const stackTraceLimitDefault = Error.stackTraceLimit;

/**
 * A refusal (insufficient funds, unknown bank, …) is an answer, not a fault: capturing its stack only
 * costs time, and under a storm of refusals that was a twentieth of the gateway's CPU. An INTERNAL error
 * keeps its stack. Called in the argument of super(), just before Error captures the stack.
 */
function withoutStackUnlessInternal(code: Reason, message: string): string {
  if (code !== "INTERNAL") Error.stackTraceLimit = 0;
  return message;
}

export class PaymentError extends Error {
  override readonly name = "PaymentError";
  readonly code: Reason;
  readonly paymentId: string | undefined;
  /** The payment is decided aborted: a retry with the same id gets this same answer. */
  readonly final: boolean;

  constructor(code: Reason, message: string, options: { cause?: unknown; paymentId?: string; final?: boolean } = {}) {
    super(withoutStackUnlessInternal(code, message), { cause: options.cause });
    Error.stackTraceLimit = stackTraceLimitDefault;
    this.code = code;
    this.paymentId = options.paymentId;
    this.final = options.final ?? false;
  }

  get grpcStatus(): GrpcStatus {
    return reasons[this.code];
  }

  /** Turns whatever a gRPC call rejected with into a PaymentError, keeping the remote reason. */
  static fromGrpc(
    error: unknown,
    fallback: Reason = "INTERNAL",
    unavailable: Reason = "BANK_UNAVAILABLE",
  ): PaymentError {
    if (error instanceof PaymentError) return error;
    const serviceError = error as Partial<ServiceError>;
    if (typeof serviceError?.code !== "number") {
      return new PaymentError(fallback, String((error as Error)?.message ?? error), { cause: error });
    }
    const remoteReason = serviceError.metadata?.get(reasonMetadataKey)[0];
    const paymentId = serviceError.metadata?.get(paymentIdMetadataKey)[0];
    const details = serviceError.details ?? serviceError.message ?? "";
    const final = serviceError.metadata?.get(finalMetadataKey)[0] === "1";
    const options = { cause: error, final, ...(typeof paymentId === "string" ? { paymentId } : {}) };
    if (typeof remoteReason === "string" && isReason(remoteReason)) {
      return new PaymentError(remoteReason, details, options);
    }
    switch (serviceError.code) {
      case GrpcStatus.UNAVAILABLE:
        return new PaymentError(unavailable, details, options);
      case GrpcStatus.DEADLINE_EXCEEDED:
        return new PaymentError("TIMEOUT", details, options);
      case GrpcStatus.UNAUTHENTICATED:
        return new PaymentError("UNAUTHENTICATED", details, options);
      case GrpcStatus.PERMISSION_DENIED:
        return new PaymentError("PERMISSION_DENIED", details, options);
      case GrpcStatus.RESOURCE_EXHAUSTED:
        return new PaymentError("INVALID_ARGUMENT", details, options);
      default:
        return new PaymentError(fallback, details, options);
    }
  }

  toServiceError(): Partial<ServiceError> {
    const metadata = new Metadata();
    metadata.set(reasonMetadataKey, this.code);
    if (this.paymentId !== undefined) metadata.set(paymentIdMetadataKey, this.paymentId);
    if (this.final) metadata.set(finalMetadataKey, "1");
    return { code: this.grpcStatus, details: this.message, metadata };
  }
}

/** Whether the outcome is unknown (the call may or may not have taken effect), rather than refused. */
export function isAmbiguous(error: PaymentError): boolean {
  if (error.final) return false;
  return error.code === "TIMEOUT" || error.code === "BANK_UNAVAILABLE" || error.code === "GATEWAY_UNAVAILABLE";
}

/** `thrown` as an Error (a non-Error thrown value wrapped, its text kept), so that what is rethrown is always one. */
export function asError(thrown: unknown): Error {
  return thrown instanceof Error ? thrown : new Error(String(thrown));
}
