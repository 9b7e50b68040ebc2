// A port already taken is said as cause and fix, for the gateway and a bank alike, with no raw gRPC text.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { Network, runCli } from "./helpers/network.js";

describe("a busy port", () => {
  let network: Network;
  let second: Network;
  let busyPort: string;

  before(async () => {
    network = await Network.create();
    await network.startGateway();
    busyPort = network.gatewayAddress.split(":")[1]!;
    // Another data dir, so that only the port is shared (not the state files and their locks).
    second = await Network.create();
  });
  after(async () => {
    await network.destroy();
    await second.destroy();
  });

  const roles: Array<{ role: string; args: () => string[] }> = [
    { role: "gateway", args: () => ["gateway", "--data-dir", second.dir, "--port", busyPort] },
    {
      role: "bank",
      args: () => [
        "bank",
        "--id",
        "SBI",
        "--data-dir",
        second.dir,
        "--port",
        busyPort,
        "--gateway",
        network.gatewayAddress,
      ],
    },
  ];
  for (const { role, args } of roles) {
    it(`a ${role} says which port is in use and how to pick another, and exits`, async () => {
      const result = await runCli(args());
      assert.equal(result.code, 1, result.stdout + result.stderr);
      assert.ok(
        result.stderr.includes(
          `paynet: port ${busyPort} is in use (another ${role}?); pick one with --port, or --port 0 for a free one\n`,
        ),
        result.stderr,
      );
      assert.doesNotMatch(result.stdout + result.stderr, /No address added|EADDRINUSE/);
    });
  }
});
