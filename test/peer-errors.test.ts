// A peer that does not answer is named, with its address, in one line and without grpc-js's text.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { networkPerTest, runCli } from "./helpers/network.js";

const grpcText = /No connection established|Last error|Resolution note|UNAVAILABLE: /;

describe("who did not answer", () => {
  const networks = networkPerTest();

  it("a payment aborted because a bank is down names the bank and its address", async () => {
    const net = await networks.create();
    await net.start(["SBI", "HDFC"]);
    const hdfc = net.banks.get("HDFC")!;
    const [, hdfcAddress] = await hdfc.waitFor(/listening on ([0-9.:]+)/);
    await hdfc.stop("SIGKILL");

    const result = await net.pay("alice", "SBI", "bob", "HDFC", "1.00");
    assert.equal(result.code, 1, result.stdout + result.stderr);
    assert.equal(result.json?.status, "aborted");
    assert.equal(result.json?.reason, "BANK_UNAVAILABLE");
    assert.equal(result.json?.message, `bank HDFC at ${hdfcAddress} did not answer`);
  });

  it("status and payment with the gateway down say where they looked and exit 4", async () => {
    const net = await networks.create();
    await net.startGateway();
    const address = net.gatewayAddress;
    await net.gateway!.stop("SIGKILL");

    const human = await runCli(["status", "--data-dir", net.dir, "--gateway", address]);
    assert.equal(human.code, 4, human.stdout + human.stderr);
    assert.match(human.stdout, new RegExp(`^gateway at ${address.replace(/\./g, "\\.")} is not reachable`));
    assert.doesNotMatch(human.stdout + human.stderr, grpcText);

    const json = await runCli(["status", "--json", "--data-dir", net.dir, "--gateway", address]);
    assert.equal(json.code, 4, json.stdout + json.stderr);
    assert.deepEqual(json.json, { error: "GATEWAY_UNAVAILABLE", message: `gateway at ${address} is not reachable` });

    const payment = await runCli(["payment", "some-payment-id", "--data-dir", net.dir, "--gateway", address]);
    assert.equal(payment.code, 4, payment.stdout + payment.stderr);
    assert.match(payment.stdout, /is not reachable/);
  });
});
