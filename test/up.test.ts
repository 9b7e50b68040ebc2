// `paynet up` as a new user meets it: an empty folder becomes a running network, and Ctrl-C stops it.
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm, stat, readdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { cliPath, Proc, runCli, waitUntil } from "./helpers/network.js";

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

  /** The pid a child of up logged with its role (children log JSON lines: {"role":"bank SBI","pid":N,…}). */
  async function pidOf(up: Proc, role: string, except?: number): Promise<number> {
    const exclude = except === undefined ? "" : `(?!${except}\\b)`;
    const [, pid] = await up.waitFor(new RegExp(`"role":"${role}","pid":${exclude}(\\d+)`));
    return Number(pid);
  }

  function alive(pid: number): boolean {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  }

  it("refuses --gateways 2 on the files store (exit 2, saying why) and a bad --gateways count, before starting anything", async () => {
    const dir = await mkdtemp(join(tmpdir(), "paynet-up-"));
    dirs.push(dir);
    const files = await runCli(["up", "--data-dir", dir, "--gateways", "2"]);
    assert.equal(files.code, 2, files.stdout + files.stderr);
    assert.match(files.stderr, /--gateways 2 needs --store postgres:\/\/…: the files store is one gateway process's/);
    for (const count of ["0", "9", "1.5"]) {
      const bad = await runCli(["up", "--data-dir", dir, "--gateways", count]);
      assert.equal(bad.code, 2, bad.stdout + bad.stderr);
      assert.match(bad.stderr, /--gateways must be a whole number from 1 to 8/);
    }
    assert.deepEqual(await readdir(dir), [], "nothing was seeded or started");
  });

  it("supervises: a process that dies is logged with why and restarted on its port, and payments go on", async () => {
    const dir = await mkdtemp(join(tmpdir(), "paynet-up-"));
    dirs.push(dir);
    const up = new Proc("up", ["up", "--data-dir", dir, "--port", "0", "--bank-port", "0"]);
    await up.waitFor(/ready: gateway ([0-9.:]+), banks SBI ([0-9.:]+), HDFC [0-9.:]+/);
    const [, sbiAddress] = await up.waitFor(/"role":"bank SBI".*listening on ([0-9.:]+)/);
    const sbi = await pidOf(up, "bank SBI");
    const gateway = await pidOf(up, "gateway");
    process.kill(sbi, "SIGKILL");
    await up.waitFor(/bank SBI exited \(signal SIGKILL\); restarting it in \d+ ms/);
    const restarted = await pidOf(up, "bank SBI", sbi);
    await up.waitFor(
      new RegExp(`"role":"bank SBI","pid":${restarted}.*listening on ${sbiAddress!.replace(/\./g, "\\.")}`),
    );
    await up.waitFor(new RegExp(`"role":"bank SBI","pid":${restarted}.*registered with the gateway`));
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
      ].concat(["--amount", "2.00", "--json"]),
      { env: { PAYNET_PASSWORD: "alice123" } },
    );
    assert.equal(pay.json?.status, "committed", pay.stdout + pay.stderr);
    up.child.kill("SIGTERM");
    assert.equal((await up.exited).code, 0);
    assert.ok(!alive(restarted) && !alive(gateway), "no process of the network outlives up");
  });

  it("stops the network when its parent dies without passing SIGTERM on (as npm exec does under npx)", async () => {
    const dir = await mkdtemp(join(tmpdir(), "paynet-up-"));
    dirs.push(dir);
    // A parent like npm exec: it starts up, and on SIGTERM exits at once without telling it.
    const parentSource = `const { spawn } = require("node:child_process");
      spawn(process.execPath, ${JSON.stringify([cliPath, "up", "--data-dir", dir, "--port", "0", "--bank-port", "0"])}, { stdio: "inherit" });
      process.on("SIGTERM", () => process.exit(0));`;
    const parent = spawn(process.execPath, ["-e", parentSource], { stdio: ["ignore", "pipe", "inherit"] });
    const output: string[] = [];
    createInterface({ input: parent.stdout }).on("line", (line) => output.push(line));
    const pids = () =>
      [...output.join("\n").matchAll(/"role":"(gateway|bank SBI|bank HDFC|up)","pid":(\d+)/g)].map((match) =>
        Number(match[2]),
      );
    await waitUntil(() => output.some((line) => line.includes("ready: gateway")), "the network to be ready", 60_000);
    const started = [...new Set(pids())];
    assert.equal(started.length, 4, `up, the gateway and two banks: ${started.join(", ")}`);
    parent.kill("SIGTERM");
    await waitUntil(() => started.every((pid) => !alive(pid)), "every process of the network to stop", 30_000);
  });

  it("--no-restart leaves a dead process down, and the others keep running", async () => {
    const dir = await mkdtemp(join(tmpdir(), "paynet-up-"));
    dirs.push(dir);
    const up = new Proc("up", ["up", "--data-dir", dir, "--port", "0", "--bank-port", "0", "--no-restart"]);
    await up.waitFor(/ready: gateway/);
    const hdfc = await pidOf(up, "bank HDFC");
    const gateway = await pidOf(up, "gateway");
    process.kill(hdfc, "SIGKILL");
    await up.waitFor(/bank HDFC exited \(signal SIGKILL\); left down \(--no-restart\)/);
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
      ].concat(["--amount", "2.00", "--json"]),
      { env: { PAYNET_PASSWORD: "alice123" } },
    );
    assert.equal(pay.json?.status, "aborted", pay.stdout + pay.stderr);
    assert.ok(alive(gateway), "the gateway keeps running");
    up.child.kill("SIGTERM");
    assert.equal((await up.exited).code, 0);
    assert.ok(!alive(gateway), "no process of the network outlives up");
  });
});
