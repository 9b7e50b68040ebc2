// Two processes of one bank on one PostgreSQL schema (`paynet bank --multi-instance`), over real processes and a
// real server: both register with the gateway, which spreads the bank's legs over them (each votes on some);
// `paynet status` shows both; a lone (exclusive) process of that bank is refused beside them; and when one is
// killed (SIGKILL) mid-load, payments keep committing through the other, every answered payment is found as
// answered in the gateway's table and applied once at the banks, and no hold is left.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { Network, runCli, waitUntil, type Proc } from "./helpers/network.js";
import {
  balances,
  createThrowawayDatabase,
  gatewayStates,
  unfinished,
  type ThrowawayDatabase,
} from "./helpers/postgres.js";

interface Answer {
  paymentId: string;
  from: string;
  to: string;
  amountMinor: bigint;
  status: "committed" | "aborted";
}

/** Every payment touches SBI, the bank of two instances: alice@SBI → bob@HDFC → carol@SBI → dave@HDFC → alice. */
const accounts = [
  { user: "alice", bank: "SBI" },
  { user: "bob", bank: "HDFC" },
  { user: "carol", bank: "SBI" },
  { user: "dave", bank: "HDFC" },
];
const tooLargeMinor = 10_000_000n;
/** How long one payment may take to get a final answer, retries included. */
const answerDeadlineMs = 60_000;
const answersBeforeKill = 30;
const commitsAfterKill = 30;

describe("two instances of a bank on one PostgreSQL schema", () => {
  let database: ThrowawayDatabase;
  let network: Network | null = null;

  before(async () => {
    database = await createThrowawayDatabase("bank_instances");
  });
  after(async () => {
    await network?.destroy();
    await database.drop();
  });

  it("spreads the bank's legs over both; one killed mid-load, payments commit through the other, nothing lost or doubled", async () => {
    const store = ["--store", database.url];
    const net = await Network.create();
    network = net;
    await net.startGateway({ args: store });
    await net.startBank("HDFC", { args: store });
    // Debug logs: each instance's votes show that the gateway sends legs to both.
    const env = { PAYNET_LOG_LEVEL: "debug" };
    const first = await net.startBank("SBI", { args: [...store, "--multi-instance"], env });
    const second = await net.startBank("SBI", { args: [...store, "--multi-instance"], env });
    const addressOf = async (proc: Proc) => (await proc.waitFor(/listening on ([0-9.:]+)/))[1]!;
    const [firstAddress, secondAddress] = [await addressOf(first), await addressOf(second)];
    await net.gateway!.waitFor(new RegExp(`bank SBI registered at ${secondAddress}`));

    const lone = await runCli(["bank", "--id", "SBI", "--data-dir", net.dir, "--port", "0", ...store]);
    assert.notEqual(lone.code, 0, "a lone process of the bank is refused beside its instances");
    assert.match(lone.stderr + lone.stdout, /paynet bank SBI: already held by paynet-bank-SBI/);

    const status = await runCli(["status", "--json", "--data-dir", net.dir, "--gateway", net.gatewayAddress]);
    const sbi = (
      status.json?.banks as Array<{ name: string; instances: Array<{ address: string; up: boolean }> }>
    ).find((bank) => bank.name === "SBI");
    assert.deepEqual(
      sbi?.instances.map((instance) => [instance.address, instance.up]).sort(),
      [
        [firstAddress, true],
        [secondAddress, true],
      ].sort(),
      status.stdout,
    );

    const initialMinor = await balances(database.url);
    const answers: Answer[] = [];
    const waiters: Array<{ done: () => boolean; resolve: () => void }> = [];
    const answered = (answer: Answer) => {
      answers.push(answer);
      for (const waiter of waiters.filter((entry) => entry.done())) {
        waiters.splice(waiters.indexOf(waiter), 1);
        waiter.resolve();
      }
    };
    const until = (done: () => boolean) =>
      new Promise<void>((resolve) => {
        if (done()) resolve();
        else waiters.push({ done, resolve });
      });

    let loadOn = true;
    /** Pays until told to stop, each id retried until it has a final answer (committed, or refused for good). */
    const worker = async (index: number) => {
      const from = accounts[index]!;
      const to = accounts[(index + 1) % accounts.length]!;
      for (let n = 0; loadOn; n += 1) {
        const paymentId = `instances-w${index}-${n}`;
        const amountMinor = n % 9 === 8 ? tooLargeMinor : BigInt(1 + ((index + n) % 5));
        const deadline = Date.now() + answerDeadlineMs;
        for (;;) {
          const error = await net.rawPay({
            from: from.user,
            fromBank: from.bank,
            to: to.user,
            toBank: to.bank,
            amountMinor,
            paymentId,
          });
          if (error === null || error.final) {
            const status = error === null ? "committed" : "aborted";
            answered({
              paymentId,
              from: `${from.user}@${from.bank}`,
              to: `${to.user}@${to.bank}`,
              amountMinor,
              status,
            });
            break;
          }
          // No final answer: the same id again, as a client would (a short pause, not a synchronization).
          assert.ok(
            Date.now() < deadline,
            `${paymentId}: no final answer within ${answerDeadlineMs} ms: ${error.message}`,
          );
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
      }
    };
    const load = Promise.all(accounts.map((_, index) => worker(index)));

    await until(() => answers.length >= answersBeforeKill);
    const votes = (proc: Proc) => proc.lines.filter((line) => line.includes("voted yes")).length;
    await waitUntil(() => votes(first) > 0 && votes(second) > 0, "both instances voted on some leg");
    await first.stop("SIGKILL");
    await first.exited;
    const answeredAtKill = answers.length;
    const committedAfterKill = () =>
      answers.slice(answeredAtKill).filter((answer) => answer.status === "committed").length;
    await until(() => committedAfterKill() >= commitsAfterKill);
    loadOn = false;
    await load;
    assert.ok(committedAfterKill() >= commitsAfterKill, "payments kept committing through the other instance");
    assert.ok(second.running, "the other instance served on");

    // Whatever the killed instance had in flight is finished by the gateway through the other one.
    await waitUntil(
      async () => (await unfinished(database.url)) === 0,
      "every payment finished in the gateway's table and no hold left at the banks",
      60_000,
    );
    const recorded = await gatewayStates(database.url);
    const expectedMinor = new Map(initialMinor);
    for (const answer of answers) {
      assert.equal(recorded.get(answer.paymentId), answer.status, `${answer.paymentId} was answered ${answer.status}`);
      if (answer.status !== "committed") continue;
      expectedMinor.set(answer.from, expectedMinor.get(answer.from)! - answer.amountMinor);
      expectedMinor.set(answer.to, expectedMinor.get(answer.to)! + answer.amountMinor);
    }
    assert.equal(recorded.size, answers.length, "the gateway recorded exactly the payments asked for");
    assert.ok(
      answers.some((answer) => answer.status === "aborted"),
      "the refusals were answered as such",
    );
    const finalMinor = await balances(database.url);
    assert.deepEqual(finalMinor, expectedMinor, "each committed payment applied exactly once");
    const sum = (balances: Map<string, bigint>) => [...balances.values()].reduce((total, value) => total + value, 0n);
    assert.equal(sum(finalMinor), sum(initialMinor), "money conserved");
  });
});
