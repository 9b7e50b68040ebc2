// Three gateways on one PostgreSQL, started as an operator would (`paynet up --gateways 3`), with a client that
// knows all three: every bank registers with every gateway; the gateway the client is using is SIGKILLed
// mid-load; the client's retries, with the same ids and the same login token, get final answers from another
// gateway; once another gateway has taken the dead one's payments over (its lease expired), no hold is left at
// any bank and the money is all there. `--no-restart` leaves the dead gateway down, so that every answer after
// the kill comes from another one.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Proc, runCli, waitUntil } from "./helpers/network.js";
import { createThrowawayDatabase, type ThrowawayDatabase } from "./helpers/postgres.js";
import { openDatabase, type Database } from "../src/core/durable/postgres/database.js";
import { GatewayClient } from "../src/core/client/gateway-client.js";
import { clientFiles, loadIdentity } from "../src/core/transport/certificates.js";
import { dataPaths } from "../src/core/durable/paths.js";
import { PaymentError, isAmbiguous } from "../src/core/domain/errors.js";
import { readGatewayList } from "../src/core/durable/gateway-list-file.js";

const banks = ["SBI", "HDFC"];
/** Payments made before the kill, and after it: enough that some are in flight when it lands. */
const committedBeforeKill = 15;
const answeredAfterKill = 15;
/** Concurrent payers on the one client: several payments in flight at the kill. */
const workers = 3;
/** Attempts per payment id: a retry waits for another gateway to take the dead one's payment over (its lease, 5 s). */
const attemptsMax = 40;
const retryDelayMs = { min: 50, max: 1_000 };
/** Lease 5 s + renewal 1 s + the bank's overdue-hold query: the takeover's bound, with room for a busy machine. */
const settleTimeoutMs = 60_000;

interface Answer {
  status: "committed" | "aborted";
  /** The gateway that gave the final answer. */
  address: string;
  /** The gateway the answering call was sent to first: another one answered when it did not. */
  startedAt: string;
}

