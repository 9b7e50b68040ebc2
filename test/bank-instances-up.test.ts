// `paynet up --bank-instances 2` on PostgreSQL, as an operator would start it: two processes per bank
// (`paynet bank --multi-instance`), each on its own port, all in the ready line and both seen by the gateway;
// payments commit through them; one instance SIGKILLed, payments keep committing through the other while up
// restarts it on its port; afterwards every answered payment is in the gateway's table as answered, applied once,
// with no hold left. And the flag's usage errors: the files store, and a count out of bounds.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Proc, runCli, waitUntil } from "./helpers/network.js";
import {
  balances,
  createThrowawayDatabase,
  gatewayStates,
  unfinished,
  type ThrowawayDatabase,
} from "./helpers/postgres.js";
import { GatewayClient } from "../src/core/client/gateway-client.js";
import { clientFiles, loadIdentity } from "../src/core/transport/certificates.js";
import { dataPaths } from "../src/core/durable/paths.js";
import { PaymentError, isAmbiguous } from "../src/core/domain/errors.js";

/** Payments made while one SBI instance is down or restarting, each retried with its id until final. */
const paymentsAfterKill = 10;
/** How long one payment may take to get a final answer, retries included (a leg at the dead instance fails over). */
const answerDeadlineMs = 30_000;
/** Between retries of an unanswered payment: a client's pause, not a synchronization. */
const retryDelayMs = 50;

const escaped = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

