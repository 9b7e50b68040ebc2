// Specification of the pure pieces of `paynet bench`: percentiles, outcome resolution against the gateway
// log, the conservation check, the generated accounts, the seeded payment planner, the state-file views
// and the usage errors.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  checkConservation,
  loggedOutcomes,
  percentileOfSorted,
  resolveOutcomes,
  summarizeLatencies,
  throughputPerS,
  type LoggedPayment,
  type SentPayment,
  type SeenOutcome,
  type Transfer,
} from "../src/roles/bench/stats.js";
import {
  accountRefs,
  benchUsername,
  choosePayers,
  generateAccountRows,
  PaymentPlanner,
} from "../src/roles/bench/accounts.js";
import { parseAccountsCsv, serializeAccountsCsv } from "../src/core/bank/store/file/accounts-csv.js";
import { Prng } from "../src/core/testing/prng.js";
import { balanceOfCreated, benchUsageError, warmupDefault, type BenchFlags } from "../src/roles/bench/bench.js";

describe("percentileOfSorted (nearest rank)", () => {
  const oneToHundred = Array.from({ length: 100 }, (_, index) => index + 1);
  const cases: Array<[string, number[], number, number]> = [
    ["empty", [], 0.5, 0],
    ["one value, p50", [7], 0.5, 7],
    ["one value, p99", [7], 0.99, 7],
    ["four values, p50", [1, 2, 3, 4], 0.5, 2],
    ["four values, p95", [1, 2, 3, 4], 0.95, 4],
    ["1..100, p50", oneToHundred, 0.5, 50],
    ["1..100, p95", oneToHundred, 0.95, 95],
    ["1..100, p99", oneToHundred, 0.99, 99],
    ["1..100, p100", oneToHundred, 1, 100],
    ["1..100, p0.01 is the minimum", oneToHundred, 0.0001, 1],
  ];
  for (const [name, sorted, fraction, expected] of cases) {
    it(name, () => assert.equal(percentileOfSorted(sorted, fraction), expected));
  }
  for (const fraction of [0, -0.5, 1.01]) {
    it(`refuses the fraction ${fraction}`, () => assert.throws(() => percentileOfSorted([1], fraction)));
  }
});

describe("summarizeLatencies", () => {
  it("sorts its input and reports ordered percentiles, max and mean", () => {
    assert.deepEqual(summarizeLatencies([3, 1, 2]), { count: 3, p50Ms: 2, p95Ms: 3, p99Ms: 3, maxMs: 3, meanMs: 2 });
  });
  it("reports zeros for no latencies", () => {
    assert.deepEqual(summarizeLatencies([]), { count: 0, p50Ms: 0, p95Ms: 0, p99Ms: 0, maxMs: 0, meanMs: 0 });
  });
  it("a slow tail shows in p99 and max only", () => {
    const latencies = [...Array.from({ length: 98 }, () => 10), 500, 900];
    const summary = summarizeLatencies(Float64Array.from(latencies));
    assert.deepEqual([summary.p50Ms, summary.p95Ms, summary.p99Ms, summary.maxMs], [10, 10, 500, 900]);
  });
  for (const bad of [-1, Number.NaN, Number.POSITIVE_INFINITY]) {
    it(`refuses the latency ${bad}`, () => assert.throws(() => summarizeLatencies([1, bad])));
  }
});

describe("throughputPerS", () => {
  const cases: Array<[number, number, number]> = [
    [100, 1000, 100],
    [150, 2000, 75],
    [0, 1000, 0],
    [10, 0, 0],
  ];
  for (const [committed, durationMs, expected] of cases) {
    it(`${committed} in ${durationMs} ms → ${expected}/s`, () =>
      assert.equal(throughputPerS(committed, durationMs), expected));
  }
});

const transfer = (source: string, target: string, amountMinor: bigint): Transfer => ({ source, target, amountMinor });
const payment = (paymentId: string, seen: SeenOutcome, moved = transfer("a@X", "b@Y", 5n)): SentPayment => ({
  paymentId,
  transfer: moved,
  seen,
});
const logged = (entries: Array<[string, LoggedPayment["state"]]>) =>
  new Map(entries.map(([id, state]) => [id, { state, finished: true }]));

