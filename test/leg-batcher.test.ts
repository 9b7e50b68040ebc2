// LegBatcher: legs bound for one bank share batch calls, each leg keeps its own outcome.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { LegBatcher } from "../src/core/leg-batcher.js";
import { PaymentError } from "../src/core/errors.js";

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
    new Promise<Array<number | PaymentError>>((resolve, reject) => calls.push({ legs, timeoutMs, finish: resolve, fail: reject }));
  return { calls, send };
}

const settle = () => new Promise((resolve) => setImmediate(resolve));

describe("LegBatcher", () => {
  it("sends a lone leg at once, in a batch of one", async () => {
    const { calls, send } = manualSender();
    const batcher = new LegBatcher(send, { legsMax: 10, inFlightMax: 1 });
    const result = batcher.submit(7, 1000);
    assert.deepEqual(calls.map((call) => call.legs), [[7]]);
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
    assert.deepEqual(calls.map((call) => call.legs), [[1], [2, 3, 4]]);
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
    assert.deepEqual(calls.map((call) => call.legs), [[1], [2, 3], [4, 5]]);
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
    assert.deepEqual(calls.map((call) => call.legs), [[9], [1, 2]], "the group waits for a free call, two legs per call");
    calls[1]!.finish([10, new PaymentError("INSUFFICIENT_FUNDS", "no")]);
    await settle();
    assert.deepEqual(calls.map((call) => call.legs), [[9], [1, 2], [3, 4]]);
    assert.equal(calls[2]!.timeoutMs, 3000);
    calls[2]!.fail(new PaymentError("BANK_UNAVAILABLE", "gone"));
    calls[0]!.finish([90]);
    assert.equal(await lone, 90);
    const results = await together;
    assert.equal(results[0], 10);
    assert.deepEqual(results.slice(1).map((result) => (result as PaymentError).code), ["INSUFFICIENT_FUNDS", "BANK_UNAVAILABLE", "BANK_UNAVAILABLE"]);
    assert.deepEqual(await batcher.submitAll([], 1000), [], "no legs, no call");
    assert.equal(calls.length, 3);
  });

  for (const options of [
    { legsMax: 0, inFlightMax: 1 },
    { legsMax: 1, inFlightMax: 0 },
  ]) {
    it(`refuses the bounds ${JSON.stringify(options)}`, () => {
      assert.throws(() => new LegBatcher(manualSender().send, options));
    });
  }
});
