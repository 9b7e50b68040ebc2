// `paynet status --watch`: the rates from two samples of the gateway's counters, the view of a sample, and the flags.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { GetStatusResponseSchema } from "../src/gen/paynet/v1/paynet_pb.js";
import { stripVTControlCharacters } from "node:util";
import {
  countsSample,
  frameJson,
  frameLines,
  ratesBetween,
  watchIntervalMs,
  type CountsSample,
  type WatchFrame,
} from "../src/roles/status-watch.js";
import { runCli } from "./helpers/network.js";

/** The view's lines without colors (chalk colors them when FORCE_COLOR says so). */
const plainLines = (frame: WatchFrame, terminal: boolean) =>
  frameLines(frame, terminal).map((line) => stripVTControlCharacters(line));

const sample = (atMs: number, committed: number, aborted: number): CountsSample => ({ atMs, committed, aborted });

describe("status --watch rates", () => {
  const cases: Array<[string, CountsSample | null, CountsSample, ReturnType<typeof ratesBetween>]> = [
    ["the first sample has none", null, sample(1_000, 5, 1), null],
    [
      "the counters' differences over the time between the samples",
      sample(1_000, 5, 1),
      sample(2_000, 125, 4),
      { intervalMs: 1_000, committedPerSecond: 120, abortedPerSecond: 3 },
    ],
    [
      "over the time measured, not the interval asked (a late sample)",
      sample(0, 0, 0),
      sample(250, 10, 0),
      { intervalMs: 250, committedPerSecond: 40, abortedPerSecond: 0 },
    ],
    [
      "nothing decided: zero, not none",
      sample(0, 7, 7),
      sample(200, 7, 7),
      { intervalMs: 200, committedPerSecond: 0, abortedPerSecond: 0 },
    ],
    ["a counter that went back (a reset data dir): none", sample(0, 10, 2), sample(1_000, 3, 2), null],
    ["an aborted counter that went back: none", sample(0, 10, 2), sample(1_000, 10, 1), null],
    ["no time between the samples: none", sample(500, 1, 0), sample(500, 2, 0), null],
  ];
  for (const [name, previous, current, expected] of cases)
    it(name, () => {
      assert.deepEqual(ratesBetween(previous, current), expected);
    });

  it("counts a payment when it is decided: committing + committed, aborting + aborted", () => {
    const status = create(GetStatusResponseSchema, {
      preparing: 9,
      committing: 2,
      committed: 40,
      aborting: 1,
      aborted: 3,
    });
    assert.deepEqual(countsSample(status, 77), { atMs: 77, committed: 42, aborted: 4 });
  });
});

describe("status --watch view", () => {
  const nowMs = Date.parse("2026-12-04T10:00:00.000Z");
  const status = create(GetStatusResponseSchema, {
    banks: [
      { name: "SBI", address: "127.0.0.1:50051", up: true, holds: 2, oldestHoldPreparedAtMs: BigInt(nowMs - 1_500) },
      { name: "HDFC", address: "127.0.0.1:50052", up: false },
    ],
    preparing: 1,
    committing: 0,
    aborting: 1,
    committed: 120,
    aborted: 4,
    inDoubt: [
      {
        paymentId: "pay-0001",
        state: "aborted",
        fromUser: "alice",
        fromBank: "SBI",
        toUser: "bob",
        toBank: "HDFC",
        amountMinor: 700n,
        createdAtMs: BigInt(nowMs - 65_000),
      },
    ],
    nowMs: BigInt(nowMs),
  });
  const frame = {
    kind: "status" as const,
    address: "127.0.0.1:8080",
    intervalMs: 1_000,
    atMs: nowMs,
    status,
    rates: { intervalMs: 1_004, committedPerSecond: 12.3, abortedPerSecond: 0 },
  };

  it("shows the banks with their holds, the rates, the counts and the oldest in-doubt payment", () => {
    assert.deepEqual(plainLines(frame, false), [
      "paynet status: gateway 127.0.0.1:8080, every 1.000 s, 2026-12-04T10:00:00.000Z",
      "banks",
      "  SBI        up   holds    2, the oldest for 1.500 s",
      "  HDFC       down holds    ?",
      "payments/s over the last 1.004 s: 12.3 committed, 0.0 aborted",
      "  finished: 120 committed, 4 aborted",
      "in doubt: 2; the oldest for 1 min 5 s: pay-0001 aborted 7.00 alice@SBI → bob@HDFC",
    ]);
    assert.match(plainLines(frame, true)[0]!, /\(Ctrl-C to stop\)$/, "a terminal says how to stop");
    assert.equal(plainLines({ ...frame, rates: null }, false)[4], "payments/s: from the next sample (in 1.000 s)");
    assert.deepEqual(frameJson(frame).perSecond, { intervalMs: 1_004, committed: 12.3, aborted: 0 });
    assert.deepEqual(frameJson(frame).oldestInDoubt, { id: "pay-0001", state: "aborted", ageMs: 65_000 });
  });

  it("says when the gateway does not answer, and for how long", () => {
    const unreachable = {
      kind: "unreachable" as const,
      address: "127.0.0.1:8080",
      intervalMs: 1_000,
      atMs: nowMs,
      sinceMs: nowMs - 3_000,
    };
    assert.deepEqual(plainLines(unreachable, false).slice(1), [
      "gateway at 127.0.0.1:8080 is not reachable (for 3.000 s); still watching",
    ]);
    assert.equal(frameJson(unreachable).error, "GATEWAY_UNAVAILABLE");
  });
});

describe("status --watch flags", () => {
  const usage: Array<[string, string[], RegExp]> = [
    ["an interval below the bound", ["--watch", "--interval-ms", String(watchIntervalMs.min - 1)], /from 200 to 60000/],
    ["an interval above the bound", ["--watch", "--interval-ms", String(watchIntervalMs.max + 1)], /got 60001/],
    ["a fractional interval", ["--watch", "--interval-ms", "250.5"], /must be an integer/],
    ["an interval that is not a number", ["--watch", "--interval-ms", "soon"], /must be an integer/],
    ["an interval without --watch", ["--interval-ms", "500"], /add --watch/],
  ];
  for (const [name, args, message] of usage)
    it(`refuses ${name} (exit 2), before it looks for the gateway`, async () => {
      const result = await runCli(["status", ...args, "--data-dir", "/nonexistent-paynet-dir"]);
      assert.equal(result.code, 2, result.stdout + result.stderr);
      assert.match(result.stderr, message);
    });
});
