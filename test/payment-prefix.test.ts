// Payment ids in short form: `client history` shows them, `paynet payment` takes a unique prefix of at least
// 8 characters (as git names commits) and says when a prefix names several payments.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { Network, runCli } from "./helpers/network.js";

describe("short payment ids", () => {
  let network: Network;
  let id = "";

  before(async () => {
    network = await Network.create();
    await network.start(["SBI", "HDFC"]);
    const paid = await network.pay("alice", "SBI", "bob", "HDFC", "1.00");
    assert.equal(paid.code, 0, paid.stdout + paid.stderr);
    id = String(paid.json?.id);
    for (const suffix of ["1", "2"]) {
      const custom = await network.pay("carol", "SBI", "dave", "HDFC", "1.00", ["--id", `ambiguous-${suffix}`]);
      assert.equal(custom.code, 0, custom.stdout + custom.stderr);
    }
  });
  after(async () => {
    await network.destroy();
  });

  const payment = (idOrPrefix: string) =>
    runCli(["payment", idOrPrefix, "--json", "--data-dir", network.dir, "--gateway", network.gatewayAddress]);

  it("client history shows each payment's id in short form", async () => {
    const history = await runCli(["client", "history", "--user", "alice", "--data-dir", network.dir]);
    assert.equal(history.code, 0, history.stdout + history.stderr);
    assert.match(history.stdout, new RegExp(`committed 1\\.00 from alice@SBI to bob@HDFC ${id.slice(0, 12)}\\n`));
    assert.ok(!history.stdout.includes(id), "the full id is in --json, not in the list");
  });

  const prefixes: Array<[string, (id: string) => string, number, RegExp | null]> = [
    ["the full id", (full) => full, 0, null],
    ["the 12 characters history shows", (full) => full.slice(0, 12), 0, null],
    ["8 characters, the shortest prefix taken", (full) => full.slice(0, 8), 0, null],
    ["7 characters: too short to be a prefix", (full) => full.slice(0, 7), 1, /no payment with id/],
  ];
  for (const [what, prefixOf, code, refusal] of prefixes) {
    it(`paynet payment with ${what}`, async () => {
      const result = await payment(prefixOf(id));
      assert.equal(result.code, code, result.stdout + result.stderr);
      if (refusal === null) assert.equal(result.json?.id, id);
      else {
        assert.equal(result.json?.error, "UNKNOWN_PAYMENT");
        assert.match(String(result.json?.message), refusal);
      }
    });
  }

  it("says when a prefix names several payments, and which", async () => {
    const result = await payment("ambiguous");
    assert.equal(result.code, 1, result.stdout + result.stderr);
    assert.equal(result.json?.error, "INVALID_ARGUMENT");
    assert.equal(
      result.json?.message,
      "payment id prefix ambiguous is ambiguous: 2 payments start with it (ambiguous-1, ambiguous-2); give more characters",
    );
    assert.equal((await payment("ambiguous-2")).json?.id, "ambiguous-2", "an exact id is never ambiguous");
  });
});
