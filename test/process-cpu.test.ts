// Specification of how `paynet bench` reads the CPU time of the processes it measures.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { CpuMeter, cpuMsFromStat, processCpuMs } from "../src/roles/bench/process-cpu.js";

describe("cpuMsFromStat", () => {
  it("adds utime and stime (fields 14 and 15, in ticks of 10 ms)", () => {
    const stat =
      "4242 (node) S 1 4242 4242 0 -1 4194560 5000 0 0 0 730 184 0 0 20 0 11 0 12345 1193775104 33852 18446744073709551615";
    assert.equal(cpuMsFromStat(stat), 9140);
  });

  it("counts fields after the last ')', so a command name with spaces and parentheses does not shift them", () => {
    const stat = "77 (we ird) (name) R 1 77 77 0 -1 4194560 10 0 0 0 3 2 0 0 20 0 1 0 99 1000 10 18446744073709551615";
    assert.equal(cpuMsFromStat(stat), 50);
  });

  it("answers null for a line it cannot read rather than a wrong figure", () => {
    assert.equal(cpuMsFromStat(""), null);
    assert.equal(cpuMsFromStat("12 (node) S 1"), null);
    assert.equal(cpuMsFromStat("12 (node) S 1 12 12 0 -1 0 0 0 0 0 x y"), null);
  });
});

describe("CpuMeter", () => {
  it("measures this process's own CPU between start and stop, and answers null for a process that does not exist", () => {
    const meter = new CpuMeter([
      { name: "self", pid: process.pid },
      { name: "gone", pid: 2 ** 22 + 1 },
    ]);
    meter.start();
    const untilMs = (processCpuMs(process.pid) ?? 0) + 20;
    while ((processCpuMs(process.pid) ?? Infinity) < untilMs) Math.sqrt(Math.random());
    const [self, gone] = meter.stop();
    assert.equal(self!.name, "self");
    assert.ok(self!.cpuMs !== null && self!.cpuMs >= 20, `self used ${self!.cpuMs} ms`);
    assert.deepEqual(gone, { name: "gone", cpuMs: null });
  });
});
