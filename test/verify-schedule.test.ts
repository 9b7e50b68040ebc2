// Specification of what makes a `paynet verify` run reproducible: the seeded PRNG (src/core/prng.ts) and
// the fault schedule drawn from it (planFaults in src/roles/verify-nemesis.ts). Pure: no process, no clock.
import { leaseDefaults } from "../src/roles/gateway.js";
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { Prng, seedMax } from "../src/core/testing/prng.js";
import {
  allCrashPoints,
  faultKinds,
  nemesisBounds,
  planFaults,
  type PlanOptions,
} from "../src/roles/verify/nemesis.js";
import { crashPointsByRole } from "../src/core/faults/crash.js";

function draws(prng: Prng, count: number): number[] {
  return Array.from({ length: count }, () => prng.next());
}

describe("Prng", () => {
  it("gives the same sequence for the same seed, another for another seed", () => {
    assert.deepEqual(draws(new Prng(7), 20), draws(new Prng(7), 20));
    assert.notDeepEqual(draws(new Prng(7), 20), draws(new Prng(8), 20));
  });

  it("draws floats in [0, 1) and integers within their inclusive bounds", () => {
    const prng = new Prng(1);
    const seen = new Set<number>();
    for (let index = 0; index < 2_000; index += 1) {
      const value = prng.next();
      assert.ok(value >= 0 && value < 1, `${value}`);
      const integer = prng.int(-2, 2);
      assert.ok(Number.isInteger(integer) && integer >= -2 && integer <= 2, `${integer}`);
      seen.add(integer);
    }
    assert.deepEqual([...seen].sort(), [-1, -2, 0, 1, 2].sort());
  });

  it("forks streams that depend only on the seed and the label", () => {
    const root = new Prng(42);
    const before = draws(root.fork("nemesis"), 5);
    draws(root, 100); // draws from the root do not move a fork
    assert.deepEqual(draws(root.fork("nemesis"), 5), before);
    assert.deepEqual(draws(new Prng(42).fork("nemesis"), 5), before);
    assert.notDeepEqual(draws(root.fork("client-0-plan"), 5), before);
    assert.notDeepEqual(draws(new Prng(43).fork("nemesis"), 5), before);
  });

  it("shuffles to a permutation and picks by weight", () => {
    const prng = new Prng(3);
    assert.deepEqual(prng.shuffle([1, 2, 3, 4, 5]).sort(), [1, 2, 3, 4, 5]);
    for (let index = 0; index < 200; index += 1) assert.equal(prng.weighted({ never: 0, always: 1 }), "always");
  });

  const badSeeds: Array<[string, number]> = [
    ["negative", -1],
    ["above 32 bits", seedMax + 1],
    ["not an integer", 1.5],
  ];
  for (const [name, seed] of badSeeds) {
    it(`refuses a seed ${name} (${seed})`, () => {
      assert.throws(() => new Prng(seed), /seed/);
    });
  }
  it("accepts the bounds of the seed range", () => {
    assert.doesNotThrow(() => new Prng(0));
    assert.doesNotThrow(() => new Prng(seedMax));
  });
});

