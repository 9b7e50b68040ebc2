// Specification of src/core/testing/checker.ts: the invariants `paynet verify` checks, on small hand-made
// final states. One healthy state passes every invariant; each table row breaks it in one way and names
// exactly the invariants that must fail.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  checkInvariants,
  counterexamplesMax,
  invariantTitles,
  outcomeSeen,
  type Attempt,
  type BankHoldView,
  type GatewayRecordView,
  type InvariantId,
  type Observation,
  type OutcomeSeen,
} from "../src/core/testing/checker.js";
import type { PaymentDetails } from "../src/core/domain/payment.js";

interface MutableBank {
  holds: BankHoldView[];
  applying: string[];
  outcomes: Map<string, "committed" | "aborted">;
}

interface Scenario {
  initial: Map<string, bigint>;
  final: Map<string, bigint>;
  banks: Map<string, MutableBank>;
  records: GatewayRecordView[];
  observations: Observation[];
  processFailures: string[];
  recoveryFailures: string[];
}

function payment(paymentId: string, from: string, to: string, amountMinor: bigint): PaymentDetails {
  const [fromUser, fromBank] = from.split("@") as [string, string];
  const [toUser, toBank] = to.split("@") as [string, string];
  return { paymentId, fromUser, fromBank, toUser, toBank, amountMinor };
}

const committed: Attempt = { result: "committed" };
const aborted = (reason: string, final = true): Attempt => ({ result: "aborted", reason, final });
const ambiguous = (reason: string): Attempt => ({ result: "ambiguous", reason });

/**
 * Banks A and B; a1@A 1000.00, a2@A 500.00, b1@B 700.00.
 *   p1 a1@A → b1@B 100.00  committed at both banks, seen committed
 *   p2 a1@A → a2@A  50.00  same-bank, committed, seen committed
 *   p3 b1@B → a2@A 5000.00 aborted (INSUFFICIENT_FUNDS) at both, seen aborted
 *   p4 a2@A → b1@B  10.00  aborted by the gateway's restart, never answered during the run
 *   p5 b1@B → a1@A  20.00  committed; unanswered during the run, answered committed after healing
 */
function healthy(): Scenario {
  const p1 = payment("p1", "a1@A", "b1@B", 10_000n);
  const p2 = payment("p2", "a1@A", "a2@A", 5_000n);
  const p3 = payment("p3", "b1@B", "a2@A", 500_000n);
  const p4 = payment("p4", "a2@A", "b1@B", 1_000n);
  const p5 = payment("p5", "b1@B", "a1@A", 2_000n);
  const record = (
    details: PaymentDetails,
    state: "committed" | "aborted",
    reason: string | null = null,
  ): GatewayRecordView => ({ ...details, state, finished: true, reason });
  return {
    initial: new Map([
      ["a1@A", 100_000n],
      ["a2@A", 50_000n],
      ["b1@B", 70_000n],
    ]),
    final: new Map([
      ["a1@A", 87_000n],
      ["a2@A", 55_000n],
      ["b1@B", 78_000n],
    ]),
    banks: new Map([
      [
        "A",
        {
          holds: [],
          applying: [],
          outcomes: new Map([
            ["p1", "committed"],
            ["p2", "committed"],
            ["p3", "aborted"],
            ["p4", "aborted"],
            ["p5", "committed"],
          ]),
        },
      ],
      [
        "B",
        {
          holds: [],
          applying: [],
          outcomes: new Map([
            ["p1", "committed"],
            ["p3", "aborted"],
            ["p4", "aborted"],
            ["p5", "committed"],
          ]),
        },
      ],
    ]),
    records: [
      record(p1, "committed"),
      record(p2, "committed"),
      record(p3, "aborted", "INSUFFICIENT_FUNDS"),
      record(p4, "aborted", "PAYMENT_ABORTED"),
      record(p5, "committed"),
    ],
    observations: [
      { details: p1, attempts: [committed] },
      { details: p2, attempts: [committed] },
      { details: p3, attempts: [aborted("INSUFFICIENT_FUNDS")] },
      { details: p4, attempts: [ambiguous("TIMEOUT")] },
      { details: p5, attempts: [ambiguous("GATEWAY_UNAVAILABLE"), { ...committed, afterRun: true }] },
    ],
    processFailures: [],
    recoveryFailures: [],
  };
}

