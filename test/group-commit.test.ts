// Specification of src/core/durable/group-commit.ts (group commit). Every write is a deferred promise the test
// settles by hand, so the interleavings below are exact; no timers decide anything.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { GroupCommit } from "../src/core/durable/group-commit.js";

interface Deferred {
  promise: Promise<void>;
  resolve: () => void;
  reject: (error: Error) => void;
}

function deferred(): Deferred {
  let resolve!: () => void;
  let reject!: (error: Error) => void;
  const promise = new Promise<void>((resolvePromise, rejectPromise) => {
    resolve = resolvePromise;
    reject = rejectPromise;
  });
  return { promise, resolve, reject };
}

/** A writer whose every write waits for the test; `writes[i]` is the i-th write started. */
function harness() {
  const writes: Deferred[] = [];
  const writer = new GroupCommit(() => {
    const write = deferred();
    writes.push(write);
    return write.promise;
  });
  return { writer, writes };
}

/** Tracks how a promise settled, without leaving a rejection unhandled. */
function observe(promise: Promise<void>) {
  const state: { settled: "pending" | "resolved" | "rejected"; error: unknown } = {
    settled: "pending",
    error: undefined,
  };
  promise.then(
    () => {
      state.settled = "resolved";
    },
    (error: unknown) => {
      state.settled = "rejected";
      state.error = error;
    },
  );
  return state;
}

