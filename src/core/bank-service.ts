// A bank's RPC surface: only the gateway's certificate may call it; every field is validated here.
import { Bank, LegKind } from "../gen/paynet/v1/paynet_pb.js";
import { PaymentError } from "./errors.js";
import { requireRole } from "./identity.js";
import { validateAmountMinor } from "./money.js";
import { validatePassword, validatePaymentId, validateUsername } from "./validate.js";
import type { ServiceImplementation } from "./rpc.js";
import type { Participant } from "./participant.js";

export function bankService(participant: Participant): ServiceImplementation<(typeof Bank)["method"]> {
  return {
    async authenticateUser(request, context) {
      requireRole(context.peer, ["gateway"], "AuthenticateUser");
      validatePassword(request.password);
      await participant.authenticate(validateUsername(request.username), request.password);
      return {};
    },

    async sendBalanceReq(request, context) {
      requireRole(context.peer, ["gateway"], "SendBalanceReq");
      return participant.balance(validateUsername(request.username));
    },

    async transaction(request, context) {
      requireRole(context.peer, ["gateway"], "Transaction");
      const fromBalanceAfterMinor = await participant.transfer(
        validatePaymentId(request.paymentId),
        validateUsername(request.fromUser, "sender"),
        validateUsername(request.toUser, "receiver"),
        validateAmountMinor(request.amountMinor),
      );
      return { fromBalanceAfterMinor };
    },

    async prepare(request, context) {
      requireRole(context.peer, ["gateway"], "Prepare");
      if (request.kind !== LegKind.DEBIT && request.kind !== LegKind.CREDIT) throw new PaymentError("INVALID_ARGUMENT", "kind must be DEBIT or CREDIT");
      await participant.prepare(
        validatePaymentId(request.paymentId),
        validateUsername(request.username),
        request.kind === LegKind.DEBIT ? "debit" : "credit",
        validateAmountMinor(request.amountMinor),
      );
      return {};
    },

    async commit(request, context) {
      requireRole(context.peer, ["gateway"], "Commit");
      return { balanceAfterMinor: await participant.commit(validatePaymentId(request.paymentId)) };
    },

    async abort(request, context) {
      requireRole(context.peer, ["gateway"], "Abort");
      await participant.abort(validatePaymentId(request.paymentId));
      return {};
    },

    async getHolds(_request, context) {
      requireRole(context.peer, ["gateway"], "GetHolds");
      const holds = participant.holds().sort((a, b) => a.preparedAtMs - b.preparedAtMs);
      return {
        holds: holds.map((hold) => ({
          paymentId: hold.paymentId,
          username: hold.username,
          kind: hold.kind === "debit" ? LegKind.DEBIT : LegKind.CREDIT,
          amountMinor: hold.amountMinor,
          preparedAtMs: BigInt(hold.preparedAtMs),
          expiresAtMs: BigInt(hold.expiresAtMs),
        })),
      };
    },
  };
}
