// A paused process never overwrites newer state. The banks share server/pending_transactions.json and
// server/dummydata.csv, each rewriting its own section under the file's lock at its checkpoints. A bank
// stopped (SIGSTOP, as a stop-the-world pause or a frozen VM would stop it) inside that read-modify-write,
// for longer than any lock staleness timer, keeps the kernel lock: the other bank waits, says for whom, and
// writes only after the paused one has finished; both sections end intact. Payments are answered all along:
// a payment's path takes no shared-file lock.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { networkPerTest } from "./helpers/network.js";

/** Longer than the 4 s after which proper-lockfile alone took over the lock of a silent holder. */
const pauseBeyondStalenessMs = 5_000;

describe("a bank paused inside its checkpoint", () => {
  const networks = networkPerTest();

  it("keeps the shared file's lock however long it is paused; the other bank waits, and both sections end intact", async () => {
    const network = await networks.create();
    await network.startGateway();
    const sbi = await network.startBank("SBI", { env: { PAYNET_PAUSE_AT: "pending-temp-written" } });
    const hdfc = await network.startBank("HDFC");
    const before = await network.balancesOnDisk();
    try {
      // SBI's payment is answered; its checkpoint then stops SBI with the pending file's lock held.
      const first = await network.pay("alice", "SBI", "carol", "SBI", "10");
      assert.equal(first.code, 0, first.stderr);
      await sbi.waitFor(/pause point pending-temp-written reached/);

      // HDFC's payment is answered too (no shared lock on a payment's path); its checkpoint needs the lock.
      const second = await network.pay("bob", "HDFC", "dave", "HDFC", "20");
      assert.equal(second.code, 0, second.stderr);
      const [, pid] = await hdfc.waitFor(
        /waiting [0-9.]+ s for the lock of \S*pending_transactions\.json, held by pid ([0-9]+)/,
      );
      assert.equal(Number(pid), sbi.child.pid, "the waiter names the paused holder");

      // The pause's length is the fault under test, not a wait for a state: nothing may take the lock meanwhile.
      const pendingWhilePaused = await readFile(network.paths.pendingJson, "utf8");
      await new Promise((resolve) => setTimeout(resolve, pauseBeyondStalenessMs));
      assert.equal(
        await readFile(network.paths.pendingJson, "utf8"),
        pendingWhilePaused,
        "no bank wrote the pending file while its lock's holder was paused",
      );
      assert.ok(hdfc.running && sbi.running);
    } finally {
      sbi.child.kill("SIGCONT");
    }

    // Both checkpoints complete, one after the other: both banks' sections and rows hold both payments.
    await network.settled();
    const after = await network.balancesOnDisk();
    assert.equal(after.get("alice@SBI"), before.get("alice@SBI")! - 1_000n);
    assert.equal(after.get("carol@SBI"), before.get("carol@SBI")! + 1_000n);
    assert.equal(after.get("bob@HDFC"), before.get("bob@HDFC")! - 2_000n);
    assert.equal(after.get("dave@HDFC"), before.get("dave@HDFC")! + 2_000n);
    const pending = JSON.parse(await readFile(network.paths.pendingJson, "utf8")) as {
      banks: Record<string, { holds: unknown[] }>;
    };
    assert.deepEqual(Object.keys(pending.banks).sort(), ["HDFC", "SBI"]);
    assert.equal(await network.holdsOnDisk(), 0);
  });
});