describe("resolveOutcomes", () => {
  const cases: Array<{
    name: string;
    sent: SentPayment[];
    log: Map<string, LoggedPayment>;
    expected: Record<string, number | boolean>;
  }> = [
    {
      name: "committed and logged committed",
      sent: [payment("p1", "committed")],
      log: logged([["p1", "committed"]]),
      expected: { committed: 1, gatewayCommitted: 1, transfers: 1, ok: true },
    },
    {
      name: "aborted and logged aborted",
      sent: [payment("p1", "aborted")],
      log: logged([["p1", "aborted"]]),
      expected: { aborted: 1, gatewayCommitted: 0, transfers: 0, ok: true },
    },
    {
      name: "refused before the log (absent)",
      sent: [payment("p1", "aborted")],
      log: logged([]),
      expected: { aborted: 1, transfers: 0, ok: true },
    },
    {
      name: "ambiguous, logged committed: counts as committed",
      sent: [payment("p1", "ambiguous")],
      log: logged([["p1", "committed"]]),
      expected: { ambiguous: 1, ambiguousCommitted: 1, gatewayCommitted: 1, transfers: 1, ok: true },
    },
    {
      name: "ambiguous, logged aborted",
      sent: [payment("p1", "ambiguous")],
      log: logged([["p1", "aborted"]]),
      expected: { ambiguous: 1, ambiguousAborted: 1, transfers: 0, ok: true },
    },
    {
      name: "ambiguous, never reached the gateway",
      sent: [payment("p1", "ambiguous")],
      log: logged([]),
      expected: { ambiguous: 1, ambiguousAborted: 1, transfers: 0, ok: true },
    },
    {
      name: "ambiguous, still preparing: unresolved",
      sent: [payment("p1", "ambiguous")],
      log: logged([["p1", "preparing"]]),
      expected: { ambiguous: 1, ambiguousUnresolved: 1, transfers: 0, ok: false },
    },
    {
      name: "committed but logged aborted: disagreement",
      sent: [payment("p1", "committed")],
      log: logged([["p1", "aborted"]]),
      expected: { committed: 1, disagreementCount: 1, gatewayCommitted: 0, transfers: 1, ok: false },
    },
    {
      name: "committed but absent from the log: disagreement",
      sent: [payment("p1", "committed")],
      log: logged([]),
      expected: { committed: 1, disagreementCount: 1, transfers: 1, ok: false },
    },
    {
      name: "aborted but logged committed: disagreement",
      sent: [payment("p1", "aborted")],
      log: logged([["p1", "committed"]]),
      expected: { aborted: 1, disagreementCount: 1, gatewayCommitted: 1, transfers: 0, ok: false },
    },
    {
      name: "a committed id the bench never sent: counts differ",
      sent: [payment("p1", "committed")],
      log: logged([
        ["p1", "committed"],
        ["p9", "committed"],
      ]),
      expected: { committed: 1, gatewayCommitted: 2, transfers: 1, ok: false },
    },
  ];
  const zero = {
    committed: 0,
    aborted: 0,
    ambiguous: 0,
    ambiguousCommitted: 0,
    ambiguousAborted: 0,
    ambiguousUnresolved: 0,
    gatewayCommitted: 0,
    disagreementCount: 0,
    transfers: 0,
  };
  for (const { name, sent, log, expected } of cases) {
    it(name, () => {
      const report = resolveOutcomes(sent, log);
      const { committedTransfers, disagreements: _listed, ...counts } = report;
      assert.deepEqual({ ...counts, transfers: committedTransfers.length }, { ...zero, ...expected });
    });
  }
  it("lists a bounded number of disagreements but counts them all", () => {
    const sent = Array.from({ length: 30 }, (_, index) => payment(`p${index}`, "committed"));
    const report = resolveOutcomes(sent, new Map());
    assert.equal(report.disagreementCount, 30);
    assert.equal(report.disagreements.length, 20);
    assert.deepEqual(report.disagreements[0], { paymentId: "p0", seen: "committed", logged: "absent" });
  });
});

