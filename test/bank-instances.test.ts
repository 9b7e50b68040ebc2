// A bank's instances as one link (src/core/gateway/bank-instances.ts), over fake instances: calls go round
// robin; a call or a batch's legs that got no answer (UNAVAILABLE, deadline) go to the next instance, and the
// one that failed is passed over for a while; a refusal is an answer and is never sent elsewhere; each instance
// is tried at most once per call; instances not heard from are dropped while another is.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  BankInstances,
  instanceBounds,
  type Instance,
  type InstanceCalls,
} from "../src/core/gateway/bank-instances.js";
import { PaymentError } from "../src/core/domain/errors.js";

type Behaviour = "ok" | "unavailable" | "timeout" | "refuse";

/** An instance whose answers follow `behaviour` (per payment id when given a function); it logs what it was sent. */
function fakeInstance(
  address: string,
  behaviour: Behaviour | ((paymentId: string) => Behaviour),
  nowMs: number,
): Instance & { sent: string[] } {
  const sent: string[] = [];
  const outcome = (paymentId: string): PaymentError | null => {
    const kind = typeof behaviour === "function" ? behaviour(paymentId) : behaviour;
    if (kind === "ok") return null;
    const code = kind === "unavailable" ? "BANK_UNAVAILABLE" : kind === "timeout" ? "TIMEOUT" : "INSUFFICIENT_FUNDS";
    return new PaymentError(code, `${address}: ${kind}`);
  };
  const single = <T>(paymentId: string, value: T): Promise<T> => {
    sent.push(paymentId);
    const error = outcome(paymentId);
    return error === null ? Promise.resolve(value) : Promise.reject(error);
  };
  const calls: InstanceCalls = {
    prepareAll: (legs) => {
      sent.push(...legs.map((leg) => leg.paymentId));
      return Promise.resolve(legs.map((leg) => outcome(leg.paymentId)));
    },
    commitAll: (paymentIds) => {
      sent.push(...paymentIds);
      return Promise.resolve(paymentIds.map((id) => outcome(id) ?? 100n));
    },
    abortAll: (paymentIds) => {
      sent.push(...paymentIds);
      return Promise.resolve(paymentIds.map((id) => outcome(id)));
    },
    transfer: (paymentId) => single(paymentId, 5n),
    settleTransfer: (paymentId) => single(paymentId, undefined),
    holds: () => single("holds", []),
    authenticate: (username) => single(username, undefined),
    balance: (username) => single(username, { balanceMinor: 1n, availableMinor: 1n }),
  };
  return { address, calls, lastSeenMs: nowMs, avoidUntilMs: 0, close: () => undefined, sent };
}

const leg = (paymentId: string) => ({ paymentId, username: "alice", kind: "debit" as const, amountMinor: 10n });

describe("BankInstances", () => {
  it("spreads calls round robin over the instances heard from", async () => {
    const nowMs = 1_000_000;
    const bank = new BankInstances("SBI", () => nowMs);
    const a = fakeInstance("a:1", "ok", nowMs);
    const b = fakeInstance("b:1", "ok", nowMs);
    bank.add(a);
    bank.add(b);
    for (let index = 0; index < 10; index += 1)
      assert.equal(await bank.transfer(`t${index}`, "x", "y", 1n, 1, 100), 5n);
    assert.equal(a.sent.length, 5);
    assert.equal(b.sent.length, 5);
  });

  it("sends a call that got no answer to the next instance, and passes the silent one over for a while", async () => {
    let nowMs = 1_000_000;
    const bank = new BankInstances("SBI", () => nowMs);
    const dead = fakeInstance("dead:1", "unavailable", nowMs);
    const live = fakeInstance("live:1", "ok", nowMs);
    bank.add(dead);
    bank.add(live);
    for (let index = 0; index < 6; index += 1)
      assert.deepEqual(await bank.prepareAll([leg(`p${index}`)], 100), [null], "every leg answered by the live one");
    assert.equal(dead.sent.length, 1, "tried once, then passed over");
    assert.equal(live.sent.length, 6);
    nowMs += instanceBounds.avoidMs;
    await bank.commitAll(["p0", "p1"], 100);
    await bank.commitAll(["p2"], 100);
    assert.equal(dead.sent.length, 3, "tried again once its time is over (and failed over again)");
  });

  it("fails a batch's unanswered legs over, keeps the answered ones, and never resends a refusal", async () => {
    const nowMs = 1_000_000;
    const bank = new BankInstances("SBI", () => nowMs);
    const half = fakeInstance("half:1", (id) => (id === "x1" ? "timeout" : id === "x2" ? "refuse" : "ok"), nowMs);
    const other = fakeInstance("other:1", "ok", nowMs);
    bank.add(half);
    bank.add(other);
    // The round robin starts at the second instance: send one call there first, so that `half` is next.
    await bank.balance("warm", 100);
    const results = await bank.commitAll(["x0", "x1", "x2"], 100);
    assert.equal(results[0], 100n);
    assert.equal(results[1], 100n, "the leg whose deadline passed was answered by the other instance");
    assert.ok(results[2] instanceof PaymentError && results[2].code === "INSUFFICIENT_FUNDS", "a refusal stands");
    assert.deepEqual(other.sent, ["warm", "x1"]);
  });

  it("tries each instance at most once per call, then gives the last failure", async () => {
    const nowMs = 1_000_000;
    const bank = new BankInstances("SBI", () => nowMs);
    const instances = ["a:1", "b:1", "c:1"].map((address) => fakeInstance(address, "unavailable", nowMs));
    for (const instance of instances) bank.add(instance);
    await assert.rejects(bank.authenticate("alice", "pw", 100), (error: PaymentError) => {
      assert.equal(error.code, "BANK_UNAVAILABLE");
      return true;
    });
    assert.deepEqual(
      instances.map((instance) => instance.sent.length),
      [1, 1, 1],
    );
    const [result] = await bank.abortAll(["q"], 100);
    assert.ok(result instanceof PaymentError && result.code === "BANK_UNAVAILABLE");
    assert.equal(
      instances.reduce((sum, instance) => sum + instance.sent.length, 0),
      6,
    );
  });

  it("a refusal of a single call is not sent elsewhere", async () => {
    const nowMs = 1_000_000;
    const bank = new BankInstances("SBI", () => nowMs);
    const refusing = fakeInstance("r:1", "refuse", nowMs);
    const other = fakeInstance("o:1", "refuse", nowMs);
    bank.add(refusing);
    bank.add(other);
    await assert.rejects(
      bank.settleTransfer("s", 1, 100),
      (error: PaymentError) => error.code === "INSUFFICIENT_FUNDS",
    );
    assert.equal(refusing.sent.length + other.sent.length, 1);
  });

  it("drops the instances not heard from for silenceMsMax while another is heard from, never the last one", () => {
    let nowMs = 1_000_000;
    const bank = new BankInstances("SBI", () => nowMs);
    const old = fakeInstance("old:1", "ok", nowMs);
    bank.add(old);
    nowMs += instanceBounds.silenceMsMax + 1;
    assert.equal(bank.dropSilent(), 0, "the only instance stays, silent or not");
    const fresh = fakeInstance("fresh:1", "ok", nowMs);
    bank.add(fresh);
    assert.deepEqual(
      bank.list().map((instance) => instance.address),
      ["fresh:1"],
      "the silent one is dropped when another registers",
    );
  });
});
