// Specification of `paynet bench` as a process: it starts its own network, makes every payment it was asked
// for, and its counts and conservation check are right. Correctness only: no assertion on speed.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runCli } from "./helpers/network.js";
import { testServerUrl } from "./helpers/postgres.js";

interface BenchJson {
  payments: number;
  committed: number;
  aborted: number;
  ambiguous: number;
  ambiguousResolved: { committed: number; aborted: number; unresolved: number };
  reasons: Record<string, number>;
  latencyMs: { p50: number; p95: number; p99: number; max: number; mean: number };
  conservation: {
    ok: boolean;
    sumsEqual: boolean;
    noNegative: boolean;
    appliedOnce: boolean;
    outcomesAgree: boolean;
    gatewayCommitted: number;
    sumBefore: string;
    sumAfter: string;
    accountsChecked: number;
  };
  network: { owned: boolean; kept: boolean };
  warmup: null | {
    payments: number;
    committed: number;
    aborted: number;
    ambiguous: number;
    ambiguousResolved: { committed: number; aborted: number; unresolved: number };
    gatewayCommitted: number;
    outcomesAgree: boolean;
  };
  cpu: {
    processes: Array<{ name: string; cpuMs: number | null; perPaymentMs: number | null }>;
    perPaymentMs: number | null;
    coresBusy: number | null;
  };
}

function assertConsistent(report: BenchJson, payments: number): void {
  assert.equal(report.payments, payments);
  assert.equal(report.committed + report.aborted + report.ambiguous, payments);
  assert.equal(report.ambiguousResolved.unresolved, 0);
  assert.equal(report.conservation.ok, true);
  assert.equal(report.conservation.sumsEqual, true);
  assert.equal(report.conservation.noNegative, true);
  assert.equal(report.conservation.appliedOnce, true);
  assert.equal(report.conservation.outcomesAgree, true);
  assert.equal(report.conservation.sumBefore, report.conservation.sumAfter);
  assert.equal(report.conservation.gatewayCommitted, report.committed + report.ambiguousResolved.committed);
  const { p50, p95, p99, max } = report.latencyMs;
  for (const value of [p50, p95, p99, max]) assert.ok(Number.isFinite(value) && value > 0, `latency ${value}`);
  assert.ok(p50 <= p95, `p50 ${p50} <= p95 ${p95}`);
  assert.ok(p95 <= p99, `p95 ${p95} <= p99 ${p99}`);
  assert.ok(p99 <= max, `p99 ${p99} <= max ${max}`);
}