describe("checkConservation", () => {
  const before = new Map([
    ["a@X", 1000n],
    ["b@Y", 500n],
    ["c@X", 0n],
  ]);
  const moves = [transfer("a@X", "b@Y", 300n), transfer("b@Y", "c@X", 50n)];
  const cases: Array<{
    name: string;
    after: Array<[string, bigint]>;
    committed: Transfer[];
    expected: { sumsEqual: boolean; noNegative: boolean; appliedOnce: boolean; mismatchCount: number; ok: boolean };
  }> = [
    {
      name: "nothing committed, nothing moved",
      after: [
        ["a@X", 1000n],
        ["b@Y", 500n],
        ["c@X", 0n],
      ],
      committed: [],
      expected: { sumsEqual: true, noNegative: true, appliedOnce: true, mismatchCount: 0, ok: true },
    },
    {
      name: "two payments applied once each",
      after: [
        ["a@X", 700n],
        ["b@Y", 750n],
        ["c@X", 50n],
      ],
      committed: moves,
      expected: { sumsEqual: true, noNegative: true, appliedOnce: true, mismatchCount: 0, ok: true },
    },
    {
      name: "a payment applied twice (sum still equal)",
      after: [
        ["a@X", 400n],
        ["b@Y", 1050n],
        ["c@X", 50n],
      ],
      committed: moves,
      expected: { sumsEqual: true, noNegative: true, appliedOnce: false, mismatchCount: 2, ok: false },
    },
    {
      name: "an aborted payment moved money",
      after: [
        ["a@X", 990n],
        ["b@Y", 510n],
        ["c@X", 0n],
      ],
      committed: [],
      expected: { sumsEqual: true, noNegative: true, appliedOnce: false, mismatchCount: 2, ok: false },
    },
    {
      name: "only the credit leg applied: money created",
      after: [
        ["a@X", 1000n],
        ["b@Y", 800n],
        ["c@X", 0n],
      ],
      committed: [transfer("a@X", "b@Y", 300n)],
      expected: { sumsEqual: false, noNegative: true, appliedOnce: false, mismatchCount: 1, ok: false },
    },
    {
      name: "a negative balance",
      after: [
        ["a@X", -100n],
        ["b@Y", 1600n],
        ["c@X", 0n],
      ],
      committed: [transfer("a@X", "b@Y", 1100n)],
      expected: { sumsEqual: true, noNegative: false, appliedOnce: true, mismatchCount: 0, ok: false },
    },
    {
      name: "an account missing after",
      after: [
        ["a@X", 1000n],
        ["b@Y", 500n],
      ],
      committed: [],
      expected: { sumsEqual: true, noNegative: true, appliedOnce: false, mismatchCount: 1, ok: false },
    },
    {
      name: "an extra account after",
      after: [
        ["a@X", 1000n],
        ["b@Y", 500n],
        ["c@X", 0n],
        ["d@Y", 0n],
      ],
      committed: [],
      expected: { sumsEqual: true, noNegative: true, appliedOnce: false, mismatchCount: 1, ok: false },
    },
  ];
  for (const { name, after, committed, expected } of cases) {
    it(name, () => {
      const report = checkConservation(before, new Map(after), committed);
      const { sumsEqual, noNegative, appliedOnce, mismatchCount, ok } = report;
      assert.deepEqual({ sumsEqual, noNegative, appliedOnce, mismatchCount, ok }, expected);
      assert.equal(report.sumBeforeMinor, 1500n);
    });
  }
  it("names the account, the expected and the found balance", () => {
    const report = checkConservation(
      new Map([
        ["a@X", 10n],
        ["b@Y", 0n],
      ]),
      new Map([
        ["a@X", 10n],
        ["b@Y", 3n],
      ]),
      [],
    );
    assert.deepEqual(report.mismatches, [{ account: "b@Y", expectedMinor: 0n, actualMinor: 3n }]);
  });
  it("refuses a transfer that is not positive (a programmer error)", () => {
    assert.throws(() => checkConservation(before, before, [transfer("a@X", "b@Y", 0n)]));
  });
});

