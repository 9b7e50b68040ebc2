// Who may call what: identities come from mTLS certificates and sessions, and every server checks them.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { Network, passwords, bankFiles, clientFiles } from "./helpers/network.js";
import { PaymentError } from "../src/core/domain/errors.js";
import { createClient } from "../src/core/transport/rpc.js";
import { expectServerName } from "../src/core/transport/tls.js";
import { gatewayServerName } from "../src/core/transport/identity.js";
import { issueCertificates, loadIdentity, serialNumber } from "../src/core/transport/certificates.js";
import { LegKind, PaymentGateway } from "../src/gen/paynet/v1/paynet_pb.js";

const call = { timeoutMs: 10_000 };
const hasCode = (code: string) => (error: PaymentError) => {
  assert.equal(error.code, code);
  return true;
};

describe("identities and authorization", () => {
  let network: Network;
  let sbiAddress: string;
  let otherCaDir: string;

  before(async () => {
    network = await Network.create();
    await network.start(["SBI", "HDFC"]);
    const [, address] = await network.banks.get("SBI")!.waitFor(/listening on ([0-9.:]+)/);
    sbiAddress = address!;
    otherCaDir = await mkdtemp(join(tmpdir(), "paynet-other-ca-"));
    await issueCertificates({ certificateDir: otherCaDir, banks: [] });
  });
  after(async () => {
    await network.destroy();
    await rm(otherCaDir, { recursive: true, force: true });
  });

  it("refuses a client certificate calling a bank's 2PC methods", async () => {
    const bank = await network.bankClient("SBI", sbiAddress, clientFiles);
    try {
      await assert.rejects(
        bank.prepare({ paymentId: "steal-1", username: "alice", kind: LegKind.DEBIT, amountMinor: 100n }, call),
        hasCode("PERMISSION_DENIED"),
      );
      await assert.rejects(bank.commit({ paymentId: "steal-1" }, call), hasCode("PERMISSION_DENIED"));
      await assert.rejects(
        bank.prepareBatch(
          { paymentIds: ["steal-3"], usernames: ["alice"], kinds: [LegKind.DEBIT], amountsMinor: [100n] },
          call,
        ),
        hasCode("PERMISSION_DENIED"),
      );
      await assert.rejects(bank.commitBatch({ paymentIds: ["steal-3"] }, call), hasCode("PERMISSION_DENIED"));
      await assert.rejects(bank.sendBalanceReq({ username: "alice" }, call), hasCode("PERMISSION_DENIED"));
      await assert.rejects(
        bank.authenticateUser({ username: "alice", password: "x" }, call),
        hasCode("PERMISSION_DENIED"),
      );
    } finally {
      bank.close();
    }
    assert.equal(await network.holdsOnDisk(), 0);
  });

  it("refuses another bank's certificate calling a bank", async () => {
    const bank = await network.bankClient("SBI", sbiAddress, (dir) => bankFiles(dir, "HDFC"));
    try {
      await assert.rejects(
        bank.transaction({ paymentId: "steal-2", fromUser: "alice", toUser: "carol", amountMinor: 100n }, call),
        hasCode("PERMISSION_DENIED"),
      );
    } finally {
      bank.close();
    }
  });

  it("refuses a bank registering under another bank's name", async () => {
    const gateway = await network.gatewayClient((dir) => bankFiles(dir, "HDFC"));
    try {
      await assert.rejects(
        gateway.registerServer({ bank: "SBI", address: "127.0.0.1:1" }, call),
        hasCode("PERMISSION_DENIED"),
      );
    } finally {
      gateway.close();
    }
    // The real SBI still answers.
    const balance = await network.client(["balance", "--user", "alice", "--bank", "SBI", "--json"], passwords.alice);
    assert.equal(balance.code, 0, balance.stdout + balance.stderr);
  });

  it("refuses a client certificate registering a bank, and a bank certificate making payments", async () => {
    const asClient = await network.gatewayClient(clientFiles);
    const asBank = await network.gatewayClient((dir) => bankFiles(dir, "SBI"));
    try {
      await assert.rejects(
        asClient.registerServer({ bank: "SBI", address: "127.0.0.1:1" }, call),
        hasCode("PERMISSION_DENIED"),
      );
      await assert.rejects(
        asBank.registerClient({ username: "alice", password: passwords.alice!, bank: "SBI" }, call),
        hasCode("PERMISSION_DENIED"),
      );
    } finally {
      asClient.close();
      asBank.close();
    }
  });

  it("fails a connection that presents no client certificate", async () => {
    const identity = await network.identity(clientFiles);
    const gateway = createClient(
      PaymentGateway,
      network.gatewayAddress,
      grpc.credentials.createSsl(identity.caPem),
      expectServerName(gatewayServerName),
      "GATEWAY_UNAVAILABLE",
    );
    try {
      await assert.rejects(
        gateway.registerClient({ username: "alice", password: passwords.alice!, bank: "SBI" }, call),
        hasCode("GATEWAY_UNAVAILABLE"),
      );
    } finally {
      gateway.close();
    }
  });

  it("fails a connection whose client certificate comes from another CA", async () => {
    const foreign = await loadIdentity(otherCaDir, {
      certPath: join(otherCaDir, "client_cert.pem"),
      keyPath: join(otherCaDir, "client_key.pem"),
    });
    const ours = await network.identity(clientFiles);
    const gateway = createClient(
      PaymentGateway,
      network.gatewayAddress,
      grpc.credentials.createSsl(ours.caPem, foreign.keyPem, foreign.certPem),
      expectServerName(gatewayServerName),
      "GATEWAY_UNAVAILABLE",
    );
    try {
      await assert.rejects(
        gateway.registerClient({ username: "alice", password: passwords.alice!, bank: "SBI" }, call),
        hasCode("GATEWAY_UNAVAILABLE"),
      );
    } finally {
      gateway.close();
    }
  });

  it("pays only from the session's own account and refuses forged tokens", async () => {
    const gateway = await network.gatewayClient();
    try {
      const { token } = await gateway.registerClient(
        { username: "carol", password: passwords.carol!, bank: "SBI" },
        call,
      );
      const view = await gateway.viewBalance({ token }, call);
      assert.equal(view.username, "carol");
      const before = await network.balancesOnDisk();
      await gateway.makePayment(
        { token, paymentId: "own-account-1", toUser: "bob", toBank: "HDFC", amountMinor: 100n },
        call,
      );
      const after = await network.balancesOnDisk();
      assert.equal(after.get("carol@SBI"), before.get("carol@SBI")! - 100n, "the payer is the token's user");
      assert.equal(after.get("alice@SBI"), before.get("alice@SBI"));
      await assert.rejects(gateway.viewBalance({ token: "A".repeat(43) }, call), hasCode("UNAUTHENTICATED"));
      await assert.rejects(
        gateway.makePayment(
          { token: "forged", paymentId: "forged-1", toUser: "bob", toBank: "HDFC", amountMinor: 1n },
          call,
        ),
        hasCode("UNAUTHENTICATED"),
      );
    } finally {
      gateway.close();
    }
  });
});

describe("certificate serial numbers", () => {
  it("are positive DER integers in their shortest form (OpenSSL refuses a certificate with a padded serial)", () => {
    for (let sample = 0; sample < 20_000; sample += 1) {
      const hex = serialNumber();
      assert.match(hex, /^[0-9a-f]{32}$/);
      const first = Number.parseInt(hex.slice(0, 2), 16);
      assert.ok(first >= 0x01 && first <= 0x7f, `serial ${hex} starts with 0x${hex.slice(0, 2)}`);
    }
  });
});