describe("paynet up --bank-instances", () => {
  const dirs: string[] = [];
  after(async () => Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true }))));

  it("refuses --bank-instances 2 on the files store (exit 2, saying why) and a count out of 1-8, before starting anything", async () => {
    const dir = await mkdtemp(join(tmpdir(), "paynet-instances-up-"));
    dirs.push(dir);
    const files = await runCli(["up", "--data-dir", dir, "--bank-instances", "2"]);
    assert.equal(files.code, 2, files.stdout + files.stderr);
    assert.match(files.stderr, /--bank-instances 2 needs --store postgres:\/\/…: a bank's files are one process's/);
    for (const count of ["0", "9", "1.5"]) {
      const bad = await runCli(["up", "--data-dir", dir, "--bank-instances", count, "--store", "postgres://x@h/db"]);
      assert.equal(bad.code, 2, bad.stdout + bad.stderr);
      assert.match(bad.stderr, /--bank-instances must be a whole number from 1 to 8/);
    }
    assert.deepEqual(await readdir(dir), [], "nothing was seeded or started");
  });

  describe("on PostgreSQL, two instances per bank", () => {
    let database: ThrowawayDatabase;
    let dir: string;
    let up: Proc;
    /** The ready line's addresses: SBI #1, SBI #2, HDFC #1, HDFC #2. */
    let addresses: string[] = [];
    let gateway = "";

    before(async () => {
      database = await createThrowawayDatabase("bank_instances_up");
      dir = await mkdtemp(join(tmpdir(), "paynet-instances-up-"));
      dirs.push(dir);
      up = new Proc("up", [
        ...["up", "--data-dir", dir, "--port", "0", "--bank-port", "0", "--bank-instances", "2"],
        ...["--store", database.url],
      ]);
      const [, gatewayAddress, ...banks] = await up.waitFor(
        /ready: gateway ([0-9.:]+), banks SBI #1 ([0-9.:]+), SBI #2 ([0-9.:]+), HDFC #1 ([0-9.:]+), HDFC #2 ([0-9.:]+);/,
      );
      gateway = gatewayAddress!;
      addresses = banks.map(String);
    });
    after(async () => {
      await up?.stop();
      await database?.drop();
    });

    /** The pid of the bank process that listened on `address`, other than `except` (a restarted one). */
    const pidAt = async (bank: string, address: string, except?: number) => {
      const exclude = except === undefined ? "" : `(?!${except}\\b)`;
      const [, pid] = await up.waitFor(
        new RegExp(`"role":"bank ${bank}","pid":${exclude}(\\d+).*listening on ${escaped(address)}"`),
      );
      return Number(pid);
    };
    const instancesShown = async () => {
      const status = await runCli(["status", "--json", "--data-dir", dir, "--gateway", gateway]);
      assert.equal(status.code, 0, status.stdout + status.stderr);
      const banks = status.json?.banks as Array<{ name: string; instances: Array<{ address: string; up: boolean }> }>;
      return banks
        .flatMap((bank) => bank.instances.map((instance) => `${bank.name} ${instance.address} ${instance.up}`))
        .sort();
    };

    it("starts two processes per bank, each on its own port and seen by the gateway, and a payment commits", async () => {
      assert.equal(new Set(addresses).size, 4, `distinct addresses: ${addresses.join(", ")}`);
      const pids = await Promise.all(addresses.map((address, index) => pidAt(index < 2 ? "SBI" : "HDFC", address)));
      assert.equal(new Set(pids).size, 4, "four processes");
      assert.deepEqual(await instancesShown(), [
        ...[`HDFC ${addresses[2]} true`, `HDFC ${addresses[3]} true`].sort(),
        ...[`SBI ${addresses[0]} true`, `SBI ${addresses[1]} true`].sort(),
      ]);
      const pay = await runCli(
        [
          ...["client", "pay", "--data-dir", dir, "--user", "alice", "--bank", "SBI"],
          ...["--to", "bob", "--to-bank", "HDFC", "--amount", "1.50", "--json"],
        ],
        { env: { PAYNET_PASSWORD: "alice123" } },
      );
      assert.equal(pay.code, 0, pay.stdout + pay.stderr);
      assert.equal(pay.json?.status, "committed");
    });

    it("one instance SIGKILLed: payments commit through the other while up restarts it on its port", async () => {
      const initialMinor = await balances(database.url);
      const paths = dataPaths(dir);
      const client = new GatewayClient(
        [gateway],
        await loadIdentity(paths.certificateDir, clientFiles(paths.certificateDir)),
      );
      await client.login("alice", "SBI", "alice123");
      const answers = new Map<string, "committed" | "aborted">();
      /** One payment of 0.01 to bob, retried with its id until it has a final answer. */
      const payOne = async (id: string) => {
        const deadline = Date.now() + answerDeadlineMs;
        for (;;) {
          try {
            await client.pay(id, "bob", "HDFC", 1n);
            answers.set(id, "committed");
            return;
          } catch (thrown) {
            const error = thrown instanceof PaymentError ? thrown : PaymentError.fromGrpc(thrown);
            if (!isAmbiguous(error)) {
              answers.set(id, "aborted");
              return;
            }
            assert.ok(Date.now() < deadline, `${id}: no final answer within ${answerDeadlineMs} ms: ${error.message}`);
          }
          await new Promise((resolve) => setTimeout(resolve, retryDelayMs));
        }
      };

      try {
        const [killedAddress] = addresses;
        const killed = await pidAt("SBI", killedAddress!);
        process.kill(killed, "SIGKILL");
        await up.waitFor(/bank SBI #1 exited \(signal SIGKILL\); restarting it in \d+ ms/);
        for (let n = 0; n < paymentsAfterKill; n += 1) await payOne(`instances-up-${n}`);
        assert.deepEqual(
          [...answers.values()].filter((status) => status !== "committed"),
          [],
          "every payment made with an instance of SBI down committed",
        );

        // The restarted instance is back on its address and registered; both serve again.
        const restarted = await pidAt("SBI", killedAddress!, killed);
        await up.waitFor(new RegExp(`"role":"bank SBI","pid":${restarted}.*registered with the gateway`));
        await waitUntil(
          async () => (await instancesShown()).every((line) => line.endsWith(" true")),
          "the gateway to see every instance up again",
        );
        await payOne("instances-up-after-restart");
        assert.equal(answers.get("instances-up-after-restart"), "committed");
      } finally {
        client.close();
      }

      await waitUntil(
        async () => (await unfinished(database.url)) === 0,
        "every payment finished in the gateway's table and no hold left at the banks",
      );
      const recorded = await gatewayStates(database.url);
      for (const [id, status] of answers) assert.equal(recorded.get(id), status, `${id} was answered ${status}`);
      const finalMinor = await balances(database.url);
      const committed = BigInt(answers.size);
      assert.equal(finalMinor.get("alice@SBI"), initialMinor.get("alice@SBI")! - committed, "alice paid each once");
      assert.equal(finalMinor.get("bob@HDFC"), initialMinor.get("bob@HDFC")! + committed, "bob received each once");
      const sum = (all: Map<string, bigint>) => [...all.values()].reduce((total, value) => total + value, 0n);
      assert.equal(sum(finalMinor), sum(initialMinor), "money conserved");
    });
  });
});