describe("generated accounts", () => {
  const usernames: Array<[number, string]> = [
    [0, "u000001"],
    [41, "u000042"],
    [99_999, "u100000"],
    [999_999, "u1000000"],
  ];
  for (const [index, expected] of usernames)
    it(`account ${index} is ${expected}`, () => assert.equal(benchUsername(index), expected));

  it("spreads accounts round-robin over the banks with one shared hash, and the file parses back", () => {
    const rows = generateAccountRows({
      accounts: 5,
      banks: ["BANKA", "BANKB"],
      balanceMinor: 100_000n,
      passwordHash: "scrypt$hash",
    });
    assert.deepEqual(
      rows.map((row) => `${row.username}@${row.bank}`),
      ["u000001@BANKA", "u000002@BANKB", "u000003@BANKA", "u000004@BANKB", "u000005@BANKA"],
    );
    assert.ok(rows.every((row) => row.balanceMinor === 100_000n && row.password === "scrypt$hash"));
    assert.deepEqual(parseAccountsCsv(serializeAccountsCsv(rows), "generated.csv"), rows);
  });
  for (const accounts of [0, -1, 1.5, 1_000_001]) {
    it(`refuses ${accounts} accounts`, () =>
      assert.throws(() => generateAccountRows({ accounts, banks: ["A"], balanceMinor: 0n, passwordHash: "h" })));
  }

  it("chooses distinct payers alternating between banks", () => {
    const accounts = accountRefs(
      generateAccountRows({ accounts: 6, banks: ["BANKA", "BANKB"], balanceMinor: 0n, passwordHash: "h" }),
    );
    assert.deepEqual(
      choosePayers(accounts, 3).map((payer) => payer.key),
      ["u000001@BANKA", "u000002@BANKB", "u000003@BANKA"],
    );
    assert.throws(() => choosePayers(accounts, 7));
  });
});

describe("PaymentPlanner", () => {
  const accounts = accountRefs(
    generateAccountRows({ accounts: 20, banks: ["BANKA", "BANKB"], balanceMinor: 0n, passwordHash: "h" }),
  );
  const payer = accounts[0]!;
  const draw = (sameBankPercent: number, seed: number, count = 500) => {
    const planner = new PaymentPlanner(accounts, { sameBankPercent, amountMinMinor: 1n, amountMaxMinor: 100n });
    const prng = new Prng(seed);
    return Array.from({ length: count }, () => planner.next(payer, prng));
  };

  it("makes the same choices for the same seed and different ones for another", () => {
    const summary = (seed: number) =>
      draw(0, seed, 50).map((planned) => `${planned.target.key}:${planned.amountMinor}`);
    assert.deepEqual(summary(7), summary(7));
    assert.notDeepEqual(summary(7), summary(8));
  });
  it("at 0% pays only other banks, with amounts within 0.01-1.00", () => {
    const planned = draw(0, 1);
    assert.ok(planned.every((entry) => entry.target.bank !== payer.bank));
    assert.ok(planned.every((entry) => entry.amountMinor >= 1n && entry.amountMinor <= 100n));
    assert.ok(planned.some((entry) => entry.amountMinor === 1n) && planned.some((entry) => entry.amountMinor >= 95n));
  });
  it("at 100% pays only its own bank, never itself, and reaches every other member", () => {
    const planned = draw(100, 1);
    assert.ok(planned.every((entry) => entry.target.bank === payer.bank && entry.target.key !== payer.key));
    assert.equal(new Set(planned.map((entry) => entry.target.key)).size, 9);
  });
  it("at 25% pays its own bank about a quarter of the time", () => {
    const share = draw(25, 3, 2000).filter((entry) => entry.target.bank === payer.bank).length / 2000;
    assert.ok(share > 0.2 && share < 0.3, `same-bank share ${share}`);
  });
  it("with one bank, pays another account of it whatever the percentage", () => {
    const single = accountRefs(
      generateAccountRows({ accounts: 3, banks: ["ONLY"], balanceMinor: 0n, passwordHash: "h" }),
    );
    const planner = new PaymentPlanner(single, { sameBankPercent: 0, amountMinMinor: 1n, amountMaxMinor: 1n });
    const prng = new Prng(1);
    for (let index = 0; index < 50; index += 1)
      assert.notEqual(planner.next(single[0]!, prng).target.key, single[0]!.key);
  });
});