describe("paynet bench", { timeout: 90_000 }, () => {
  it("makes 200 payments from 8 clients over 40 accounts and finds every balance conserved", async () => {
    const result = await runCli([
      "bench",
      "--payments",
      "200",
      "--warmup",
      "0",
      "--concurrency",
      "8",
      "--accounts",
      "40",
      "--json",
    ]);
    assert.equal(result.code, 0, `exit ${result.code}; stderr:\n${result.stderr}`);
    const report = result.json as unknown as BenchJson;
    assertConsistent(report, 200);
    assert.equal(report.warmup, null);
    assert.ok(report.committed > 0);
    assert.equal(report.conservation.accountsChecked, 40);
    assert.equal(report.conservation.sumBefore, "40000.00");
    assert.deepEqual(report.network, { ...report.network, owned: true, kept: false });
    // Where the CPU went during the load: the bench itself and each process it started (Linux /proc).
    const names = report.cpu.processes.map((entry) => entry.name);
    assert.deepEqual(names.slice(0, 2), ["bench", "gateway"]);
    assert.equal(names.filter((name) => name.startsWith("bank ")).length, names.length - 2);
    assert.ok(names.length >= 4, `names ${names.join(", ")}`);
    let totalMs = 0;
    for (const entry of report.cpu.processes) {
      assert.ok(
        entry.cpuMs !== null && entry.cpuMs >= 0 && entry.perPaymentMs !== null,
        `${entry.name}: ${JSON.stringify(entry)}`,
      );
      assert.ok(Math.abs(entry.perPaymentMs - entry.cpuMs / 200) < 0.001, `${entry.name}: per payment = cpu / 200`);
      totalMs += entry.cpuMs;
    }
    assert.ok(report.cpu.perPaymentMs !== null && Math.abs(report.cpu.perPaymentMs - totalMs / 200) < 0.01);
    assert.ok(report.cpu.coresBusy !== null && report.cpu.coresBusy > 0);
  });

  it("counts refusals as aborted and still conserves, with balances too small for most payments", async () => {
    const result = await runCli([
      "bench",
      "--payments",
      "60",
      "--warmup",
      "0",
      "--concurrency",
      "4",
      "--accounts",
      "8",
      "--balance",
      "0.50",
      "--same-bank-percent",
      "30",
      "--json",
    ]);
    assert.equal(result.code, 0, `exit ${result.code}; stderr:\n${result.stderr}`);
    const report = result.json as unknown as BenchJson;
    assertConsistent(report, 60);
    assert.ok(report.aborted > 0, "some payments are refused for insufficient funds");
    assert.equal(report.reasons.INSUFFICIENT_FUNDS, report.aborted);
    assert.equal(report.conservation.sumBefore, "4.00");
  });

  it("with --batch sends MakePayments calls of that many orders, and every order is counted and conserved; --cpu-prof profiles each process it starts", async () => {
    const profileDir = await mkdtemp(join(tmpdir(), "paynet-bench-prof-"));
    try {
      const result = await runCli([
        "bench",
        "--payments",
        "300",
        "--warmup",
        "0",
        "--concurrency",
        "4",
        "--accounts",
        "20",
        "--batch",
        "25",
        "--same-bank-percent",
        "20",
        "--cpu-prof",
        profileDir,
        "--json",
      ]);
      assert.equal(result.code, 0, `exit ${result.code}; stderr:\n${result.stderr}`);
      const report = result.json as unknown as BenchJson & { batch: number };
      assertConsistent(report, 300);
      assert.equal(report.batch, 25);
      assert.ok(report.committed > 0);
      assert.equal(report.conservation.sumBefore, "20000.00");
      // Each child wrote its V8 profile when the bench stopped it: a call tree with samples, as DevTools reads it.
      assert.deepEqual((await readdir(profileDir)).sort(), [
        "bank-BANKA.cpuprofile",
        "bank-BANKB.cpuprofile",
        "gateway.cpuprofile",
      ]);
      for (const name of await readdir(profileDir)) {
        const profile = JSON.parse(await readFile(join(profileDir, name), "utf8")) as {
          nodes: unknown[];
          samples: number[];
        };
        assert.ok(
          profile.nodes.length > 1 && profile.samples.length > 0,
          `${name}: ${profile.nodes.length} nodes, ${profile.samples.length} samples`,
        );
      }
    } finally {
      await rm(profileDir, { recursive: true, force: true });
    }
  });

  it("makes the warm-up payments first, untimed and uncounted, yet checks their outcomes and balances with the rest", async () => {
    const result = await runCli([
      "bench",
      "--payments",
      "80",
      "--warmup",
      "120",
      "--concurrency",
      "4",
      "--accounts",
      "12",
      "--balance",
      "2.00",
      "--json",
    ]);
    assert.equal(result.code, 0, `exit ${result.code}; stderr:\n${result.stderr}`);
    const report = result.json as unknown as BenchJson;
    // The timed figures and counts are the 80 payments only; the gateway log's count for them excludes the warm-up's ids.
    assertConsistent(report, 80);
    assert.equal(report.latencyMs.p50 > 0, true);
    const warmup = report.warmup;
    assert.ok(warmup !== null);
    assert.equal(warmup.payments, 120);
    assert.equal(warmup.committed + warmup.aborted + warmup.ambiguous, 120);
    assert.equal(warmup.ambiguousResolved.unresolved, 0);
    assert.equal(warmup.outcomesAgree, true);
    assert.equal(warmup.gatewayCommitted, warmup.committed + warmup.ambiguousResolved.committed);
    // 200 payments of up to 1.00 from 4 payers holding 2.00 each: some are refused, and balances before the
    // warm-up equal those after the timed load only if the warm-up's transfers are counted too.
    assert.ok(
      warmup.committed > 0 && report.aborted + warmup.aborted > 0,
      `warm-up ${JSON.stringify(warmup)}, timed aborted ${report.aborted}`,
    );
    assert.equal(report.conservation.sumBefore, "24.00");
    assert.match(result.stderr, /warm-up: 120 payments first/);
  });

  it("refuses a negative --warmup as a usage error, before starting anything", async () => {
    const result = await runCli(["bench", "--warmup", "-1", "--json"]);
    assert.equal(result.code, 2);
    assert.match(result.stderr, /--warmup must be an integer in 0-/);
    assert.equal(result.stdout, "");
  });

  it("refuses --batch above 1,000 (one call's bound) as a usage error, before starting anything", async () => {
    const result = await runCli(["bench", "--batch", "1001", "--json"]);
    assert.equal(result.code, 2);
    assert.match(result.stderr, /--batch must be an integer in 1-1000/);
    assert.equal(result.stdout, "");
  });
});

// Its own time budget: the runs above already take most of their describe's on a busy machine.
describe("paynet bench's default warm-up", { timeout: 90_000 }, () => {
  it("without --warmup warms up with as many payments as it times, and says so on its first line", async () => {
    const result = await runCli(["bench", "--payments", "40", "--concurrency", "4", "--accounts", "8", "--json"]);
    assert.equal(result.code, 0, `exit ${result.code}; stderr:\n${result.stderr}`);
    assert.match(
      result.stderr.split("\n")[0]!,
      /^bench: 40 warm-up payments \(as many as the timed ones, at most 10000; --warmup to choose\), then 40 timed$/,
    );
    const report = result.json as unknown as BenchJson;
    assertConsistent(report, 40);
    assert.equal(report.warmup?.payments, 40);
  });
});

// The shared ledger (`paynet bank --multi-instance`) under the bench: on a database the bench creates on the test
// server and drops after, two processes per bank, each measured, and the same checks as any run.
describe("paynet bench --bank-instances 2 on PostgreSQL", { timeout: 90_000 }, () => {
  it("starts two processes per bank, measures the CPU of each, and finds every balance conserved", async () => {
    const result = await runCli([
      ...["bench", "--store", testServerUrl, "--bank-instances", "2"],
      ...["--payments", "100", "--warmup", "0", "--concurrency", "4", "--accounts", "8", "--json"],
    ]);
    assert.equal(result.code, 0, `exit ${result.code}; stderr:\n${result.stderr}`);
    const report = result.json as unknown as BenchJson & { network: { bankInstances: number } };
    assertConsistent(report, 100);
    assert.ok(report.committed > 0);
    assert.equal(report.network.bankInstances, 2);
    const banks = report.cpu.processes.map((entry) => entry.name).filter((name) => name.startsWith("bank "));
    assert.deepEqual(banks.sort(), ["bank BANKA #1", "bank BANKA #2", "bank BANKB #1", "bank BANKB #2"]);
  });
});
