// A bank's reply to a batch call as the gateway reads it: only refused legs carry a reason, and a reply
// that does not match the legs sent is refused as a whole.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { legResults } from "../src/core/gateway/bank-registry.js";
import type { LegResultColumns } from "../src/core/bank/bank-service.js";
import { PaymentError } from "../src/core/domain/errors.js";

const ids = ["p0", "p1", "p2"];
const none = (): LegResultColumns => ({
  refusedLegs: [],
  refusedReasons: [],
  refusedMessages: [],
  balancesAfterMinor: [],
});

describe("legResults", () => {
  it("gives each leg its balance after, or its refusal with the payment's id", () => {
    const outcomes = legResults(
      ids,
      {
        refusedLegs: [1],
        refusedReasons: ["INSUFFICIENT_FUNDS"],
        refusedMessages: ["no"],
        balancesAfterMinor: [10n, 0n, 30n],
      },
      { balances: true },
    );
    assert.equal(outcomes[0], 10n);
    assert.ok(outcomes[1] instanceof PaymentError);
    assert.deepEqual(
      [outcomes[1].code, outcomes[1].message, outcomes[1].paymentId],
      ["INSUFFICIENT_FUNDS", "no", "p1"],
    );
    assert.equal(outcomes[2], 30n);
  });

  it("reads a batch without balances (prepare, abort) as 0 for every leg that succeeded", () => {
    assert.deepEqual(legResults(ids, none(), { balances: false }), [0n, 0n, 0n]);
  });

  it("reads a reason it does not know as INTERNAL", () => {
    const [outcome] = legResults(
      ["p0"],
      { refusedLegs: [0], refusedReasons: ["NO_SUCH_REASON"], refusedMessages: ["?"], balancesAfterMinor: [] },
      { balances: false },
    );
    assert.equal((outcome as PaymentError).code, "INTERNAL");
  });

  const malformed: Array<[string, LegResultColumns, boolean]> = [
    [
      "a refused leg out of range",
      { ...none(), refusedLegs: [3], refusedReasons: ["INTERNAL"], refusedMessages: ["x"] },
      false,
    ],
    [
      "refused legs out of order",
      { ...none(), refusedLegs: [2, 1], refusedReasons: ["INTERNAL", "INTERNAL"], refusedMessages: ["x", "y"] },
      false,
    ],
    [
      "a refused leg named twice",
      { ...none(), refusedLegs: [1, 1], refusedReasons: ["INTERNAL", "INTERNAL"], refusedMessages: ["x", "y"] },
      false,
    ],
    [
      "fewer reasons than refused legs",
      { ...none(), refusedLegs: [0, 1], refusedReasons: ["INTERNAL"], refusedMessages: ["x", "y"] },
      false,
    ],
    ["no balances where each leg needs one", none(), true],
    ["balances for a batch that has none", { ...none(), balancesAfterMinor: [1n, 2n, 3n] }, false],
  ];
  for (const [name, results, balances] of malformed) {
    it(`refuses a reply with ${name}`, () => {
      assert.throws(
        () => legResults(ids, results, { balances }),
        (error: PaymentError) => error.code === "INTERNAL",
      );
    });
  }
});
