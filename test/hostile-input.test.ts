// Hostile and malformed input at every boundary: each is refused with its exact reason and changes nothing.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { readFile, readdir } from "node:fs/promises";
import { join } from "node:path";
import { Network, Proc, passwords, gatewayFiles } from "./helpers/network.js";
import type { PaymentError } from "../src/core/domain/errors.js";
import { amountMinorMax } from "../src/core/domain/money.js";
import { messageBytesMax } from "../src/core/transport/rpc.js";
import { batchLegsMax } from "../src/core/bank/bank-service.js";
import { LegKind } from "../src/gen/paynet/v1/paynet_pb.js";

const call = { timeoutMs: 10_000 };
type GatewayClient = Awaited<ReturnType<Network["gatewayClient"]>>;
type BankClient = Awaited<ReturnType<Network["bankClient"]>>;

/** Every state file's content, to prove a refusal wrote nothing. */
async function stateSnapshot(network: Network): Promise<Map<string, string>> {
  const snapshot = new Map<string, string>();
  for (const dir of ["server", "payment_gateway"]) {
    for (const name of await readdir(join(network.dir, dir))) {
      if (name.endsWith(".lock") || name.endsWith(".lck")) continue;
      snapshot.set(`${dir}/${name}`, await readFile(join(network.dir, dir, name), "utf8"));
    }
  }
  return snapshot;
}

const long = (length: number) => "a".repeat(length);

