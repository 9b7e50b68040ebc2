// LegBatcher: legs bound for one bank share batch calls, each leg keeps its own outcome.
import { afterEach, beforeEach, describe, it, mock } from "node:test";
import assert from "node:assert/strict";
import { LegBatcher } from "../src/core/gateway/leg-batcher.js";
import { PaymentError } from "../src/core/domain/errors.js";

interface Call {
  legs: number[];
  timeoutMs: number;
  finish: (results: Array<number | PaymentError>) => void;
  fail: (error: unknown) => void;
}

/** A batch sender whose calls the test answers by hand. */
function manualSender() {
  const calls: Call[] = [];
  const send = (legs: number[], timeoutMs: number) =>
    new Promise<Array<number | PaymentError>>((resolve, reject) =>
      calls.push({ legs, timeoutMs, finish: resolve, fail: reject }),
    );
  return { calls, send };
}

const settle = () => new Promise((resolve) => setImmediate(resolve));

describe("LegBatcher", () => {
  it("sends a lone leg at once, in a batch of one", async () => {
    const { calls, send } = manualSender();
    const batcher = new LegBatcher(send, { legsMax: 10, inFlightMax: 1 });
    const result = batcher.submit(7, 1000);
    assert.deepEqual(
      calls.map((call) => call.legs),
      [[7]],
    );
    calls[0]!.finish([70]);
    assert.equal(await result, 70);
  });

  it("holds legs while the in-flight limit is reached, then sends them together", async () => {
    const { calls, send } = manualSender();
    const batcher = new LegBatcher(send, { legsMax: 10, inFlightMax: 1 });
    const first = batcher.submit(1, 1000);
    const later = [2, 3, 4].map((leg) => batcher.submit(leg, 2000));
    assert.equal(calls.length, 1, "the others wait for the first call");
    calls[0]!.finish([10]);
    await first;
    await settle();
    assert.deepEqual(
      calls.map((call) => call.legs),
      [[1], [2, 3, 4]],
    );
    assert.equal(calls[1]!.timeoutMs, 2000);
    calls[1]!.finish([20, 30, 40]);
    assert.deepEqual(await Promise.all(later), [20, 30, 40]);
  });

  it("never puts more than legsMax legs in one call", async () => {
    const { calls, send } = manualSender();
    const batcher = new LegBatcher(send, { legsMax: 2, inFlightMax: 1 });
    const all = [1, 2, 3, 4, 5].map((leg) => batcher.submit(leg, 1000));
    for (let index = 0; index < 3; index += 1) {
      calls[index]!.finish(calls[index]!.legs.map((leg) => leg * 10));
      await settle();
    }
    assert.deepEqual(
      calls.map((call) => call.legs),
      [[1], [2, 3], [4, 5]],
    );
    assert.deepEqual(await Promise.all(all), [10, 20, 30, 40, 50]);
  });

  it("gives each leg its own refusal, and a failed call to every leg of it", async () => {
    const { calls, send } = manualSender();
    const batcher = new LegBatcher(send, { legsMax: 10, inFlightMax: 2 });
    const refused = batcher.submit(1, 1000);
    const accepted = batcher.submit(2, 1000);
    assert.equal(calls.length, 2, "two calls may be in flight");
    calls[0]!.finish([new PaymentError("INSUFFICIENT_FUNDS", "no")]);
    await assert.rejects(refused, (error: PaymentError) => error.code === "INSUFFICIENT_FUNDS");
    calls[1]!.fail(new PaymentError("BANK_UNAVAILABLE", "gone"));
    await assert.rejects(accepted, (error: PaymentError) => error.code === "BANK_UNAVAILABLE");
  });

  it("submitAll: legs submitted together may span calls; one promise answers each leg in order, and never rejects", async () => {
    const { calls, send } = manualSender();
    const batcher = new LegBatcher(send, { legsMax: 2, inFlightMax: 2 });
    const lone = batcher.submit(9, 1000);
    const together = batcher.submitAll([1, 2, 3, 4], 3000);
    assert.deepEqual(
      calls.map((call) => call.legs),
      [[9], [1, 2]],
      "the group waits for a free call, two legs per call",
    );
    calls[1]!.finish([10, new PaymentError("INSUFFICIENT_FUNDS", "no")]);
    await settle();
    assert.deepEqual(
      calls.map((call) => call.legs),
      [[9], [1, 2], [3, 4]],
    );
    assert.equal(calls[2]!.timeoutMs, 3000);
    calls[2]!.fail(new PaymentError("BANK_UNAVAILABLE", "gone"));
    calls[0]!.finish([90]);
    assert.equal(await lone, 90);
    const results = await together;
    assert.equal(results[0], 10);
    assert.deepEqual(
      results.slice(1).map((result) => (result as PaymentError).code),
      ["INSUFFICIENT_FUNDS", "BANK_UNAVAILABLE", "BANK_UNAVAILABLE"],
    );
    assert.deepEqual(await batcher.submitAll([], 1000), [], "no legs, no call");
    assert.equal(calls.length, 3);
  });

  describe("lingering while the line is busy", () => {
    beforeEach(() => mock.timers.enable({ apis: ["setTimeout"] }));
    afterEach(() => mock.timers.reset());

    it("sends lone legs on a quiet line at once; after a call of several legs, the next waits lingerMs for more and takes them all", async () => {
      const { calls, send } = manualSender();
      const batcher = new LegBatcher(send, { legsMax: 10, inFlightMax: 1, lingerMs: 2 });
      const quiet = batcher.submit(1, 1000);
      assert.deepEqual(
        calls.map((call) => call.legs),
        [[1]],
        "a quiet line: no wait",
      );
      calls[0]!.finish([10]);
      assert.equal(await quiet, 10);
      const alone = batcher.submit(2, 1000);
      assert.equal(calls.length, 2, "the last call carried one leg: still quiet, no wait");
      const busy = [3, 4].map((leg) => batcher.submit(leg, 1000));
      calls[1]!.finish([20]);
      assert.equal(await alone, 20);
      await settle();
      assert.deepEqual(calls.at(-1)!.legs, [3, 4], "legs that queued behind a call in flight go together");
      calls[2]!.finish([30, 40]);
      assert.deepEqual(await Promise.all(busy), [30, 40]);
      // That call carried two legs: the line is busy, so the next batch waits 2 ms for company.
      const first = batcher.submit(5, 1000);
      mock.timers.tick(1);
      const second = batcher.submit(6, 1000);
      await settle();
      assert.equal(calls.length, 3, "still lingering after 1 ms");
      mock.timers.tick(1);
      await settle();
      assert.deepEqual(calls.at(-1)!.legs, [5, 6], "after 2 ms, one call for both");
      calls[3]!.finish([50, 60]);
      assert.deepEqual(await Promise.all([first, second]), [50, 60]);
    });

    it("sends a batch that fills up while it lingers at once, and a lone leg after a lingered one-leg call without waiting", async () => {
      const { calls, send } = manualSender();
      const batcher = new LegBatcher(send, { legsMax: 2, inFlightMax: 1, lingerMs: 1_000 });
      const opening = [1, 2, 3].map((leg) => batcher.submit(leg, 1000));
      calls[0]!.finish([10]);
      await settle();
      assert.deepEqual(calls.at(-1)!.legs, [2, 3], "full: no wait");
      calls[1]!.finish([20, 30]);
      assert.deepEqual(await Promise.all(opening), [10, 20, 30]);
      const filling = batcher.submit(4, 1000);
      await settle();
      assert.equal(calls.length, 2, "busy line: [4] waits");
      const filled = batcher.submit(5, 1000);
      assert.deepEqual(calls.at(-1)!.legs, [4, 5], "it filled up: sent before the linger ends");
      calls[2]!.finish([40, 50]);
      assert.deepEqual(await Promise.all([filling, filled]), [40, 50]);
      const lingered = batcher.submit(6, 1000);
      mock.timers.tick(1_000);
      await settle();
      assert.deepEqual(calls.at(-1)!.legs, [6], "alone after the whole linger");
      calls[3]!.finish([60]);
      assert.equal(await lingered, 60);
      const quietAgain = batcher.submit(7, 1000);
      assert.deepEqual(calls.at(-1)!.legs, [7], "the last call carried one leg: the line is quiet again");
      calls[4]!.finish([70]);
      assert.equal(await quietAgain, 70);
    });
  });

  for (const options of [
    { legsMax: 0, inFlightMax: 1 },
    { legsMax: 1, inFlightMax: 0 },
    { legsMax: 1, inFlightMax: 1, lingerMs: -1 },
  ]) {
    it(`refuses the bounds ${JSON.stringify(options)}`, () => {
      assert.throws(() => new LegBatcher(manualSender().send, options));
    });
  }
});
