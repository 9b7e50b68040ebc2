// The gateway's RPC surface: who may call what, and which session acts on which account.
import { PaymentGateway, Decision, PaymentStatus } from "../../gen/paynet/v1/paynet_pb.js";
import { PaymentError, isAmbiguous } from "../domain/errors.js";
import { requireRole, describePeer } from "../transport/identity.js";
import {
  validateAddress,
  validateBankName,
  validatePassword,
  validatePaymentId,
  validateUsername,
} from "../domain/validate.js";
import type { ServiceImplementation } from "../transport/rpc.js";
import type { Coordinator } from "./coordinator.js";
import type { BankRegistry } from "./bank-registry.js";
import type { SessionStore } from "./sessions.js";
import type { LoginThrottle } from "./login-throttle.js";
import type { PaymentRecord } from "../domain/payment.js";
import type { CoordinatorStore } from "./store/coordinator-store.js";
import type { Logger } from "../observability/log.js";

const statusCallTimeoutMs = 1_000;
/** Orders per MakePayments call: a bound on the work and memory one call can ask for. */
export const paymentOrdersPerCallMax = 1_000;
const inDoubtListedMax = 20;

function summaryOf(record: PaymentRecord) {
  return {
    paymentId: record.paymentId,
    state: record.state,
    finished: record.finished,
    fromUser: record.fromUser,
    fromBank: record.fromBank,
    toUser: record.toUser,
    toBank: record.toBank,
    amountMinor: record.amountMinor,
    createdAtMs: BigInt(record.createdAtMs),
    decidedAtMs: BigInt(record.decidedAtMs ?? 0),
    finishedAtMs: BigInt(record.finishedAtMs ?? 0),
    reason: record.reason ?? "",
    reasonMessage: record.reasonMessage ?? "",
    legs: record.legs.map((leg) => ({
      bank: leg.role === "payer" ? record.fromBank : record.toBank,
      role: leg.role,
      vote: leg.vote ?? "",
      votedAtMs: BigInt(leg.votedAtMs ?? 0),
      ackedAtMs: BigInt(leg.ackedAtMs ?? 0),
    })),
  };
}

export interface GatewayServiceDeps {
  coordinator: Coordinator;
  coordinatorStore: CoordinatorStore;
  registry: BankRegistry;
  sessions: SessionStore;
  throttle: LoginThrottle;
  bankCallTimeoutMs: number;
  logger: Logger;
  /** The payment log's store as `paynet status` shows it. */
  storeDescription: string;
}

/** "ipv4:127.0.0.1:5555" → "127.0.0.1": throttling is per host, not per connection. */
function peerHost(peerAddress: string): string {
  const withoutScheme = peerAddress.replace(/^ipv[46]:/, "");
  return withoutScheme.replace(/:[0-9]+$/, "");
}

/** A payment may be named by a unique prefix of its id (as git names commits), no shorter than this. */
export const paymentIdPrefixMin = 8;
/** Ids shown when a prefix is ambiguous. */
const ambiguousShownMax = 5;

/** The payment whose id starts with `prefix`, if exactly one does; several are refused, naming some. */
async function findByPrefix(store: CoordinatorStore, prefix: string): Promise<PaymentRecord | undefined> {
  if (prefix.length < paymentIdPrefixMin) return undefined;
  const ids = await store.idsWithPrefix(prefix, ambiguousShownMax + 1);
  if (ids.length === 0) return undefined;
  if (ids.length > 1)
    throw new PaymentError(
      "INVALID_ARGUMENT",
      `payment id prefix ${prefix} is ambiguous: ${ids.length > ambiguousShownMax ? `more than ${ambiguousShownMax}` : ids.length} payments start with it (${ids.slice(0, ambiguousShownMax).join(", ")}); give more characters`,
    );
  return store.find(ids[0]!);
}

/**
 * A bank as `paynet status` shows it: each instance asked for the holds at once (the holds are the bank's, the
 * same at every instance of one schema: those of the first that answers are shown); up if any answered.
 */
async function bankStatus(entry: ReturnType<BankRegistry["entries"]>[number]) {
  const answers = await Promise.all(
    entry.instances.map((instance) => instance.calls.holds(statusCallTimeoutMs).catch(() => null)),
  );
  const instances = entry.instances.map((instance, index) => ({
    address: instance.address,
    up: answers[index] !== null,
    lastSeenMs: BigInt(instance.lastSeenMs),
  }));
  const holds = answers.find((answer) => answer !== null) ?? null;
  const latest = [...instances].sort((a, b) => (a.lastSeenMs < b.lastSeenMs ? 1 : -1))[0];
  return {
    name: entry.bank,
    address: latest?.address ?? "",
    up: holds !== null,
    lastSeenMs: latest?.lastSeenMs ?? 0n,
    holds: holds?.length ?? 0,
    oldestHoldPreparedAtMs: BigInt(holds?.[0]?.preparedAtMs ?? 0),
    instances,
  };
}