describe("loggedOutcomes", () => {
  const records = [
    { paymentId: "bench-x-0", state: "committed" as const, finished: true },
    { paymentId: "bench-x-1", state: "preparing" as const, finished: false },
    { paymentId: "other", state: "aborted" as const, finished: true },
    { paymentId: "bench-x", state: "aborted" as const, finished: true },
  ];
  it("keeps only the records of the run's prefix, with their state and whether they finished", () => {
    assert.deepEqual(
      loggedOutcomes(records, "bench-x-"),
      new Map([
        ["bench-x-0", { state: "committed", finished: true }],
        ["bench-x-1", { state: "preparing", finished: false }],
      ]),
    );
  });
  it("finds nothing in an empty log", () => assert.deepEqual(loggedOutcomes([], "bench-x-"), new Map()));
});

describe("balanceOfCreated", () => {
  const cases: Array<[string, Pick<BenchFlags, "balance" | "payments" | "concurrency"> & { warmup: number }, bigint]> =
    [
      ["--balance as given", { balance: "2.00", payments: 40_000, warmup: 10_000, concurrency: 8 }, 200n],
      ["--balance 0 as given", { balance: "0", payments: 200, warmup: 0, concurrency: 8 }, 0n],
      [
        "1000.00 when the payments need less (64 payers, 12,000 payments of at most 1.00)",
        { balance: undefined, payments: 2_000, warmup: 10_000, concurrency: 64 },
        100_000n,
      ],
      [
        "each payer's share at the largest amount when it needs more (8 payers, 50,000 payments: 6,250.00)",
        { balance: undefined, payments: 40_000, warmup: 10_000, concurrency: 8 },
        625_000n,
      ],
      [
        "a share rounded up (3 payers, 100,001 payments: 33,334 each)",
        { balance: undefined, payments: 100_001, warmup: 0, concurrency: 3 },
        3_333_400n,
      ],
    ];
  for (const [name, flags, expected] of cases) it(name, () => assert.equal(balanceOfCreated(flags), expected));
});

describe("warmupDefault", () => {
  const cases: Array<[number, number]> = [
    [1, 1],
    [200, 200],
    [2_000, 2_000],
    [10_000, 10_000],
    [10_001, 10_000],
    [1_000_000, 10_000],
  ];
  for (const [payments, expected] of cases)
    it(`--payments ${payments} warms up with ${expected}`, () => assert.equal(warmupDefault(payments), expected));
});