function check(scenario: Scenario) {
  return checkInvariants({
    initialBalancesMinor: scenario.initial,
    finalBalancesMinor: scenario.final,
    banks: scenario.banks,
    gatewayRecords: scenario.records,
    observations: scenario.observations,
    processFailures: scenario.processFailures,
    recoveryFailures: scenario.recoveryFailures,
  });
}

function failing(scenario: Scenario): InvariantId[] {
  return check(scenario)
    .filter((result) => !result.ok)
    .map((result) => result.id)
    .sort();
}

const bank = (scenario: Scenario, name: string) => scenario.banks.get(name)!;
const adjust = (scenario: Scenario, account: string, deltaMinor: bigint) =>
  scenario.final.set(account, scenario.final.get(account)! + deltaMinor);
const observation = (scenario: Scenario, paymentId: string) =>
  scenario.observations.find((entry) => entry.details.paymentId === paymentId)!;
/** The scenarios below break a record on purpose: records are values elsewhere, but these fixtures are the test's own. */
type Mutable<T> = { -readonly [K in keyof T]: T[K] };
const record = (scenario: Scenario, paymentId: string) =>
  scenario.records.find((entry) => entry.paymentId === paymentId)! as Mutable<Scenario["records"][number]>;

/** Gives p3 an amount b1 can afford, everywhere it is named. */
function affordableP3(scenario: Scenario): void {
  record(scenario, "p3").amountMinor = 5_000n;
  observation(scenario, "p3").details = { ...observation(scenario, "p3").details, amountMinor: 5_000n };
}

interface ViolationCase {
  name: string;
  mutate: (scenario: Scenario) => void;
  failing: InvariantId[];
  /** An invariant whose first counterexample must contain a text. */
  mentions?: [InvariantId, string];
}