describe("hostile input", () => {
  let network: Network;
  let gateway: GatewayClient;
  let bank: BankClient;
  let token: string;

  before(async () => {
    network = await Network.create();
    await network.start(["SBI", "HDFC"]);
    const [, sbiAddress] = await network.banks.get("SBI")!.waitFor(/listening on ([0-9.:]+)/);
    gateway = await network.gatewayClient();
    bank = await network.bankClient("SBI", sbiAddress!, gatewayFiles);
    token = (await gateway.registerClient({ username: "alice", password: passwords.alice!, bank: "SBI" }, call)).token;
  });
  after(async () => {
    gateway.close();
    bank.close();
    await network.destroy();
  });

  const payment = (overrides: Record<string, unknown>) => () =>
    gateway.makePayment(
      { token, paymentId: "hostile-1", toUser: "bob", toBank: "HDFC", amountMinor: 100n, ...overrides },
      call,
    );
  const login = (overrides: Record<string, unknown>) => () =>
    gateway.registerClient({ username: "alice", password: passwords.alice!, bank: "SBI", ...overrides }, call);

  const table: Array<[string, () => Promise<unknown>, string]> = [
    // amounts
    ["negative amount", payment({ amountMinor: -1n }), "INVALID_AMOUNT"],
    ["zero amount", payment({ amountMinor: 0n }), "INVALID_AMOUNT"],
    ["amount one over the limit", payment({ amountMinor: amountMinorMax + 1n }), "INVALID_AMOUNT"],
    ["most negative int64 amount", payment({ amountMinor: -(2n ** 63n) }), "INVALID_AMOUNT"],
    ["largest int64 amount", payment({ amountMinor: 2n ** 63n - 1n }), "INVALID_AMOUNT"],
    // receivers
    ["empty receiver", payment({ toUser: "" }), "INVALID_ARGUMENT"],
    ["receiver of 65 characters", payment({ toUser: long(65) }), "INVALID_ARGUMENT"],
    ["receiver with a newline", payment({ toUser: "bob\n" }), "INVALID_ARGUMENT"],
    ["receiver with a NUL", payment({ toUser: "bob\u0000" }), "INVALID_ARGUMENT"],
    ["receiver with a comma (CSV injection)", payment({ toUser: "bob,1000000,x,SBI" }), "INVALID_ARGUMENT"],
    ["receiver with a space", payment({ toUser: "bo b" }), "INVALID_ARGUMENT"],
    ["receiver with a path", payment({ toUser: "../../etc/passwd" }), "INVALID_ARGUMENT"],
    ["receiver in another script", payment({ toUser: "бob" }), "INVALID_ARGUMENT"],
    ["receiver with an escape sequence", payment({ toUser: "\u001b[31mbob" }), "INVALID_ARGUMENT"],
    // banks
    ["empty receiver bank", payment({ toBank: "" }), "INVALID_ARGUMENT"],
    ["receiver bank of 33 characters", payment({ toBank: long(33) }), "INVALID_ARGUMENT"],
    ["receiver bank with a space", payment({ toBank: "HD FC" }), "INVALID_ARGUMENT"],
    ["receiver bank with a dot", payment({ toBank: "HDFC.evil" }), "INVALID_ARGUMENT"],
    ["receiver bank ending in a hyphen", payment({ toBank: "HDFC-" }), "INVALID_ARGUMENT"],
    ["receiver bank with a control character", payment({ toBank: "HDFC\t" }), "INVALID_ARGUMENT"],
    ["unknown receiver bank", payment({ toBank: "NOBANK" }), "UNKNOWN_BANK"],
    ["receiver bank of another case", payment({ toBank: "hdfc" }), "UNKNOWN_BANK"],
    // payment ids
    ["empty payment id", payment({ paymentId: "" }), "INVALID_ARGUMENT"],
    ["payment id of 129 characters", payment({ paymentId: long(129) }), "INVALID_ARGUMENT"],
    ["payment id with a space", payment({ paymentId: "id 1" }), "INVALID_ARGUMENT"],
    ["payment id with a newline", payment({ paymentId: "id\n1" }), "INVALID_ARGUMENT"],
    ["payment id with a quote", payment({ paymentId: 'id"1' }), "INVALID_ARGUMENT"],
    ["payment id starting with a hyphen", payment({ paymentId: "-id" }), "INVALID_ARGUMENT"],
    // who pays
    ["payment to oneself", payment({ toUser: "alice", toBank: "SBI" }), "SELF_PAYMENT"],
    ["empty token", payment({ token: "" }), "UNAUTHENTICATED"],
    ["forged token of the right shape", payment({ token: "B".repeat(43) }), "UNAUTHENTICATED"],
    ["token with a newline", payment({ token: `${"C".repeat(42)}\n` }), "UNAUTHENTICATED"],
    ["token of 10,000 characters", payment({ token: long(10_000) }), "UNAUTHENTICATED"],
    ["balance with a forged token", () => gateway.viewBalance({ token: "D".repeat(43) }, call), "UNAUTHENTICATED"],
    // logins
    ["login with an empty username", login({ username: "" }), "INVALID_ARGUMENT"],
    ["login with a username of 65 characters", login({ username: long(65) }), "INVALID_ARGUMENT"],
    ["login with an empty password", login({ password: "" }), "INVALID_ARGUMENT"],
    ["login with a password of 257 characters", login({ password: long(257) }), "INVALID_ARGUMENT"],
    ["login at an unknown bank", login({ bank: "NOBANK" }), "UNKNOWN_BANK"],
    ["login with a malformed bank", login({ bank: "S B I" }), "INVALID_ARGUMENT"],
    // size
    ["a message over the size limit", login({ password: long(messageBytesMax + 1) }), "INVALID_ARGUMENT"],
    ["a payment id over the size limit", payment({ paymentId: long(messageBytesMax * 2) }), "INVALID_ARGUMENT"],
    // a bank's own boundary, called with the gateway's certificate
    [
      "prepare with no leg kind",
      () => bank.prepare({ paymentId: "b-1", username: "alice", kind: LegKind.UNSPECIFIED, amountMinor: 1n }, call),
      "INVALID_ARGUMENT",
    ],
    [
      "prepare with an unknown leg kind",
      () => bank.prepare({ paymentId: "b-2", username: "alice", kind: 7 as LegKind, amountMinor: 1n }, call),
      "INVALID_ARGUMENT",
    ],
    [
      "prepare of a negative amount",
      () => bank.prepare({ paymentId: "b-3", username: "alice", kind: LegKind.DEBIT, amountMinor: -5n }, call),
      "INVALID_AMOUNT",
    ],
    [
      "prepare at an unknown account",
      () => bank.prepare({ paymentId: "b-4", username: "nobody", kind: LegKind.DEBIT, amountMinor: 5n }, call),
      "UNKNOWN_ACCOUNT",
    ],
    [
      "prepare of more than the balance",
      () => bank.prepare({ paymentId: "b-5", username: "alice", kind: LegKind.DEBIT, amountMinor: 100_000_000n }, call),
      "INSUFFICIENT_FUNDS",
    ],
    [
      "prepare with a malformed id",
      () => bank.prepare({ paymentId: "b 6", username: "alice", kind: LegKind.DEBIT, amountMinor: 5n }, call),
      "INVALID_ARGUMENT",
    ],
    ["commit of a payment never prepared", () => bank.commit({ paymentId: "never-prepared" }, call), "UNKNOWN_PAYMENT"],
    ["commit with an empty id", () => bank.commit({ paymentId: "" }, call), "INVALID_ARGUMENT"],
    [
      "transfer to oneself",
      () =>
        bank.transaction(
          { paymentId: "b-7", fromUser: "alice", toUser: "alice", amountMinor: 5n, begunAtMs: 1n },
          call,
        ),
      "SELF_PAYMENT",
    ],
    [
      "transfer of zero",
      () =>
        bank.transaction(
          { paymentId: "b-8", fromUser: "alice", toUser: "carol", amountMinor: 0n, begunAtMs: 1n },
          call,
        ),
      "INVALID_AMOUNT",
    ],
    [
      "transfer from an unknown account",
      () =>
        bank.transaction(
          { paymentId: "b-9", fromUser: "nobody", toUser: "carol", amountMinor: 5n, begunAtMs: 1n },
          call,
        ),
      "UNKNOWN_ACCOUNT",
    ],
    [
      "transfer without the time the gateway began it",
      () => bank.transaction({ paymentId: "b-10", fromUser: "alice", toUser: "carol", amountMinor: 5n }, call),
      "INVALID_ARGUMENT",
    ],
    [
      "settling a transfer without the time the gateway began it",
      () => bank.abort({ paymentId: "b-11", settlesTransfer: true }, call),
      "INVALID_ARGUMENT",
    ],
    [
      "a batch of more legs than allowed",
      () =>
        bank.commitBatch({ paymentIds: Array.from({ length: batchLegsMax + 1 }, (_, index) => `leg-${index}`) }, call),
      "INVALID_ARGUMENT",
    ],
    [
      "a batch whose columns differ in length",
      () =>
        bank.prepareBatch(
          {
            paymentIds: ["leg-1", "leg-2"],
            usernames: ["alice"],
            kinds: [LegKind.DEBIT, LegKind.DEBIT],
            amountsMinor: [1n, 1n],
          },
          call,
        ),
      "INVALID_ARGUMENT",
    ],
    ["balance of a malformed username", () => bank.sendBalanceReq({ username: "al ice" }, call), "INVALID_ARGUMENT"],
    [
      "authentication of an overlong password",
      () => bank.authenticateUser({ username: "alice", password: long(300) }, call),
      "INVALID_ARGUMENT",
    ],
  ];

  it(`has at least 50 cases (${table.length})`, () => assert.ok(table.length >= 50));

  it("refuses a payment to an unknown account at a real bank, moving no money and keeping the refusal for its id", async () => {
    const before = await network.balancesOnDisk();
    const attempt = payment({ paymentId: "to-nobody-1", toUser: "nobody" });
    await assert.rejects(attempt(), (error: PaymentError) => error.code === "UNKNOWN_ACCOUNT" && error.final);
    assert.deepEqual(await network.balancesOnDisk(), before);
    assert.equal(await network.holdsOnDisk(), 0);
    // The refusal is part of the payment's record: its id answers the same from now on.
    assert.equal((await network.gatewayRecord("to-nobody-1"))?.reason, "UNKNOWN_ACCOUNT");
    await assert.rejects(attempt(), (error: PaymentError) => error.code === "UNKNOWN_ACCOUNT");
  });

  for (const [label, attempt, reason] of table) {
    it(`refuses ${label} with ${reason}, changing nothing`, async () => {
      await network.settled();
      const before = await stateSnapshot(network);
      await assert.rejects(attempt(), (error: PaymentError) => {
        assert.equal(error.code, reason, error.message);
        return true;
      });
      assert.deepEqual(await stateSnapshot(network), before);
    });
  }
});

