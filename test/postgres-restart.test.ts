// PostgreSQL itself restarted under load, as on a crash (`pg_ctl restart -m immediate`: no checkpoint, the WAL
// replayed at start), beneath a network run by `paynet up --store postgres://…`: every process loses its
// sessions and stops (exit 70) rather than run ahead of the database, the supervisor restarts them (one
// restarted before the server is back waits for it, never exiting another way), and nothing answered is lost or
// applied twice. The server is the test's own (see
// helpers/private-postgres.ts): the shared one serves other test files at the same time.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import pg from "pg";
import { Network, Proc, waitUntil } from "./helpers/network.js";
import { startPrivatePostgres, type PrivatePostgres } from "./helpers/private-postgres.js";
import { balances, gatewayStates, unfinished } from "./helpers/postgres.js";

interface Answer {
  paymentId: string;
  from: string;
  to: string;
  amountMinor: bigint;
  status: "committed" | "aborted";
}

const accounts = [
  { user: "alice", bank: "SBI" },
  { user: "bob", bank: "HDFC" },
  { user: "carol", bank: "SBI" },
  { user: "dave", bank: "HDFC" },
];
/** Each worker pays from one account to the next; every seventh payment is too large, and is refused. */
const workers = accounts.length;
const tooLargeMinor = 10_000_000n;
/** How long one payment may take to get a final answer across the restart, retries included. */
const answerDeadlineMs = 120_000;
/** Answers wanted before the restart, and after it (proof that the network came back). */
const answersBeforeRestart = 24;
const answersAfterRestart = 24;

describe("PostgreSQL restarted under load", () => {
  let server: PrivatePostgres;
  let network: Network;
  let up: Proc;

  before(async () => {
    server = await startPrivatePostgres();
  });
  after(async () => {
    await up?.stop("SIGTERM");
    await network?.destroy();
    await server?.destroy();
  });

  it("loses nothing answered, applies nothing twice, and leaves no hold once the network is back", async () => {
    const admin = new pg.Client({ connectionString: server.serverUrl });
    await admin.connect();
    await admin.query("CREATE DATABASE paynet");
    await admin.end();
    const url = new URL(server.serverUrl);
    url.pathname = "/paynet";
    const storeUrl = url.toString();

    network = await Network.create();
    up = new Proc("up", ["up", "--data-dir", network.dir, "--port", "0", "--bank-port", "0", "--store", storeUrl]);
    const [, gatewayAddress] = await up.waitFor(/ready: gateway ([0-9.:]+), banks/);
    network.gatewayAddress = gatewayAddress!;
    const initialMinor = await balances(storeUrl);

    const answers: Answer[] = [];
    const waiters: Array<{ count: number; resolve: () => void }> = [];
    const answered = (answer: Answer) => {
      answers.push(answer);
      for (const waiter of waiters.filter((entry) => answers.length >= entry.count)) {
        waiters.splice(waiters.indexOf(waiter), 1);
        waiter.resolve();
      }
    };
    const answersReach = (count: number) =>
      new Promise<void>((resolve) => {
        if (answers.length >= count) resolve();
        else waiters.push({ count, resolve });
      });

    let loadOn = true;
    let attemptsFailed = 0;
    /** Pays until told to stop, each id retried until it has a final answer (committed, or refused for good). */
    const worker = async (index: number) => {
      const from = accounts[index]!;
      const to = accounts[(index + 1) % accounts.length]!;
      for (let n = 0; loadOn; n += 1) {
        const paymentId = `restart-w${index}-${n}`;
        const amountMinor = n % 7 === 6 ? tooLargeMinor : BigInt(1 + ((index + n) % 5));
        const deadline = Date.now() + answerDeadlineMs;
        for (;;) {
          const error = await network.rawPay({
            from: from.user,
            fromBank: from.bank,
            to: to.user,
            toBank: to.bank,
            amountMinor,
            paymentId,
          });
          if (error === null || error.final) {
            answered({
              paymentId,
              from: `${from.user}@${from.bank}`,
              to: `${to.user}@${to.bank}`,
              amountMinor,
              status: error === null ? "committed" : "aborted",
            });
            break;
          }
          // Not an answer (the gateway or a bank is down, or restarting): the same id again, as a client would.
          attemptsFailed += 1;
          assert.ok(
            Date.now() < deadline,
            `${paymentId}: no final answer within ${answerDeadlineMs} ms: ${error.message}`,
          );
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
      }
    };
    const load = Promise.all(Array.from({ length: workers }, (_, index) => worker(index)));

    await answersReach(answersBeforeRestart);
    await server.restart();
    const answeredAtRestart = answers.length;
    await answersReach(answeredAtRestart + answersAfterRestart);
    loadOn = false;
    await load;

    // The restart reached the network: clients met it, and a process whose database write or lock failed
    // stopped with exit 70 (never another way) and was restarted by the supervisor. Which processes stop
    // depends on timing: a gateway with no write in flight while the server was down just renews its lease
    // (5 s) once the server is back, and keeps going; that is correct too.
    const upLog = up.lines.join("\n");
    const exits = [...upLog.matchAll(/(gateway|bank \w+) exited \(([^)]*)\)(; restarting it)?/g)];
    for (const [line, , ending, restarted] of exits) {
      assert.equal(ending, "code 70", `a process stopped otherwise than on a lost database: ${line}`);
      assert.ok(restarted, `not restarted: ${line}`);
    }
    assert.ok(attemptsFailed > 0, "some attempt met the restart");

    // Phase 2 of whatever was in flight finishes: no unfinished payment, no hold.
    await waitUntil(
      async () => (await unfinished(storeUrl)) === 0,
      "every payment finished in the gateway's table and no hold left at the banks",
      60_000,
    );

    const recorded = await gatewayStates(storeUrl);
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
    assert.deepEqual(await balances(storeUrl), expectedMinor, "each committed payment applied exactly once");
  });
});