const violations: ViolationCase[] = [
  {
    name: "money created at one account",
    mutate: (s) => adjust(s, "b1@B", 100n),
    failing: ["applied-exactly-once", "conservation"],
    mentions: ["conservation", "total 2200.00 at the start, 2201.00 at the end (+1.00)"],
  },
  {
    name: "money destroyed at one account",
    mutate: (s) => adjust(s, "a2@A", -1n),
    failing: ["applied-exactly-once", "conservation"],
  },
  {
    name: "a negative balance (the total unchanged)",
    mutate: (s) => (s.final.set("a1@A", -100n), adjust(s, "a2@A", 87_100n)),
    failing: ["applied-exactly-once", "no-negative-balance"],
    mentions: ["no-negative-balance", "a1@A: -1.00"],
  },
  {
    name: "a hold left at a bank",
    mutate: (s) => bank(s, "A").holds.push({ paymentId: "p6", username: "a1", kind: "debit", amountMinor: 100n }),
    failing: ["no-hold-left"],
    mentions: ["no-hold-left", "A: hold p6 (debit 1.00 of a1)"],
  },
  {
    name: "a half-applied change left at a bank",
    mutate: (s) => bank(s, "B").applying.push("p1"),
    failing: ["no-hold-left"],
    mentions: ["no-hold-left", "B: half-applied change p1"],
  },
  {
    name: "a payment not finished at the gateway",
    mutate: (s) => (record(s, "p1").finished = false),
    failing: ["recovered"],
    mentions: ["recovered", "p1 (100.00 a1@A → b1@B): committed, not finished"],
  },
  {
    name: "a recovery that timed out (though it finished later)",
    mutate: (s) => s.recoveryFailures.push("not recovered within 60000 ms: B2 hold p9"),
    failing: ["recovered"],
    mentions: ["recovered", "B2 hold p9"],
  },
  {
    name: "seen committed, applied at one bank only",
    mutate: (s) => (bank(s, "B").outcomes.set("p1", "aborted"), adjust(s, "b1@B", -10_000n)),
    failing: ["atomic", "committed-applied-at-both-banks", "conservation", "decision-matches-banks"],
    mentions: ["committed-applied-at-both-banks", "p1 (100.00 a1@A → b1@B): seen committed; A committed, B aborted"],
  },
  {
    name: "seen aborted, applied at both banks (the broken build's signature)",
    mutate: (s) => {
      affordableP3(s);
      bank(s, "A").outcomes.set("p3", "committed");
      bank(s, "B").outcomes.set("p3", "committed");
      adjust(s, "b1@B", -5_000n);
      adjust(s, "a2@A", 5_000n);
    },
    failing: ["aborted-applied-nowhere", "decision-matches-banks"],
    mentions: [
      "aborted-applied-nowhere",
      "p3 (50.00 b1@B → a2@A): seen aborted (INSUFFICIENT_FUNDS); committed at A, B",
    ],
  },
  {
    name: "unanswered, applied at one bank only",
    mutate: (s) => (bank(s, "A").outcomes.set("p4", "committed"), adjust(s, "a2@A", -1_000n)),
    failing: ["ambiguous-all-or-nothing", "atomic", "conservation", "decision-matches-banks"],
    mentions: ["ambiguous-all-or-nothing", "p4 (10.00 a2@A → b1@B): no answer during the run; A committed, B aborted"],
  },
  {
    name: "applied twice (the total unchanged)",
    mutate: (s) => (adjust(s, "a1@A", -10_000n), adjust(s, "b1@B", 10_000n)),
    failing: ["applied-exactly-once"],
    mentions: [
      "applied-exactly-once",
      "a1@A: 770.00, but its initial balance and applied payments give 870.00 (-100.00)",
    ],
  },
  {
    name: "one key answered committed and aborted",
    mutate: (s) => (observation(s, "p1").attempts = [committed, aborted("PAYMENT_ABORTED")]),
    failing: ["one-outcome-per-key"],
    mentions: ["one-outcome-per-key", "answered committed, aborted PAYMENT_ABORTED"],
  },
  {
    name: "one key aborted for two final reasons",
    mutate: (s) => (observation(s, "p3").attempts = [aborted("INSUFFICIENT_FUNDS"), aborted("BANK_UNAVAILABLE")]),
    failing: ["one-outcome-per-key"],
  },
  {
    name: "answered committed, the gateway recorded aborted",
    mutate: (s) => Object.assign(record(s, "p2"), { state: "aborted", reason: "PAYMENT_ABORTED" }),
    failing: ["decision-matches-banks", "one-outcome-per-key"],
    mentions: ["one-outcome-per-key", "answered committed; the gateway recorded aborted (PAYMENT_ABORTED)"],
  },
  {
    name: "answered aborted, the gateway recorded another reason",
    mutate: (s) => (record(s, "p3").reason = "BANK_UNAVAILABLE"),
    failing: ["one-outcome-per-key"],
  },
  {
    name: "the gateway recorded other details for the key",
    mutate: (s) => (record(s, "p2").amountMinor = 6_000n),
    failing: ["applied-exactly-once", "one-outcome-per-key"],
  },
  {
    name: "answered committed, the gateway has no record",
    mutate: (s) => s.records.splice(s.records.indexOf(record(s, "p2")), 1),
    failing: ["one-outcome-per-key"],
    mentions: ["one-outcome-per-key", "no record"],
  },
  {
    name: "a bank applied a payment nobody sent",
    mutate: (s) => bank(s, "A").outcomes.set("ghost", "committed"),
    failing: ["applied-exactly-once"],
    mentions: ["applied-exactly-once", "A applied payment ghost, which no client sent"],
  },
  {
    name: "a bank applied a payment the gateway tombstoned",
    mutate: (s) => {
      s.records.push({
        paymentId: "t1",
        fromUser: "",
        fromBank: "",
        toUser: "",
        toBank: "",
        amountMinor: 0n,
        state: "aborted",
        finished: true,
        reason: "PAYMENT_ABORTED",
      });
      bank(s, "B").outcomes.set("t1", "committed");
    },
    failing: ["applied-exactly-once", "decision-matches-banks"],
  },
  {
    name: "answered committed, the gateway tombstoned the key",
    mutate: (s) => {
      const p2 = record(s, "p2");
      s.records.splice(s.records.indexOf(p2), 1, {
        ...p2,
        fromUser: "",
        fromBank: "",
        toUser: "",
        toBank: "",
        amountMinor: 0n,
        state: "aborted",
        reason: "PAYMENT_ABORTED",
      });
    },
    failing: ["decision-matches-banks", "one-outcome-per-key"],
    mentions: ["one-outcome-per-key", "answered committed; the gateway tombstoned the id"],
  },
  {
    name: "an account missing at the end",
    mutate: (s) => s.final.delete("a2@A"),
    failing: ["applied-exactly-once", "conservation"],
  },
  {
    name: "a process died on its own",
    mutate: (s) => s.processFailures.push("bank B exited with code 1"),
    failing: ["processes-healthy"],
    mentions: ["processes-healthy", "bank B exited with code 1"],
  },
];