describe("secrets", () => {
  it("throttles a burst of wrong passwords, refusing even the right one while locked", async () => {
    const network = await Network.create();
    try {
      await network.start(["SBI", "HDFC"]);
      const gateway = await network.gatewayClient();
      try {
        for (let attempt = 1; attempt <= 5; attempt += 1) {
          await assert.rejects(
            gateway.registerClient({ username: "carol", password: `guess-${attempt}`, bank: "SBI" }, call),
            (error: PaymentError) => error.code === "UNAUTHENTICATED",
          );
        }
        await assert.rejects(
          gateway.registerClient({ username: "carol", password: passwords.carol!, bank: "SBI" }, call),
          (error: PaymentError) => error.code === "THROTTLED",
        );
        // Another user is not locked out by carol's guesses.
        await gateway.registerClient({ username: "alice", password: passwords.alice!, bank: "SBI" }, call);
      } finally {
        gateway.close();
      }
    } finally {
      await network.destroy();
    }
  });

  it("never writes a password or a session token to a state file or a log line", async () => {
    const network = await Network.create();
    try {
      await network.start(["SBI", "HDFC"]);
      const tokens: string[] = [];
      const gateway = await network.gatewayClient();
      try {
        for (const [user, bank] of [
          ["alice", "SBI"],
          ["bob", "HDFC"],
        ] as const)
          tokens.push((await gateway.registerClient({ username: user, password: passwords[user]!, bank }, call)).token);
        await assert.rejects(
          gateway.registerClient({ username: "dave", password: "dave-wrong-secret", bank: "HDFC" }, call),
        );
        await gateway.makePayment(
          { token: tokens[0]!, paymentId: "secret-check-1", toUser: "bob", toBank: "HDFC", amountMinor: 100n },
          call,
        );
      } finally {
        gateway.close();
      }
      const cli = [
        await network.pay("carol", "SBI", "dave", "HDFC", "1"),
        await network.client(["balance", "--user", "bob", "--bank", "HDFC"], passwords.bob),
        await network.client(["balance", "--user", "bob", "--bank", "HDFC"], "bob-wrong-secret"),
      ];
      await network.stop("SIGTERM");
      const up = new Proc("up", ["up", "--data-dir", network.dir, "--port", "0", "--bank-port", "0"]);
      await up.waitFor(/ready: gateway/);
      await up.stop("SIGTERM");

      const secrets = [...Object.values(passwords), "dave-wrong-secret", "bob-wrong-secret", ...tokens];
      const output = [network.gateway!, ...network.banks.values(), up]
        .flatMap((proc) => proc.lines)
        .concat(cli.flatMap((result) => [result.stdout, result.stderr]));
      const files: Array<[string, string]> = [];
      for (const dir of ["server", "payment_gateway", "client"]) {
        for (const name of await readdir(join(network.dir, dir)).catch(() => [] as string[])) {
          if (!name.endsWith(".lock") && !name.endsWith(".lck"))
            files.push([`${dir}/${name}`, await readFile(join(network.dir, dir, name), "utf8")]);
        }
      }
      assert.ok(output.length > 10 && files.length >= 5, "something was captured");
      for (const secret of secrets) {
        for (const line of output) assert.ok(!line.includes(secret), `a secret appears in the output: ${line}`);
        for (const [name, content] of files) assert.ok(!content.includes(secret), `a secret appears in ${name}`);
      }
    } finally {
      await network.destroy();
    }
  });
});
