// The CoordinatorStore port's contract, held by every adapter: the file store (payment_gateway/*), the
// PostgreSQL store (a throwaway database per test) and the memory store the power-loss tests use. The coordinator relies on each of these properties.
import { afterEach, beforeEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { CoordinatorStore } from "../src/core/gateway/store/coordinator-store.js";
import { GatewayLog } from "../src/core/gateway/store/file/gateway-log.js";
import { MemoryCoordinatorStore } from "../src/core/gateway/store/memory/memory-coordinator-store.js";
import { dataPaths } from "../src/core/durable/paths.js";
import type { PaymentDetails } from "../src/core/domain/payment.js";
import { PostgresCoordinatorStore } from "../src/core/gateway/store/postgres/index.js";
import { openDatabase, type Database } from "../src/core/durable/postgres/database.js";
import { createThrowawayDatabase, type ThrowawayDatabase } from "./helpers/postgres.js";

function details(paymentId: string, amountMinor = 500n): PaymentDetails {
  return { paymentId, fromUser: "alice", fromBank: "B1", toUser: "bob", toBank: "B2", amountMinor };
}

interface Adapter {
  name: string;
  open(): Promise<CoordinatorStore>;
  /** The ids the adapter's durable state holds now (what a power loss would keep). */
  durableIds(): Promise<string[]>;
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
  });
}