describe("checkInvariants", () => {
  it("passes a healthy final state, checking every invariant in catalog order", () => {
    const results = check(healthy());
    assert.deepEqual(
      results.map((result) => result.id),
      Object.keys(invariantTitles),
    );
    for (const result of results) {
      assert.equal(result.ok, true, `${result.id}: ${result.counterexamples.join("; ")}`);
      assert.equal(result.violations, 0);
      assert.deepEqual(result.counterexamples, []);
      assert.equal(result.title, invariantTitles[result.id]);
    }
    const checked = Object.fromEntries(results.map((result) => [result.id, result.checked]));
    assert.equal(checked["committed-applied-at-both-banks"], 3, "p1, p2 and p5 were seen committed");
    assert.equal(checked["aborted-applied-nowhere"], 1);
    assert.equal(checked["ambiguous-all-or-nothing"], 2, "p4 and p5 had no answer during the run");
    assert.equal(checked["applied-exactly-once"], 3);
  });

  it("accepts a tombstone that no bank applied", () => {
    const scenario = healthy();
    scenario.records.push({
      paymentId: "t1",
      fromUser: "",
      fromBank: "",
      toUser: "",
      toBank: "",
      amountMinor: 0n,
      state: "aborted",
      finished: true,
      reason: "PAYMENT_ABORTED",
    });
    assert.deepEqual(failing(scenario), []);
  });

  it("accepts a tombstone for a key a client sent, answered unknown and then PAYMENT_ABORTED (the gateway died before recording it)", () => {
    const scenario = healthy();
    const p4 = record(scenario, "p4");
    scenario.records.splice(scenario.records.indexOf(p4), 1, {
      ...p4,
      fromUser: "",
      fromBank: "",
      toUser: "",
      toBank: "",
      amountMinor: 0n,
    });
    const p4Seen = observation(scenario, "p4");
    scenario.observations.splice(scenario.observations.indexOf(p4Seen), 1, {
      ...p4Seen,
      attempts: [...p4Seen.attempts, aborted("PAYMENT_ABORTED")],
    });
    assert.deepEqual(failing(scenario), []);
  });

  for (const testCase of violations) {
    it(`catches ${testCase.name}`, () => {
      const scenario = healthy();
      testCase.mutate(scenario);
      assert.deepEqual(failing(scenario), [...testCase.failing].sort());
      if (testCase.mentions !== undefined) {
        const [id, text] = testCase.mentions;
        const first = check(scenario).find((result) => result.id === id)!.counterexamples[0] ?? "";
        assert.ok(first.includes(text), `${id}: "${first}" should mention "${text}"`);
      }
    });
  }

  it(`keeps at most ${counterexamplesMax} counterexamples but counts every violation`, () => {
    const scenario = healthy();
    for (let index = 0; index < counterexamplesMax + 10; index += 1)
      bank(scenario, "A").holds.push({ paymentId: `h${index}`, username: "a1", kind: "debit", amountMinor: 1n });
    const result = check(scenario).find((entry) => entry.id === "no-hold-left")!;
    assert.equal(result.ok, false);
    assert.equal(result.violations, counterexamplesMax + 10);
    assert.equal(result.counterexamples.length, counterexamplesMax);
  });
});

describe("outcomeSeen", () => {
  const cases: Array<{ attempts: Attempt[]; expected: OutcomeSeen }> = [
    { attempts: [], expected: { kind: "ambiguous" } },
    { attempts: [ambiguous("TIMEOUT"), ambiguous("GATEWAY_UNAVAILABLE")], expected: { kind: "ambiguous" } },
    { attempts: [ambiguous("TIMEOUT"), committed], expected: { kind: "committed" } },
    { attempts: [committed, aborted("PAYMENT_ABORTED")], expected: { kind: "committed" } },
    {
      attempts: [aborted("INTERNAL", false), aborted("INSUFFICIENT_FUNDS")],
      expected: { kind: "aborted", reason: "INSUFFICIENT_FUNDS" },
    },
    {
      attempts: [ambiguous("TIMEOUT"), aborted("UNKNOWN_BANK", false)],
      expected: { kind: "aborted", reason: "UNKNOWN_BANK" },
    },
  ];
  for (const { attempts, expected } of cases) {
    it(`${attempts.map((attempt) => attempt.result).join(", ") || "no answer"} → ${expected.kind}`, () => {
      assert.deepEqual(outcomeSeen(attempts), expected);
    });
  }
});
