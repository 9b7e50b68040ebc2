// A bank's RPC surface: only the gateway's certificate may call it; every field is validated here.
import { Bank, LegKind, type PrepareRequest } from "../../gen/paynet/v1/paynet_pb.js";
import { PaymentError } from "../domain/errors.js";
import { requireRole } from "../transport/identity.js";
import { validateAmountMinor } from "../domain/money.js";
import { validatePassword, validatePaymentId, validateUsername } from "../domain/validate.js";
import type { ServiceImplementation } from "../transport/rpc.js";
import type { BankLedger } from "./bank-ledger.js";
import { rpcErrorsTotal } from "../observability/metrics.js";

/**
 * Legs per batch call: a MakePayments call's 500 legs for one bank fit in one. Keeps a batch below the
 * message size limit (messageBytesMax, 256 KiB) at worst: 512 legs of a 128-character id and a 64-character
 * username are about 105 KiB, and their results with a refusal message each about 120 KiB.
 */
export const batchLegsMax = 512;

/** A batch call's reply (LegResults): the refused legs, ascending, and for a commit batch every leg's balance after. */
export interface LegResultColumns {
  refusedLegs: number[];
  refusedReasons: string[];
  refusedMessages: string[];
  balancesAfterMinor: bigint[];
}

/** The number of legs of a batch whose columns must all have `count` entries. */
function legCount(method: string, columns: Record<string, readonly unknown[]>): number {
  const lengths = Object.values(columns).map((column) => column.length);
  const count = lengths[0] ?? 0;
  if (lengths.some((length) => length !== count))
    throw new PaymentError(
      "INVALID_ARGUMENT",
      `${method}: every column of a batch must have one entry per leg (${Object.keys(columns).join(", ")})`,
    );
  if (count > batchLegsMax)
    throw new PaymentError("INVALID_ARGUMENT", `a batch holds at most ${batchLegsMax} legs, got ${count}`);
  return count;
}

/**
 * Runs legs 0…count-1 (they share the participant's group commit) and reports the refused ones, in order,
 * and with `balances` each leg's balance after. Only refusals carry a reason: most legs succeed.
 */
async function runLegs(
  method: string,
  count: number,
  paymentIds: readonly string[],
  run: (index: number) => Promise<bigint | void>,
  options: { balances: boolean },
): Promise<LegResultColumns> {
  const refusals = new Array<PaymentError | undefined>(count);
  const balancesAfterMinor = options.balances ? new Array<bigint>(count).fill(0n) : [];
  const legs: Array<Promise<void>> = [];
  for (let index = 0; index < count; index += 1) {
    legs.push(
      run(index).then(
        (balanceAfterMinor) => {
          if (options.balances) balancesAfterMinor[index] = balanceAfterMinor ?? 0n;
        },
        (thrown: unknown) => {
          const error =
            thrown instanceof PaymentError ? thrown : new PaymentError("INTERNAL", "internal error", { cause: thrown });
          if (!(thrown instanceof PaymentError))
            process.stderr.write(
              `paynet: batch leg ${paymentIds[index]} failed: ${(thrown as Error)?.stack ?? String(thrown)}\n`,
            );
          rpcErrorsTotal.inc({ method, reason: error.code });
          refusals[index] = error;
        },
      ),
    );
  }
  await Promise.all(legs);
  const refusedLegs: number[] = [];
  const refusedReasons: string[] = [];
  const refusedMessages: string[] = [];
  refusals.forEach((error, index) => {
    if (error === undefined) return;
    refusedLegs.push(index);
    refusedReasons.push(error.code);
    refusedMessages.push(error.message);
  });
  return { refusedLegs, refusedReasons, refusedMessages, balancesAfterMinor };
}

export function bankService(participant: BankLedger): ServiceImplementation<(typeof Bank)["method"]> {
  const prepareLeg = (request: Pick<PrepareRequest, "paymentId" | "username" | "kind" | "amountMinor">) => {
    if (request.kind !== LegKind.DEBIT && request.kind !== LegKind.CREDIT)
      throw new PaymentError("INVALID_ARGUMENT", "kind must be DEBIT or CREDIT");
    return participant.prepare(
      validatePaymentId(request.paymentId),
      validateUsername(request.username),
      request.kind === LegKind.DEBIT ? "debit" : "credit",
      validateAmountMinor(request.amountMinor),
    );
  };
  const commitLeg = (request: { paymentId: string }) => participant.commit(validatePaymentId(request.paymentId));
  const abortLeg = (request: { paymentId: string }) => participant.abort(validatePaymentId(request.paymentId));
  const begunAtMs = (value: bigint): number => {
    if (value <= 0n || value > BigInt(Number.MAX_SAFE_INTEGER))
      throw new PaymentError("INVALID_ARGUMENT", `begun_at_ms must be a positive time in ms, got ${value}`);
    return Number(value);
  };

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
        begunAtMs(request.begunAtMs),
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
      if (request.settlesTransfer)
        await participant.settleTransfer(validatePaymentId(request.paymentId), begunAtMs(request.begunAtMs));
      else await abortLeg(request);
      return {};
    },

    async prepareBatch(request, context) {
      requireRole(context.peer, ["gateway"], "PrepareBatch");
      const { paymentIds, usernames, kinds, amountsMinor } = request;
      const count = legCount("PrepareBatch", { paymentIds, usernames, kinds, amountsMinor });
      return runLegs(
        "PrepareBatch",
        count,
        paymentIds,
        async (index) =>
          prepareLeg({
            paymentId: paymentIds[index]!,
            username: usernames[index]!,
            kind: kinds[index]!,
            amountMinor: amountsMinor[index]!,
          }),
        { balances: false },
      );
    },

    async commitBatch(request, context) {
      requireRole(context.peer, ["gateway"], "CommitBatch");
      const { paymentIds } = request;
      return runLegs(
        "CommitBatch",
        legCount("CommitBatch", { paymentIds }),
        paymentIds,
        async (index) => commitLeg({ paymentId: paymentIds[index]! }),
        { balances: true },
      );
    },

    async abortBatch(request, context) {
      requireRole(context.peer, ["gateway"], "AbortBatch");
      const { paymentIds } = request;
      return runLegs(
        "AbortBatch",
        legCount("AbortBatch", { paymentIds }),
        paymentIds,
        async (index) => abortLeg({ paymentId: paymentIds[index]! }),
        { balances: false },
      );
    },

    async getHolds(_request, context) {
      requireRole(context.peer, ["gateway"], "GetHolds");
      const holds = await participant.listHolds();
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
