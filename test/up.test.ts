// `paynet up` as a new user meets it: an empty folder becomes a running network, and Ctrl-C stops it.
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm, stat, readdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Proc, runCli } from "./helpers/network.js";

describe("paynet up", () => {
  const dirs: string[] = [];
  after(async () => Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true }))));

  it("seeds an empty data dir, issues certificates, serves payments and stops on SIGTERM", async () => {
    const dir = await mkdtemp(join(tmpdir(), "paynet-up-"));
    dirs.push(dir);
    const up = new Proc("up", ["up", "--data-dir", dir, "--port", "0", "--bank-port", "0"]);
    const [, gateway] = await up.waitFor(/ready: gateway ([0-9.:]+), banks SBI [0-9.:]+, HDFC [0-9.:]+/);

    const keys = (await readdir(join(dir, "certificate"))).filter((name) => name.endsWith("_key.pem"));
    assert.deepEqual(keys.sort(), [
      "bank_HDFC_key.pem",
      "bank_SBI_key.pem",
      "ca_key.pem",
      "client_key.pem",
      "operator_key.pem",
      "server_key.pem",
    ]);
    for (const key of keys)
      assert.equal((await stat(join(dir, "certificate", key))).mode & 0o777, 0o600, `${key} is not 0600`);

    const pay = await runCli(
      [
        "client",
        "pay",
        "--data-dir",
        dir,
        "--user",
        "alice",
        "--bank",
        "SBI",
        "--to",
        "bob",
        "--to-bank",
        "HDFC",
        "--amount",
        "1.50",
        "--json",
      ],
      { env: { PAYNET_PASSWORD: "alice123" } },
    );
    assert.equal(pay.code, 0, pay.stdout + pay.stderr);
    assert.equal(pay.json?.status, "committed");
    const balance = await runCli(
      ["client", "balance", "--data-dir", dir, "--gateway", gateway!, "--user", "bob", "--bank", "HDFC", "--json"],
      { env: { PAYNET_PASSWORD: "bob123" } },
    );
    assert.equal(balance.json?.balance, "501.50");

    up.child.kill("SIGTERM");
    const { code } = await up.exited;
    assert.equal(code, 0);
    const afterStop = await runCli(
      ["client", "balance", "--data-dir", dir, "--gateway", gateway!, "--user", "bob", "--bank", "HDFC", "--json"],
      { env: { PAYNET_PASSWORD: "bob123" } },
    );
    assert.equal(afterStop.json?.reason, "GATEWAY_UNAVAILABLE", "the gateway stopped with up");
    assert.equal(afterStop.code, 4);
  });
});
