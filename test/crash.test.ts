// Crash safety: a process killed at each named point, then restarted, leaves every payment applied exactly
// once at both banks or at neither; money is conserved, no hold remains, and the id keeps its one outcome.
import { describe, it } from "node:test";
import { mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import assert from "node:assert/strict";
import { networkPerSuite, networkPerTest, runCli, waitUntil, type Network, type Proc } from "./helpers/network.js";
import { readGatewayRecords } from "../src/core/gateway/store/file/gateway-log.js";
import { readArchivedPayments } from "../src/core/gateway/store/file/sqlite-archive.js";
import { crashPointsByRole } from "../src/core/faults/crash.js";
import { isAmbiguous, type PaymentError } from "../src/core/domain/errors.js";
import { PaymentStatus } from "../src/gen/paynet/v1/paynet_pb.js";

type Role = "gateway" | "SBI" | "HDFC";

interface CrashCase {
  point: string;
  role: Role;
  payment: { from: string; fromBank: string; to: string; toBank: string };
  expected: "committed" | "aborted";
}

const crossBank = { from: "alice", fromBank: "SBI", to: "bob", toBank: "HDFC" };
const sameBank = { from: "alice", fromBank: "SBI", to: "carol", toBank: "SBI" };

const cases: CrashCase[] = [
  { point: "gateway-after-preparing", role: "gateway", payment: crossBank, expected: "aborted" },
  { point: "gateway-after-prepares", role: "gateway", payment: crossBank, expected: "aborted" },
  { point: "gateway-after-commit-logged", role: "gateway", payment: crossBank, expected: "committed" },
  { point: "gateway-after-first-commit", role: "gateway", payment: crossBank, expected: "committed" },
  // The journal's first append is the new payment itself, torn: dropped at restart, so the retry runs it afresh.
  { point: "gateway-journal-torn", role: "gateway", payment: crossBank, expected: "committed" },
  { point: "bank-after-hold", role: "HDFC", payment: crossBank, expected: "aborted" },
  { point: "bank-journal-torn", role: "HDFC", payment: crossBank, expected: "aborted" },
  { point: "bank-before-commit", role: "HDFC", payment: crossBank, expected: "committed" },
  { point: "bank-journal-torn:2", role: "SBI", payment: crossBank, expected: "committed" },
  { point: "bank-after-commit-logged", role: "SBI", payment: crossBank, expected: "committed" },
  { point: "bank-csv-temp-written", role: "HDFC", payment: crossBank, expected: "committed" },
  { point: "bank-checkpoint-after-csv", role: "SBI", payment: crossBank, expected: "committed" },
  { point: "pending-temp-written", role: "SBI", payment: crossBank, expected: "committed" },
  { point: "bank-checkpoint-before-journal-delete", role: "HDFC", payment: crossBank, expected: "committed" },
  { point: "bank-after-commit-logged", role: "SBI", payment: sameBank, expected: "committed" },
  { point: "bank-checkpoint-after-csv", role: "SBI", payment: sameBank, expected: "committed" },
  { point: "bank-csv-temp-written", role: "SBI", payment: sameBank, expected: "committed" },
];

const amountMinor = 1000n;

/** Pays with the same id until the answer is final (not "unknown"), as a careful client would. */
async function payUntilFinal(
  network: Network,
  paymentId: string,
  payment: CrashCase["payment"],
): Promise<{ status: "committed" } | { status: "aborted"; reason: string }> {
  for (let attempt = 1; ; attempt += 1) {
    const error = await network.rawPay({ ...payment, amountMinor, paymentId });
    if (error === null) return { status: "committed" };
    if (!isAmbiguous(error)) return { status: "aborted", reason: error.code };
    if (attempt > 600)
      throw new Error(`no final answer for ${paymentId} after ${attempt} attempts: ${error.code} ${error.message}`);
    await network.gatewayReady();
  }
}

/**
 * Brings a shared network up for a case: a new `role` process armed to crash at `point` (a fresh process, so
 * its passes through the point are counted from zero, as in a network of its own: `:2` is still its second),
 * the other two as the previous case left them (or started now, unarmed, in a new network), and every bank
 * registered with the gateway. Returns the armed process.
 */
async function upWithVictimArmed(network: Network, role: Role, point: string): Promise<Proc> {
  const env = { PAYNET_CRASH_AT: point };
  // Stopped in order (its journal folded, its locks released), as an operator restarts a process.
  await (role === "gateway" ? network.gateway : network.banks.get(role))?.stop("SIGTERM");
  if (network.gateway?.running !== true) await network.startGateway(role === "gateway" ? { env } : {});
  await Promise.all(
    (["SBI", "HDFC"] as const)
      .filter((bank) => network.banks.get(bank)?.running !== true)
      .map((bank) => network.startBank(bank, role === bank ? { env } : {})),
  );
  // A new gateway process is ready once the banks that kept running have registered with it again.
  await network.gatewayReady();
  return role === "gateway" ? network.gateway! : network.banks.get(role)!;
}

type SharedNetwork = ReturnType<typeof networkPerSuite>;

/** A network per victim role, shared by the cases of every suite of this file with that victim (perVictimRole). */
const networkByVictim: Record<Role, SharedNetwork> = {
  gateway: networkPerSuite(),
  SBI: networkPerSuite(),
  HDFC: networkPerSuite(),
};

/**
 * Defines a suite's cases in one sub-suite per victim role, whose cases share that role's network, one after
 * another (a case restarts only its victim: process starts are most of a case's time); each case still
 * measures its own balances before and after, and pays with its own ids. The sub-suites run side by side: their
 * networks share nothing, and a case spends most of its time waiting (for the banks' heartbeat to find a new
 * gateway, for the gateway's wait on phase 2), not computing.
 */
function perVictimRole<T extends { role: Role }>(
  cases: T[],
  define: (testCase: T, shared: SharedNetwork) => void,
): void {
  for (const role of ["gateway", "SBI", "HDFC"] as const) {
    const ofRole = cases.filter((testCase) => testCase.role === role);
    if (ofRole.length === 0) continue;
    // Not side by side within (node:test hands a suite's concurrency down to the suites in it).
    describe(`${role} as the victim`, { concurrency: 1 }, () => {
      for (const testCase of ofRole) define(testCase, networkByVictim[role]);
    });
  }
}

describe("crash points", { concurrency: true }, () => {
  perVictimRole(cases, (testCase, shared) => {
    const kind = testCase.payment.fromBank === testCase.payment.toBank ? "same-bank" : "cross-bank";
    it(`${testCase.point} in ${testCase.role} (${kind}): ends ${testCase.expected}, applied once`, () =>
      shared.use(async (network) => {
        const victim = await upWithVictimArmed(network, testCase.role, testCase.point);
        const before = await network.balancesOnDisk();
        const totalBefore = await network.totalOnDisk();
        const paymentId = `crash-${testCase.point.replace(":", "-pass-")}-${kind}`;

        // The first attempt meets the crash; whatever it answered, the crashed process is gone.
        // The answer, if any, is checked after recovery.
        const firstAttempt = network.rawPay({ ...testCase.payment, amountMinor, paymentId });
        const { signal } = await victim.exited;
        assert.equal(signal, "SIGKILL", `${testCase.role} should die at ${testCase.point}`);
        await firstAttempt;

        if (testCase.role === "gateway") await network.startGateway();
        else await network.startBank(testCase.role);
        await network.gatewayReady();

        const outcome = await payUntilFinal(network, paymentId, testCase.payment);
        assert.equal(outcome.status, testCase.expected, JSON.stringify(outcome));
        await waitUntil(
          async () => (await network.gatewayRecord(paymentId))?.finished === true,
          "the gateway to finish the payment",
        );
        await waitUntil(async () => (await network.holdsOnDisk()) === 0, "every hold to be released");

        const after = await network.balancesOnDisk();
        const { from, fromBank, to, toBank } = testCase.payment;
        const moved = testCase.expected === "committed" ? amountMinor : 0n;
        assert.equal(after.get(`${from}@${fromBank}`), before.get(`${from}@${fromBank}`)! - moved);
        assert.equal(after.get(`${to}@${toBank}`), before.get(`${to}@${toBank}`)! + moved);
        assert.equal(await network.totalOnDisk(), totalBefore);

        // A live process may be between writing and renaming a temp file; one of a dead process is litter.
        const deadOwner = (name: string) => {
          const pid = Number(/\.([0-9]+)\.[0-9a-f]+\.tmp$/.exec(name)?.[1]);
          try {
            process.kill(pid, 0);
            return false;
          } catch {
            return true;
          }
        };
        for (const dir of [dirname(network.paths.accountsCsv), dirname(network.paths.transactionLogsJson)]) {
          assert.deepEqual(
            (await readdir(dir)).filter((name) => name.endsWith(".tmp") && deadOwner(name)),
            [],
            `temp files of dead processes left in ${dir}`,
          );
        }

        // A retry with the same id answers the same and moves nothing.
        const retry = await payUntilFinal(network, paymentId, testCase.payment);
        assert.deepEqual(retry, outcome);
        assert.deepEqual(await network.balancesOnDisk(), after);
      }));
  });
});

/** Three payments with three answers: a committed and a refused cross-bank one, and a same-bank one. */
async function payThree(
  net: Network,
  prefix: string,
): Promise<{
  payments: Array<Parameters<Network["rawPay"]>[0]>;
  answers: Map<string, string>;
  balances: Awaited<ReturnType<Network["balancesOnDisk"]>>;
}> {
  const payments = [
    { paymentId: `${prefix}-committed`, ...crossBank, amountMinor: 1_000n },
    { paymentId: `${prefix}-refused`, ...crossBank, amountMinor: 90_000_000n },
    { paymentId: `${prefix}-same-bank`, ...sameBank, amountMinor: 500n },
  ];
  const answers = new Map<string, string>();
  for (const payment of payments) answers.set(payment.paymentId, (await net.rawPay(payment))?.code ?? "committed");
  assert.deepEqual([...answers.values()], ["committed", "INSUFFICIENT_FUNDS", "committed"]);
  await net.settled();
  return { payments, answers, balances: await net.balancesOnDisk() };
}

/** Each id repeated answers as it first did and moves nothing; a reuse with other details is refused; the counts hold. */
async function assertAnswersKept(net: Network, paid: Awaited<ReturnType<typeof payThree>>): Promise<void> {
  for (const payment of paid.payments)
    assert.equal(
      (await net.rawPay(payment))?.code ?? "committed",
      paid.answers.get(payment.paymentId),
      `the repeat of ${payment.paymentId}`,
    );
  const conflict = await net.rawPay({ ...paid.payments[0]!, amountMinor: 1_001n });
  assert.equal(conflict?.code, "IDEMPOTENCY_CONFLICT", "an id reused for another payment");
  assert.deepEqual(await net.balancesOnDisk(), paid.balances, "the repeats moved nothing");
  const found = await runCli([
    "payment",
    paid.payments[0]!.paymentId,
    "--json",
    "--data-dir",
    net.dir,
    "--gateway",
    net.gatewayAddress,
  ]);
  assert.equal(found.code, 0, found.stdout + found.stderr);
  assert.equal(found.json?.state, "committed");
  const status = await runCli(["status", "--json", "--data-dir", net.dir, "--gateway", net.gatewayAddress]);
  assert.deepEqual((status.json as { payments: Record<string, number> }).payments, {
    preparing: 0,
    committing: 0,
    aborting: 0,
    committed: 2,
    aborted: 1,
  });
}

describe("the gateway's compaction and archive", () => {
  const networks = networkPerTest();

  async function startNetwork(gateway: { args: string[]; env?: Record<string, string> }): Promise<Network> {
    const net = await networks.create();
    await net.startGateway(gateway);
    await Promise.all((["SBI", "HDFC"] as const).map((bank) => net.startBank(bank)));
    return net;
  }

  it("a crash with the new snapshot in its temp file loses nothing, and every id keeps its answer", async () => {
    const net = await startNetwork({ args: [], env: { PAYNET_CRASH_AT: "gateway-log-temp-written" } });
    const paid = await payThree(net, "snapshot");
    // The orderly stop compacts the journal into a new snapshot, and dies before renaming it.
    net.gateway!.child.kill("SIGTERM");
    assert.equal((await net.gateway!.exited).signal, "SIGKILL", "the gateway should die at gateway-log-temp-written");
    const gatewayDir = dirname(net.paths.transactionLogsJson);
    assert.equal(
      (await readdir(gatewayDir)).filter((name) => name.endsWith(".tmp")).length,
      1,
      "the crash left the snapshot's temp file",
    );

    await net.startGateway({ args: [] });
    await net.gatewayReady();
    assert.equal(
      (await readdir(gatewayDir)).filter((name) => name.endsWith(".tmp")).length,
      0,
      "the dead process's temp file is removed",
    );
    await assertAnswersKept(net, paid);
  });

  it("finished payments beyond the retained ones move to the archive; a crash after its append loses nothing, and every id keeps its answer", async () => {
    // Keep one finished payment in memory: the orderly stop's compaction archives the others, and dies there.
    const retainOne = { args: ["--records-retained", "1"] };
    const net = await startNetwork({ ...retainOne, env: { PAYNET_CRASH_AT: "gateway-archive-appended" } });
    const paid = await payThree(net, "archived");

    net.gateway!.child.kill("SIGTERM");
    assert.equal((await net.gateway!.exited).signal, "SIGKILL", "the gateway should die at gateway-archive-appended");
    const archived = [...readArchivedPayments(net.paths.transactionArchiveSqlite)]
      .map((payment) => payment.paymentId)
      .sort();
    assert.deepEqual(
      archived,
      ["archived-committed", "archived-refused"],
      "the archive's transaction committed before the crash",
    );

    // Restarted (the snapshot still holds the two: memory lets them go, the archive answers them, counted once),
    // then stopped in order, then restarted.
    for (const signal of ["SIGTERM", null] as const) {
      await net.startGateway(retainOne);
      await net.gatewayReady();
      await assertAnswersKept(net, paid);
      if (signal !== null) await net.gateway!.stop(signal);
    }
    const snapshot = JSON.parse(await readFile(net.paths.transactionLogsJson, "utf8")) as {
      payments: Array<{ paymentId: string }>;
    };
    assert.deepEqual(
      snapshot.payments.map((payment) => payment.paymentId),
      ["archived-same-bank"],
      "the snapshot holds only the retained payment",
    );
    assert.deepEqual(
      [...(await readGatewayRecords(net.paths)).keys()].sort(),
      paid.payments.map((payment) => payment.paymentId).sort(),
      "tools still read every payment",
    );
  });

  it("an earlier build's archive (transaction_archive.jsonl and its index) is imported at start, and every id keeps its answer", async () => {
    const archiveAll = { args: ["--records-retained", "0"] };
    const net = await startNetwork(archiveAll);
    const paid = await payThree(net, "upgraded");
    await net.gateway!.stop("SIGTERM"); // its compaction archives all three

    // The data dir as the earlier build left it: the records in transaction_archive.jsonl, an index beside it.
    const lines = [...readArchivedPayments(net.paths.transactionArchiveSqlite)].map((payment) => `${payment.line}\n`);
    assert.equal(lines.length, 3);
    await writeFile(net.paths.transactionArchiveJsonl, lines.join(""));
    await mkdir(net.paths.transactionArchiveIndex);
    await writeFile(
      join(net.paths.transactionArchiveIndex, "0000000000000000-0000000000000999.idx"),
      "an earlier build's index chunk",
    );
    for (const suffix of ["", "-wal", "-shm"])
      await rm(`${net.paths.transactionArchiveSqlite}${suffix}`, { force: true });

    await net.startGateway(archiveAll);
    await net.gatewayReady();
    const names = await readdir(dirname(net.paths.transactionLogsJson));
    assert.ok(
      !names.includes("transaction_archive.jsonl") && !names.includes("transaction_archive.index"),
      `the earlier archive's files are removed: ${names.join(", ")}`,
    );
    await assertAnswersKept(net, paid);
  });
});

describe("the crash points", () => {
  it("are each in README's table, with the process that passes it", async () => {
    const readme = await readFile(new URL("../README.md", import.meta.url), "utf8");
    const rows = [...readme.matchAll(/^\| `([a-z-]+)(?::[0-9]+)?` \| (gateway|bank|client) \|/gm)].map(
      ([, point, role]) => `${point} ${role}`,
    );
    const named = Object.entries(crashPointsByRole).flatMap(([role, points]) =>
      points.map((point) => `${point} ${role}`),
    );
    assert.deepEqual([...new Set(rows)].sort(), named.sort());
  });
});

/** Orders of one MakePayments call from alice@SBI, and what each ends as when the process dies at the point. */
interface BatchCrashCase {
  point: string;
  role: Role;
  /** The cross-bank orders that alice can pay end so; the one she cannot pay always ends aborted. */
  expected: "committed" | "aborted";
}

const batchCases: BatchCrashCase[] = [
  { point: "gateway-after-preparing", role: "gateway", expected: "aborted" },
  { point: "gateway-after-prepares", role: "gateway", expected: "aborted" },
  { point: "gateway-after-commit-logged", role: "gateway", expected: "committed" },
  { point: "gateway-after-first-commit", role: "gateway", expected: "committed" },
  { point: "bank-after-hold", role: "HDFC", expected: "aborted" },
  { point: "bank-before-commit", role: "HDFC", expected: "committed" },
];

type BatchAnswer = { paymentId: string; status: "committed" | "aborted" | "in doubt"; reason: string };

/** One MakePayments call over a fresh connection; null when the call as a whole failed (the gateway was gone). */
async function payMany(
  network: Network,
  orders: Array<{ paymentId: string; toUser: string; toBank: string; amountMinor: bigint }>,
): Promise<BatchAnswer[] | null> {
  const gateway = await network.gatewayClient();
  const call = { timeoutMs: 30_000 };
  try {
    const { token } = await gateway.registerClient({ username: "alice", password: "alice123", bank: "SBI" }, call);
    const reply = await gateway.makePayments({ token, payments: orders }, call);
    const statuses = {
      [PaymentStatus.COMMITTED]: "committed",
      [PaymentStatus.ABORTED]: "aborted",
      [PaymentStatus.IN_DOUBT]: "in doubt",
    } as const;
    return reply.results.map((result) => ({
      paymentId: result.paymentId,
      status: statuses[result.status as keyof typeof statuses],
      reason: result.reason,
    }));
  } catch (error) {
    if (isAmbiguous(error as PaymentError)) return null;
    throw error;
  } finally {
    gateway.close();
  }
}

describe("crash points in a MakePayments call", { concurrency: true }, () => {
  perVictimRole(batchCases, (testCase, shared) => {
    it(`${testCase.point} in ${testCase.role}: each order ends with one answer, applied once`, () =>
      shared.use(async (net) => {
        const victim = await upWithVictimArmed(net, testCase.role, testCase.point);
        const before = await net.balancesOnDisk();
        const totalBefore = await net.totalOnDisk();
        const orders = [
          { paymentId: `${testCase.point}-1`, toUser: "bob", toBank: "HDFC", amountMinor: 100n },
          { paymentId: `${testCase.point}-2`, toUser: "dave", toBank: "HDFC", amountMinor: 200n },
          { paymentId: `${testCase.point}-too-much`, toUser: "bob", toBank: "HDFC", amountMinor: 90_000_000n },
          { paymentId: `${testCase.point}-3`, toUser: "bob", toBank: "HDFC", amountMinor: 300n },
        ];

        const firstAttempt = payMany(net, orders);
        assert.equal((await victim.exited).signal, "SIGKILL", `${testCase.role} should die at ${testCase.point}`);
        await firstAttempt;
        if (testCase.role === "gateway") await net.startGateway();
        else await net.startBank(testCase.role);
        await net.gatewayReady();

        // Repeated, as a careful client would, until no order is in doubt.
        let answers: BatchAnswer[] | null = null;
        for (
          let attempt = 1;
          answers === null || answers.some((answer) => answer.status === "in doubt");
          attempt += 1
        ) {
          assert.ok(attempt <= 600, `orders still in doubt: ${JSON.stringify(answers)}`);
          answers = await payMany(net, orders);
          if (answers === null) await net.gatewayReady();
        }
        assert.deepEqual(
          answers.map((answer) => answer.status),
          orders.map((order) => (order.amountMinor > before.get("alice@SBI")! ? "aborted" : testCase.expected)),
          JSON.stringify(answers),
        );
        for (const order of orders)
          await waitUntil(
            async () => (await net.gatewayRecord(order.paymentId))?.finished === true,
            `the gateway to finish ${order.paymentId}`,
          );
        await waitUntil(async () => (await net.holdsOnDisk()) === 0, "every hold to be released");

        const after = await net.balancesOnDisk();
        const expected = new Map(before);
        orders.forEach((order, index) => {
          if (answers[index]!.status !== "committed") return;
          expected.set("alice@SBI", expected.get("alice@SBI")! - order.amountMinor);
          expected.set(`${order.toUser}@HDFC`, expected.get(`${order.toUser}@HDFC`)! + order.amountMinor);
        });
        assert.deepEqual(after, expected, "every committed order applied once, nothing else moved");
        assert.equal(await net.totalOnDisk(), totalBefore);

        // The same call again answers the same and moves nothing.
        assert.deepEqual(await payMany(net, orders), answers);
        assert.deepEqual(await net.balancesOnDisk(), after);
      }));
  });
});
