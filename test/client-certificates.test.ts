// A certificate problem is not an outage: the client says what is wrong and where it looked, exits 2, and
// queues nothing (a payment queued behind certificates that never work could never be sent).
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { cp, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Network, passwords, runCli, type RunResult } from "./helpers/network.js";

const exit = { usage: 2, queued: 3 };

describe("client certificate problems", () => {
  let network: Network;
  let otherDir: string;
  const clientDirs: string[] = [];

  before(async () => {
    network = await Network.create();
    await network.start(["SBI", "HDFC"]);
    otherDir = await mkdtemp(join(tmpdir(), "paynet-other-ca-"));
    const certs = await runCli(["certs", "--data-dir", otherDir]);
    assert.equal(certs.code, 0, certs.stdout + certs.stderr);
  });
  after(async () => {
    await network.destroy();
    await rm(otherDir, { recursive: true, force: true });
    for (const dir of clientDirs) await rm(dir, { recursive: true, force: true });
  });

  /** A client's data dir holding the network's certificates, then `change` applied to its certificate/. */
  async function clientDir(change: (certificateDir: string) => Promise<void>): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), "paynet-client-"));
    clientDirs.push(dir);
    await cp(network.paths.certificateDir, join(dir, "certificate"), { recursive: true });
    await change(join(dir, "certificate"));
    return dir;
  }

  const copyFromOtherCa = (names: string[]) => async (certificateDir: string) => {
    for (const name of names) await cp(join(otherDir, "certificate", name), join(certificateDir, name));
  };

  async function pay(dir: string): Promise<RunResult> {
    return runCli(
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
        "1.00",
        "--json",
        "--data-dir",
        dir,
        "--gateway",
        network.gatewayAddress,
      ],
      { env: { PAYNET_PASSWORD: passwords.alice! } },
    );
  }

  async function assertNothingQueued(dir: string): Promise<void> {
    const queue = await runCli(["client", "queue", "--json", "--data-dir", dir]);
    assert.deepEqual(queue.json?.queued, []);
  }

  const cases: Array<{ name: string; change: (certificateDir: string) => Promise<void>; says: RegExp }> = [
    {
      name: "a client certificate from another CA: the gateway refuses the handshake",
      change: copyFromOtherCa(["client_cert.pem", "client_key.pem"]),
      says: /the gateway at [0-9.:]+ refused the TLS handshake .*our client certificate is not signed by its CA/,
    },
    {
      name: "all certificates from another CA: the gateway's certificate is not trusted",
      change: copyFromOtherCa(["ca_cert.pem", "client_cert.pem", "client_key.pem"]),
      says: /the gateway at [0-9.:]+ presented a certificate our CA did not sign/,
    },
    {
      name: "a missing certificate file",
      change: (certificateDir) => rm(join(certificateDir, "client_cert.pem")),
      says: /cannot read certificate .*client_cert\.pem/,
    },
  ];
  for (const { name, change, says } of cases) {
    it(`${name}: says so with the data dir, exits 2, queues nothing`, async () => {
      const dir = await clientDir(change);
      const result = await pay(dir);
      assert.equal(result.code, exit.usage, result.stdout + result.stderr);
      assert.equal(result.json?.status, "rejected");
      assert.equal(result.json?.reason, "CERTIFICATE");
      const message = String(result.json?.message);
      assert.match(message, says);
      assert.ok(message.includes(`--data-dir ${dir}`), message);
      await assertNothingQueued(dir);
    });
  }

  it("an unreachable gateway is still an outage: the payment is queued (exit 3)", async () => {
    const dir = await clientDir(async () => undefined);
    const result = await runCli(
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
        "1.00",
        "--json",
        "--data-dir",
        dir,
        "--gateway",
        "127.0.0.1:1",
      ],
      { env: { PAYNET_PASSWORD: passwords.alice! } },
    );
    assert.equal(result.code, exit.queued, result.stdout + result.stderr);
    assert.equal(result.json?.reason, "GATEWAY_UNAVAILABLE");
  });
});
