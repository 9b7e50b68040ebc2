// A bank's RPC surface: only the gateway's certificate may call it; every field is validated here.
import { Bank, LegKind, type PrepareRequest } from "../gen/paynet/v1/paynet_pb.js";
import { PaymentError } from "./errors.js";
import { requireRole } from "./identity.js";
import { validateAmountMinor } from "./money.js";
import { validatePassword, validatePaymentId, validateUsername } from "./validate.js";
import type { ServiceImplementation } from "./rpc.js";
import type { Participant } from "./participant.js";
import { rpcErrorsTotal } from "./metrics.js";

/** Legs per batch call: keeps a batch far below the message size limit. */
export const batchLegsMax = 256;

type LegOutcome = { paymentId: string; reason: string; message: string; balanceAfterMinor: bigint };

/** Runs every leg (they share the participant's group commit) and reports each one's outcome in order. */
async function runLegs<T extends { paymentId: string }>(method: string, legs: T[], run: (leg: T) => Promise<bigint | void>): Promise<{ results: LegOutcome[] }> {
  if (legs.length > batchLegsMax) throw new PaymentError("INVALID_ARGUMENT", `a batch holds at most ${batchLegsMax} legs, got ${legs.length}`);
  const results = await Promise.all(
    legs.map(async (leg): Promise<LegOutcome> => {
      try {
        const balanceAfterMinor = await run(leg);
        return { paymentId: leg.paymentId, reason: "", message: "", balanceAfterMinor: balanceAfterMinor ?? 0n };
      } catch (thrown) {
        const error = thrown instanceof PaymentError ? thrown : new PaymentError("INTERNAL", "internal error", { cause: thrown });
        if (!(thrown instanceof PaymentError)) process.stderr.write(`paynet: batch leg ${leg.paymentId} failed: ${(thrown as Error)?.stack ?? String(thrown)}\n`);
        rpcErrorsTotal.inc({ method, reason: error.code });
        return { paymentId: leg.paymentId, reason: error.code, message: error.message, balanceAfterMinor: 0n };
      }
    }),
  );
  return { results };
}

export function bankService(participant: Participant): ServiceImplementation<(typeof Bank)["method"]> {
  const prepareLeg = (request: PrepareRequest) => {
    if (request.kind !== LegKind.DEBIT && request.kind !== LegKind.CREDIT) throw new PaymentError("INVALID_ARGUMENT", "kind must be DEBIT or CREDIT");
    return participant.prepare(
      validatePaymentId(request.paymentId),
      validateUsername(request.username),
      request.kind === LegKind.DEBIT ? "debit" : "credit",
      validateAmountMinor(request.amountMinor),
    );
  };
  const commitLeg = (request: { paymentId: string }) => participant.commit(validatePaymentId(request.paymentId));
  const abortLeg = (request: { paymentId: string }) => participant.abort(validatePaymentId(request.paymentId));

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
      await prepareLeg(request);
      return {};
    },

    async commit(request, context) {
      requireRole(context.peer, ["gateway"], "Commit");
      return { balanceAfterMinor: await commitLeg(request) };
    },

    async abort(request, context) {
      requireRole(context.peer, ["gateway"], "Abort");
      await abortLeg(request);
      return {};
    },

    async prepareBatch(request, context) {
      requireRole(context.peer, ["gateway"], "PrepareBatch");
      return runLegs("PrepareBatch", request.legs, prepareLeg);
    },

    async commitBatch(request, context) {
      requireRole(context.peer, ["gateway"], "CommitBatch");
      return runLegs("CommitBatch", request.legs, commitLeg);
    },

    async abortBatch(request, context) {
      requireRole(context.peer, ["gateway"], "AbortBatch");
      return runLegs("AbortBatch", request.legs, abortLeg);
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
