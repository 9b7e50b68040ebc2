// The payment network end to end: real gateway and bank processes over mTLS, driven by the scripted client.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { Network, passwords } from "./helpers/network.js";
import { PaymentError } from "../src/core/domain/errors.js";
import { amountMinorMax } from "../src/core/domain/money.js";
import { PaymentStatus } from "../src/gen/paynet/v1/paynet_pb.js";

describe("payment network", () => {
  let network: Network;

  before(async () => {
    network = await Network.create();
    await network.start(["SBI", "HDFC"]);
  });
  after(async () => network.destroy());

  describe("login and balance", () => {
    it("shows the balance of a user with the right password", async () => {
      const result = await network.client(["balance", "--user", "alice", "--bank", "SBI", "--json"], passwords.alice);
      assert.equal(result.code, 0, result.stdout + result.stderr);
      assert.deepEqual(result.json, {
        user: "alice",
        bank: "SBI",
        balance: "1000.00",
        balanceMinor: 100000,
        available: "1000.00",
        availableMinor: 100000,
      });
    });

    it("reads seed balances with cents", async () => {
      const result = await network.client(["balance", "--user", "dave", "--bank", "HDFC", "--json"], passwords.dave);
      assert.equal(result.json?.balance, "250.50");
      assert.equal(result.json?.balanceMinor, 25050);
    });

    it("takes the password from --password-stdin", async () => {
      const result = await network.client(
        ["balance", "--user", "bob", "--bank", "HDFC", "--json", "--password-stdin"],
        undefined,
        { stdin: "bob123\n" },
      );
      assert.equal(result.code, 0, result.stdout + result.stderr);
      assert.equal(result.json?.user, "bob");
    });

    it("refuses a wrong password with UNAUTHENTICATED and exit code 1", async () => {
      const result = await network.client(
        ["balance", "--user", "alice", "--bank", "SBI", "--json"],
        "not-the-password",
      );
      assert.equal(result.code, 1);
      assert.equal(result.json?.reason, "UNAUTHENTICATED");
    });

    it("refuses an unknown user like a wrong password", async () => {
      const result = await network.client(["balance", "--user", "mallory", "--bank", "SBI", "--json"], "whatever");
      assert.equal(result.code, 1);
      assert.equal(result.json?.reason, "UNAUTHENTICATED");
    });

    it("refuses an unknown bank with UNKNOWN_BANK", async () => {
      const result = await network.client(
        ["balance", "--user", "alice", "--bank", "NOBANK", "--json"],
        passwords.alice,
      );
      assert.equal(result.code, 1);
      assert.equal(result.json?.reason, "UNKNOWN_BANK");
    });

    it("replaced every plaintext password in the accounts file by an scrypt hash", async () => {
      const { readFile } = await import("node:fs/promises");
      const csv = await readFile(network.paths.accountsCsv, "utf8");
      for (const password of Object.values(passwords))
        assert.ok(!csv.includes(password), `plaintext ${password} still in the CSV`);
      assert.equal(csv.match(/scrypt\$/g)?.length, 4);
    });
  });

  describe("payments", () => {
    it("commits a cross-bank payment: both balances move by exactly the amount", async () => {
      const before = await network.balancesOnDisk();
      const result = await network.pay("alice", "SBI", "bob", "HDFC", "12.50");
      assert.equal(result.code, 0, result.stdout + result.stderr);
      assert.equal(result.json?.status, "committed");
      assert.match(String(result.json?.id), /^[0-9a-f]{64}$/);
      const after = await network.balancesOnDisk();
      assert.equal(after.get("alice@SBI"), before.get("alice@SBI")! - 1250n);
      assert.equal(after.get("bob@HDFC"), before.get("bob@HDFC")! + 1250n);
      assert.equal(
        await network.totalOnDisk(),
        [...before.values()].reduce((a, b) => a + b, 0n),
      );
      assert.equal(await network.holdsOnDisk(), 0);
      const record = await network.gatewayRecord(String(result.json?.id));
      assert.equal(record?.state, "committed");
    });

    it("commits a same-bank payment in one step: total unchanged", async () => {
      const before = await network.balancesOnDisk();
      const result = await network.pay("carol", "SBI", "alice", "SBI", "50");
      assert.equal(result.code, 0, result.stdout + result.stderr);
      const after = await network.balancesOnDisk();
      assert.equal(after.get("carol@SBI"), before.get("carol@SBI")! - 5000n);
      assert.equal(after.get("alice@SBI"), before.get("alice@SBI")! + 5000n);
      assert.equal(
        await network.totalOnDisk(),
        [...before.values()].reduce((a, b) => a + b, 0n),
      );
    });

    it("aborts a payment over the balance: nothing changes and the hold is released", async () => {
      const before = await network.balancesOnDisk();
      const result = await network.pay("dave", "HDFC", "alice", "SBI", "250.51");
      assert.equal(result.code, 1);
      assert.equal(result.json?.status, "aborted");
      assert.equal(result.json?.reason, "INSUFFICIENT_FUNDS");
      assert.deepEqual(await network.balancesOnDisk(), before);
      assert.equal(await network.holdsOnDisk(), 0);
      const balance = await network.client(["balance", "--user", "dave", "--bank", "HDFC", "--json"], passwords.dave);
      assert.equal(balance.json?.available, balance.json?.balance);
    });

    it("aborts a payment to an unknown user or bank, changing nothing", async () => {
      const before = await network.balancesOnDisk();
      const unknownUser = await network.pay("alice", "SBI", "nobody", "HDFC", "1");
      assert.equal(unknownUser.code, 1);
      assert.equal(unknownUser.json?.reason, "UNKNOWN_ACCOUNT");
      const unknownBank = await network.pay("alice", "SBI", "bob", "NOBANK", "1");
      assert.equal(unknownBank.code, 1);
      assert.equal(unknownBank.json?.reason, "UNKNOWN_BANK");
      assert.deepEqual(await network.balancesOnDisk(), before);
      assert.equal(await network.holdsOnDisk(), 0);
    });

    it("refuses a payment to oneself", async () => {
      const result = await network.pay("alice", "SBI", "alice", "SBI", "1");
      assert.equal(result.code, 1);
      assert.equal(result.json?.reason, "SELF_PAYMENT");
    });

    for (const amount of ["-5", "0", "0.00", "abc", "1.234", "1e3", "100000000000000000000", ""]) {
      it(`rejects the amount ${JSON.stringify(amount)} as a usage error (exit 2), changing nothing`, async () => {
        const before = await network.balancesOnDisk();
        const result = await network.pay("alice", "SBI", "bob", "HDFC", amount);
        assert.equal(result.code, 2, result.stdout + result.stderr);
        assert.deepEqual(await network.balancesOnDisk(), before);
      });
    }

    for (const [label, amountMinor] of [
      ["negative", -100n],
      ["zero", 0n],
      ["over the limit", amountMinorMax + 1n],
    ] as const) {
      it(`the gateway itself refuses a ${label} amount with INVALID_AMOUNT, changing nothing`, async () => {
        const before = await network.balancesOnDisk();
        const gateway = await network.gatewayClient();
        try {
          const { token } = await gateway.registerClient(
            { username: "alice", password: passwords.alice!, bank: "SBI" },
            { timeoutMs: 10_000 },
          );
          await assert.rejects(
            gateway.makePayment(
              { token, paymentId: `bad-${label.replace(/ /g, "-")}`, toUser: "bob", toBank: "HDFC", amountMinor },
              { timeoutMs: 10_000 },
            ),
            (error: PaymentError) => error.code === "INVALID_AMOUNT",
          );
        } finally {
          gateway.close();
        }
        assert.deepEqual(await network.balancesOnDisk(), before);
      });
    }
  });

  describe("idempotency", () => {
    it("returns the first outcome for a repeated id and applies the payment once", async () => {
      const before = await network.balancesOnDisk();
      const first = await network.pay("alice", "SBI", "dave", "HDFC", "7.25", ["--id", "retry-me-1"]);
      const second = await network.pay("alice", "SBI", "dave", "HDFC", "7.25", ["--id", "retry-me-1"]);
      assert.equal(first.code, 0, first.stdout + first.stderr);
      assert.deepEqual(second.json, first.json);
      const after = await network.balancesOnDisk();
      assert.equal(after.get("alice@SBI"), before.get("alice@SBI")! - 725n);
      assert.equal(after.get("dave@HDFC"), before.get("dave@HDFC")! + 725n);
    });

    it("repeats a refusal for a repeated id, even once the funds would suffice", async () => {
      const daveMinor = (await network.balancesOnDisk()).get("dave@HDFC")!;
      const amount = ((daveMinor + 5000n) / 100n).toString(); // 50 more than dave has
      const first = await network.pay("dave", "HDFC", "bob", "HDFC", amount, ["--id", "too-much-1"]);
      assert.equal(first.json?.reason, "INSUFFICIENT_FUNDS");
      const topUp = await network.pay("alice", "SBI", "dave", "HDFC", "100");
      assert.equal(topUp.code, 0, topUp.stdout + topUp.stderr);
      const before = await network.balancesOnDisk();
      const second = await network.pay("dave", "HDFC", "bob", "HDFC", amount, ["--id", "too-much-1"]);
      assert.deepEqual(second.json, first.json);
      assert.deepEqual(await network.balancesOnDisk(), before);
    });

    it("rejects an id reused with different details, changing nothing", async () => {
      const before = await network.balancesOnDisk();
      const result = await network.pay("alice", "SBI", "dave", "HDFC", "8", ["--id", "retry-me-1"]);
      assert.equal(result.code, 1);
      assert.equal(result.json?.reason, "IDEMPOTENCY_CONFLICT");
      assert.deepEqual(await network.balancesOnDisk(), before);
    });
  });

  describe("concurrency", () => {
    it("never overdraws: 50 concurrent payments that together exceed the balance", async () => {
      const before = await network.balancesOnDisk();
      const totalBefore = await network.totalOnDisk();
      const startMinor = before.get("bob@HDFC")!;
      const amountMinor = startMinor / 40n + 1n; // 50 × amount > balance, 40 × amount > balance
      const gateway = await network.gatewayClient();
      try {
        const { token } = await gateway.registerClient(
          { username: "bob", password: passwords.bob!, bank: "HDFC" },
          { timeoutMs: 10_000 },
        );
        const outcomes = await Promise.allSettled(
          Array.from({ length: 50 }, (_, index) =>
            gateway.makePayment(
              {
                token,
                paymentId: `burst-${index}`,
                toUser: index % 2 === 0 ? "alice" : "carol",
                toBank: "SBI",
                amountMinor,
              },
              { timeoutMs: 60_000 },
            ),
          ),
        );
        const committed = outcomes.filter((outcome) => outcome.status === "fulfilled").length;
        const refusals = outcomes.flatMap((outcome) =>
          outcome.status === "rejected" ? [(outcome.reason as PaymentError).code] : [],
        );
        assert.deepEqual([...new Set(refusals)], ["INSUFFICIENT_FUNDS"]);
        assert.equal(BigInt(committed), startMinor / amountMinor, "every payment that fits is committed, no more");
        const after = await network.balancesOnDisk();
        assert.equal(after.get("bob@HDFC"), startMinor - BigInt(committed) * amountMinor);
        for (const [account, balance] of after) assert.ok(balance >= 0n, `${account} is negative`);
        assert.equal(await network.totalOnDisk(), totalBefore);
        assert.equal(await network.holdsOnDisk(), 0);
      } finally {
        gateway.close();
      }
    });
  });

  describe("batched payments (MakePayments)", () => {
    const call = { timeoutMs: 60_000 };

    it("gives each order its own outcome, and a repeat of the call answers the same and moves nothing", async () => {
      const gateway = await network.gatewayClient();
      try {
        const { token } = await gateway.registerClient(
          { username: "carol", password: passwords.carol!, bank: "SBI" },
          call,
        );
        const before = await network.balancesOnDisk();
        const totalBefore = await network.totalOnDisk();
        const carolMinor = before.get("carol@SBI")!;
        const orders = [
          { paymentId: "batch-cross", toUser: "bob", toBank: "HDFC", amountMinor: 100n },
          { paymentId: "batch-same", toUser: "alice", toBank: "SBI", amountMinor: 250n },
          { paymentId: "batch-nobody", toUser: "nobody", toBank: "HDFC", amountMinor: 100n },
          { paymentId: "batch-nobank", toUser: "bob", toBank: "NOBANK", amountMinor: 100n },
          { paymentId: "batch-too-much", toUser: "dave", toBank: "HDFC", amountMinor: carolMinor + 1n },
          { paymentId: "batch-zero", toUser: "dave", toBank: "HDFC", amountMinor: 0n },
          { paymentId: "not an id!", toUser: "dave", toBank: "HDFC", amountMinor: 1n },
        ];
        // final: the gateway recorded the id aborted (a bank refused it); an order refused before that is not.
        const expected = [
          ["batch-cross", "COMMITTED", "", false],
          ["batch-same", "COMMITTED", "", false],
          ["batch-nobody", "ABORTED", "UNKNOWN_ACCOUNT", true],
          ["batch-nobank", "ABORTED", "UNKNOWN_BANK", false],
          ["batch-too-much", "ABORTED", "INSUFFICIENT_FUNDS", true],
          ["batch-zero", "ABORTED", "INVALID_AMOUNT", false],
          ["not an id!", "ABORTED", "INVALID_ARGUMENT", false],
        ];
        const summary = (reply: {
          results: Array<{ paymentId: string; status: PaymentStatus; reason: string; final: boolean }>;
        }) =>
          reply.results.map((result) => [result.paymentId, PaymentStatus[result.status], result.reason, result.final]);

        const first = await gateway.makePayments({ token, payments: orders }, call);
        assert.deepEqual(summary(first), expected);
        // The two committed orders run side by side: the balance after the first may or may not include the second.
        assert.ok(
          [carolMinor - 100n, carolMinor - 350n].includes(first.results[0]!.balanceAfterMinor!),
          `balance after: ${first.results[0]!.balanceAfterMinor}`,
        );
        const after = await network.balancesOnDisk();
        assert.equal(after.get("carol@SBI"), carolMinor - 350n);
        assert.equal(after.get("bob@HDFC"), before.get("bob@HDFC")! + 100n);
        assert.equal(after.get("alice@SBI"), before.get("alice@SBI")! + 250n);
        assert.equal(await network.totalOnDisk(), totalBefore);
        assert.equal(await network.holdsOnDisk(), 0);

        const again = await gateway.makePayments({ token, payments: orders }, call);
        assert.deepEqual(summary(again), expected);
        assert.deepEqual(await network.balancesOnDisk(), after);
      } finally {
        gateway.close();
      }
    });

    it("runs an id repeated within one call once: the repeat gets the same answer, or IDEMPOTENCY_CONFLICT with other details", async () => {
      const gateway = await network.gatewayClient();
      try {
        const { token } = await gateway.registerClient(
          { username: "dave", password: passwords.dave!, bank: "HDFC" },
          call,
        );
        const { token: daveAgain } = await gateway.registerClient(
          { username: "dave", password: passwords.dave!, bank: "HDFC" },
          call,
        );
        const before = await network.balancesOnDisk();
        const earlier = await gateway.makePayment(
          { token: daveAgain, paymentId: "inner-earlier", toUser: "alice", toBank: "SBI", amountMinor: 7n },
          call,
        );
        const orders = [
          { paymentId: "inner-twice", toUser: "alice", toBank: "SBI", amountMinor: 11n },
          { paymentId: "inner-other", toUser: "carol", toBank: "SBI", amountMinor: 13n },
          { paymentId: "inner-twice", toUser: "alice", toBank: "SBI", amountMinor: 11n },
          { paymentId: "inner-other", toUser: "carol", toBank: "SBI", amountMinor: 14n },
          { paymentId: "inner-earlier", toUser: "alice", toBank: "SBI", amountMinor: 7n },
        ];
        const reply = await gateway.makePayments({ token, payments: orders }, call);
        assert.deepEqual(
          reply.results.map((result) => [result.paymentId, PaymentStatus[result.status], result.reason]),
          [
            ["inner-twice", "COMMITTED", ""],
            ["inner-other", "COMMITTED", ""],
            ["inner-twice", "COMMITTED", ""],
            ["inner-other", "ABORTED", "IDEMPOTENCY_CONFLICT"],
            ["inner-earlier", "COMMITTED", ""],
          ],
        );
        assert.equal(
          reply.results[0]!.balanceAfterMinor,
          reply.results[2]!.balanceAfterMinor,
          "a repeat answers what the first did",
        );
        assert.equal(reply.results[4]!.balanceAfterMinor, earlier.balanceAfterMinor);
        await network.settled();
        const after = await network.balancesOnDisk();
        assert.equal(after.get("dave@HDFC"), before.get("dave@HDFC")! - 7n - 11n - 13n, "each id applied once");
        assert.equal(after.get("alice@SBI"), before.get("alice@SBI")! + 7n + 11n);
        assert.equal(after.get("carol@SBI"), before.get("carol@SBI")! + 13n);
      } finally {
        gateway.close();
      }
    });

    it("refuses an empty call and one of more than 1,000 orders as a whole, changing nothing", async () => {
      const gateway = await network.gatewayClient();
      try {
        const { token } = await gateway.registerClient(
          { username: "alice", password: passwords.alice!, bank: "SBI" },
          call,
        );
        const before = await network.balancesOnDisk();
        const order = (index: number) => ({
          paymentId: `oversized-${index}`,
          toUser: "bob",
          toBank: "HDFC",
          amountMinor: 1n,
        });
        for (const payments of [[], Array.from({ length: 1_001 }, (_, index) => order(index))]) {
          await assert.rejects(
            gateway.makePayments({ token, payments }, call),
            (error: PaymentError) => error.code === "INVALID_ARGUMENT" && /1 to 1000 payments/.test(error.message),
          );
        }
        await assert.rejects(
          gateway.makePayments({ token: "forged", payments: [order(0)] }, call),
          (error: PaymentError) => error.code === "UNAUTHENTICATED",
        );
        assert.deepEqual(await network.balancesOnDisk(), before);
        assert.equal(await network.gatewayRecord("oversized-0"), undefined);
      } finally {
        gateway.close();
      }
    });
  });
});