/** Lets every already-queued promise reaction run (one macrotask turn); not a delay that decides an outcome. */
function drainMicrotasks(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

describe("GroupCommit", () => {
  it("starts a write at once when idle and resolves the caller when it completes", async () => {
    const { writer, writes } = harness();
    const caller = observe(writer.flush());
    assert.equal(writes.length, 1);
    await drainMicrotasks();
    assert.equal(caller.settled, "pending");
    writes[0]!.resolve();
    await drainMicrotasks();
    assert.equal(caller.settled, "resolved");
  });

  it("makes all calls during an in-flight write share exactly one following write", async () => {
    const { writer, writes } = harness();
    const first = writer.flush();
    const second = writer.flush();
    const third = writer.flush();
    const fourth = writer.flush();
    assert.equal(writes.length, 1, "no second write may start while the first is in flight");
    assert.equal(second, third);
    assert.equal(third, fourth);
    assert.notEqual(first, second);

    writes[0]!.resolve();
    await first;
    await drainMicrotasks();
    assert.equal(writes.length, 2, "exactly one following write");
    writes[1]!.resolve();
    await Promise.all([second, third, fourth]);
    await drainMicrotasks();
    assert.equal(writes.length, 2, "no write beyond the shared one");
  });

  it("makes a caller wait for a write that started after its call, not the one in flight", async () => {
    const { writer, writes } = harness();
    const early = observe(writer.flush());
    const late = observe(writer.flush()); // writes[0] is already in flight: it may not cover this call
    writes[0]!.resolve();
    await drainMicrotasks();
    assert.equal(early.settled, "resolved");
    assert.equal(late.settled, "pending", "must not be satisfied by the write that was in flight at its call");
    assert.equal(writes.length, 2);
    writes[1]!.resolve();
    await drainMicrotasks();
    assert.equal(late.settled, "resolved");
  });

  it("starts the next write only after the in-flight one completes", async () => {
    const { writer, writes } = harness();
    void writer.flush();
    const queued = writer.flush();
    await drainMicrotasks();
    assert.equal(writes.length, 1);
    writes[0]!.resolve();
    await drainMicrotasks();
    assert.equal(writes.length, 2);
    writes[1]!.resolve();
    await queued;
  });

  it("queues a call made while the shared following write is in flight behind that write", async () => {
    const { writer, writes } = harness();
    void writer.flush();
    const second = observe(writer.flush());
    writes[0]!.resolve();
    await drainMicrotasks();
    assert.equal(writes.length, 2); // the shared write is now in flight
    const third = observe(writer.flush());
    writes[1]!.resolve();
    await drainMicrotasks();
    assert.equal(second.settled, "resolved");
    assert.equal(third.settled, "pending", "the write in flight at its call cannot cover it");
    assert.equal(writes.length, 3);
    writes[2]!.resolve();
    await drainMicrotasks();
    assert.equal(third.settled, "resolved");
  });

  it("covers a call made from the continuation of a completed write with a new write", async () => {
    const { writer, writes } = harness();
    let chained: ReturnType<typeof observe> | undefined;
    void writer.flush().then(() => {
      chained = observe(writer.flush());
    });
    writes[0]!.resolve();
    await drainMicrotasks();
    assert.ok(chained !== undefined);
    assert.equal(chained.settled, "pending");
    assert.equal(writes.length, 2);
    writes[1]!.resolve();
    await drainMicrotasks();
    assert.equal(chained.settled, "resolved");
  });

  it("starts a fresh write for a call after everything has settled", async () => {
    const { writer, writes } = harness();
    const first = writer.flush();
    writes[0]!.resolve();
    await first;
    await drainMicrotasks();
    const second = observe(writer.flush());
    assert.equal(writes.length, 2, "an idle writer starts at once");
    writes[1]!.resolve();
    await drainMicrotasks();
    assert.equal(second.settled, "resolved");
  });

  it("propagates a failed write to its caller, and still runs the queued write", async () => {
    const { writer, writes } = harness();
    const first = observe(writer.flush());
    const second = observe(writer.flush());
    const failure = new Error("disk full");
    writes[0]!.reject(failure);
    await drainMicrotasks();
    assert.equal(first.settled, "rejected");
    assert.equal(first.error, failure);
    assert.equal(second.settled, "pending");
    assert.equal(writes.length, 2, "the queued write still runs after a failure");
    writes[1]!.resolve();
    await drainMicrotasks();
    assert.equal(second.settled, "resolved");
  });

  it("propagates a failed shared write to every caller waiting on it", async () => {
    const { writer, writes } = harness();
    const first = observe(writer.flush());
    const waiting = [observe(writer.flush()), observe(writer.flush()), observe(writer.flush())];
    writes[0]!.resolve();
    await drainMicrotasks();
    assert.equal(first.settled, "resolved");
    const failure = new Error("EIO");
    writes[1]!.reject(failure);
    await drainMicrotasks();
    for (const caller of waiting) {
      assert.equal(caller.settled, "rejected");
      assert.equal(caller.error, failure);
    }
  });

  it("recovers after a failure: the next call starts a new write that can succeed", async () => {
    const { writer, writes } = harness();
    const failed = observe(writer.flush());
    writes[0]!.reject(new Error("transient"));
    await drainMicrotasks();
    assert.equal(failed.settled, "rejected");
    const retried = observe(writer.flush());
    assert.equal(writes.length, 2);
    writes[1]!.resolve();
    await drainMicrotasks();
    assert.equal(retried.settled, "resolved");
  });

  it("with startOnNextTurn, starts an idle write on the next turn, shared by every call of this turn", async () => {
    const writes: Deferred[] = [];
    const batches: number[] = [];
    const writer = new GroupCommit(
      () => {
        const write = deferred();
        writes.push(write);
        return write.promise;
      },
      { onBatch: (callers) => batches.push(callers), startOnNextTurn: true },
    );
    const first = observe(writer.flush());
    const second = observe(writer.flush());
    assert.equal(writes.length, 0, "nothing starts in the turn of the call");
    await drainMicrotasks();
    assert.equal(writes.length, 1);
    assert.deepEqual(batches, [2], "both calls share the one write");
    const late = observe(writer.flush()); // the write is in flight: it cannot cover this call
    writes[0]!.resolve();
    await drainMicrotasks();
    assert.equal(first.settled, "resolved");
    assert.equal(second.settled, "resolved");
    assert.equal(late.settled, "pending");
    assert.equal(writes.length, 2);
    writes[1]!.resolve();
    await drainMicrotasks();
    assert.equal(late.settled, "resolved");
  });

  it("hands each write the items committed since the last one began, and counts them per batch", async () => {
    const writes: Deferred[] = [];
    const carried: string[][] = [];
    const batches: number[] = [];
    const engine = new GroupCommit<string>(
      (items) => {
        carried.push(items);
        const write = deferred();
        writes.push(write);
        return write.promise;
      },
      { onBatch: (items) => batches.push(items) },
    );
    const first = observe(engine.commit(["a"]));
    const second = observe(engine.commit(["b", "c"]));
    const third = observe(engine.commit(["d"]));
    assert.deepEqual(carried, [["a"]], "the first write starts at once with what was queued");
    writes[0]!.resolve();
    await drainMicrotasks();
    assert.equal(first.settled, "resolved");
    assert.equal(second.settled, "pending", "b and c were queued while a's write was in flight");
    assert.deepEqual(carried, [["a"], ["b", "c", "d"]]);
    assert.deepEqual(batches, [1, 3]);
    writes[1]!.resolve();
    await drainMicrotasks();
    assert.equal(second.settled, "resolved");
    assert.equal(third.settled, "resolved");
  });

  it("settled() resolves at once when idle, and otherwise with the write that carries the last items", async () => {
    const { writer, writes } = harness();
    const idle = observe(writer.settled());
    await drainMicrotasks();
    assert.equal(idle.settled, "resolved", "nothing queued or running: nothing to wait for");
    assert.equal(writes.length, 0, "settled() starts no write");
    void writer.flush();
    const inFlight = observe(writer.settled());
    void writer.flush();
    const queued = observe(writer.settled());
    writes[0]!.resolve();
    await drainMicrotasks();
    assert.equal(inFlight.settled, "resolved", "asked while only the first write was due: that write covers it");
    assert.equal(queued.settled, "pending", "asked once a second write was queued: it waits for that one");
    writes[1]!.resolve();
    await drainMicrotasks();
    assert.equal(queued.settled, "resolved");
    assert.equal(writer.busy, false);
  });
});
