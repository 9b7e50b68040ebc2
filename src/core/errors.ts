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

export function isReason(value: string): value is Reason {
  return Object.hasOwn(reasons, value);
}

export class PaymentError extends Error {
  override readonly name = "PaymentError";
  readonly code: Reason;
  readonly paymentId: string | undefined;

  constructor(code: Reason, message: string, options: { cause?: unknown; paymentId?: string } = {}) {
    super(message, { cause: options.cause });
    this.code = code;
    this.paymentId = options.paymentId;
  }

  get grpcStatus(): GrpcStatus {
    return reasons[this.code];
  }

  /** Turns whatever a gRPC call rejected with into a PaymentError, keeping the remote reason. */
  static fromGrpc(error: unknown, fallback: Reason = "INTERNAL", unavailable: Reason = "BANK_UNAVAILABLE"): PaymentError {
    if (error instanceof PaymentError) return error;
    const serviceError = error as Partial<ServiceError>;
    if (typeof serviceError?.code !== "number") {
      return new PaymentError(fallback, String((error as Error)?.message ?? error), { cause: error });
    }
    const remoteReason = serviceError.metadata?.get(reasonMetadataKey)[0];
    const paymentId = serviceError.metadata?.get(paymentIdMetadataKey)[0];
    const details = serviceError.details ?? serviceError.message ?? "";
    const options = { cause: error, ...(typeof paymentId === "string" ? { paymentId } : {}) };
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
    return { code: this.grpcStatus, details: this.message, metadata };
  }
}

/** Whether a failed call may have reached the peer: the outcome is then unknown, not refused. */
export function isAmbiguous(error: PaymentError): boolean {
  return error.code === "TIMEOUT" || error.code === "BANK_UNAVAILABLE" || error.code === "GATEWAY_UNAVAILABLE";
}