describe("benchUsageError", () => {
  const valid: BenchFlags = {
    dataDir: ".",
    store: { kind: "files" },
    gateway: undefined,
    gateways: 1,
    bankInstances: 1,
    payments: 200,
    warmup: 0,
    concurrency: 8,
    accounts: 40,
    rate: undefined,
    batch: 1,
    sameBankPercent: 0,
    balance: "1000.00",
    seed: 1,
    callTimeoutMs: 20_000,
    timeoutMs: 600_000,
    settleTimeoutMs: 120_000,
    keep: false,
    cpuProf: undefined,
    json: true,
  };
  it("accepts valid flags", () => assert.equal(benchUsageError(valid), null));
  const cases: Array<[string, Partial<BenchFlags>, RegExp | null]> = [
    ["--batch 2", { batch: 2 }, null],
    ["--batch 1000 (the most one MakePayments call carries)", { batch: 1_000 }, null],
    ["--batch 1001", { batch: 1_001 }, /--batch must be an integer in 1-1000/],
    ["--batch 0", { batch: 0 }, /--batch must be an integer in 1-1000/],
    ["--payments 0", { payments: 0 }, /--payments/],
    ["--payments 1", { payments: 1 }, null],
    ["--payments 1.5", { payments: 1.5 }, /--payments/],
    ["--warmup -1", { warmup: -1 }, /--warmup must be an integer in 0-/],
    ["--warmup 0.5", { warmup: 0.5 }, /--warmup/],
    ["--warmup 10000", { warmup: 10_000 }, null],
    ["--concurrency 0", { concurrency: 0 }, /--concurrency/],
    ["--concurrency 1025", { concurrency: 1025, accounts: 2000 }, /--concurrency/],
    ["more clients than accounts", { concurrency: 41 }, /needs at least as many accounts/],
    ["as many clients as accounts", { concurrency: 40 }, null],
    [
      "more clients than --accounts with --gateway (the file decides)",
      { concurrency: 41, gateway: "127.0.0.1:8080" },
      null,
    ],
    ["--accounts 1", { accounts: 1, concurrency: 1 }, /--accounts/],
    ["--rate 0", { rate: 0 }, /--rate/],
    ["--rate 0.5", { rate: 0.5 }, null],
    ["--same-bank-percent 101", { sameBankPercent: 101 }, /--same-bank-percent/],
    ["--same-bank-percent 100", { sameBankPercent: 100 }, null],
    ["--balance -1", { balance: "-1" }, /--balance/],
    ["--balance 0", { balance: "0" }, null],
    ["--balance 1.001", { balance: "1.001" }, /--balance/],
    ["no --balance (enough for every payment)", { balance: undefined }, null],
    ["--seed -1", { seed: -1 }, /--seed/],
    ["--call-timeout-ms 0", { callTimeoutMs: 0 }, /--call-timeout-ms/],
    ["--gateway without a port", { gateway: "localhost" }, /--gateway/],
    ["--cpu-prof DIR", { cpuProf: "profiles" }, null],
    ["--gateways 0", { gateways: 0 }, /--gateways must be an integer in 1-5/],
    ["--gateways 6", { gateways: 6 }, /--gateways must be an integer in 1-5/],
    ["--gateways 2 on the file store", { gateways: 2 }, /--gateways above 1 needs --store postgres/],
    [
      "--gateways 2 on PostgreSQL",
      {
        gateways: 2,
        store: { kind: "postgres", url: "postgres://postgres@127.0.0.1:5432/x", allowAsyncCommit: false },
      },
      null,
    ],
    [
      "--gateways 2 with --gateway (the bench starts none)",
      { gateways: 2, gateway: "127.0.0.1:8080" },
      /with --gateway the bench starts none/,
    ],
    ["--bank-instances 0", { bankInstances: 0 }, /--bank-instances must be an integer in 1-8/],
    ["--bank-instances 9", { bankInstances: 9 }, /--bank-instances must be an integer in 1-8/],
    ["--bank-instances 2 on the file store", { bankInstances: 2 }, /--bank-instances above 1 needs --store postgres/],
    [
      "--bank-instances 8 on PostgreSQL",
      {
        bankInstances: 8,
        store: { kind: "postgres", url: "postgres://postgres@127.0.0.1:5432/x", allowAsyncCommit: false },
      },
      null,
    ],
    [
      "--bank-instances 2 with --gateway (the bench starts none)",
      { bankInstances: 2, gateway: "127.0.0.1:8080" },
      /--bank-instances starts banks; with --gateway the bench starts none/,
    ],
    [
      "--cpu-prof with --gateway (the bench starts no process to profile)",
      { cpuProf: "profiles", gateway: "127.0.0.1:8080" },
      /--cpu-prof profiles the processes the bench starts/,
    ],
    ["--cpu-prof with an empty dir", { cpuProf: "" }, /--cpu-prof needs a directory/],
  ];
  for (const [name, change, expected] of cases) {
    it(`${expected === null ? "accepts" : "refuses"} ${name}`, () => {
      const error = benchUsageError({ ...valid, ...change });
      if (expected === null) assert.equal(error, null);
      else assert.match(error ?? "", expected);
    });
  }
});
