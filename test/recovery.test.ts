// Banks that are down, gateways that vanish, and damaged state files: the protocol waits, never guesses.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { readFile, writeFile } from "node:fs/promises";
import { networkPerTest, Proc, waitUntil, type Network } from "./helpers/network.js";
import type { PaymentError } from "../src/core/domain/errors.js";

function pay(network: Network, paymentId: string, amountMinor = 1000n): Promise<PaymentError | null> {
  return network.rawPay({ from: "alice", fromBank: "SBI", to: "bob", toBank: "HDFC", amountMinor, paymentId });
}

describe("recovery", () => {
  const networks = networkPerTest();

  it("aborts when a bank is down for the whole prepare phase, holding nothing, and finishes once it returns", async () => {
    const network = await networks.create();
    await network.start(["SBI", "HDFC"]);
    const before = await network.balancesOnDisk();
    await network.banks.get("HDFC")!.stop("SIGKILL");

    const error = await pay(network, "hdfc-down-1");
    assert.equal(error?.code, "BANK_UNAVAILABLE");
    assert.equal(error?.final, true, "a decided abort is final, not an unknown outcome");
    assert.equal(await network.holdsOnDisk(), 0, "the source bank released its hold");
    assert.deepEqual(await network.balancesOnDisk(), before);
    assert.equal((await network.gatewayRecord("hdfc-down-1"))?.state, "aborted");

    await network.startBank("HDFC");
    await waitUntil(
      async () => (await network.gatewayRecord("hdfc-down-1"))?.finished === true,
      "the abort to reach HDFC",
    );
    const retry = await pay(network, "hdfc-down-1");
    assert.equal(retry?.code, "BANK_UNAVAILABLE", "the id keeps its outcome after the bank returns");
    assert.deepEqual(await network.balancesOnDisk(), before);
  });

  it("completes a commit at a bank that went down after voting yes, once it comes back", async () => {
    const network = await networks.create();
    await network.startGateway();
    await network.startBank("SBI");
    await network.startBank("HDFC", { env: { PAYNET_CRASH_AT: "bank-before-commit" } });
    const before = await network.balancesOnDisk();

    const error = await pay(network, "late-commit-1");
    assert.equal(error, null, "the client hears committed once the decision is durable");
    await network.banks.get("HDFC")!.exited;
    const whileDown = await network.balancesOnDisk();
    assert.equal(whileDown.get("alice@SBI"), before.get("alice@SBI")! - 1000n, "SBI committed");
    assert.equal(whileDown.get("bob@HDFC"), before.get("bob@HDFC"), "HDFC is down and has not applied it yet");

    await network.startBank("HDFC");
    await waitUntil(
      async () => (await network.gatewayRecord("late-commit-1"))?.finished === true,
      "the commit to reach HDFC",
    );
    const after = await network.balancesOnDisk();
    assert.equal(after.get("bob@HDFC"), before.get("bob@HDFC")! + 1000n);
    assert.equal(await network.holdsOnDisk(), 0);
  });

  it("keeps an overdue hold while the coordinator cannot answer, then follows its decision", async () => {
    const network = await networks.create();
    const fastExpiry = { args: ["--hold-timeout-ms", "200"] };
    await network.startGateway({ env: { PAYNET_CRASH_AT: "gateway-after-prepares" } });
    await Promise.all(["SBI", "HDFC"].map((bank) => network.startBank(bank, fastExpiry)));
    const before = await network.balancesOnDisk();

    await pay(network, "in-doubt-1");
    await network.gateway!.exited;
    assert.equal(await network.holdsOnDisk(), 2, "both banks voted yes");
    // Each bank asks about its overdue hold, gets no answer, and keeps it: a yes vote is never withdrawn alone.
    await Promise.all(
      ["SBI", "HDFC"].map((bank) =>
        network.banks.get(bank)!.waitFor(/"paymentId":"in-doubt-1".*"msg":"overdue hold: no decision yet"/),
      ),
    );
    assert.equal(await network.holdsOnDisk(), 2);
    assert.deepEqual(await network.balancesOnDisk(), before);

    await network.startGateway();
    await waitUntil(async () => (await network.holdsOnDisk()) === 0, "the holds to be released");
    assert.equal((await network.gatewayRecord("in-doubt-1"))?.state, "aborted");
    assert.deepEqual(await network.balancesOnDisk(), before);
  });

  describe("damaged state files are refused at start, named, and left as they are", () => {
    const truncate = (text: string) => text.slice(0, Math.floor(text.length / 2));

    it("a payment log snapshot cut short stops the gateway", async () => {
      const network = await networks.create();
      await network.start(["SBI", "HDFC"]);
      assert.equal(await pay(network, "before-damage-1"), null);
      await network.stop("SIGTERM"); // an orderly stop folds the journal into the snapshot
      const damaged = truncate(await readFile(network.paths.transactionLogsJson, "utf8"));
      await writeFile(network.paths.transactionLogsJson, damaged);
      const gateway = new Proc("gateway", ["gateway", "--data-dir", network.dir, "--port", "0"]);
      const { code } = await gateway.exited;
      assert.notEqual(code, 0);
      assert.match(gateway.lines.join("\n"), /transaction_logs\.json: not valid JSON/);
      assert.equal(await readFile(network.paths.transactionLogsJson, "utf8"), damaged);
    });

    it("a damaged journal line stops the gateway, naming the line", async () => {
      const network = await networks.create();
      await network.start(["SBI", "HDFC"]);
      assert.equal(await pay(network, "before-damage-3"), null);
      await network.stop();
      const lines = (await readFile(network.paths.transactionLogsJournal, "utf8")).split("\n");
      lines[1] = lines[1]!.replace(/"state":"[a-z]+"/, '"state":"lost"');
      const damaged = lines.join("\n");
      await writeFile(network.paths.transactionLogsJournal, damaged);
      const gateway = new Proc("gateway", ["gateway", "--data-dir", network.dir, "--port", "0"]);
      const { code } = await gateway.exited;
      assert.notEqual(code, 0);
      assert.match(gateway.lines.join("\n"), /transaction_logs\.journal:2: not a payment record/);
      assert.equal(await readFile(network.paths.transactionLogsJournal, "utf8"), damaged);
    });

    it("a torn final journal line (an append cut short) is dropped, and the log goes on", async () => {
      const network = await networks.create();
      await network.start(["SBI", "HDFC"]);
      assert.equal(await pay(network, "before-tear-1"), null);
      await network.stop();
      const intact = await readFile(network.paths.transactionLogsJournal, "utf8");
      await writeFile(network.paths.transactionLogsJournal, `${intact}{"paymentId":"torn-1","fromUser":"al`);
      await network.start(["SBI", "HDFC"]);
      await network.gateway!.waitFor(/dropped a torn final journal line/);
      assert.equal((await network.gatewayRecord("before-tear-1"))?.state, "committed");
      assert.equal(await pay(network, "after-tear-1"), null);
      const journal = await readFile(network.paths.transactionLogsJournal, "utf8");
      assert.ok(journal.startsWith(intact), "the complete lines are kept");
      assert.ok(!journal.includes("torn-1"), "the torn line is gone");
      assert.equal((await network.gatewayRecord("after-tear-1"))?.state, "committed");
    });

    it("a truncated pending file stops the bank", async () => {
      const network = await networks.create();
      await network.start(["SBI", "HDFC"]);
      assert.equal(await pay(network, "before-damage-2"), null);
      // An orderly stop checkpoints every bank: the pending file then holds each bank's section.
      await network.stop("SIGTERM");
      const whole = await readFile(network.paths.pendingJson, "utf8");
      assert.match(whole, /"SBI"/);
      const damaged = truncate(whole);
      await writeFile(network.paths.pendingJson, damaged);
      const bank = new Proc("bank", [
        "bank",
        "--id",
        "SBI",
        "--data-dir",
        network.dir,
        "--port",
        "0",
        "--gateway",
        "127.0.0.1:1",
      ]);
      const { code } = await bank.exited;
      assert.notEqual(code, 0);
      assert.match(bank.lines.join("\n"), /pending_transactions\.json: not valid JSON/);
      assert.equal(await readFile(network.paths.pendingJson, "utf8"), damaged);
    });

    it("a malformed accounts row stops the bank, naming the line", async () => {
      const network = await networks.create({
        accountsCsv: "username,balance,password,bank\nalice,1000,alice123,SBI\nbob,lots,bob123,HDFC\n",
      });
      const bank = new Proc("bank", [
        "bank",
        "--id",
        "SBI",
        "--data-dir",
        network.dir,
        "--port",
        "0",
        "--gateway",
        "127.0.0.1:1",
      ]);
      const { code } = await bank.exited;
      assert.notEqual(code, 0);
      assert.match(bank.lines.join("\n"), /dummydata\.csv:3: balance must be/);
      assert.equal(
        await readFile(network.paths.accountsCsv, "utf8"),
        "username,balance,password,bank\nalice,1000,alice123,SBI\nbob,lots,bob123,HDFC\n",
      );
    });
  });
});
