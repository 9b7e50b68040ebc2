// The gateway's RPC surface: who may call what, and which session acts on which account.
import { PaymentGateway, Decision } from "../gen/paynet/v1/paynet_pb.js";
import { PaymentError } from "./errors.js";
import { requireRole, describePeer } from "./identity.js";
import { validateAddress, validateBankName, validatePassword, validatePaymentId, validateUsername } from "./validate.js";
import type { ServiceImplementation } from "./rpc.js";
import type { Coordinator } from "./coordinator.js";
import type { BankRegistry } from "./bank-registry.js";
import type { SessionStore } from "./sessions.js";
import type { LoginThrottle } from "./login-throttle.js";

export interface GatewayServiceDeps {
  coordinator: Coordinator;
  registry: BankRegistry;
  sessions: SessionStore;
  throttle: LoginThrottle;
  bankCallTimeoutMs: number;
  log: (line: string) => void;
}

/** "ipv4:127.0.0.1:5555" → "127.0.0.1": throttling is per host, not per connection. */
function peerHost(peerAddress: string): string {
  const withoutScheme = peerAddress.replace(/^ipv[46]:/, "");
  return withoutScheme.replace(/:[0-9]+$/, "");
}

export function gatewayService(deps: GatewayServiceDeps): ServiceImplementation<(typeof PaymentGateway)["method"]> {
  const { coordinator, registry, sessions, throttle, bankCallTimeoutMs, log } = deps;

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
          log(`failed login for ${userKey} from ${peerKey}`);
        }
        throw error;
      }
      throttle.success(userKey);
      const session = sessions.open(username, bank);
      log(`login ${username}@${bank}`);
      return { token: session.token, expiresAtMs: BigInt(session.expiresAtMs) };
    },

    async registerServer(request, context) {
      requireRole(context.peer, ["bank"], "RegisterServer");
      const bank = validateBankName(request.bank);
      const address = validateAddress(request.address);
      if (context.peer.role !== "bank" || context.peer.bank !== bank) {
        throw new PaymentError("PERMISSION_DENIED", `${describePeer(context.peer)} may not register as bank ${bank}`);
      }
      if (await registry.register(bank, address)) log(`bank ${bank} registered at ${address}`);
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
      return { paymentId: outcome.paymentId, status: 1, ...(outcome.balanceAfterMinor === null ? {} : { balanceAfterMinor: outcome.balanceAfterMinor }) };
    },

    async viewBalance(request, context) {
      requireRole(context.peer, ["client"], "ViewBalance");
      const session = sessions.resolve(request.token);
      const view = await bankOf(session.bank).balance(session.username, bankCallTimeoutMs);
      return { username: session.username, bank: session.bank, balanceMinor: view.balanceMinor, availableMinor: view.availableMinor };
    },

    async getDecision(request, context) {
      requireRole(context.peer, ["bank"], "GetDecision");
      const decision = await coordinator.decisionFor(validatePaymentId(request.paymentId));
      return { decision: decision === "commit" ? Decision.COMMIT : decision === "abort" ? Decision.ABORT : Decision.PENDING };
    },
  };
}