describe("planFaults", () => {
  const options: PlanOptions = {
    durationMs: 60_000,
    killEveryMs: 2_000,
    pauseMaxMs: nemesisBounds.pauseMaxMsDefault,
    kinds: faultKinds,
    crashPoints: allCrashPoints,
    banks: ["B1", "B2", "B3"],
    databaseStore: true,
    gateways: ["gateway"],
  };
  /** The kinds one gateway can be given (the partitions of one gateway among several need several). */
  const oneGatewayKinds = faultKinds.filter(
    (kind) => kind !== "partition-gateway-store" && kind !== "partition-gateway-banks",
  );

  it("draws the same schedule from the same seed", () => {
    assert.deepEqual(planFaults(new Prng(7), options), planFaults(new Prng(7), options));
    assert.notDeepEqual(planFaults(new Prng(7), options), planFaults(new Prng(8), options));
  });

  it("spaces faults killEveryMs × [0.5, 1.5) apart, within the run", () => {
    const plan = planFaults(new Prng(5), options);
    assert.ok(plan.length >= 20, `${plan.length} faults in 60 s`);
    let previousMs = 0;
    for (const fault of plan) {
      const gapMs = fault.atMs - previousMs;
      assert.ok(gapMs >= 1_000 && gapMs <= 3_000, `gap ${gapMs} ms`);
      assert.ok(fault.atMs < options.durationMs);
      previousMs = fault.atMs;
    }
  });

  it("plays every enabled kind once per round", () => {
    const plan = planFaults(new Prng(11), options);
    for (let round = 0; (round + 1) * oneGatewayKinds.length <= plan.length; round += 1) {
      const kinds = plan
        .slice(round * oneGatewayKinds.length, (round + 1) * oneGatewayKinds.length)
        .map((fault) => fault.kind);
      assert.deepEqual([...kinds].sort(), [...oneGatewayKinds].sort(), `round ${round}`);
    }
  });

  it("with several gateways, aims gateway faults at each of them and adds their partitions", () => {
    const gateways = ["gateway-1", "gateway-2", "gateway-3"];
    const plan = planFaults(new Prng(17), { ...options, durationMs: 600_000, gateways });
    const targets = new Set<string>();
    for (const fault of plan) {
      if (
        fault.kind === "kill-gateway" ||
        fault.kind === "pause-gateway" ||
        fault.kind === "partition-gateway-store" ||
        fault.kind === "partition-gateway-banks"
      ) {
        assert.ok(gateways.includes(fault.target), fault.target);
        targets.add(fault.target);
      }
      if (fault.kind === "partition-gateway-store")
        assert.ok(fault.holdMs > leaseDefaults.leaseMs + leaseDefaults.renewEveryMs, `${fault.holdMs} ms`);
    }
    assert.deepEqual([...targets].sort(), gateways);
    const kinds = new Set(plan.map((fault) => fault.kind));
    assert.ok(kinds.has("partition-gateway-store") && kinds.has("partition-gateway-banks"));
    const onFiles = planFaults(new Prng(17), { ...options, gateways, databaseStore: false }).map((fault) => fault.kind);
    assert.ok(!onFiles.includes("partition-gateway-store"), "no store partition without a database");
  });

  it("keeps targets and lengths within their bounds", () => {
    const bounds = nemesisBounds;
    for (const fault of planFaults(new Prng(13), { ...options, durationMs: 600_000 })) {
      switch (fault.kind) {
        case "kill-gateway":
        case "pause-gateway":
          assert.equal(fault.target, "gateway");
          break;
        case "partition-clients":
          assert.equal(fault.target, "clients");
          break;
        case "cut-store-sessions":
          assert.ok(fault.target === "gateway" || options.banks.includes(fault.target), fault.target);
          assert.equal(fault.holdMs, bounds.cutSessionsExitWaitMs);
          break;
        case "crash-point": {
          const [point, passes] = fault.crashSpec!.split(":");
          assert.ok(allCrashPoints.includes(point!), point);
          assert.equal(
            fault.target === "gateway",
            (crashPointsByRole.gateway as readonly string[]).includes(point!),
            fault.crashSpec!,
          );
          assert.ok(Number(passes) >= 1 && Number(passes) <= bounds.crashPassesMax, fault.crashSpec!);
          break;
        }
        default:
          assert.ok(options.banks.includes(fault.target), fault.target);
      }
      if (fault.kind !== "crash-point") assert.equal(fault.crashSpec, null);
      if (fault.kind === "pause-bank")
        assert.ok(fault.holdMs >= bounds.pauseBankMinMs && fault.holdMs <= options.pauseMaxMs, `${fault.holdMs}`);
      if (fault.kind === "pause-gateway")
        assert.ok(fault.holdMs >= bounds.pauseGatewayMinMs && fault.holdMs <= options.pauseMaxMs, `${fault.holdMs}`);
      if (fault.kind === "kill-gateway" || fault.kind === "kill-bank")
        assert.ok(fault.holdMs >= 0 && fault.holdMs <= bounds.killDowntimeMaxMs, `${fault.holdMs}`);
    }
  });

  const narrowed: Array<{ name: string; change: Partial<PlanOptions>; expected: (kinds: string[]) => boolean }> = [
    { name: "no faults when killEveryMs is 0", change: { killEveryMs: 0 }, expected: (kinds) => kinds.length === 0 },
    { name: "no faults when no kind is enabled", change: { kinds: [] }, expected: (kinds) => kinds.length === 0 },
    {
      name: "only the enabled kinds",
      change: { kinds: ["kill-bank", "pause-bank"] },
      expected: (kinds) => kinds.length > 0 && kinds.every((kind) => kind === "kill-bank" || kind === "pause-bank"),
    },
    {
      name: "no crash-point fault without crash points",
      change: { kinds: ["crash-point", "kill-gateway"], crashPoints: [] },
      expected: (kinds) => kinds.length > 0 && kinds.every((kind) => kind === "kill-gateway"),
    },
    {
      name: "no cut-store-sessions fault on the file store",
      change: { kinds: ["cut-store-sessions", "kill-bank"], databaseStore: false },
      expected: (kinds) => kinds.length > 0 && kinds.every((kind) => kind === "kill-bank"),
    },
  ];
  for (const { name, change, expected } of narrowed) {
    it(`plans ${name}`, () => {
      const kinds = planFaults(new Prng(1), { ...options, ...change }).map((fault) => fault.kind);
      assert.ok(expected(kinds), kinds.join(", "));
    });
  }

  it("arms only the requested crash point, with 1 to crashPassesMax passes", () => {
    const plan = planFaults(new Prng(3), {
      ...options,
      kinds: ["crash-point"],
      crashPoints: ["gateway-after-first-commit"],
    });
    assert.ok(plan.length > 0);
    for (const fault of plan) {
      assert.equal(fault.target, "gateway");
      assert.match(fault.crashSpec!, new RegExp(`^gateway-after-first-commit:[1-${nemesisBounds.crashPassesMax}]$`));
    }
  });
});
