// The client's offline queue: payments wait durably with their ids and are applied exactly once.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { readFile, readdir, writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import { networkPerTest, Proc, passwords, runCli, type Network } from "./helpers/network.js";

const exit = { ok: 0, refused: 1, queued: 3 };

describe("offline payments", () => {
  const networks = networkPerTest();

  async function startedNetwork(): Promise<Network> {
    const network = await networks.create();
    await network.start(["SBI", "HDFC"]);
    return network;
  }

  function sync(net: Network, user = "alice", bank = "SBI", extra: string[] = [], env: Record<string, string> = {}) {
    return runCli(
      [
        "client",
        "sync",
        "--user",
        user,
        "--bank",
        bank,
        "--json",
        "--data-dir",
        net.dir,
        "--gateway",
        net.gatewayAddress,
        ...extra,
      ],
      { env: { PAYNET_PASSWORD: passwords[user]!, ...env } },
    );
  }

  async function queueIds(net: Network): Promise<string[]> {
    const result = await runCli(["client", "queue", "--json", "--data-dir", net.dir]);
    return (result.json?.queued as Array<{ id: string }>).map((entry) => entry.id);
  }

  it("queues payments while the gateway is down and applies each exactly once when it returns (connection monitor)", async () => {
    const net = await startedNetwork();
    const before = await net.balancesOnDisk();
    await net.gateway!.stop("SIGKILL");
    const ids: string[] = [];
    for (const amount of ["1.00", "2.00", "3.00"]) {
      const result = await net.pay("alice", "SBI", "bob", "HDFC", amount);
      assert.equal(result.code, exit.queued, result.stdout + result.stderr);
      assert.equal(result.json?.status, "queued");
      assert.equal(result.json?.reason, "GATEWAY_UNAVAILABLE");
      ids.push(String(result.json?.id));
    }
    assert.deepEqual(await queueIds(net), ids, "queued in order, with the ids they were given");
    const ofSbi = await runCli(["client", "queue", "--json", "--bank", "sbi", "--data-dir", net.dir]);
    assert.deepEqual(
      (ofSbi.json?.queued as Array<{ id: string }>).map((entry) => entry.id),
      ids,
      "--bank sbi is bank SBI",
    );

    // The watcher waits on grpc connectivity and sends once the gateway is back.
    const watcher = new Proc(
      "sync",
      [
        "client",
        "sync",
        "--watch",
        "--user",
        "alice",
        "--bank",
        "SBI",
        "--data-dir",
        net.dir,
        "--gateway",
        net.gatewayAddress,
      ],
      { PAYNET_PASSWORD: passwords.alice! },
    );
    await net.startGateway();
    const { code } = await watcher.exited;
    assert.equal(code, exit.ok, watcher.lines.join("\n"));
    assert.match(watcher.lines.join("\n"), /3 committed, 0 refused, 0 still queued/);

    const after = await net.balancesOnDisk();
    assert.equal(after.get("alice@SBI"), before.get("alice@SBI")! - 600n);
    assert.equal(after.get("bob@HDFC"), before.get("bob@HDFC")! + 600n);
    assert.deepEqual(await queueIds(net), []);
    const history = await runCli(["client", "history", "--json", "--user", "alice", "--data-dir", net.dir]);
    assert.deepEqual(
      (history.json?.payments as Array<{ id: string; status: string }>).map((entry) => [entry.id, entry.status]),
      ids.map((id) => [id, "committed"]),
    );
    const ofSbiHistory = await runCli(["client", "history", "--json", "--bank", "sbi", "--data-dir", net.dir]);
    assert.deepEqual(
      (ofSbiHistory.json?.payments as Array<{ id: string }>).map((entry) => entry.id),
      ids,
      "--bank sbi is bank SBI",
    );

    const again = await sync(net);
    assert.equal(again.code, exit.ok);
    assert.deepEqual(await net.balancesOnDisk(), after, "a second sync moves nothing");
  });

  it("keeps a payment whose outcome is unknown and resends it with the same id", async () => {
    const net = await networks.create();
    await net.startGateway({ env: { PAYNET_CRASH_AT: "gateway-after-commit-logged" } });
    await Promise.all(["SBI", "HDFC"].map((bank) => net.startBank(bank)));
    const before = await net.balancesOnDisk();
    const result = await net.pay("alice", "SBI", "bob", "HDFC", "4.00");
    assert.equal(result.code, exit.queued, result.stdout + result.stderr);
    assert.deepEqual(await queueIds(net), [result.json?.id]);

    await net.startGateway();
    await net.gatewayReady();
    const synced = await sync(net);
    assert.equal(synced.code, exit.ok, synced.stdout + synced.stderr);
    assert.deepEqual(
      (synced.json?.results as Array<{ id: string; status: string }>).map((entry) => [entry.id, entry.status]),
      [[result.json?.id, "committed"]],
    );
    const after = await net.balancesOnDisk();
    assert.equal(after.get("alice@SBI"), before.get("alice@SBI")! - 400n, "applied once, though sent twice");
    assert.equal(after.get("bob@HDFC"), before.get("bob@HDFC")! + 400n);
  });

  it("a client killed after queuing, before sending, loses nothing and pays once", async () => {
    const net = await startedNetwork();
    const before = await net.balancesOnDisk();
    const killed = await runCli(
      [
        "client",
        "pay",
        "--user",
        "alice",
        "--bank",
        "SBI",
        "--to",
        "bob",
        "--to-bank",
        "HDFC",
        "--amount",
        "5",
        "--json",
        "--data-dir",
        net.dir,
        "--gateway",
        net.gatewayAddress,
      ],
      {
        env: { PAYNET_PASSWORD: passwords.alice!, PAYNET_CRASH_AT: "client-after-queue" },
      },
    );
    assert.equal(killed.code, null, "killed by SIGKILL");
    assert.equal((await queueIds(net)).length, 1);
    assert.deepEqual(await net.balancesOnDisk(), before, "nothing was sent");
    const synced = await sync(net);
    assert.equal(synced.code, exit.ok, synced.stdout + synced.stderr);
    assert.equal((await net.balancesOnDisk()).get("alice@SBI"), before.get("alice@SBI")! - 500n);
  });

  it("a client killed mid-flush, after the gateway answered, does not pay twice when restarted", async () => {
    const net = await startedNetwork();
    const before = await net.balancesOnDisk();
    for (const amount of ["1.50", "2.50"])
      assert.equal((await net.pay("alice", "SBI", "bob", "HDFC", amount, ["--offline"])).code, exit.queued);
    const killed = await sync(net, "alice", "SBI", [], { PAYNET_CRASH_AT: "client-before-dequeue" });
    assert.equal(killed.code, null, "killed by SIGKILL");
    assert.equal(
      (await net.balancesOnDisk()).get("alice@SBI"),
      before.get("alice@SBI")! - 150n,
      "the first payment went through",
    );
    assert.equal((await queueIds(net)).length, 2, "but had not left the queue");

    const restarted = await sync(net);
    assert.equal(restarted.code, exit.ok, restarted.stdout + restarted.stderr);
    const after = await net.balancesOnDisk();
    assert.equal(after.get("alice@SBI"), before.get("alice@SBI")! - 400n);
    assert.equal(after.get("bob@HDFC"), before.get("bob@HDFC")! + 400n);
    assert.deepEqual(await queueIds(net), []);
  });

  it("two clients flushing the same queue file at once pay each payment once", async () => {
    const net = await startedNetwork();
    const before = await net.balancesOnDisk();
    const amounts = ["1", "2", "3", "4", "5", "6"];
    for (const amount of amounts)
      assert.equal((await net.pay("alice", "SBI", "bob", "HDFC", amount, ["--offline"])).code, exit.queued);
    const [first, second] = await Promise.all([sync(net), sync(net)]);
    assert.equal(first.code, exit.ok, first.stdout + first.stderr);
    assert.equal(second.code, exit.ok, second.stdout + second.stderr);
    const after = await net.balancesOnDisk();
    assert.equal(after.get("alice@SBI"), before.get("alice@SBI")! - 2100n);
    assert.equal(after.get("bob@HDFC"), before.get("bob@HDFC")! + 2100n);
    assert.deepEqual(await queueIds(net), []);
    const history = await runCli(["client", "history", "--json", "--data-dir", net.dir]);
    assert.equal((history.json?.payments as unknown[]).length, amounts.length, "one history entry per payment");
  });

  it("reports a queued payment that the bank refuses when it is finally sent", async () => {
    const net = await startedNetwork();
    const before = await net.balancesOnDisk();
    const queued = await net.pay("dave", "HDFC", "alice", "SBI", "9000", ["--offline"]);
    assert.equal(queued.code, exit.queued);
    const synced = await sync(net, "dave", "HDFC");
    assert.equal(synced.code, exit.refused);
    assert.deepEqual(
      (synced.json?.results as Array<{ status: string; reason: string }>).map((entry) => [entry.status, entry.reason]),
      [["aborted", "INSUFFICIENT_FUNDS"]],
    );
    const history = await runCli(["client", "history", "--json", "--user", "dave", "--data-dir", net.dir]);
    assert.deepEqual(
      (history.json?.payments as Array<{ status: string; reason: string }>).map((entry) => [
        entry.status,
        entry.reason,
      ]),
      [["aborted", "INSUFFICIENT_FUNDS"]],
    );
    assert.deepEqual(await queueIds(net), []);
    assert.deepEqual(await net.balancesOnDisk(), before);
  });

  it("a damaged queue file gives a clear error and keeps its intact entries", async () => {
    const net = await networks.create();
    net.gatewayAddress = "127.0.0.1:1";
    for (const amount of ["1", "2", "3"])
      assert.equal((await net.pay("alice", "SBI", "bob", "HDFC", amount, ["--offline"])).code, exit.queued);
    const ids = await queueIds(net);
    const original = await readFile(net.paths.offlinePaymentsJson, "utf8");
    const lines = original.split("\n");
    lines[2] = '{"id": garbage'; // the second entry is destroyed
    const damaged = lines.join("\n").slice(0, -3); // and the file is cut short, losing its closing "]}"
    await writeFile(net.paths.offlinePaymentsJson, damaged);

    const listed = await runCli(["client", "queue", "--json", "--data-dir", net.dir]);
    assert.equal(listed.code, 0);
    assert.match(
      listed.stderr,
      /offline_payments\.json was damaged \(unreadable line 3\); kept its 2 intact entries; the damaged file is saved as \S+offline_payments\.json\.damaged-\d+/,
    );
    assert.deepEqual(
      (listed.json?.queued as Array<{ id: string }>).map((entry) => entry.id),
      [ids[0], ids[2]],
    );
    const backups = (await readdir(dirname(net.paths.offlinePaymentsJson))).filter((name) =>
      name.startsWith("offline_payments.json.damaged-"),
    );
    assert.equal(backups.length, 1);
    assert.equal(await readFile(`${dirname(net.paths.offlinePaymentsJson)}/${backups[0]}`, "utf8"), damaged);
  });
});