describe("paynet up --gateways 3 on PostgreSQL", () => {
  let database: ThrowawayDatabase;
  let pool: Database;
  let dir: string;
  let up: Proc;
  let gateways: string[] = [];
  /** The gateway the load test killed (left down). */
  let killed: string | null = null;

  before(async () => {
    database = await createThrowawayDatabase("multi_gateway_up");
    pool = openDatabase({ url: database.url, applicationName: "paynet-test" });
    dir = await mkdtemp(join(tmpdir(), "paynet-mgw-up-"));
    up = new Proc("up", [
      "up",
      ...["--data-dir", dir, "--port", "0", "--bank-port", "0", "--gateways", "3", "--no-restart"],
      ...["--store", database.url],
    ]);
    const [, a, b, c] = await up.waitFor(
      /ready: gateways ([0-9.:]+), ([0-9.:]+), ([0-9.:]+), banks SBI [0-9.:]+, HDFC [0-9.:]+/,
    );
    gateways = [a!, b!, c!];
  });
  after(async () => {
    await up?.stop();
    await pool?.end();
    await database?.drop();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  const balanceSumMinor = async () => {
    let sum = 0n;
    for (const bank of banks) {
      const { rows } = await pool.query<{ sum: string }>(
        `SELECT coalesce(sum(balance_minor), 0)::text AS sum FROM paynet_bank_${bank.toLowerCase()}.accounts`,
      );
      sum += BigInt(rows[0]!.sum);
    }
    return sum;
  };
  const holdsLeft = async () => {
    let holds = 0;
    for (const bank of banks) {
      const { rows } = await pool.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM paynet_bank_${bank.toLowerCase()}.holds`,
      );
      holds += rows[0]!.n;
    }
    return holds;
  };
  const unfinished = async () =>
    (await pool.query<{ n: number }>("SELECT count(*)::int AS n FROM paynet_gateway.payments WHERE NOT finished"))
      .rows[0]!.n;

  it("lists every gateway in the ready line and in client/current_port_server.txt, each with a live lease", async () => {
    assert.equal(new Set(gateways).size, 3, `distinct addresses: ${gateways.join(", ")}`);
    const listed = await readGatewayList(dataPaths(dir).clientGatewayTxt);
    assert.deepEqual([...listed].sort(), [...gateways].sort(), "one line per gateway");
    const status = await runCli(["status", "--json", "--data-dir", dir]);
    assert.equal(status.code, 0, status.stdout + status.stderr);
    assert.equal(status.json?.gateway, listed[0], "status with no --gateway asks the first listed");
    const { rows } = await pool.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM paynet_gateway.gateways WHERE lease_expires_at > now()",
    );
    assert.equal(rows[0]!.n, 3, "three gateways, three live leases");
  });

  it("every bank is registered with every gateway: status at each shows both banks up", async () => {
    for (const gateway of gateways) {
      const status = await runCli(["status", "--json", "--data-dir", dir, "--gateway", gateway]);
      assert.equal(status.code, 0, status.stdout + status.stderr);
      assert.equal(status.json?.gateway, gateway);
      const shown = status.json?.banks as Array<{ name: string; up: boolean }>;
      assert.deepEqual(
        shown.map((bank) => `${bank.name} ${bank.up ? "up" : "down"}`).sort(),
        ["HDFC up", "SBI up"],
        `at ${gateway}`,
      );
    }
  });

  it("SIGKILL of the gateway in use mid-load: retries with the same ids are answered by another, no hold is left", async () => {
    const initialSumMinor = await balanceSumMinor();
    const paths = dataPaths(dir);
    const client = new GatewayClient(
      gateways,
      await loadIdentity(paths.certificateDir, clientFiles(paths.certificateDir)),
    );
    await client.login("alice", "SBI", "alice123");
    const answers = new Map<string, Answer>();
    let killedAddress: string | null = null;
    let killedAtAnswers = 0;
    let next = 0;

    /** One payment, retried with its id until it has a final answer. */
    const payOne = async (id: string) => {
      let delayMs = retryDelayMs.min;
      for (let attempt = 1; attempt <= attemptsMax; attempt += 1) {
        const startedAt = client.address;
        try {
          await client.pay(id, "bob", "HDFC", 1n);
          answers.set(id, { status: "committed", address: client.address, startedAt });
          return;
        } catch (thrown) {
          const error = thrown instanceof PaymentError ? thrown : PaymentError.fromGrpc(thrown);
          if (!isAmbiguous(error)) {
            answers.set(id, { status: "aborted", address: client.address, startedAt });
            return;
          }
        }
        await new Promise((resolve) => setTimeout(resolve, delayMs));
        delayMs = Math.min(delayMs * 2, retryDelayMs.max);
      }
      assert.fail(`payment ${id}: no final answer in ${attemptsMax} attempts`);
    };
    const committed = () => [...answers.values()].filter((answer) => answer.status === "committed").length;
    const kill = async () => {
      const address = client.address;
      const escaped = address.replace(/[.]/g, "\\.");
      const [, pid] = await up.waitFor(new RegExp(`"role":"gateway","pid":(\\d+).*"msg":"listening on ${escaped}"`));
      killedAddress = address;
      killedAtAnswers = answers.size;
      process.kill(Number(pid), "SIGKILL");
      await up.waitFor(/gateway \d exited \(signal SIGKILL\); left down/);
    };
    const worker = async () => {
      while (killedAddress === null || answers.size < killedAtAnswers + answeredAfterKill) {
        const id = `mgw-up-${next++}`;
        // The kill lands while this worker's payments and the others' are in flight.
        if (killedAddress === null && committed() >= committedBeforeKill) void kill();
        await payOne(id);
      }
    };
    await Promise.all(Array.from({ length: workers }, () => worker()));
    client.close();

    assert.ok(killedAddress !== null, "the gateway in use was killed");
    killed = killedAddress;
    // Until a call fails over, calls go to the gateway in use: the first after the kill went there and was
    // answered by another, with the same id and the same token (one login in all: the gateways' logs say so).
    const failedOver = [...answers.values()].filter(
      (answer) => answer.startedAt === killedAddress && answer.address !== killedAddress,
    );
    assert.ok(failedOver.length > 0, "a payment sent to the killed gateway was answered by another");
    const logins = up.lines.filter((line) => line.includes('"user":"alice@SBI"') && line.includes('"msg":"login"'));
    assert.equal(logins.length, 1, `one login, its token accepted by every gateway:\n${logins.join("\n")}`);

    // Its lease expires; another gateway claims its unfinished payments and drives them; the banks' holds go.
    await waitUntil(async () => (await unfinished()) === 0 && (await holdsLeft()) === 0, "takeover", settleTimeoutMs);
    const { rows: owners } = await pool.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM paynet_gateway.payments WHERE NOT finished",
    );
    assert.equal(owners[0]!.n, 0, "every payment finished");
    assert.equal(await balanceSumMinor(), initialSumMinor, "the sum of all balances is conserved");

    // Each answer is the payment's outcome in the log, and a committed one moved exactly 0.01.
    const { rows: logged } = await pool.query<{ payment_id: string; state: string }>(
      "SELECT payment_id, state FROM paynet_gateway.payments WHERE payment_id LIKE 'mgw-up-%'",
    );
    const states = new Map(logged.map((row) => [row.payment_id, row.state]));
    for (const [id, answer] of answers) assert.equal(states.get(id), answer.status, `${id} logged as answered`);
    const { rows: bob } = await pool.query<{ balance: string }>(
      "SELECT balance_minor::text AS balance FROM paynet_bank_hdfc.accounts WHERE username = 'bob'",
    );
    const committedCount = [...states.values()].filter((state) => state === "committed").length;
    assert.equal(BigInt(bob[0]!.balance), 50_000n + BigInt(committedCount), "bob received each committed payment once");
    assert.ok(committed() >= committedBeforeKill, `committed ${committed()} of ${answers.size}`);
    assert.ok(answers.size >= killedAtAnswers + answeredAfterKill, "payments went on after it");
  });

  it("the scripted client and status fail over from a dead gateway to the next of the list", async () => {
    const dead = killed;
    assert.ok(dead !== null, "the load test killed a gateway");
    const live = gateways.filter((gateway) => gateway !== dead);
    const list = [dead, ...live].join(",");
    const pay = await runCli(
      [
        ...["client", "pay", "--data-dir", dir, "--gateway", list, "--user", "carol", "--bank", "SBI"],
        ...["--to", "dave", "--to-bank", "HDFC", "--amount", "0.50", "--json"],
      ],
      { env: { PAYNET_PASSWORD: "carol123" } },
    );
    assert.equal(pay.code, 0, pay.stdout + pay.stderr);
    assert.equal(pay.json?.status, "committed");
    const status = await runCli(["status", "--json", "--data-dir", dir, "--gateway", list]);
    assert.equal(status.code, 0, status.stdout + status.stderr);
    assert.ok(
      live.includes(String(status.json?.gateway)),
      `answered by a live gateway: ${String(status.json?.gateway)}`,
    );
  });
});
