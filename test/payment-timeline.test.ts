// `paynet payment ID`'s timeline, from a GetPayment answer: the events in order with the time between them,
// and what it says when the gateway did not record a payment's legs.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { PaymentSummarySchema, type PaymentSummary } from "../src/gen/paynet/v1/paynet_pb.js";
import { formatDurationMs, paymentTimeline, timelineLines, timelineNote } from "../src/roles/payment-timeline.js";

const t0 = 1_733_400_000_000; // 2024-12-05T12:00:00.000Z

function summary(fields: MessageInitShape<typeof PaymentSummarySchema>): PaymentSummary {
  return create(PaymentSummarySchema, {
    paymentId: "p1",
    state: "committed",
    finished: true,
    fromUser: "alice",
    fromBank: "SBI",
    toUser: "bob",
    toBank: "HDFC",
    amountMinor: 500n,
    createdAtMs: BigInt(t0),
    decidedAtMs: BigInt(t0 + 20),
    finishedAtMs: BigInt(t0 + 45),
    ...fields,
  });
}

const leg = (bank: string, role: string, vote: string, votedAtMs: number, ackedAtMs: number) => ({
  bank,
  role,
  vote,
  votedAtMs: BigInt(votedAtMs),
  ackedAtMs: BigInt(ackedAtMs),
});

describe("a payment's timeline", () => {
  it("a committed payment: begun, both votes by time, the decision, both acknowledgements by time, finished", () => {
    const payment = summary({
      legs: [leg("SBI", "payer", "yes", t0 + 12, t0 + 40), leg("HDFC", "payee", "yes", t0 + 9, t0 + 31)],
    });
    assert.deepEqual(paymentTimeline(payment), [
      { atMs: t0, afterMs: null, event: "begun" },
      { atMs: t0 + 9, afterMs: 9, event: "HDFC (payee) voted yes" },
      { atMs: t0 + 12, afterMs: 3, event: "SBI (payer) voted yes" },
      { atMs: t0 + 20, afterMs: 8, event: "decided commit" },
      { atMs: t0 + 31, afterMs: 11, event: "HDFC (payee) acknowledged the commit" },
      { atMs: t0 + 40, afterMs: 9, event: "SBI (payer) acknowledged the commit" },
      { atMs: t0 + 45, afterMs: 5, event: "finished" },
    ]);
    assert.equal(timelineNote(payment), null);
    assert.deepEqual(timelineLines(paymentTimeline(payment)).slice(0, 2), [
      "2024-12-05T12:00:00.000Z          begun",
      "2024-12-05T12:00:00.009Z   +9 ms  HDFC (payee) voted yes",
    ]);
  });

  it("an aborted payment: the refusal, the unanswered vote and the reason of the decision", () => {
    const refused = summary({
      state: "aborted",
      reason: "INSUFFICIENT_FUNDS",
      legs: [leg("SBI", "payer", "no", t0 + 5, t0 + 30), leg("HDFC", "payee", "yes", t0 + 5, t0 + 30)],
    });
    assert.deepEqual(
      paymentTimeline(refused).map((event) => event.event),
      [
        "begun",
        "SBI (payer) voted no",
        "HDFC (payee) voted yes",
        "decided abort (INSUFFICIENT_FUNDS)",
        "SBI (payer) acknowledged the abort",
        "HDFC (payee) acknowledged the abort",
        "finished",
      ],
      "answers in the same millisecond: payer first",
    );
    const unanswered = summary({
      state: "aborted",
      finished: false,
      decidedAtMs: BigInt(t0 + 5_001),
      finishedAtMs: 0n,
      reason: "BANK_UNAVAILABLE",
      legs: [leg("SBI", "payer", "yes", t0 + 5, t0 + 5_030), leg("HDFC", "payee", "unanswered", t0 + 5_000, 0)],
    });
    assert.deepEqual(
      paymentTimeline(unanswered).map((event) => [event.afterMs, event.event]),
      [
        [null, "begun"],
        [5, "SBI (payer) voted yes"],
        [4_995, "HDFC (payee) did not answer the prepare in time"],
        [1, "decided abort (BANK_UNAVAILABLE)"],
        [29, "SBI (payer) acknowledged the abort"],
      ],
      "an unfinished payment ends at what is known; HDFC has not acknowledged",
    );
    assert.equal(
      timelineLines([
        { atMs: t0, afterMs: null, event: "begun" },
        { atMs: t0 - 3, afterMs: -3, event: "decided abort" },
      ])[1],
      "2024-12-05T11:59:59.997Z  -3 ms  decided abort",
      "a clock stepped back shows as a negative duration, not as +-3",
    );
  });

  it("a record from before legs were kept shows begun, decided and finished, and says why", () => {
    const earlier = summary({});
    assert.deepEqual(
      paymentTimeline(earlier).map((event) => event.event),
      ["begun", "decided commit", "finished"],
    );
    assert.match(timelineNote(earlier) ?? "", /no votes or acknowledgements recorded/);
    const presumed = summary({
      state: "aborted",
      legs: [leg("SBI", "payer", "", 0, t0 + 30), leg("HDFC", "payee", "", 0, t0 + 31)],
    });
    assert.deepEqual(
      paymentTimeline(presumed).map((event) => event.event),
      [
        "begun",
        "decided abort",
        "SBI (payer) acknowledged the abort",
        "HDFC (payee) acknowledged the abort",
        "finished",
      ],
    );
    assert.match(timelineNote(presumed) ?? "", /votes not recorded: decided when the gateway restarted/);
    assert.equal(timelineNote(summary({ toBank: "SBI" })), null, "a same-bank payment has no legs to show");
    assert.deepEqual(
      paymentTimeline(summary({ state: "preparing", finished: false, decidedAtMs: 0n, finishedAtMs: 0n })).map(
        (event) => event.event,
      ),
      ["begun"],
    );
  });

  const durations: Array<[number, string]> = [
    [0, "0 ms"],
    [999, "999 ms"],
    [1_000, "1.000 s"],
    [59_999, "59.999 s"],
    [60_000, "1 min 0 s"],
    [3_599_999, "59 min 59 s"],
    [3_600_000, "1 h 0 min"],
    [-15, "-15 ms"],
  ];
  for (const [ms, text] of durations)
    it(`formats ${ms} ms as ${text}`, () => {
      assert.equal(formatDurationMs(ms), text);
    });
});