export function gatewayService(deps: GatewayServiceDeps): ServiceImplementation<(typeof PaymentGateway)["method"]> {
  const { coordinator, coordinatorStore, registry, sessions, throttle, bankCallTimeoutMs, logger } = deps;

  const bankOf = (bank: string) => {
    const link = registry.link(bank);
    if (link === null) throw new PaymentError("UNKNOWN_BANK", `no bank named ${bank} is registered`);
    return link;
  };

  return {
    async registerClient(request, context) {
      requireRole(context.peer, ["client"], "RegisterClient");
      const username = validateUsername(request.username);
      const bank = validateBankName(request.bank);
      validatePassword(request.password);
      const userKey = `${username}@${bank}`;
      const peerKey = peerHost(context.peerAddress);
      throttle.check(userKey, peerKey);
      try {
        await bankOf(bank).authenticate(username, request.password, bankCallTimeoutMs);
      } catch (error) {
        if (error instanceof PaymentError && error.code === "UNAUTHENTICATED") {
          throttle.failure(userKey, peerKey);
          logger.warn({ user: userKey, peer: peerKey }, "failed login");
        }
        throw error;
      }
      throttle.success(userKey);
      const session = sessions.open(username, bank);
      logger.info({ user: `${username}@${bank}` }, "login");
      return { token: session.token, expiresAtMs: BigInt(session.expiresAtMs) };
    },

    async registerServer(request, context) {
      requireRole(context.peer, ["bank"], "RegisterServer");
      const bank = validateBankName(request.bank);
      const address = validateAddress(request.address);
      if (context.peer.role !== "bank" || context.peer.bank !== bank) {
        throw new PaymentError("PERMISSION_DENIED", `${describePeer(context.peer)} may not register as bank ${bank}`);
      }
      if (await registry.register(bank, address))
        logger.info({ bank, address }, `bank ${bank} registered at ${address}`);
      return {};
    },

    async makePayment(request, context) {
      requireRole(context.peer, ["client"], "MakePayment");
      const payer = sessions.resolve(request.token);
      const outcome = await coordinator.makePayment(payer, {
        paymentId: validatePaymentId(request.paymentId),
        toUser: request.toUser,
        toBank: request.toBank,
        amountMinor: request.amountMinor,
      });
      return {
        paymentId: outcome.paymentId,
        status: 1,
        ...(outcome.balanceAfterMinor === null ? {} : { balanceAfterMinor: outcome.balanceAfterMinor }),
      };
    },

    async makePayments(request, context) {
      requireRole(context.peer, ["client"], "MakePayments");
      const payer = sessions.resolve(request.token);
      const orders = request.payments;
      if (orders.length === 0 || orders.length > paymentOrdersPerCallMax) {
        throw new PaymentError(
          "INVALID_ARGUMENT",
          `a MakePayments call carries 1 to ${paymentOrdersPerCallMax} payments, got ${orders.length}`,
        );
      }
      // Each order is a payment of its own, with its own outcome (see Coordinator.makePayments).
      const answers = await coordinator.makePayments(
        payer,
        orders.map((order) => ({
          paymentId: order.paymentId,
          toUser: order.toUser,
          toBank: order.toBank,
          amountMinor: order.amountMinor,
        })),
      );
      const results = answers.map((answer, index) => {
        const paymentId = orders[index]!.paymentId;
        if (!(answer instanceof PaymentError)) {
          return {
            paymentId,
            status: PaymentStatus.COMMITTED,
            ...(answer.balanceAfterMinor === null ? {} : { balanceAfterMinor: answer.balanceAfterMinor }),
          };
        }
        const status =
          isAmbiguous(answer) || (answer.code === "INTERNAL" && !answer.final)
            ? PaymentStatus.IN_DOUBT
            : PaymentStatus.ABORTED;
        return { paymentId, status, reason: answer.code, message: answer.message, final: answer.final };
      });
      return { results };
    },

    async viewBalance(request, context) {
      requireRole(context.peer, ["client"], "ViewBalance");
      const session = sessions.resolve(request.token);
      const view = await bankOf(session.bank).balance(session.username, bankCallTimeoutMs);
      return {
        username: session.username,
        bank: session.bank,
        balanceMinor: view.balanceMinor,
        availableMinor: view.availableMinor,
      };
    },

    async getStatus(_request, context) {
      requireRole(context.peer, ["operator"], "GetStatus");
      const [counts, unfinished] = await Promise.all([coordinatorStore.counts(), coordinatorStore.unfinished()]);
      const banks = await Promise.all(registry.entries().map(bankStatus));
      unfinished.sort((a, b) => a.createdAtMs - b.createdAtMs);
      return {
        banks,
        ...counts,
        inDoubt: unfinished.slice(0, inDoubtListedMax).map(summaryOf),
        store: deps.storeDescription,
        nowMs: BigInt(Date.now()),
      };
    },

    async getPayment(request, context) {
      requireRole(context.peer, ["operator"], "GetPayment");
      const paymentId = validatePaymentId(request.paymentId);
      const record = (await coordinatorStore.find(paymentId)) ?? (await findByPrefix(coordinatorStore, paymentId));
      if (record === undefined) throw new PaymentError("UNKNOWN_PAYMENT", `no payment with id ${paymentId}`);
      return { payment: summaryOf(record) };
    },

    async getDecision(request, context) {
      requireRole(context.peer, ["bank"], "GetDecision");
      const decision = await coordinator.decisionFor(validatePaymentId(request.paymentId));
      return {
        decision: decision === "commit" ? Decision.COMMIT : decision === "abort" ? Decision.ABORT : Decision.PENDING,
      };
    },
  };
}
