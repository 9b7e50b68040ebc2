// Payment ids (idempotency keys) in the seed's form: SHA-256 hex over the payment's details and a random nonce,
// so two identical payments made on purpose differ while a retried one keeps its id.
import { createHash, randomBytes } from "node:crypto";

export function newPaymentId(details: {
  fromUser: string;
  fromBank: string;
  toUser: string;
  toBank: string;
  amountMinor: bigint;
}): string {
  const nonce = randomBytes(16).toString("hex");
  return createHash("sha256")
    .update(
      [details.fromUser, details.fromBank, details.toUser, details.toBank, details.amountMinor.toString(), nonce].join(
        "\u0000",
      ),
    )
    .digest("hex");
}
