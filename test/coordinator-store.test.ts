// The CoordinatorStore port's contract, held by every adapter: the file store (payment_gateway/*), the
// PostgreSQL store (a throwaway database per test) and the memory store the power-loss tests use. The coordinator relies on each of these properties.
import { afterEach, beforeEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import { appendFile, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { CoordinatorStore } from "../src/core/gateway/store/coordinator-store.js";
import { GatewayLog } from "../src/core/gateway/store/file/gateway-log.js";
import { MemoryCoordinatorStore } from "../src/core/gateway/store/memory/memory-coordinator-store.js";
import { dataPaths } from "../src/core/durable/paths.js";
import type { PaymentDetails, PaymentLeg } from "../src/core/domain/payment.js";
import { PostgresCoordinatorStore } from "../src/core/gateway/store/postgres/index.js";
import { openDatabase, type Database } from "../src/core/durable/postgres/database.js";
import { createThrowawayDatabase, type ThrowawayDatabase } from "./helpers/postgres.js";

function details(paymentId: string, amountMinor = 500n): PaymentDetails {
  return { paymentId, fromUser: "alice", fromBank: "B1", toUser: "bob", toBank: "B2", amountMinor };
}

/** A payment as a build before legs were kept wrote it: decided commit, not yet finished. */
const earlier = {
  paymentId: "earlier-1",
  fromUser: "alice",
  fromBank: "B1",
  toUser: "bob",
  toBank: "B2",
  amountMinor: 700n,
  createdAtMs: 1_700_000_000_001,
  decidedAtMs: 1_700_000_000_002,
};

interface Adapter {
  name: string;
  open(): Promise<CoordinatorStore>;
  /** Opens the adapter's durable state again, once its store is closed, as a restarted gateway does. */
  openAgain(): Promise<CoordinatorStore>;
  /** The ids the adapter's durable state holds now (what a power loss would keep). */
  durableIds(): Promise<string[]>;
  /**
   * Writes `earlier` as the build before legs were kept wrote it, into the durable state of a closed store;
   * absent for the memory store, which has no format of its own.
   */
  writeEarlier?(): Promise<void>;
  cleanUp(): Promise<void>;
}

function fileAdapter(): Adapter {
  let dir = "";
  return {
    name: "file store (GatewayLog)",
    async open() {
      dir = await mkdtemp(join(tmpdir(), "paynet-store-contract-"));
      return GatewayLog.open(dataPaths(dir));
    },
    openAgain: () => GatewayLog.open(dataPaths(dir)),
    async writeEarlier() {
      // Byte for byte the journal line of the build before legs were kept.
      await appendFile(
        dataPaths(dir).transactionLogsJournal,
        `{"paymentId":"earlier-1","fromUser":"alice","fromBank":"B1","toUser":"bob","toBank":"B2","amountMinor":"700","state":"committed","reason":null,"reasonMessage":null,"finished":false,"balanceAfterMinor":null,"createdAtMs":1700000000001,"decidedAtMs":1700000000002,"finishedAtMs":null}\n`,
      );
    },
    async durableIds() {
      const journal = await readFile(dataPaths(dir).transactionLogsJournal, "utf8").catch(() => "");
      return journal
        .split("\n")
        .filter((line) => line !== "")
        .map((line) => {
          const raw = JSON.parse(line) as { paymentId?: string; progress?: string };
          return raw.paymentId ?? raw.progress ?? "";
        });
    },
    cleanUp: () => rm(dir, { recursive: true, force: true }),
  };
}

function memoryAdapter(): Adapter {
  let store: MemoryCoordinatorStore | null = null;
  return {
    name: "memory store",
    async open() {
      store = new MemoryCoordinatorStore();
      return store;
    },
    async openAgain() {
      store = MemoryCoordinatorStore.fromImage(store!.image());
      return store;
    },
    async durableIds() {
      return store!.image().items.map((record) => record.paymentId);
    },
    cleanUp: async () => undefined,
  };
}

function postgresAdapter(): Adapter {
  let throwaway: ThrowawayDatabase | null = null;
  let database: Database | null = null;
  return {
    name: "PostgreSQL store",
    async open() {
      throwaway = await createThrowawayDatabase("contract");
      database = openDatabase({ url: throwaway.url, applicationName: "paynet-test-contract" });
      return PostgresCoordinatorStore.open({ database });
    },
    openAgain: () => PostgresCoordinatorStore.open({ database: database! }),
    async writeEarlier() {
      // The columns of migration 1, as the build before legs were kept inserted them.
      await database!.query(
        `INSERT INTO paynet_gateway.payments (payment_id, from_user, from_bank, to_user, to_bank, amount_minor, state,
           reason, reason_message, finished, balance_after_minor, created_at_ms, decided_at_ms, finished_at_ms, version)
         VALUES ($1, $2, $3, $4, $5, $6, 'committed', NULL, NULL, false, NULL, $7, $8, NULL, 1)`,
        [
          earlier.paymentId,
          earlier.fromUser,
          earlier.fromBank,
          earlier.toUser,
          earlier.toBank,
          String(earlier.amountMinor),
          String(earlier.createdAtMs),
          String(earlier.decidedAtMs),
        ],
      );
      await database!.query(
        "INSERT INTO paynet_gateway.payment_counts (stripe, bucket, payments) VALUES (0, 'committing', 1) ON CONFLICT (stripe, bucket) DO UPDATE SET payments = payment_counts.payments + 1",
      );
    },
    async durableIds() {
      // One id per change committed (a row's version), as the journal holds one line per change.
      const rows = await database!.query<{ payment_id: string; version: number }>(
        "SELECT payment_id, version FROM paynet_gateway.payments",
      );
      return rows.rows.flatMap((row) => Array.from({ length: row.version }, () => row.payment_id));
    },
    async cleanUp() {
      await database?.end();
      await throwaway?.drop();
    },
  };
}

for (const makeAdapter of [fileAdapter, memoryAdapter, postgresAdapter]) {
  const adapter = makeAdapter();
  describe(`CoordinatorStore contract: ${adapter.name}`, () => {
    let store: CoordinatorStore;
    beforeEach(async () => {
      store = await adapter.open();
    });
    afterEach(async () => {
      await store.close();
      await adapter.cleanUp();
    });

    it("creates an id once, however many calls race on it; the others get the first record", async () => {
      const answers = await Promise.all([
        store.beginOrGet(details("p1")),
        store.beginOrGet(details("p1", 900n)),
        store.beginOrGetAll([details("p1"), details("p2")]),
      ]);
      const flat = [answers[0], answers[1], ...answers[2]];
      assert.deepEqual(
        flat.map((begun) => begun.created),
        [true, false, false, true],
      );
      assert.equal(flat[1]!.record.amountMinor, 500n, "the loser sees the winner's details, to compare with its own");
    });

    it("hands out a known record only once it is durable, and a new one at once with its own durable promise", async () => {
      const begun = await store.beginOrGet(details("p1"));
      assert.ok(begun.created);
      const known = await store.beginOrGet(details("p1"));
      assert.equal(known.created, false);
      assert.ok(
        (await adapter.durableIds()).includes("p1"),
        "a known record was handed out before its write was durable",
      );
      const advanced = store.advance({ paymentId: "p1", state: "committed" });
      const found = await store.find("p1");
      const decided = await advanced;
      assert.ok(found !== undefined);
      if (found.state === "committed")
        assert.equal(
          (await adapter.durableIds()).filter((id) => id === "p1").length,
          2,
          "a decision found before its write was durable",
        );
      assert.equal(decided.state, "committed");
      assert.notEqual(decided.decidedAtMs, null);
      await begun.durable;
    });

    it("lists the ids that start with a prefix, in id order, at most as many as asked", async () => {
      for (const id of ["p15", "p10", "q1", "p2", "p13"]) {
        const begun = await store.beginOrGet(details(id));
        if (begun.created) await begun.durable;
      }
      assert.deepEqual(await store.idsWithPrefix("p1", 10), ["p10", "p13", "p15"]);
      assert.deepEqual(await store.idsWithPrefix("p1", 2), ["p10", "p13"]);
      assert.deepEqual(await store.idsWithPrefix("p15", 10), ["p15"]);
      assert.deepEqual(await store.idsWithPrefix("x", 10), []);
    });

    it("tombstones an id never begun (aborted and final), and answers a known id with its record", async () => {
      const tombstone = await store.tombstone("ghost");
      assert.equal(tombstone.state, "aborted");
      assert.equal(tombstone.finished, true);
      assert.deepEqual(await store.find("ghost"), tombstone);
      assert.ok((await adapter.durableIds()).includes("ghost"));
      const again = await store.beginOrGet(details("ghost"));
      assert.equal(again.created, false, "a tombstoned id can never be begun");
      const p1 = await store.beginOrGet(details("p1"));
      if (p1.created) await p1.durable;
      assert.equal((await store.tombstone("p1")).fromUser, "alice", "a known id is not tombstoned");
    });

    it("moves records only forward, lists the unfinished and counts every state", async () => {
      for (const id of ["a", "b", "c"]) {
        const begun = await store.beginOrGet(details(id));
        assert.ok(begun.created);
        await begun.durable;
      }
      assert.deepEqual(await store.advanceAll([]), []);
      const [a, b] = await store.advanceAll([
        { paymentId: "a", state: "committed", outcome: { balanceAfterMinor: 100n } },
        {
          paymentId: "b",
          state: "aborted",
          outcome: { reason: "INSUFFICIENT_FUNDS", reasonMessage: "no", finished: true },
        },
      ]);
      assert.equal(a!.balanceAfterMinor, 100n);
      assert.equal(b!.finished, true);
      await assert.rejects(
        store.advance({ paymentId: "a", state: "preparing" }),
        /may not move from committed to preparing/,
      );
      assert.deepEqual((await store.unfinished()).map((record) => record.paymentId).sort(), ["a", "c"]);
      assert.deepEqual(await store.counts(), { preparing: 1, committing: 1, aborting: 0, committed: 0, aborted: 1 });
    });

    it("keeps each leg's vote with the decision and its acknowledgement with `finished`, across a restart", async () => {
      const begun = await store.beginOrGet(details("legs-1"));
      assert.ok(begun.created);
      await begun.durable;
      const votes: PaymentLeg[] = [
        { role: "payer", vote: "yes", votedAtMs: 1_700_000_000_010, ackedAtMs: null },
        { role: "payee", vote: "no", votedAtMs: 1_700_000_000_011, ackedAtMs: null },
      ];
      const decided = await store.advance({
        paymentId: "legs-1",
        state: "aborted",
        outcome: { reason: "INSUFFICIENT_FUNDS", reasonMessage: "no", legs: votes },
      });
      assert.deepEqual(decided.legs, votes);
      // `finished` brings the acknowledgements (with the votes as phase 2 knows them); one bank's only, here.
      const finished = await store.advance({
        paymentId: "legs-1",
        state: "aborted",
        outcome: { finished: true, legs: [{ ...votes[0]!, ackedAtMs: 1_700_000_000_020 }] },
      });
      const expected: PaymentLeg[] = [{ ...votes[0]!, ackedAtMs: 1_700_000_000_020 }, votes[1]!];
      assert.deepEqual(finished.legs, expected, "a leg the change leaves out keeps what it recorded");
      await assert.rejects(
        store.advance({
          paymentId: "legs-1",
          state: "aborted",
          outcome: { legs: [{ role: "payee", vote: "yes", votedAtMs: 1_700_000_000_011, ackedAtMs: null }] },
        }),
        /the payee's vote may not change from no to yes/,
      );
      await store.close();
      store = await adapter.openAgain();
      assert.deepEqual((await store.find("legs-1"))?.legs, expected);
      const [other] = await store.beginOrGetAll([details("legs-2")]);
      assert.equal(other?.created, true);
      assert.deepEqual(other.record.legs, [], "a new payment has no legs");
    });

    if (adapter.writeEarlier !== undefined) {
      it("loads a record written before legs were kept, without legs, and finishes it with its acknowledgements", async () => {
        await store.close();
        await adapter.writeEarlier!();
        store = await adapter.openAgain();
        const loaded = await store.find(earlier.paymentId);
        assert.ok(loaded !== undefined);
        assert.equal(loaded.state, "committed");
        assert.equal(loaded.decidedAtMs, earlier.decidedAtMs);
        assert.deepEqual(loaded.legs, [], "its votes were never recorded");
        assert.deepEqual(
          (await store.unfinished()).map((record) => record.paymentId),
          [earlier.paymentId],
        );
        const acks: PaymentLeg[] = [
          { role: "payer", vote: null, votedAtMs: null, ackedAtMs: 1_700_000_000_030 },
          { role: "payee", vote: null, votedAtMs: null, ackedAtMs: 1_700_000_000_031 },
        ];
        const finished = await store.advance({
          paymentId: earlier.paymentId,
          state: "committed",
          outcome: { finished: true, legs: acks },
        });
        assert.deepEqual(finished.legs, acks);
        await store.close();
        store = await adapter.openAgain();
        assert.deepEqual((await store.find(earlier.paymentId))?.legs, acks);
      });
    }
  });
}
